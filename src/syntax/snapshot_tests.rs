//! The parser on valid files: every build file of `tests/data/plan/` that is meant to plan
//! (not `err-*`) and of `examples/` parses without a diagnostic, and its tree (with spans) is
//! pinned in `src/syntax/snapshots/`. A change to what a file means shows as a snapshot diff.

use std::path::{Path, PathBuf};

/// The valid build files: the planner's fixtures that plan, and the examples.
fn valid_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = fs_err::read_dir(root.join("tests/data/plan"))
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("err-")))
        .collect();
    for example in ["hello", "web", "monorepo"] {
        files.push(root.join("examples").join(example).join("stack.kdl"));
    }
    files.sort();
    files
}

#[test]
fn valid_files_parse_to_the_trees_they_always_did() {
    let files = valid_files();
    assert!(files.len() >= 10, "fixtures are missing: {files:?}");
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots");
    settings.bind(|| {
        for path in files {
            let text = fs_err::read_to_string(&path).expect("fixture");
            let (ast, diags) = super::parse(&text);
            assert!(diags.is_empty(), "{} has diagnostics: {diags:?}", path.display());
            let name = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .expect("in the repository")
                .to_string_lossy()
                .replace(['/', '.'], "-");
            insta::assert_debug_snapshot!(name, ast.expect("a tree"));
        }
    });
}
