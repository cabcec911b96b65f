//! Real-world import pass rate: every Dockerfile under `tests/data/dockerfile/realworld/`
//! imports without errors, and the emitted build file parses with no diagnostics.
//!
//! `STACK_REALWORLD_DIR=/some/folder` runs the same check over every file of another folder
//! too (e.g. a checkout of official-image repositories) and prints the pass rate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Imports one Dockerfile and parses the result; `Err` says what failed.
fn import_and_parse(text: &str) -> Result<(), String> {
    let imported =
        stack::api::dockerfile::import(text, &stack::api::dockerfile::ImportOptions::default())
            .map_err(|diags| {
                let msgs: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
                format!("import: {}", msgs.join("; "))
            })?;
    let (ast, diags) = stack::api::syntax::parse(&imported.kdl);
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

/// Every registry reference of a build file (bases, `copy from=`, mount `from=`), and the
/// context paths its `copy`, `add` and `bind` steps read.
fn references_and_sources(ast: &stack::api::syntax::ast::BuildFile) -> (Vec<String>, Vec<String>) {
    use stack::api::syntax::ast::{RunMount, StepKind};
    let stages: Vec<&str> = ast.targets.iter().map(|t| t.name.value.as_str()).collect();
    let mut refs = Vec::new();
    let mut sources = Vec::new();
    let mut reference = |r: &str| {
        if r != "scratch" && !stages.contains(&r) {
            refs.push(r.to_owned());
        }
    };
    for t in &ast.targets {
        for s in &t.steps {
            match &s.kind {
                StepKind::From { base, .. } => reference(&base.value),
                StepKind::Copy(c) => match &c.from {
                    Some(f) => reference(&f.value),
                    None => sources.extend(c.sources.iter().map(|s| s.value.clone())),
                },
                StepKind::Run(r) => {
                    for m in &r.mounts {
                        match m {
                            RunMount::Bind { from: Some(f), .. }
                            | RunMount::Cache { from: Some(f), .. } => reference(&f.value),
                            RunMount::Bind { source, from: None, .. } => {
                                sources.push(source.value.clone());
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    (refs, sources)
}

/// Creates a placeholder for a context path a step reads (globs get a matching name).
fn placeholder(ctx: &Path, source: &str) {
    if source.contains("${") || source.contains("://") {
        return;
    }
    let rel: String = source
        .trim_start_matches('/')
        .replace(['*', '?'], "x")
        .chars()
        .filter(|c| !matches!(c, '[' | ']'))
        .collect();
    if rel.is_empty() || rel == "." || rel == "./" {
        return;
    }
    let path = ctx.join(&rel);
    if rel.ends_with('/') {
        std::fs::create_dir_all(&path).unwrap();
        let _ = std::fs::write(path.join("placeholder"), "x\n");
    } else if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::write(&path, "x\n");
    }
}

/// Imports `text`, swaps every registry reference for `base` (an `oci:` reference), creates
/// the context files it reads, and runs `stack check`; `Err` holds the first problem.
fn check_with_local_bases(text: &str, base: &str) -> Result<(), String> {
    let imported =
        stack::api::dockerfile::import(text, &stack::api::dockerfile::ImportOptions::default())
            .map_err(|d| format!("import: {}", d[0].message))?;
    let (Some(ast), _) = stack::api::syntax::parse(&imported.kdl) else {
        return Err("the build file does not parse".into());
    };
    let (refs, sources) = references_and_sources(&ast);
    let mut kdl = imported.kdl.clone();
    for r in refs {
        kdl = kdl.replace(&format!("\"{r}\""), &format!("\"{base}\""));
    }
    let dir = tempfile::tempdir().unwrap();
    for s in sources {
        placeholder(dir.path(), &s);
    }
    std::fs::write(dir.path().join("stack.kdl"), &kdl).unwrap();
    // Sources that name a variable are known only once expanded: `stack check` names them.
    let mut created = Vec::new();
    loop {
        let out = crate::support::run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
        if out.status.success() {
            return Ok(());
        }
        let err = crate::support::stderr(&out);
        let first = err.lines().find(|l| l.contains('×')).unwrap_or(&err).trim().to_owned();
        let missing = first
            .strip_suffix("` is not in the build context")
            .and_then(|l| l.rsplit_once('`'))
            .map(|(_, p)| p.to_owned());
        match missing {
            Some(p) if !created.contains(&p) && created.len() < 20 => {
                placeholder(dir.path(), &p);
                created.push(p);
            }
            _ => return Err(first),
        }
    }
}

/// Files of the set whose check needs what a test has not (with the reason): every other one
/// must pass `stack check` once its bases are local and its context files exist.
const CHECK_EXCEPTIONS: &[(&str, &str)] = &[(
    "windows-dotnet-backtick.Dockerfile",
    "a Windows source path (`aspnetapp\\*.csproj`): on Linux `\\` escapes the `*`, so no file \
     can match; the Dockerfile is for Windows containers",
)];

#[test]
fn real_world_dockerfiles_check_against_local_bases() {
    let Some(layout) = crate::support::busybox_base() else { return };
    let base = format!("oci:{}:base", layout.display());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dockerfile/realworld");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    let mut passed = 0;
    let mut failures = String::new();
    let mut excepted = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        match check_with_local_bases(&text, &base) {
            Ok(()) => passed += 1,
            Err(_) if CHECK_EXCEPTIONS.iter().any(|(n, _)| *n == name) => excepted.push(name),
            Err(e) => {
                let _ = writeln!(failures, "{name}: {e}");
            }
        }
    }
    eprintln!(
        "real-world check pass rate with local bases: {passed}/{} (excepted: {excepted:?})",
        files.len()
    );
    assert!(failures.is_empty(), "stack check failed:\n{failures}");
}
