//! Every `kdl` code block in the README and the book parses without errors.

use std::path::Path;

fn markdown_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            markdown_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "md") {
            out.push(p);
        }
    }
}

#[test]
fn every_kdl_block_in_the_docs_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("book/src"), &mut files);
    let mut blocks = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```kdl\n") {
            let body = &rest[start + 7..];
            let end = body.find("```").expect("closed block");
            let (ast, diags) = stack::api::syntax::parse(&body[..end]);
            assert!(
                ast.is_some() && diags.iter().all(|d| !d.is_error()),
                "{}: a kdl block does not parse: {diags:?}\n{}",
                f.display(),
                &body[..end]
            );
            blocks += 1;
            rest = &body[end..];
        }
    }
    assert!(blocks >= 5, "expected kdl examples in the docs, found {blocks}");
}

#[test]
fn the_schema_lists_exactly_the_nodes_the_parser_knows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("schemas/stack.schema.json")).unwrap())
            .unwrap();
    let keys = |k: &str| {
        let mut v: Vec<String> = schema[k].as_object().unwrap().keys().cloned().collect();
        v.sort();
        v
    };
    let sorted = |s: &[&str]| {
        let mut v: Vec<String> = s.iter().map(|x| (*x).to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(keys("x-kdl-top-level"), sorted(stack::api::syntax::TOP_LEVEL));
    assert_eq!(keys("x-kdl-steps"), sorted(stack::api::syntax::STEPS));
    assert_eq!(keys("x-kdl-run-children"), sorted(stack::api::syntax::RUN_CHILDREN));
    let reference = std::fs::read_to_string(root.join("book/src/reference/format.md")).unwrap();
    for node in stack::api::syntax::STEPS
        .iter()
        .chain(stack::api::syntax::TOP_LEVEL)
        .chain(stack::api::syntax::RUN_CHILDREN)
    {
        assert!(
            reference.contains(&format!("`{node}")),
            "the format reference does not document `{node}`"
        );
    }
}

/// The anchors mdBook gives the headings of a page (`## Bases per platform` → `bases-per-platform`).
fn anchors(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            let title = l.trim_start_matches('#').trim().to_lowercase();
            let kept: String = title
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .collect();
            kept.replace(' ', "-")
        })
        .collect()
}

/// Every relative link of the README and the book (`[x](../guides/ci.md#anchor)`) names a file
/// that exists and, with an anchor, a heading of it; every page is in `SUMMARY.md`.
#[test]
fn every_internal_link_of_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("book/src"), &mut files);
    let mut bad = Vec::new();
    let mut links = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, _) in text.match_indices("](") {
            let target = &text[i + 2..];
            let Some(end) = target.find(')') else { continue };
            let target = &target[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if path.is_empty() { f.clone() } else { f.parent().unwrap().join(path) };
            links += 1;
            let Ok(linked) = std::fs::read_to_string(&file) else {
                bad.push(format!("{}: `{target}`: no file `{}`", f.display(), file.display()));
                continue;
            };
            if !anchor.is_empty() && !anchors(&linked).iter().any(|a| a == anchor) {
                bad.push(format!("{}: `{target}`: no heading `#{anchor}`", f.display()));
            }
        }
    }
    let summary = std::fs::read_to_string(root.join("book/src/SUMMARY.md")).unwrap();
    for f in files.iter().filter(|f| f.starts_with(root.join("book/src"))) {
        let rel = f.strip_prefix(root.join("book/src")).unwrap().to_string_lossy().into_owned();
        if rel != "SUMMARY.md" && !summary.contains(&format!("]({rel})")) {
            bad.push(format!("book/src/{rel} is not in SUMMARY.md"));
        }
    }
    assert!(links > 10, "expected links in the docs, found {links}");
    assert!(bad.is_empty(), "broken links in the docs:\n{}", bad.join("\n"));
}
