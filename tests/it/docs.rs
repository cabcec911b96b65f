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
            let (ast, diags) = stack::syntax::parse(&body[..end]);
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
    assert_eq!(keys("x-kdl-top-level"), sorted(stack::syntax::TOP_LEVEL));
    assert_eq!(keys("x-kdl-steps"), sorted(stack::syntax::STEPS));
    assert_eq!(keys("x-kdl-run-children"), sorted(stack::syntax::RUN_CHILDREN));
    let reference = std::fs::read_to_string(root.join("book/src/reference/format.md")).unwrap();
    for node in stack::syntax::STEPS
        .iter()
        .chain(stack::syntax::TOP_LEVEL)
        .chain(stack::syntax::RUN_CHILDREN)
    {
        assert!(
            reference.contains(&format!("`{node}")),
            "the format reference does not document `{node}`"
        );
    }
}
