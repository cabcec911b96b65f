//! `stack verify`: a rebuild from nothing compared with the normal build, and `--steps`
//! naming the `run` steps that are not deterministic by themselves.

use crate::support::{busybox_base, project, run_stack, sandbox_ready, stderr, stdout};

fn app(base: &std::path::Path, steps: &str) -> tempfile::TempDir {
    project(&format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n{steps}}}\n",
        base.display()
    ))
}

#[test]
fn verify_says_identical_with_the_digest() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = app(
        &base,
        "    run \"echo hello > /greeting; mkdir -p /srv; chmod 700 /srv\"\n    file \"/etc/motd\" \"hi\\n\"\n",
    );
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["verify", "--steps"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("app: identical sha256:"), "{text}");
    assert!(text.contains("every `run` step gave the same layer twice"), "{text}");
}

#[test]
fn verify_names_the_step_writing_the_time_and_the_file() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = app(
        &base,
        "    run \"echo stable > /s\"\n    run \"date +%s%N > /t\"\n    file \"/etc/motd\" \"hi\\n\"\n",
    );
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["verify"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("app: differs"), "{text}");
    assert!(
        text.contains(
            "first differing layer: 3 of 4, made by step `run \"date +%s%N > /t\"` at stack.kdl:5"
        ),
        "{text}"
    );
    assert!(text.contains("/t: content differs"), "{text}");
    assert!(!text.contains("/s:"), "the stable step is not named: {text}");

    let out = run_stack(dir.path(), &dir.path().join("cache"), &["verify", "--steps"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("step `run \"date +%s%N > /t\"` at stack.kdl:5 is not deterministic"),
        "{text}"
    );
    assert!(!text.contains("`run \"echo stable > /s\"` at stack.kdl:4 is not"), "{text}");
}

#[test]
fn verify_against_a_tampered_layout_names_file_and_mode() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = app(&base, "    file \"/etc/motd\" \"hi\\n\" chmod=\"0644\"\n");
    let cache = dir.path().join("cache");
    std::fs::write(dir.path().join("other.kdl"), format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    file \"/etc/motd\" \"bye\\n\" chmod=\"0600\"\n}}\n",
        base.display()
    )).unwrap();
    let out = run_stack(dir.path(), &cache, &["build", "other.kdl", "--out", "tampered"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_stack(dir.path(), &cache, &["verify", "--against", "oci:tampered:app"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("made by step `file \"/etc/motd\""), "{text}");
    assert!(text.contains("/etc/motd: mode differs: 0600 vs 0644"), "{text}");
    assert!(text.contains("/etc/motd: content differs"), "{text}");
    assert!(text.contains("-bye") && text.contains("+hi"), "{text}");

    // Against the layout of a normal build: identical.
    let out = run_stack(dir.path(), &cache, &["build", "--out", "good"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_stack(dir.path(), &cache, &["verify", "--against", "oci:good:app"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("app: identical sha256:"), "{}", stdout(&out));

    // Same files, another config: the field is named.
    std::fs::write(dir.path().join("env.kdl"), format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    file \"/etc/motd\" \"hi\\n\" chmod=\"0644\"\n    env MODE=\"debug\"\n}}\n",
        base.display()
    )).unwrap();
    let out = run_stack(dir.path(), &cache, &["build", "env.kdl", "--out", "env"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_stack(dir.path(), &cache, &["verify", "--against", "oci:env:app"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("the layers are identical"), "{text}");
    assert!(text.contains("config.Env:") && text.contains("MODE=debug"), "{text}");
}

#[test]
fn verify_exits_6_when_it_cannot_build() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = app(&base, "    run \"exit 9\"\n");
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["verify"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let dir = project("stack version=1\nimage app {\n    bogus\n}\n");
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["verify"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
}

#[test]
fn verify_says_the_examples_are_identical() {
    let Some(base) = busybox_base() else { return };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut verified = 0;
    for e in std::fs::read_dir(root.join("examples")).unwrap().flatten() {
        // The monorepo example needs its Python base; `monorepo::` verifies it.
        if !e.path().join("stack.kdl").exists() || e.file_name() == "monorepo" {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        crate::build::copy_tree(&e.path(), dir.path());
        let kdl = std::fs::read_to_string(dir.path().join("stack.kdl")).unwrap();
        let local = format!("oci:{}:base", base.display());
        std::fs::write(
            dir.path().join("stack.kdl"),
            kdl.replace(crate::build::EXAMPLE_BASE, &local),
        )
        .unwrap();
        let out =
            run_stack(dir.path(), &dir.path().join(".cache"), &["verify", "--progress", "plain"]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", e.path().display(), stderr(&out));
        assert!(stdout(&out).contains(": identical sha256:"), "{}", stdout(&out));
        verified += 1;
    }
    assert!(verified >= 2);
}

#[test]
fn verify_passes_secrets_to_both_builds() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = app(
        &base,
        "    run \"wc -c < /run/secrets/token > /token-len\" {\n        secret \"token\"\n    }\n",
    );
    std::fs::write(dir.path().join("token.txt"), "s3cr3t").unwrap();
    // A relative `src=`: the rebuild runs in another folder and still finds it.
    let out = run_stack(
        dir.path(),
        &dir.path().join("cache"),
        &["verify", "--secret", "id=token,src=token.txt"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("app: identical sha256:"), "{}", stdout(&out));
}

#[test]
fn verify_offers_diffoscope_the_differing_files_when_it_is_installed() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = app(&base, "    file \"/etc/motd\" \"hi\\n\"\n");
    let cache = dir.path().join("cache");
    std::fs::write(
        dir.path().join("other.kdl"),
        format!(
            "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    file \"/etc/motd\" \"bye\\n\"\n}}\n",
            base.display()
        ),
    )
    .unwrap();
    let out = run_stack(dir.path(), &cache, &["build", "other.kdl", "--out", "tampered"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A `diffoscope` on PATH (stack only looks for it; it never runs it).
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("diffoscope"), "#!/bin/sh\nexit 0\n").unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = crate::support::stack()
        .current_dir(dir.path())
        .env("STACK_CACHE_DIR", &cache)
        .env("PATH", path)
        .args(["verify", "--against", "oci:tampered:app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("diffoscope report: diffoscope "))
        .unwrap_or_else(|| panic!("{text}"));
    let mut dirs = line.rsplit(' ').take(2);
    let (rebuilt, expected) = (dirs.next().unwrap(), dirs.next().unwrap());
    let read = |d: &str| std::fs::read_to_string(std::path::Path::new(d).join("etc/motd")).unwrap();
    assert_eq!((read(expected).as_str(), read(rebuilt).as_str()), ("bye\n", "hi\n"));
    let _ = std::fs::remove_dir_all(std::path::Path::new(expected).parent().unwrap());
}
