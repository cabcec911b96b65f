//! Broken build files give a located diagnostic, exit code 1, and no output. The rendered
//! text of each fixture in `tests/data/errors/` is pinned.

use std::path::Path;

use crate::support::{run_stack, stderr};

#[test]
fn every_broken_file_is_reported_at_its_line() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/errors");
    let mut names: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "kdl"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing");
    for name in names {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(fixtures.join(&name), dir.path().join("stack.kdl")).unwrap();
        std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
        let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(!dir.path().join("stack-out").exists(), "{name} wrote output");
        let text = stderr(&out);
        assert!(text.contains("stack.kdl:"), "{name} has no location: {text}");
        insta::assert_snapshot!(name.trim_end_matches(".kdl"), text);
    }
}

#[test]
fn check_reports_every_independent_problem_in_one_run() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/errors");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures.join("independent-problems.kdl"), dir.path().join("stack.kdl")).unwrap();
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for code in ["stack::unknown-node", "stack::invalid-port", "stack::unknown-stage"] {
        assert_eq!(text.matches(code).count(), 1, "{code}: {text}");
    }
}

/// A problem in an imported Dockerfile is shown at the Dockerfile's own line and text, not in
/// the build file it was imported to.
#[test]
fn dockerfile_problems_are_reported_in_the_dockerfile() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/errors-dockerfile");
    let mut names: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".Dockerfile"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "fixtures missing");
    for name in names {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(fixtures.join(&name), dir.path().join("Dockerfile")).unwrap();
        let out =
            run_stack(dir.path(), &dir.path().join("cache"), &["build", "-f", "Dockerfile", "."]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let text = stderr(&out);
        assert!(text.contains("[Dockerfile:"), "{name} is not located in the Dockerfile: {text}");
        assert!(!text.contains("(imported)"), "{name} points at the imported build file: {text}");
        insta::assert_snapshot!(
            format!("dockerfile-{}", name.trim_end_matches(".Dockerfile")),
            text
        );
    }
}
