//! Importer parity with `BuildKit` through the binary (issue 12): what the equivalence tests
//! compare with the daemon, checked here without one, plus the build file's own `onbuild`.

use std::path::Path;
use std::process::Command;

use crate::support::{
    busybox_base, have, run_stack, sandbox_ready, skip, stderr, stdout, write_files,
};

/// The content of `path` in image `name` of the layout `out`.
fn cat(dir: &Path, out: &Path, name: &str, path: &str) -> String {
    let o = run_stack(
        dir,
        &dir.join("cache"),
        &["inspect", name, "--from", out.to_str().unwrap(), "--cat", path],
    );
    assert!(o.status.success(), "inspect {name} {path}: {}", stderr(&o));
    stdout(&o)
}

/// The image config (`config` of the image's config document) of image `name`.
fn config(dir: &Path, out: &Path, name: &str) -> serde_json::Value {
    let o = run_stack(
        dir,
        &dir.join("cache"),
        &["inspect", name, "--from", out.to_str().unwrap(), "--json"],
    );
    assert!(o.status.success(), "inspect {name}: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    v["config"]["config"].clone()
}

#[test]
fn bind_mounts_read_the_context_whatever_the_build_file_path() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM oci:{}:base\n\
         RUN --mount=type=bind,source=data.txt,target=/m/data.txt cat /m/data.txt > /copied.txt\n\
         RUN --mount=type=bind,target=/ctx ls /ctx > /listing.txt\n\
         RUN --mount=type=bind,source=sub,target=/sub ls /sub > /sub.txt\n",
        base.display()
    );
    write_files(
        dir.path(),
        &[
            ("ctx/Dockerfile", &dockerfile),
            ("ctx/data.txt", "data\n"),
            ("ctx/sub/x", "x"),
            ("ctx/sub/skip.log", "ignored"),
            ("ctx/secret.txt", "ignored"),
            // A layout left by an earlier build in the context is stack's, not the step's.
            ("ctx/stack-out/index.json", "{}"),
            ("ctx/stack-out/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"),
            ("ctx/.dockerignore", "secret.txt\n**/*.log\n"),
        ],
    );
    // A relative build file from the parent folder, then from inside the context.
    let out = dir.path().join("out1");
    let o = run_stack(
        dir.path(),
        &dir.path().join("cache"),
        &["build", "-f", "ctx/Dockerfile", "--out", out.to_str().unwrap(), "ctx"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cat(dir.path(), &out, "ctx", "/copied.txt"), "data\n");
    assert_eq!(cat(dir.path(), &out, "ctx", "/listing.txt"), "Dockerfile\ndata.txt\nsub\n");
    assert_eq!(cat(dir.path(), &out, "ctx", "/sub.txt"), "x\n");
    let ctx = dir.path().join("ctx");
    let out = dir.path().join("out2");
    let o = run_stack(
        &ctx,
        &dir.path().join("cache2"),
        &["build", "-f", "Dockerfile", "--out", out.to_str().unwrap(), "."],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cat(dir.path(), &out, "ctx", "/listing.txt"), "Dockerfile\ndata.txt\nsub\n");
    // The same with a build file given by a relative path: `stack build kdl/stack.kdl`.
    let kdl = format!(
        "stack version=1\nimage native {{\n    from \"oci:{}:base\"\n    run \"ls /ctx > /listing.txt\" {{\n        bind \".\" target=\"/ctx\"\n    }}\n}}\n",
        base.display()
    );
    write_files(dir.path(), &[("kdl/stack.kdl", &kdl), ("kdl/file.txt", "f")]);
    let out = dir.path().join("out3");
    let o = run_stack(
        dir.path(),
        &dir.path().join("cache3"),
        &["build", "kdl/stack.kdl", "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cat(dir.path(), &out, "native", "/listing.txt"), "file.txt\nstack.kdl\n");
}

#[test]
fn onbuild_triggers_run_where_the_image_is_used() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let parent_kdl = format!(
        r##"stack version=1
image parent {{
    from "oci:{}:base"
    onbuild "COPY marker.txt /marker.txt" #"RUN echo "$NAME ${{NAME}}" > /name.txt"#
    env NAME="parent"
}}
"##,
        base.display()
    );
    let layout = dir.path().join("parent-out");
    let child_kdl = format!(
        r#"stack version=1
stage middle {{
    from "oci:{}:parent"
    run "cat /name.txt > /seen.txt"
}}
image child {{
    from middle
    run "ls /marker.txt > /again.txt"
}}
"#,
        layout.display()
    );
    write_files(
        dir.path(),
        &[
            ("parent/stack.kdl", &parent_kdl),
            ("child/stack.kdl", &child_kdl),
            ("child/marker.txt", "from the child's context\n"),
        ],
    );
    let cache = dir.path().join("cache");
    let o = run_stack(
        dir.path(),
        &cache,
        &["build", "parent/stack.kdl", "--out", layout.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let triggers = config(dir.path(), &layout, "parent")["OnBuild"].clone();
    assert_eq!(
        triggers,
        serde_json::json!([
            "COPY marker.txt /marker.txt",
            "RUN echo \"$NAME ${NAME}\" > /name.txt"
        ])
    );
    let out = dir.path().join("child-out");
    let o = run_stack(
        dir.path(),
        &cache,
        &["build", "child/stack.kdl", "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cat(dir.path(), &out, "child", "/marker.txt"), "from the child's context\n");
    assert_eq!(cat(dir.path(), &out, "child", "/seen.txt"), "parent parent\n");
    // Triggers run once: the stage built from `middle` does not run them again.
    assert_eq!(cat(dir.path(), &out, "child", "/again.txt"), "/marker.txt\n");
    assert!(config(dir.path(), &out, "child").get("OnBuild").is_none());
}

#[test]
fn invalid_onbuild_triggers_are_reported_at_their_value() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            "stack version=1\nimage app {\n    from scratch\n    onbuild \"FROM alpine\" \"RUNN x\" \"RUN ok\"\n}\n",
        )],
    );
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.matches("stack::invalid-onbuild").count(), 2, "{err}");
    assert!(err.contains("`FROM` is not allowed as an `onbuild` trigger"), "{err}");
    assert!(err.contains("`RUNN x` is not a valid Dockerfile instruction"), "{err}");
}

/// Compresses `input` with an installed program (`bzip2`, `xz`, `gzip`).
fn compress(program: &str, input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program} failed");
    out.stdout
}

fn one_file_tar(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(6);
    h.set_path(name).unwrap();
    h.set_cksum();
    b.append(&h, &b"inner\n"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn add_unpacks_archives_by_their_content() {
    if !["bzip2", "xz", "gzip"].iter().all(|p| have(p)) {
        return skip("bzip2, xz or gzip is missing (apt-get install bzip2 xz-utils gzip)");
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path();
    std::fs::write(ctx.join("a.tar.bz2"), compress("bzip2", &one_file_tar("bz2.txt"))).unwrap();
    std::fs::write(ctx.join("a.tar.xz"), compress("xz", &one_file_tar("xz.txt"))).unwrap();
    std::fs::write(ctx.join("misnamed.bin"), compress("xz", &one_file_tar("content.txt"))).unwrap();
    std::fs::write(ctx.join("notatar.gz"), compress("gzip", b"just text\n")).unwrap();
    std::fs::write(ctx.join("plain.tar"), one_file_tar("plain.txt")).unwrap();
    write_files(
        ctx,
        &[(
            "stack.kdl",
            r#"stack version=1
image app {
    from scratch
    add "a.tar.bz2" "a.tar.xz" "misnamed.bin" "plain.tar" to="/x/"
    add "notatar.gz" to="/gz/"
}
"#,
        )],
    );
    let out = dir.path().join("out");
    let o = run_stack(ctx, &ctx.join("cache"), &["build", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["bz2.txt", "xz.txt", "content.txt", "plain.txt"] {
        assert_eq!(cat(ctx, &out, "app", &format!("/x/{f}")), "inner\n", "{f}");
    }
    let o = run_stack(
        ctx,
        &ctx.join("cache"),
        &["inspect", "app", "--from", out.to_str().unwrap(), "--cat", "/gz/notatar.gz"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, compress("gzip", b"just text\n"), "a gzip of a plain file is copied");
}

#[test]
fn a_failed_base_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            r#"stack version=1
stage builder {
    from "oci:missing-layout:base"
}
stage middle {
    from builder
}
image app {
    from scratch
    copy "/x" to="/x" from=middle
    copy "/y" to="/y" from=builder
    run "true" {
        bind "/" target="/b" from=builder
    }
}
"#,
        )],
    );
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.matches("stack::").count(), 1, "{err}");
    assert!(!err.contains("is not a stage"), "{err}");
}

#[test]
fn undefined_dockerfile_variables_are_empty() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM oci:{}:base\nENV VERSION=$VERSION LABEL=v${{UNSET}}x PATH=/opt:$PATH\nCMD []\nWORKDIR /app/\nEXPOSE 7000-7001/udp\n",
        base.display()
    );
    let web = dir.path().join("web");
    write_files(&web, &[("Dockerfile", &dockerfile)]);
    let cache = dir.path().join("cache");
    let o = run_stack(&web, &cache, &["check", "Dockerfile"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("out");
    let o = run_stack(
        &web,
        &cache,
        &["build", "-f", "Dockerfile", "--out", out.to_str().unwrap(), "."],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let c = config(dir.path(), &out, "web");
    let env: Vec<&str> = c["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"VERSION="), "{env:?}");
    assert!(env.contains(&"LABEL=vx"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=/opt:/usr/local/sbin")), "{env:?}");
    assert!(c.get("Cmd").is_none(), "{c}");
    assert_eq!(c["WorkingDir"], "/app/");
    assert_eq!(c["ExposedPorts"], serde_json::json!({"7000/udp": {}, "7001/udp": {}}));
}
