//! Fixture tests: every `tests/data/dockerfile/*.Dockerfile` is imported and the KDL (or the
//! rendered errors), plus rendered warnings, are pinned as insta snapshots.
//!
//! Invariant: every emitted document parses as KDL v2, and fixtures named `real-*` (realistic,
//! official-image style Dockerfiles) and `ok-*` import without errors, while `err-*` fail.

use std::path::Path;

use super::{ImportOptions, import};
use crate::diag::{Report, SourceFile};

/// Options for the fixtures that need non-default ones.
fn options_for(name: &str) -> ImportOptions {
    let mut o = ImportOptions::default();
    match name {
        "ok-target" => {
            o.target = Some("Build".into());
            o.image_name = Some("my-image".into());
        }
        "ok-build-args" => {
            o.build_args = vec![("VERSION".into(), "2.0".into()), ("USER".into(), "${odd}".into())];
        }
        "err-strict" => o.strict = true,
        "err-unknown-target" => o.target = Some("buidler".into()),
        _ => {}
    }
    o
}

fn render(name: &str, text: &str, diags: Vec<crate::diag::Diagnostic>) -> String {
    Report::new(SourceFile::new(format!("{name}.Dockerfile"), text), diags).render(false)
}

/// Imports one fixture and returns the snapshot text.
fn run_fixture(name: &str, text: &str) -> String {
    match import(text, &options_for(name)) {
        Ok(imported) => {
            if let Err(e) = kdl::KdlDocument::parse_v2(&imported.kdl) {
                panic!("{name}: emitted KDL does not parse: {e:?}\n{}", imported.kdl);
            }
            assert!(
                !name.starts_with("err-"),
                "{name} should fail but imported:\n{}",
                imported.kdl
            );
            let mut s = imported.kdl;
            if !imported.warnings.is_empty() {
                s.push_str("\n----- warnings -----\n");
                s.push_str(&render(name, text, imported.warnings));
            }
            s
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "{name}: Err without diagnostics");
            let rendered = render(name, text, errors);
            assert!(name.starts_with("err-"), "{name} failed:\n{rendered}");
            format!("----- errors -----\n{rendered}")
        }
    }
}

#[test]
fn fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dockerfile");
    let mut names: Vec<_> = fs_err::read_dir(&dir)
        .expect("fixture folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    names.sort();
    assert!(names.len() > 20, "fixtures are missing");
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots");
    settings.bind(|| {
        for path in names {
            let name = path.file_stem().and_then(|s| s.to_str()).expect("utf-8 name").to_string();
            let text = fs_err::read_to_string(&path).expect("fixture text");
            let out = run_fixture(&name, &text);
            insta::assert_snapshot!(name.clone(), out, &format!("{name}.Dockerfile"));
        }
    });
}

#[test]
fn run_bodies_are_byte_identical() {
    // What BuildKit hands to `/bin/sh -c` for each RUN, and what stack reads back.
    let cases: &[(&str, &str)] = &[
        (
            "FROM a\nRUN echo a && \\\n    echo \"b\" \\\n  && echo c\n",
            "echo a &&     echo \"b\"   && echo c",
        ),
        ("FROM a\nRUN <<EOF\nset -e\n  echo \"$HOME\" \\\nEOF\n", "set -e\n  echo \"$HOME\" \\\n"),
        ("FROM a\nRUN <<-EOF\n\techo hi\n\tEOF\n", "echo hi\n"),
        (
            "FROM a\nRUN cat <<A > /x && cat <<-B\nfoo ${X}\nA\n\tbar\n\tB\n",
            "cat <<A > /x && cat <<-B\nfoo ${X}\nA\n\tbar\nB",
        ),
        // Whitespace-only continuation lines keep their spaces.
        ("FROM a\nRUN echo 'hi \\\n \\\n world'\n", "echo 'hi   world'"),
        ("FROM a\nRUN echo a\t\\\n\t\\\n\tb\n", "echo a\t\t\tb"),
        // An empty RUN is an empty command, as in BuildKit.
        ("FROM a\nRUN\n", ""),
        (
            "FROM a\nRUN printf '%s\\n' \"\\\"quoted\\\"\" # not a comment\n",
            "printf '%s\\n' \"\\\"quoted\\\"\" # not a comment",
        ),
    ];
    for (dockerfile, expected) in cases {
        let kdl = import(dockerfile, &ImportOptions::default()).expect("imports").kdl;
        let doc = kdl::KdlDocument::parse_v2(&kdl).expect("valid KDL");
        let image = doc.get("image").expect("image node");
        let run = image.children().expect("body").get("run").expect("run node");
        let body = run.entries()[0].value().as_string().expect("string");
        assert_eq!(body, *expected, "{kdl}");
    }
}

#[test]
fn strict_turns_warnings_into_errors() {
    let text = "FROM a\nRUN --security=insecure x\n";
    let ok = import(text, &ImportOptions::default()).expect("imports");
    assert_eq!(ok.warnings.len(), 1);
    let err =
        import(text, &ImportOptions { strict: true, ..ImportOptions::default() }).unwrap_err();
    assert_eq!(err.len(), 1);
    assert!(err[0].is_error());
}

#[test]
fn parse_reports_every_error() {
    let (ast, diags) = super::parse("FROM a\nRUNN x\nCOPY --chwon=1 a b\nENV\nFROM b AS 1x\n");
    assert!(ast.is_some());
    let codes: Vec<_> = diags.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        [
            "dockerfile-unknown-instruction",
            "dockerfile-unknown-flag",
            "dockerfile-invalid-instruction",
            "dockerfile-invalid-instruction"
        ]
    );
}
