//! The `docker buildx build` flags beyond the basics, through the binary: `--label`, `-q`,
//! `--iidfile`, `--build-context` (build files and imported Dockerfiles), `-o type=local`,
//! and `--network`/`--add-host` defaults for `run` steps.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{busybox_base, run_stack, sandbox_ready, stderr, stdout, write_files};

/// Runs `stack ARGS` in `dir` with the folder's private cache.
fn stack_in(dir: &Path, args: &[&str]) -> std::process::Output {
    run_stack(dir, &dir.join(".cache"), args)
}

/// The JSON `stack inspect NAME --json` prints for the layout `stack-out` of `dir`.
fn inspect(dir: &Path, name: &str) -> serde_json::Value {
    let o = stack_in(dir, &["inspect", name, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The content of `path` in image `name` of the layout `stack-out` of `dir`.
fn cat(dir: &Path, name: &str, path: &str) -> String {
    let o = stack_in(dir, &["inspect", name, "--cat", path]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn labels_win_over_the_file_and_quiet_prints_only_the_digest_the_iidfile_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_files(
        d,
        &[
            ("a.txt", "a\n"),
            (
                "stack.kdl",
                "stack version=1\nimage site {\n    from \"scratch\"\n    copy \"a.txt\" to=\"/a.txt\"\n    label v=\"file\" keep=\"yes\"\n}\n",
            ),
        ],
    );
    let o = stack_in(
        d,
        &["build", "-q", "--iidfile", "id.txt", "--label", "v=cli", "--label", "z=1", "."],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("sha256:") && out.lines().count() == 1, "{out}");
    // Like `docker build --iidfile`: the manifest digest, no newline.
    assert_eq!(std::fs::read_to_string(d.join("id.txt")).unwrap(), out.trim_end());
    let err = stderr(&o);
    assert!(!err.contains("built 1 image"), "-q still printed the summary: {err}");
    let labels = &inspect(d, "site")["config"]["config"]["Labels"];
    assert_eq!(labels["v"], "cli");
    assert_eq!(labels["keep"], "yes");
    assert_eq!(labels["z"], "1");
    // The same flags, the same digest.
    let again = stack_in(d, &["build", "-q", "--label", "z=1", "--label", "v=cli", "."]);
    assert_eq!(stdout(&again), out);

    // Several images: `--iidfile` needs `--target`.
    write_files(
        d,
        &[(
            "stack.kdl",
            "stack version=1\nimage one {\n    from \"scratch\"\n}\nimage two {\n    from \"scratch\"\n    label x=\"1\"\n}\n",
        )],
    );
    let o = stack_in(d, &["build", "--iidfile", "id2.txt", "."]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`--iidfile` names one image, but this build makes 2: one, two"),
        "{}",
        stderr(&o)
    );
    assert!(!d.join("id2.txt").exists());
    let o = stack_in(d, &["build", "--iidfile", "id2.txt", "--target", "two", "."]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(d.join("id2.txt")).unwrap().starts_with("sha256:"));
}

#[test]
fn a_named_context_feeds_copy_from_in_build_files_and_imported_dockerfiles() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write_files(
        r,
        &[
            ("extra/x.txt", "from the named context\n"),
            ("extra/secret.txt", "ignored\n"),
            ("extra/.dockerignore", "secret.txt\n"),
            (
                "app/stack.kdl",
                "stack version=1\nimage app {\n    from \"scratch\"\n    copy \"x.txt\" from=\"extra\" to=\"/x.txt\"\n}\n",
            ),
            ("app/Dockerfile", "FROM scratch AS build\nCOPY --from=extra x.txt /y.txt\n"),
        ],
    );
    let app = r.join("app");
    let o = stack_in(&app, &["build", "--build-context", "extra=../extra", "."]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cat(&app, "app", "/x.txt"), "from the named context\n");

    // The named context's ignore file holds, as the main context's does.
    write_files(
        &app,
        &[(
            "stack.kdl",
            "stack version=1\nimage app {\n    from \"scratch\"\n    copy \"secret.txt\" from=\"extra\" to=\"/s\"\n}\n",
        )],
    );
    let o = stack_in(&app, &["build", "--build-context", "extra=../extra", "."]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("excluded by the ignore file"), "{}", stderr(&o));

    // A named context never shadows a stage silently.
    write_files(
        &app,
        &[(
            "stack.kdl",
            "stack version=1\nstage extra {\n    from \"scratch\"\n}\nimage app {\n    from \"scratch\"\n    copy \"x.txt\" from=\"extra\" to=\"/x.txt\"\n}\n",
        )],
    );
    let o = stack_in(&app, &["build", "--build-context", "extra=../extra", "."]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o).replace("\n  │ ", " ");
    assert!(err.contains("the named context `extra` (`--build-context extra=…`) has the same name as the stage `extra`"), "{err}");

    // `COPY --from=NAME` of a Dockerfile reads the named context, as with BuildKit.
    let o = stack_in(
        &app,
        &["build", "-f", "Dockerfile", "--build-context", "extra=../extra", "-t", "imp:1", "."],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cat(&app, "imp", "/y.txt"), "from the named context\n");

    // Forms stack has no equivalent of are named.
    let o = stack_in(&app, &["build", "--build-context", "extra=https://example.com/x.tar", "."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`https://` contexts are not supported; a named context is a folder, `docker-image://REF` or `oci-layout://DIR[:TAG]`"), "{}", stderr(&o));
}

#[test]
fn a_named_context_can_be_an_oci_layout_image() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_files(
        d,
        &[(
            "stack.kdl",
            "stack version=1\nimage app {\n    from \"scratch\"\n    copy \"/etc/group\" from=\"tools\" to=\"/group\"\n}\n",
        )],
    );
    let spec = format!("tools=oci-layout://{}:base", base.display());
    let o = stack_in(d, &["build", "--build-context", &spec, "."]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(cat(d, "app", "/group").starts_with("root:x:0:"));
}

#[test]
fn output_type_local_writes_the_files_without_following_symlinks_in_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_files(
        d,
        &[
            ("bin/tool", "#!/bin/sh\necho tool\n"),
            (
                "stack.kdl",
                "stack version=1\nimage out {\n    from \"scratch\"\n    copy \"bin/\" to=\"/bin/\" chmod=\"0755\"\n    file \"/etc/version\" \"1\\n\"\n}\n",
            ),
        ],
    );
    let o = stack_in(d, &["build", "-o", "type=local,dest=export", "."]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(d.join("export/bin/tool")).unwrap(),
        "#!/bin/sh\necho tool\n"
    );
    let mode = std::fs::metadata(d.join("export/bin/tool")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(!d.join("stack-out").exists(), "type=local writes the files only");

    // Into an existing folder: merged, and a symlink there is replaced, never written through.
    let victim = d.join("victim.txt");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::fs::create_dir(d.join("into")).unwrap();
    std::fs::write(d.join("into/mine.txt"), "kept\n").unwrap();
    std::os::unix::fs::symlink(&victim, d.join("into/etc")).unwrap();
    let o = stack_in(d, &["build", "--output", "type=local,dest=into", "."]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    assert!(std::fs::symlink_metadata(d.join("into/etc")).unwrap().is_dir());
    assert_eq!(std::fs::read_to_string(d.join("into/etc/version")).unwrap(), "1\n");
    assert_eq!(std::fs::read_to_string(d.join("into/mine.txt")).unwrap(), "kept\n");
    let leftovers: Vec<_> = std::fs::read_dir(d.join("into"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".stack-export"))
        .collect();
    assert!(leftovers.is_empty());

    // The export folder is no source of the next build; docker's other `-o` types map to archives.
    let o = stack_in(d, &["build", "-o", "type=oci,dest=image.tar", "."]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("image.tar").is_file());
    let o = stack_in(d, &["build", "-o", "type=registry", "."]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("--push"), "{}", stderr(&o));
}

#[test]
fn network_and_add_host_set_the_default_of_run_steps_and_their_key() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_files(
        d,
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    run \"grep -c db.internal /etc/hosts > /hosts-db; grep db.internal /etc/hosts >> /hosts-db; ls /sys/class/net > /nets\"\n    run \"ls /sys/class/net > /nets-none\" {{\n        network \"none\"\n    }}\n}}\n",
                base.display()
            ),
        )],
    );
    let o = stack_in(d, &["build", "--network", "host", "--add-host", "db.internal:10.1.2.3", "."]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cat(d, "app", "/hosts-db"), "1\n10.1.2.3\tdb.internal\n");
    // `--network host` is the default only: the step asking for none keeps it.
    assert_eq!(cat(d, "app", "/nets-none"), "lo\n");
    assert!(cat(d, "app", "/nets").lines().count() >= 1);
    // The same flags reuse the step; another host list runs it again.
    let again =
        stack_in(d, &["build", "--network", "host", "--add-host", "db.internal:10.1.2.3", "."]);
    assert!(stderr(&again).contains("0 step(s) run"), "{}", stderr(&again));
    let other =
        stack_in(d, &["build", "--network", "host", "--add-host", "db.internal:10.9.9.9", "."]);
    assert!(other.status.success(), "{}", stderr(&other));
    assert_eq!(cat(d, "app", "/hosts-db"), "1\n10.9.9.9\tdb.internal\n");
}

#[test]
fn bind_from_a_named_context_sees_its_files() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write_files(
        r,
        &[
            ("src/input.txt", "bound\n"),
            ("src/.stackignore", "hidden.txt\n"),
            ("src/hidden.txt", "no\n"),
            (
                "app/stack.kdl",
                &format!(
                    "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    run \"cat /mnt/input.txt > /seen; ls /mnt > /listing\" {{\n        network \"none\"\n        bind \".\" target=\"/mnt\" from=\"src\"\n    }}\n}}\n",
                    base.display()
                ),
            ),
        ],
    );
    let app = r.join("app");
    let o = stack_in(&app, &["build", "--build-context", "src=../src", "."]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cat(&app, "app", "/seen"), "bound\n");
    assert!(!cat(&app, "app", "/listing").contains("hidden.txt"));
}
