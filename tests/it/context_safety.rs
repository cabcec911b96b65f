//! Hostile build contexts: files swapped or edited while a build runs, special files,
//! symlink loops, and a context so large that planning must honour SIGTERM. Each case runs as
//! root, and (when the test runs as root with `setpriv`) as `nobody` without and with
//! subordinate ids.

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Standing, busybox_base, sandbox_ready, stderr, write_files};

/// Waits for `child` at most `limit`; kills it (and fails the test) if it is still running.
fn wait_at_most(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The entries (path, type, content) of the last layer of image `name` in `layout`.
fn last_layer(layout: &Path, name: &str) -> Vec<(String, tar::EntryType, Vec<u8>)> {
    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .expect("the image is in the layout");
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(desc["digest"].as_str().unwrap())).unwrap();
    let layer = manifest["layers"].as_array().unwrap().last().unwrap().clone();
    let bytes = blob(layer["digest"].as_str().unwrap());
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes.as_slice()).read_to_end(&mut tar).unwrap();
    let mut out = Vec::new();
    for entry in tar::Archive::new(tar.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.push((path, kind, content));
    }
    out
}

fn mknod(path: &Path, kind: rustix::fs::FileType, dev: u64) -> rustix::io::Result<()> {
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(rustix::fs::CWD, path, kind, mode, dev)
}

#[test]
fn special_files_in_the_context_are_copied_as_what_they_are_never_read() {
    for who in Standing::available() {
        let dir = crate::support::project(
            "stack version=1\nimage a {\n    from \"scratch\"\n    copy \"ctx/\" to=\"/ctx/\"\n}\n",
        );
        write_files(dir.path(), &[("ctx/plain.txt", "plain\n")]);
        let ctx = dir.path().join("ctx");
        mknod(&ctx.join("fifo"), rustix::fs::FileType::Fifo, 0).unwrap();
        // A device node needs CAP_MKNOD; without it the FIFO alone shows the point.
        let dev = rustix::fs::makedev(1, 3);
        let device = mknod(&ctx.join("null"), rustix::fs::FileType::CharacterDevice, dev).is_ok();
        who.share(dir.path());
        let mut child = who
            .stack(dir.path(), &["build", "--out", "out"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status =
            wait_at_most(&mut child, Duration::from_mins(1), "a build with a FIFO in its context");
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "{who:?}: {err}");
        let entries = last_layer(&dir.path().join("out"), "a");
        let kind = |p: &str| entries.iter().find(|e| e.0 == p).map(|e| e.1);
        assert_eq!(kind("ctx/fifo"), Some(tar::EntryType::Fifo), "{who:?}: {entries:?}");
        assert_eq!(kind("ctx/plain.txt"), Some(tar::EntryType::Regular), "{who:?}");
        if device {
            assert_eq!(kind("ctx/null"), Some(tar::EntryType::Char), "{who:?}");
        }
    }
}

#[test]
fn a_socket_in_the_context_is_refused_by_name() {
    for who in Standing::available() {
        let dir = crate::support::project(
            "stack version=1\nimage a {\n    from \"scratch\"\n    copy \"ctx/\" to=\"/ctx/\"\n}\n",
        );
        write_files(dir.path(), &[("ctx/plain.txt", "plain\n")]);
        let sock = dir.path().join("ctx/agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
        let out = who.output(dir.path(), &["build", "--out", "out"]);
        assert_eq!(out.status.code(), Some(1), "{who:?}: {}", stderr(&out));
        let err = crate::support::stderr_unwrapped(&out);
        assert!(err.contains("agent.sock") && err.contains("is a socket"), "{who:?}: {err}");
    }
}

#[test]
fn a_symlink_loop_is_reported_as_a_loop() {
    for who in Standing::available() {
        let dir = crate::support::project(
            "stack version=1\nimage a {\n    from \"scratch\"\n    copy \"a\" to=\"/a\"\n}\n",
        );
        std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        let out = who.output(dir.path(), &["build", "--out", "out"]);
        assert_eq!(out.status.code(), Some(1), "{who:?}: {}", stderr(&out));
        let err = crate::support::stderr_unwrapped(&out);
        assert!(err.contains("symlink loop at `a`"), "{who:?}: {err}");
        assert!(!err.contains("not in the build context"), "{who:?}: {err}");
    }
}

#[test]
fn sigterm_stops_the_planning_of_a_huge_context() {
    for who in Standing::available() {
        let dir = crate::support::project(
            "stack version=1\nimage a {\n    from \"scratch\"\n    copy \"huge\" to=\"/huge\"\n}\n",
        );
        // Sparse: costs no disk, but hashing it reads 256 GiB of zeros.
        std::fs::File::create(dir.path().join("huge")).unwrap().set_len(256 << 30).unwrap();
        who.share(dir.path());
        let mut child = who
            .stack(dir.path(), &["build", "--out", "out"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let sent = Instant::now();
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = wait_at_most(&mut child, Duration::from_secs(30), "planning after SIGTERM");
        assert!(sent.elapsed() < Duration::from_secs(10), "{who:?}: took {:?}", sent.elapsed());
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(130), "{who:?}: {err}");
        assert!(err.contains("interrupted"), "{who:?}: {err}");
        assert!(!dir.path().join("out").exists(), "{who:?}");
    }
}

/// Builds `STEP` (which reads `ctx/f`, holding `initial`) after a slow `run` step as `who`,
/// and changes the context while that step runs (after planning hashed `ctx/f`, before the
/// step reads it) with `change`.
fn change_during(
    who: Standing,
    step: &str,
    initial: &[u8],
    change: &dyn Fn(&Path),
) -> Option<(tempfile::TempDir, std::process::Output)> {
    let base = busybox_base()?;
    if !sandbox_ready() {
        return None;
    }
    let build = format!(
        "stack version=1\nstage slow {{\n    from \"oci:base:base\"\n    run \"sleep 2\"\n}}\nimage a {{\n    from slow\n    {step}\n}}\n"
    );
    let dir = crate::support::project(&build);
    // A copy of the base inside the project, where `nobody` can read it too.
    let copied = Command::new("cp").arg("-r").arg(&base).arg(dir.path().join("base")).status();
    assert!(copied.unwrap().success());
    write_files(dir.path(), &[("secret", "SECR")]);
    std::fs::create_dir(dir.path().join("ctx")).unwrap();
    std::fs::write(dir.path().join("ctx/f"), initial).unwrap();
    who.share(dir.path());
    let mut child = who
        .stack(dir.path(), &["build", "--out", "out", "--progress", "plain"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("sleep 2") {
            change(dir.path());
            break;
        }
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    seen.push_str(&rest.join("\n"));
    let status = wait_at_most(&mut child, Duration::from_mins(1), "the build");
    let out = std::process::Output { status, stdout: Vec::new(), stderr: seen.into_bytes() };
    Some((dir, out))
}

const COPY_F: &str = "copy \"ctx/f\" to=\"/f\"";

#[test]
fn a_context_file_swapped_for_a_symlink_after_planning_is_never_read() {
    for who in Standing::available() {
        let Some((dir, out)) = change_during(who, COPY_F, b"AAAA", &|d| {
            std::fs::remove_file(d.join("ctx/f")).unwrap();
            std::os::unix::fs::symlink(d.join("secret"), d.join("ctx/f")).unwrap();
        }) else {
            return;
        };
        let err = stderr(&out);
        assert!(!out.status.success(), "{who:?}: the build used the swapped file: {err}");
        assert!(err.contains("changed during the build"), "{who:?}: {err}");
        assert!(!dir.path().join("out").exists(), "{who:?}");
    }
}

#[test]
fn a_context_file_edited_after_planning_fails_and_is_not_stored_under_the_old_key() {
    for who in Standing::available() {
        let Some((dir, out)) = change_during(who, COPY_F, b"AAAA", &|d| {
            std::fs::write(d.join("ctx/f"), "BBBB").unwrap();
        }) else {
            return;
        };
        let err = stderr(&out);
        assert!(!out.status.success(), "{who:?}: new content stored under the old key: {err}");
        assert!(
            err.contains("changed during the build") && err.contains("ctx/f"),
            "{who:?}: {err}"
        );
        // Put the planned content back: the next build must copy it, not reuse anything else.
        std::fs::write(dir.path().join("ctx/f"), "AAAA").unwrap();
        let again = who.output(dir.path(), &["build", "--out", "out"]);
        assert!(again.status.success(), "{who:?}: {}", stderr(&again));
        let entries = last_layer(&dir.path().join("out"), "a");
        let f = entries.iter().find(|e| e.0 == "f").expect("f is in the layer");
        assert_eq!(f.2, b"AAAA", "{who:?}");
    }
}

/// A gzipped tar holding `pkg/bin/tool` and `pkg/readme`.
fn tar_gz() -> Vec<u8> {
    tar_gz_with(b"tool\n")
}

/// A gzipped tar holding `pkg/bin/tool` (with `tool`) and `pkg/readme`.
fn tar_gz_with(tool: &[u8]) -> Vec<u8> {
    let mut b =
        tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, data) in [("pkg/bin/tool", tool), ("pkg/readme", b"readme\n")] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn adding_a_local_archive_leaves_no_temp_folder() {
    for who in Standing::available() {
        let dir = crate::support::project(
            "stack version=1\nimage a {\n    from \"scratch\"\n    add \"pkg.tar.gz\" to=\"/opt/\"\n}\n",
        );
        std::fs::write(dir.path().join("pkg.tar.gz"), tar_gz()).unwrap();
        let tmpdir = dir.path().join("tmpdir");
        std::fs::create_dir(&tmpdir).unwrap();
        who.share(dir.path());
        let out = who
            .stack(dir.path(), &["build", "--out", "out"])
            .env("TMPDIR", &tmpdir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{who:?}: {}", stderr(&out));
        let entries = last_layer(&dir.path().join("out"), "a");
        let tool =
            entries.iter().find(|e| e.0 == "opt/pkg/bin/tool").expect("the archive unpacked");
        assert_eq!(tool.2, b"tool\n");
        let left = |d: &Path| std::fs::read_dir(d).map_or(0, Iterator::count);
        assert_eq!(left(&tmpdir), 0, "{who:?}: a temp folder was left in TMPDIR");
        let store_tmp = dir.path().join(format!("cache-{who:?}/tmp"));
        assert_eq!(left(&store_tmp), 0, "{who:?}: a temp folder was left in the store");
    }
}

#[test]
fn an_archive_changed_after_planning_is_not_unpacked() {
    for who in Standing::available() {
        let step = "add \"ctx/f\" to=\"/opt/\"";
        let Some((dir, out)) = change_during(who, step, &tar_gz(), &|d| {
            std::fs::write(d.join("ctx/f"), tar_gz_with(b"evil\n")).unwrap();
        }) else {
            return;
        };
        let err = stderr(&out);
        assert!(!out.status.success(), "{who:?}: the changed archive was used: {err}");
        assert!(err.contains("changed during the build"), "{who:?}: {err}");
        assert!(!dir.path().join("out").exists(), "{who:?}");
    }
}
