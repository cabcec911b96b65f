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

/// The rows of ARCHITECTURE.md's "Module layers" table: module → the modules it may use
/// (`None` for `cli`, which may use every module).
fn layer_table() -> Vec<(String, Option<Vec<String>>)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    let section = doc.split("## Module layers").nth(1).expect("a \"Module layers\" section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let names = |cell: &str| -> Vec<String> {
        cell.split(',')
            .map(|c| c.trim().trim_matches('`').to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    };
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|row| {
            let (module, rest) = row.split_once('`').unwrap();
            let uses = rest.trim_start_matches([' ', '|']).trim_end_matches([' ', '|']);
            let uses = (!uses.starts_with("every module")).then(|| names(uses));
            (module.to_owned(), uses)
        })
        .collect()
}

/// The module a file of `src/` belongs to (`exec/run.rs` → `exec`, `json.rs` → `json`).
fn module_of(file: &str) -> &str {
    file.split('/').next().unwrap_or(file).trim_end_matches(".rs")
}

/// The top-level modules named by `crate::NAME` paths in `line`.
fn crate_paths(line: &str) -> Vec<String> {
    line.match_indices("crate::")
        .map(|(i, _)| {
            let rest = &line[i + "crate::".len()..];
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        })
        .collect()
}

#[test]
fn modules_depend_in_one_direction() {
    let table = layer_table();
    assert!(table.len() > 10, "the layer table was not found: {table:?}");
    let mut bad = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (file, code) in sources() {
        let module = module_of(&file);
        if module == "main" || module == "lib" {
            continue;
        }
        seen.insert(module.to_owned());
        let Some((_, uses)) = table.iter().find(|(m, _)| m == module) else {
            bad.push(format!("src/{file}: module `{module}` has no row in the table"));
            continue;
        };
        let Some(uses) = uses else { continue };
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or_default();
            for used in crate_paths(line) {
                if used != module && !uses.contains(&used) {
                    bad.push(format!("src/{file}:{}: `{module}` uses `{used}`", n + 1));
                }
            }
        }
    }
    assert!(bad.is_empty(), "module layers (ARCHITECTURE.md):\n{}", bad.join("\n"));
    assert!(seen.len() == table.len(), "rows for modules that do not exist: {table:?} vs {seen:?}");
}

#[test]
fn the_layer_table_has_no_cycle() {
    let table = layer_table();
    // Each row may use only rows above it: then no path can lead back.
    for (i, (module, uses)) in table.iter().enumerate() {
        for used in uses.iter().flatten() {
            let at = table.iter().position(|(m, _)| m == used);
            assert!(at.is_some_and(|at| at < i), "`{module}` uses `{used}`, which is not above it");
        }
    }
}
