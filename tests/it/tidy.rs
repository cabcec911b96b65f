//! Architecture rules that code review alone lets drift, checked on the source itself (see
//! ARCHITECTURE.md, "Invariants", which names this file for each rule).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its text up to its first `#[cfg(test)]` (test code may
/// print and spawn as it likes).
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut todo: Vec<PathBuf> = vec![root.clone()];
    let mut found = Vec::new();
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
                if rel.ends_with("tests.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default().to_owned();
                found.push((rel, code));
            }
        }
    }
    found.sort();
    found
}

/// The places of `needle` (outside comments) in files not allowed by `allowed`.
fn offenders(needles: &[&str], allowed: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for (file, code) in sources() {
        if allowed(&file) {
            continue;
        }
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or_default();
            if needles.iter().any(|needle| line.contains(needle)) {
                out.push(format!("src/{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    out
}

#[test]
fn only_cli_prints() {
    // The sandbox helper is a process of its own whose standard error is the step's.
    let bad = offenders(&["println!(", "eprintln!(", "print!(", "eprint!("], |f| {
        f.starts_with("cli/") || f == "main.rs" || f == "exec/sandbox/helper.rs"
    });
    assert!(bad.is_empty(), "only `cli` prints (ARCHITECTURE.md):\n{}", bad.join("\n"));
}

#[test]
fn only_exec_spawns_processes() {
    // The registry client runs credential helpers (`docker-credential-*`), as docker does.
    let bad = offenders(&["Command::new(", "process::Command"], |f| {
        f.starts_with("exec/") || f == "registry/auth.rs"
    });
    assert!(bad.is_empty(), "only `exec` spawns processes (ARCHITECTURE.md):\n{}", bad.join("\n"));
}

#[test]
fn syntax_and_plan_do_no_io() {
    let bad = offenders(&["fs_err::", "std::fs::", "std::net::", "std::process::"], |f| {
        !(f.starts_with("syntax/") || f.starts_with("plan/"))
    });
    assert!(bad.is_empty(), "`syntax` and `plan` do no IO (ARCHITECTURE.md):\n{}", bad.join("\n"));
}
