//! What `stack check`, `stack graph` and `stack import` print, through the binary, pinned:
//! a change to their output is a deliberate snapshot update.

use std::path::Path;

use crate::support::{run_stack, stderr};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_graph_and_import_print_what_they_always_printed() {
    let store = tempfile::tempdir().unwrap();
    let hello = root().join("examples/hello");
    let check = run_stack(&hello, store.path(), &["check"]);
    assert!(check.status.success(), "{}", stderr(&check));
    insta::assert_snapshot!(
        "check-hello",
        format!("stdout:\n{}stderr:\n{}", stdout(&check), stderr(&check))
    );

    let graph = run_stack(&hello, store.path(), &["graph"]);
    assert!(graph.status.success(), "{}", stderr(&graph));
    assert!(stdout(&graph).starts_with("digraph"), "{}", stdout(&graph));
    insta::assert_snapshot!("graph-hello", stdout(&graph));

    let dockerfile = root().join("tests/data/dockerfile/ok-platform.Dockerfile");
    let import = run_stack(root(), store.path(), &["import", dockerfile.to_str().unwrap()]);
    assert!(import.status.success(), "{}", stderr(&import));
    insta::assert_snapshot!("import-platform", stdout(&import));
    // What `import` prints parses as a build file.
    let (ast, diags) = stack::api::syntax::parse(&stdout(&import));
    assert!(ast.is_some() && diags.iter().all(|d| !d.is_error()), "{diags:?}");
}
