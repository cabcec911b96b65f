//! Real-world import pass rate: every Dockerfile under `tests/data/dockerfile/realworld/`
//! imports without errors, and the emitted build file parses with no diagnostics.
//!
//! `STACK_REALWORLD_DIR=/some/folder` runs the same check over every file of another folder
//! too (e.g. a checkout of official-image repositories) and prints the pass rate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Imports one Dockerfile and parses the result; `Err` says what failed.
fn import_and_parse(text: &str) -> Result<(), String> {
    let imported = stack::dockerfile::import(text, &stack::dockerfile::ImportOptions::default())
        .map_err(|diags| {
            let msgs: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
            format!("import: {}", msgs.join("; "))
        })?;
    let (ast, diags) = stack::syntax::parse(&imported.kdl);
    let errors: Vec<String> =
        diags.iter().filter(|d| d.is_error()).map(|d| d.message.clone()).collect();
    if ast.is_none() || !errors.is_empty() {
        let msgs = errors;
        return Err(format!("parse: {}\n{}", msgs.join("; "), imported.kdl));
    }
    Ok(())
}

/// Checks every file of `dir` (the README excepted); returns (passed, failures).
fn check_dir(dir: &Path) -> (usize, Vec<(PathBuf, String)>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    let mut passed = 0;
    let mut failures = Vec::new();
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        match import_and_parse(&text) {
            Ok(()) => passed += 1,
            Err(e) => failures.push((f, e)),
        }
    }
    (passed, failures)
}

fn report(failures: &[(PathBuf, String)]) -> String {
    let mut s = String::new();
    for (f, e) in failures {
        let _ = writeln!(s, "{}: {e}", f.display());
    }
    s
}

#[test]
fn real_world_dockerfiles_import_and_parse() {
    if let Ok(extra) = std::env::var("STACK_REALWORLD_DIR") {
        let (passed, failures) = check_dir(Path::new(&extra));
        eprintln!(
            "{extra}: {passed}/{} imported and parsed\n{}",
            passed + failures.len(),
            report(&failures)
        );
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dockerfile/realworld");
    let (passed, failures) = check_dir(&dir);
    let total = passed + failures.len();
    eprintln!("real-world import pass rate: {passed}/{total}");
    assert!(total >= 40, "the real-world set holds only {total} Dockerfiles");
    assert!(failures.is_empty(), "{} of {total} failed:\n{}", failures.len(), report(&failures));
}
