//! Architecture rules that code review alone lets drift, checked on the source itself (see
//! ARCHITECTURE.md, "Invariants", which names this file for each rule).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/` but the `tests.rs` files, with its `#[cfg(test)]` items
/// blanked out (test code may print and spawn as it likes); lines keep their numbers.
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
                found.push((rel, without_test_items(&text)));
            }
        }
    }
    found.sort();
    found
}

/// `text` with each `#[cfg(test)]` item (up to its `;`, or its braces' end) blanked out.
fn without_test_items(text: &str) -> String {
    let mut code: Vec<char> = text.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= code.len() {
        if code[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        let end = item_end(&code, i + marker.len());
        for c in &mut code[i..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = end;
    }
    code.into_iter().collect()
}

/// Where the item starting at `from` ends: after its first `;` outside braces, or after the
/// brace that closes its first `{` (string and char literals skipped).
fn item_end(code: &[char], from: usize) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    while i < code.len() {
        match code[i] {
            '"' => i = string_end(code, i),
            '\'' if code.get(i + 2) == Some(&'\'') => i += 2,
            '\'' if code.get(i + 1) == Some(&'\\') => {
                while i + 1 < code.len() && code[i + 1] != '\'' {
                    i += 1;
                }
                i += 1;
            }
            '{' => depth += 1,
            '}' if depth <= 1 => return i + 1,
            '}' => depth -= 1,
            ';' if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    code.len()
}

/// The index of the `"` that closes the string opened at `open` (raw strings included).
fn string_end(code: &[char], open: usize) -> usize {
    let hashes = code[..open].iter().rev().take_while(|c| **c == '#').count();
    let raw = code[..open - hashes].last() == Some(&'r');
    let mut i = open + 1;
    while i < code.len() {
        if !raw && code[i] == '\\' {
            i += 2;
            continue;
        }
        if code[i] == '"'
            && code[i + 1..].iter().take(hashes).filter(|c| **c == '#').count() == hashes
        {
            return i + hashes;
        }
        i += 1;
    }
    code.len()
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

/// The top-level modules named by `crate::` paths in `code`, with the line each is on:
/// `crate::NAME`, and each `NAME` of a group `crate::{NAME::…, NAME, …}` over any lines.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let ident = |s: &str| -> String {
        s.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
    };
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            out.push((line_of(i), ident(rest)));
            continue;
        };
        // The names at the group's top level: after `{` and after each comma at depth 1.
        let mut depth = 1;
        let mut start = 0;
        for (j, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 1 => {
                    let name = ident(&group[start..j]);
                    if !name.is_empty() {
                        out.push((line_of(i), name));
                    }
                    start = j + 1;
                    if c == '}' {
                        break;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
    }
    out
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
        let code: String = code
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for (line, used) in crate_paths(&code) {
            if used != module && !uses.contains(&used) {
                bad.push(format!("src/{file}:{line}: `{module}` uses `{used}`"));
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
