//! Equivalence with `BuildKit`: multi-stage Dockerfiles written here are built both by the
//! Docker daemon's `BuildKit` and by `stack build -f Dockerfile`; the two images must hold the
//! same files (path, type, mode, owner, content, link target; mtimes ignored) and the same
//! runtime config.
//!
//! Both sides start from the same busybox base: stack's OCI layout is loaded into the daemon
//! as `stackit/base:latest`, and every Dockerfile reads its base through `ARG BASE`, which the
//! stack side overrides with `--arg BASE=oci:LAYOUT:base`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{busybox_base, have, run_stack, skip, stderr, write_files};

const BASE: &str = "stackit/base:latest";
const NOPATH: &str = "stackit/nopath:latest";

/// One equivalence case: a build context, the stages to compare, and paths to ignore.
#[derive(Default)]
struct Case {
    name: &'static str,
    /// Files of the build context (the Dockerfile included).
    files: Vec<(&'static str, String)>,
    /// Stages to build and compare; the last stage when empty.
    targets: &'static [&'static str],
    /// Paths (and everything below them) that a `run` writes differently on each side.
    ignore: &'static [&'static str],
    /// Folders the daemon's `BuildKit` leaves behind as mount points of a `RUN` (cache mount
    /// targets and their parents): accepted when only `BuildKit` has them. Newer `BuildKit`
    /// removes such stubs, as stack does.
    mount_stubs: &'static [&'static str],
    /// Extra context set-up: archives, symlinks, modes.
    prepare: Option<fn(&Path)>,
    /// The Dockerfile given to the daemon when its frontend predates heredocs (`BuildKit`
    /// < 0.10): the same build with each heredoc spelled out as `BuildKit` expands it.
    without_heredocs: Option<&'static str>,
}

/// What the comparison looks at for one path of the merged file system.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: String,
    mode: u32,
    uid: u64,
    gid: u64,
}

impl std::fmt::Display for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} mode={:04o} owner={}:{}", self.kind, self.mode, self.uid, self.gid)
    }
}

/// An image read back from a `docker-archive`: the merged file system and the config.
struct Image {
    files: BTreeMap<String, Meta>,
    /// Short text files' contents, to show in a difference.
    texts: HashMap<String, String>,
    config: serde_json::Value,
}

/// The config fields that decide how a container runs.
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

/// The Docker client; Debian's (`docker.io`) drives `BuildKit` without the buildx plugin,
/// which a newer client on PATH may demand.
fn docker() -> Command {
    let program = if Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" };
    let mut c = Command::new(program);
    c.env("DOCKER_BUILDKIT", "1");
    c
}

fn docker_ready() -> bool {
    if !have("docker") && !Path::new("/usr/bin/docker").exists() {
        skip("docker is missing (apt-get install docker.io)");
        return false;
    }
    let info = docker().arg("info").output();
    if !info.is_ok_and(|o| o.status.success()) {
        skip("the docker daemon does not answer (`docker info` fails)");
        return false;
    }
    if !have("skopeo") {
        skip("skopeo is missing (apt-get install skopeo)");
        return false;
    }
    if let Err(why) = stack::api::exec::sandbox::probe() {
        skip(&format!("the sandbox cannot run here: {why}"));
        return false;
    }
    true
}

/// Loads stack's busybox base (and a variant without `PATH`) into the daemon, once.
/// Returns the two layouts: (base, no-PATH base).
fn bases() -> Option<(PathBuf, PathBuf)> {
    static BASES: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    BASES
        .get_or_init(|| {
            let base = busybox_base()?;
            let nopath = base.parent().unwrap().join("nopath");
            without_env(&base, "base", &nopath);
            for (layout, name) in [(&base, BASE), (&nopath, NOPATH)] {
                let out = Command::new("skopeo")
                    .args([
                        "copy",
                        "--quiet",
                        &format!("oci:{}:base", layout.display()),
                        &format!("docker-daemon:{name}"),
                    ])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "skopeo copy to the daemon: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Some((base, nopath))
        })
        .clone()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Copies the OCI layout `from` into `to` with the image's `Env` removed (tag `base`).
fn without_env(from: &Path, tag: &str, to: &Path) {
    let blob = |d: &str| {
        std::fs::read(from.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&blob(desc["digest"].as_str().unwrap())).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    config["config"].as_object_mut().unwrap().remove("Env");
    let blobs = to.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let d = layer["digest"].as_str().unwrap();
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), blob(d)).unwrap();
    }
    let put = |bytes: Vec<u8>| {
        let hex = sha256_hex(&bytes);
        let size = bytes.len();
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), size)
    };
    let (cd, cs) = put(serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(serde_json::to_vec(&manifest).unwrap());
    let mut desc = desc;
    desc["digest"] = md.into();
    desc["size"] = ms.into();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
    std::fs::write(to.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(to.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Whether the daemon's Dockerfile frontend understands heredocs.
fn daemon_has_heredocs() -> bool {
    static HEREDOCS: OnceLock<bool> = OnceLock::new();
    *HEREDOCS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &[("Dockerfile", "FROM scratch\nCOPY <<EOF /x\nx\nEOF\n")]);
        docker()
            .args(["build", "--network=host", "-q", "--no-cache"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Reads a `docker-archive` (from `docker save` or stack) into the merged file system and
/// the config. Layers may be plain, gzip or zstd tars.
fn read_docker_archive(path: &Path) -> Image {
    let mut members: HashMap<String, Vec<u8>> = HashMap::new();
    let mut outer = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().trim_start_matches("./").to_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        members.insert(name, bytes);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&members[manifest[0]["Config"].as_str().unwrap()]).unwrap();
    let mut files: BTreeMap<String, Meta> = BTreeMap::new();
    let mut texts = HashMap::new();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let raw = &members[layer.as_str().unwrap()];
        let plain = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut v = Vec::new();
            flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut v).unwrap();
            v
        } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            zstd::decode_all(raw.as_slice()).unwrap()
        } else {
            raw.clone()
        };
        apply_layer(&plain, &mut files, &mut texts);
    }
    Image { files, texts, config: config["config"].clone() }
}

fn clean(p: &str) -> String {
    let p = p.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
    format!("/{p}")
}

fn below(files: &BTreeMap<String, Meta>, dir: &str) -> Vec<String> {
    let prefix = if dir == "/" { "/".to_owned() } else { format!("{dir}/") };
    files.keys().filter(|k| k.starts_with(&prefix)).cloned().collect()
}

/// Applies one layer tar, with OCI whiteouts, onto the merged file system.
fn apply_layer(
    tar_bytes: &[u8],
    files: &mut BTreeMap<String, Meta>,
    texts: &mut HashMap<String, String>,
) {
    let mut ar = tar::Archive::new(tar_bytes);
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = clean(&entry.path().unwrap().to_string_lossy());
        let (dir, name) = path.rsplit_once('/').unwrap();
        let dir = if dir.is_empty() { "/" } else { dir };
        if name == ".wh..wh..opq" {
            for k in below(files, dir) {
                files.remove(&k);
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let gone = if dir == "/" { format!("/{hidden}") } else { format!("{dir}/{hidden}") };
            for k in below(files, &gone) {
                files.remove(&k);
            }
            files.remove(&gone);
            continue;
        }
        let h = entry.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                if bytes.len() < 300
                    && let Ok(t) = std::str::from_utf8(&bytes)
                {
                    texts.insert(path.clone(), t.to_owned());
                }
                format!("file sha256:{}", &sha256_hex(&bytes)[..16])
            }
            tar::EntryType::Directory => "dir".to_owned(),
            tar::EntryType::Symlink => {
                format!("symlink -> {}", entry.link_name().unwrap().unwrap().display())
            }
            tar::EntryType::Link => {
                let target = clean(&entry.link_name().unwrap().unwrap().to_string_lossy());
                let t = files.get(&target).cloned().expect("hard link target is in the image");
                files.insert(path, t);
                continue;
            }
            other => format!("{other:?}"),
        };
        if kind != "dir" {
            for k in below(files, &path) {
                files.remove(&k);
            }
        }
        let meta = Meta {
            kind,
            mode: h.mode().unwrap() & 0o7777,
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
        };
        files.insert(path, meta);
    }
}

/// Mount points the daemon's runtime creates for every `RUN` when the base lacks them.
const RUNTIME_STUBS: &[&str] = &["/dev", "/proc", "/sys"];

/// Every difference between the two images, one line each; empty when equivalent.
fn differences(buildkit: &Image, stack: &Image, ignore: &[&str], stubs: &[&str]) -> Vec<String> {
    let ignored = |p: &str| {
        p == "/"
            || ignore
                .iter()
                .any(|i| p == *i || p.starts_with(&format!("{}/", i.trim_end_matches('/'))))
    };
    let mut out = Vec::new();
    let mut paths: Vec<&String> = buildkit.files.keys().chain(stack.files.keys()).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        if ignored(p) {
            continue;
        }
        match (buildkit.files.get(p), stack.files.get(p)) {
            (Some(b), Some(s)) if b != s => {
                let mut line = format!("{p}: buildkit has {b}, stack has {s}");
                if b.kind != s.kind
                    && let (Some(bt), Some(st)) = (buildkit.texts.get(p), stack.texts.get(p))
                {
                    let _ = write!(line, " (buildkit: {bt:?}, stack: {st:?})");
                }
                out.push(line);
            }
            (Some(b), None)
                if b.kind == "dir"
                    && (RUNTIME_STUBS.contains(&p.as_str()) || stubs.contains(&p.as_str())) => {}
            (Some(b), None) => out.push(format!("{p}: only buildkit has it ({b})")),
            (None, Some(s)) => out.push(format!("{p}: only stack has it ({s})")),
            _ => {}
        }
    }
    let field = |c: &serde_json::Value, k: &str| match c.get(k) {
        None | Some(serde_json::Value::Null) => serde_json::Value::Null,
        Some(v) => v.clone(),
    };
    for k in CONFIG_FIELDS {
        let (b, s) = (field(&buildkit.config, k), field(&stack.config, k));
        if b != s {
            out.push(format!("config {k}: buildkit has {b}, stack has {s}"));
        }
    }
    out
}

/// Builds one case on both sides and returns the differences, per target.
fn run_case(case: &Case, base: &Path, nopath: &Path) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let files: Vec<(&str, &str)> = case.files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    write_files(&ctx, &files);
    if let Some(prepare) = case.prepare {
        prepare(&ctx);
    }
    let mut docker_file = ctx.join("Dockerfile");
    if let Some(alt) = case.without_heredocs
        && !daemon_has_heredocs()
    {
        docker_file = work.path().join("Dockerfile.daemon");
        std::fs::write(&docker_file, alt).unwrap();
    }
    let targets: Vec<Option<&str>> = if case.targets.is_empty() {
        vec![None]
    } else {
        case.targets.iter().copied().map(Some).collect()
    };
    let mut report = Vec::new();
    for target in targets {
        let label = target.unwrap_or("last stage");
        let tag = format!("stackit/eq-{}-{}:latest", case.name, target.unwrap_or("last"));
        let mut build = docker();
        build.args(["build", "--network=host", "-q", "-t", &tag, "-f"]).arg(&docker_file);
        if let Some(t) = target {
            build.args(["--target", t]);
        }
        let out = build.arg(&ctx).output().unwrap();
        assert!(
            out.status.success(),
            "{}: docker build ({label}) failed: {}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let docker_tar = work.path().join("docker.tar");
        let out = docker().args(["save", "-o"]).arg(&docker_tar).arg(&tag).output().unwrap();
        assert!(out.status.success(), "docker save: {}", String::from_utf8_lossy(&out.stderr));
        let _ = docker().args(["rmi", "-f", &tag]).output();

        let stack_tar = work.path().join("stack.tar");
        let base_arg = format!("BASE=oci:{}:base", base.display());
        let nopath_arg = format!("NOPATH=oci:{}:base", nopath.display());
        let mut args = vec![
            "build",
            "-f",
            "Dockerfile",
            "--arg",
            &base_arg,
            "--arg",
            &nopath_arg,
            "--format",
            "docker-archive",
            "--out",
            stack_tar.to_str().unwrap(),
        ];
        if let Some(t) = target {
            args.extend(["--target", t]);
        }
        let out = run_stack(&ctx, &work.path().join("cache"), &args);
        if !out.status.success() {
            report.push(format!("[{} / {label}] stack build failed: {}", case.name, stderr(&out)));
            continue;
        }

        let b = read_docker_archive(&docker_tar);
        let s = read_docker_archive(&stack_tar);
        for d in differences(&b, &s, case.ignore, case.mount_stubs) {
            report.push(format!("[{} / {label}] {d}", case.name));
        }
    }
    report
}

/// The header every case's Dockerfile starts with: the bases, overridable for stack.
const HEAD: &str = "ARG BASE=stackit/base:latest\nARG NOPATH=stackit/nopath:latest\n";

fn dockerfile(body: &str) -> (&'static str, String) {
    ("Dockerfile", format!("{HEAD}{body}"))
}

#[allow(clippy::too_many_lines, reason = "a table: one literal per equivalence case")]
fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "args-env",
            files: vec![dockerfile(
                r#"ARG GREETING=hello
ARG UNUSED=never
FROM ${BASE} AS build
ARG GREETING
ARG TARGETOS
ARG TARGETARCH
ARG TARGETPLATFORM
ARG BUILDPLATFORM
ARG MODE
ARG LEVEL=3
ENV APP_HOME=/opt/app \
    GREETING_ENV="${GREETING} world" \
    MODE_OR_DEFAULT=${MODE:-release} \
    HAS_MODE=${MODE:+yes} \
    HAS_LEVEL=${LEVEL:+level-$LEVEL} \
    NOPE=${NOT_DECLARED:-fallback} \
    UNUSED_SEEN=${UNUSED:-not-in-stage}
ENV DERIVED=$APP_HOME/bin PATH=/opt/app/bin:$PATH QUOTED='$APP_HOME' ESCAPED=\$APP_HOME
RUN mkdir -p $APP_HOME && echo "$GREETING $TARGETOS/$TARGETARCH $TARGETPLATFORM $BUILDPLATFORM" > $APP_HOME/platform.txt \
 && env | grep -E '^(GREETING|MODE|LEVEL|UNUSED|TARGET|BUILD)' | sort > $APP_HOME/env.txt
LABEL greeting="${GREETING}" home=$APP_HOME arch=${TARGETARCH}
WORKDIR ${APP_HOME}/${LEVEL}

FROM build
ARG GREETING=bye
ENV GREETING=$GREETING
RUN echo "$GREETING $LEVEL." > /final.txt
"#,
            )],
            ..Case::default()
        },
        Case {
            name: "copy-from",
            files: vec![dockerfile(
                r"FROM ${BASE} AS builder
RUN mkdir -p /out/bin /out/empty /out/private && echo tool > /out/bin/tool && chmod 0755 /out/bin/tool \
 && echo secret > /out/private/key && chmod 0700 /out/private && chmod 0600 /out/private/key \
 && chown -R 1000:50 /out/private && ln -s bin/tool /out/link && echo data > /data.txt \
 && mkdir -p /srcdir/a/b && chmod 0711 /srcdir/a && echo deep > /srcdir/a/b/f && chown 1000:1000 /srcdir

FROM ${BASE}
COPY --from=builder /out/ /app/
COPY --from=builder /out/private /secure
COPY --from=builder --chown=app:staff /data.txt /srv/data.txt
COPY --from=0 --chmod=0750 /out/bin/tool /usr/local/bin/
COPY --from=builder --chown=1000 /out/bin /opt/bin
COPY --from=builder /out/link /linkcopy
COPY --from=builder /srcdir /dstdir
COPY --from=builder /srcdir/a /new/parent/dirs/
COPY --from=builder --chown=1000:50 /srcdir/a /owned/parents/
",
            )],
            ..Case::default()
        },
        Case {
            name: "context",
            files: vec![
                dockerfile(
                    r#"FROM ${BASE}
COPY . /ctx/
COPY src/*.txt /txt/
COPY src/sub /sub-contents/
COPY bin/run.sh /usr/local/bin/run
COPY ["src/a.txt", "src/b.txt", "/multi/"]
COPY src/?.txt /deep/new/dir/
COPY src/alias /alias-followed
WORKDIR /w
COPY src/a.txt rel/
COPY --chown=app:app src/ owned/
COPY --chmod=0600 src/sub/d.txt ./private.txt
COPY src /whole-src
"#,
                ),
                ("src/a.txt", "a\n".into()),
                ("src/b.txt", "b\n".into()),
                ("src/c.log", "c\n".into()),
                ("src/keep.log", "keep\n".into()),
                ("src/sub/d.txt", "d\n".into()),
                ("src/sub/e.md", "e\n".into()),
                ("src/sub/deeper/skip.log", "skip\n".into()),
                ("docs/x.md", "docs\n".into()),
                ("bin/run.sh", "#!/bin/sh\necho run\n".into()),
                ("secret.key", "key\n".into()),
                ("keep.key", "kept\n".into()),
                (".dockerignore", "**/*.log\n!src/keep.log\ndocs\n*.key\n!keep.key\n".into()),
            ],
            prepare: Some(|ctx| {
                use std::os::unix::fs::PermissionsExt as _;
                let set = |p: &str, m: u32| {
                    std::fs::set_permissions(ctx.join(p), std::fs::Permissions::from_mode(m))
                        .unwrap();
                };
                set("bin/run.sh", 0o755);
                set("keep.key", 0o600);
                set("src/sub", 0o750);
                set("src/b.txt", 0o640);
                std::os::unix::fs::symlink("a.txt", ctx.join("src/alias")).unwrap();
            }),
            ..Case::default()
        },
        Case {
            name: "add-archive",
            files: vec![
                dockerfile(
                    r"FROM ${BASE}
ADD pkg.tar.gz /opt/
ADD plain.tar /plain/
ADD --chown=app:staff notes.txt /notes/
ADD notes.txt /notes-root.txt
ADD *.txt /globbed/
WORKDIR /srv
ADD pkg.tar.gz unpacked-here
",
                ),
                ("notes.txt", "notes\n".into()),
            ],
            prepare: Some(|ctx| {
                let gz = std::fs::File::create(ctx.join("pkg.tar.gz")).unwrap();
                let enc = flate2::write::GzEncoder::new(gz, flate2::Compression::default());
                let mut b = tar::Builder::new(enc);
                let mut add = |path: &str,
                               kind: tar::EntryType,
                               mode: u32,
                               owner: u64,
                               body: &[u8],
                               link: Option<&str>| {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(kind);
                    h.set_mode(mode);
                    h.set_uid(owner);
                    h.set_gid(owner);
                    h.set_mtime(1_600_000_000);
                    h.set_size(body.len() as u64);
                    if let Some(l) = link {
                        h.set_link_name(l).unwrap();
                    }
                    h.set_path(path).unwrap();
                    h.set_cksum();
                    b.append(&h, body).unwrap();
                };
                add("pkg/", tar::EntryType::Directory, 0o750, 1000, b"", None);
                add("pkg/bin/tool", tar::EntryType::Regular, 0o755, 1000, b"tool\n", None);
                add("pkg/readme", tar::EntryType::Regular, 0o644, 0, b"readme\n", None);
                add("pkg/latest", tar::EntryType::Symlink, 0o777, 0, b"", Some("bin/tool"));
                add("pkg/hard", tar::EntryType::Link, 0o644, 0, b"", Some("pkg/readme"));
                add("deep/x/file", tar::EntryType::Regular, 0o600, 50, b"deep\n", None);
                b.into_inner().unwrap().finish().unwrap();
                let plain = std::fs::File::create(ctx.join("plain.tar")).unwrap();
                let mut b = tar::Builder::new(plain);
                let mut h = tar::Header::new_ustar();
                h.set_mode(0o640);
                h.set_size(6);
                h.set_path("inside.txt").unwrap();
                h.set_cksum();
                b.append(&h, &b"plain\n"[..]).unwrap();
                b.finish().unwrap();
            }),
            ..Case::default()
        },
        Case {
            name: "shell-user-workdir",
            files: vec![dockerfile(
                r#"FROM ${BASE}
SHELL ["/bin/sh", "-e", "-c"]
RUN echo "shell=$0 $-" > /shell.txt
WORKDIR /srv
WORKDIR app
WORKDIR ./sub/../data
RUN pwd > /pwd.txt
USER app
WORKDIR /home/app/work
RUN id -u > /tmp/uid.txt
USER 1000:50
WORKDIR relative-as-group
RUN id > /tmp/id.txt && pwd > /tmp/pwd.txt
USER root
RUN cat /tmp/id.txt /tmp/pwd.txt > /id.txt
USER app:staff
"#,
            )],
            ..Case::default()
        },
        Case {
            name: "metadata",
            files: vec![dockerfile(
                r#"FROM ${BASE}
EXPOSE 80 443/tcp 53/udp
EXPOSE 8080
VOLUME /data
VOLUME ["/var/log", "/cache"]
LABEL org.opencontainers.image.title="eq test" multi="a b" \
      version=1.0
LABEL empty=""
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=4 CMD wget -q -O- http://localhost/ || exit 1
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
"#,
            )],
            ..Case::default()
        },
        Case {
            name: "entrypoint-cmd",
            files: vec![dockerfile(
                r#"FROM ${BASE} AS withcmd
CMD ["echo", "inherited"]
HEALTHCHECK CMD ["true"]

FROM withcmd AS reset
ENTRYPOINT /bin/echo reset

FROM reset AS shellcmd
SHELL ["/bin/ash", "-c"]
CMD echo from shell

FROM withcmd AS both
HEALTHCHECK NONE
CMD ["a", "b"]
ENTRYPOINT ["/bin/echo"]

FROM both AS inherited
ENTRYPOINT ["/bin/echo", "again"]
CMD ["x"]
"#,
            )],
            targets: &["reset", "shellcmd", "both", "inherited"],
            ..Case::default()
        },
        Case {
            name: "run-forms",
            files: vec![dockerfile(
                r#"FROM ${BASE}
RUN echo shell form > /shell-form.txt
RUN ["/bin/sh", "-c", "echo exec form > /exec-form.txt"]
RUN ["/bin/mkdir", "-p", "/made/by/exec"]
RUN rm /bin/vi && rm -r /tmp && mkdir /tmp && chmod 1777 /tmp
RUN ln -s /shell-form.txt /symlink && ln /exec-form.txt /hardlink && chmod 0600 /hardlink \
 && mkdir -p /owned && chown 1000:50 /owned && touch /owned/file
RUN --mount=type=cache,target=/var/cache/app \
    echo cached > /var/cache/app/x && ls /var/cache/app > /cache-listing.txt
RUN --mount=type=cache,target=/root/.cache,id=eq-cache,sharing=locked touch /root/.cache/ok && echo ok > /cache-ok.txt
RUN echo 'multi' \
    'line' > /continued.txt
"#,
            )],
            mount_stubs: &["/var", "/var/cache", "/var/cache/app", "/root", "/root/.cache"],
            ..Case::default()
        },
        Case {
            name: "heredocs",
            files: vec![dockerfile(
                "FROM ${BASE}
ARG NAME=world
COPY <<EOF /etc/greeting
hello ${NAME}
EOF
COPY <<-\"EOT\" /etc/literal
\tliteral ${NAME}
\tEOT
COPY <<A <<B /two/
first
A
second
B
RUN <<EOF
echo \"from heredoc $NAME\" > /heredoc-run.txt
mkdir -p /hd
EOF
RUN cat <<EOF > /hd/cat.txt
via cat $NAME
EOF
",
            )],
            without_heredocs: Some(
                "ARG BASE=stackit/base:latest
FROM ${BASE}
ARG NAME=world
RUN printf 'hello world\\n' > /etc/greeting
RUN printf 'literal ${NAME}\\n' > /etc/literal
RUN mkdir -p /two && printf 'first\\n' > /two/A && printf 'second\\n' > /two/B
RUN echo \"from heredoc $NAME\" > /heredoc-run.txt && mkdir -p /hd
RUN echo \"via cat $NAME\" > /hd/cat.txt
",
            ),
            ..Case::default()
        },
        // Issue 12: each class of difference the corpus and earlier cases found.
        Case {
            name: "parity-values",
            files: vec![dockerfile(
                r#"FROM ${BASE} AS values
ENV VERSION=$VERSION UNSET_BRACED=${NOT_DECLARED}x
ENV MODE=env
ARG MODE=arg
RUN echo "$MODE" > /mode.txt
ENV FROM_MODE=$MODE
ENV MODE=env-again
RUN echo "$MODE" > /mode-again.txt
EXPOSE 7000-7002/udp 80
WORKDIR /app/
RUN
RUN echo 'hi   world' > /spaces.txt
HEALTHCHECK CMD wget -q http://localhost:${PORT-8080}/
ENTRYPOINT ["sh", "-c", "echo ${HOME} $HOME"]
CMD echo ${HOME:-none}

FROM values AS empty-cmd
CMD []

FROM values AS empty-entrypoint
WORKDIR relative/
ENTRYPOINT []
"#,
            )],
            targets: &["values", "empty-cmd", "empty-entrypoint"],
            ..Case::default()
        },
        Case {
            name: "parity-onbuild",
            files: vec![
                dockerfile(
                    r#"FROM ${BASE} AS parent
ONBUILD COPY hello.txt /from-trigger.txt
ONBUILD RUN echo "triggered $MARK" > /triggered.txt
ENV MARK=parent

FROM parent AS child
RUN cat /triggered.txt > /seen.txt

FROM child AS grandchild
RUN ls / > /listing.txt
"#,
                ),
                ("hello.txt", "hello\n".into()),
            ],
            targets: &["parent", "child", "grandchild"],
            ..Case::default()
        },
        Case {
            name: "parity-bind-context",
            files: vec![
                dockerfile(
                    "FROM ${BASE}
RUN --mount=type=bind,target=/ctx ls -a /ctx > /listing.txt
RUN --mount=type=bind,source=sub,target=/sub ls -a /sub > /sub.txt
RUN --mount=type=bind,source=data.txt,target=/d cat /d > /data.txt
RUN --mount=type=bind,source=sub,target=/rw,rw touch /rw/new && ls /rw > /rw.txt
",
                ),
                ("data.txt", "data\n".into()),
                ("sub/x", "x\n".into()),
                ("sub/ignored.log", "log\n".into()),
                ("secret.txt", "secret\n".into()),
                (".dockerignore", "secret.txt\n**/*.log\n".into()),
            ],
            mount_stubs: &["/ctx", "/sub", "/rw"],
            ..Case::default()
        },
        Case {
            name: "parity-add-archives",
            files: vec![dockerfile(
                "FROM ${BASE}
ADD data.tar.bz2 /bz2/
ADD data.tar.xz /xz/
ADD misnamed.bin /misnamed/
ADD notatar.gz /gz/
ADD plain.txt.gz /gz-named/
",
            )],
            prepare: Some(|ctx| {
                let tar = |name: &str| {
                    let mut b = tar::Builder::new(Vec::new());
                    let mut h = tar::Header::new_ustar();
                    h.set_mode(0o644);
                    h.set_size(6);
                    h.set_path(name).unwrap();
                    h.set_cksum();
                    b.append(&h, &b"inner\n"[..]).unwrap();
                    b.into_inner().unwrap()
                };
                let compress = |cmd: &str, input: Vec<u8>| {
                    use std::io::Write as _;
                    let mut child = Command::new(cmd)
                        .arg("-c")
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .unwrap();
                    child.stdin.take().unwrap().write_all(&input).unwrap();
                    child.wait_with_output().unwrap().stdout
                };
                std::fs::write(ctx.join("data.tar.bz2"), compress("bzip2", tar("from-bz2.txt")))
                    .unwrap();
                std::fs::write(ctx.join("data.tar.xz"), compress("xz", tar("from-xz.txt")))
                    .unwrap();
                std::fs::write(ctx.join("misnamed.bin"), compress("xz", tar("by-content.txt")))
                    .unwrap();
                std::fs::write(ctx.join("notatar.gz"), compress("gzip", b"just text\n".to_vec()))
                    .unwrap();
                std::fs::write(ctx.join("plain.txt.gz"), compress("gzip", vec![0u8; 600])).unwrap();
            }),
            ..Case::default()
        },
        Case {
            name: "scratch-and-nopath",
            files: vec![
                dockerfile(
                    r#"FROM ${BASE} AS build
RUN mkdir -p /out && echo bin > /out/app

FROM scratch AS minimal
COPY --from=build /out/app /app
CMD ["/app"]

FROM ${NOPATH} AS nopath
RUN echo "$PATH" > /path.txt
ENV OTHER=1

FROM ${NOPATH} AS nopath-plain
COPY hello.txt /
"#,
                ),
                ("hello.txt", "hello\n".into()),
            ],
            targets: &["minimal", "nopath", "nopath-plain"],
            ..Case::default()
        },
    ]
}

#[test]
fn imported_dockerfiles_build_the_same_images_as_buildkit() {
    let Some(_) = busybox_base() else { return };
    if !docker_ready() {
        return;
    }
    let Some((base, nopath)) = bases() else { return };
    let only = std::env::var("STACK_EQ_CASE").ok();
    let mut report = String::new();
    for case in cases() {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|n| n == case.name)) {
            continue;
        }
        for line in run_case(&case, &base, &nopath) {
            let _ = writeln!(report, "{line}");
        }
    }
    assert!(report.is_empty(), "images differ from BuildKit's:\n{report}");
}
