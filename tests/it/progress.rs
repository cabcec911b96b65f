//! Build progress through the binary: `--progress json` is a stream of JSON objects and
//! nothing else; the live view on a terminal (tmux) counts the steps, cuts lines to the width
//! and leaves nothing behind after Ctrl-C.

use std::path::Path;

use serde_json::Value;

use crate::support::{Tmux, busybox_base, project, run_stack, sandbox_ready, stderr, stdout};

/// Every line of standard error, parsed: the test fails on a line that is not a JSON object
/// of the kinds `schemas/progress.schema.json` describes, with their required fields.
fn events(out: &std::process::Output) -> Vec<Value> {
    let schema: Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/progress.schema.json"))
            .unwrap(),
    )
    .unwrap();
    stderr(out)
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            conforms(&v, &schema["$defs"][v["event"].as_str().unwrap_or("")], &schema, l);
            v
        })
        .collect()
}

/// A light check of `v` against a definition of the schema: required fields, `const`,
/// `enum`, and nested `$ref`s.
fn conforms(v: &Value, def: &Value, schema: &Value, line: &str) {
    assert!(def.is_object(), "an event the schema does not describe: {line}");
    for field in def["required"].as_array().into_iter().flatten() {
        assert!(v.get(field.as_str().unwrap()).is_some(), "`{field}` missing: {line}");
    }
    for (name, prop) in def["properties"].as_object().into_iter().flatten() {
        let Some(value) = v.get(name) else { continue };
        if let Some(c) = prop.get("const") {
            assert_eq!(value, c, "`{name}`: {line}");
        }
        if let Some(e) = prop["enum"].as_array() {
            assert!(e.contains(value), "`{name}` is not one of {e:?}: {line}");
        }
        if let Some(r) = prop["$ref"].as_str() {
            let target = &schema["$defs"][r.trim_start_matches("#/$defs/")];
            conforms(value, target, schema, line);
        }
    }
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

#[test]
fn progress_json_of_a_successful_build_is_json_only_and_complete() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    file \"/a\" \"a\"\n    run \"echo made > /b\"\n    tag \"example/app:1\"\n}}\n",
        base.display()
    ));
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build", "--progress", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ev = events(&out);
    assert_eq!(ev[0]["event"], "build-started");
    assert_eq!(ev[0]["steps"], 2);
    assert_eq!(ev[0]["version"], 1);
    let finished = of_kind(&ev, "step-finished");
    assert_eq!(finished.len(), 2, "{ev:?}");
    for (f, (id, line)) in finished.iter().zip([("app#1", 4), ("app#2", 5)]) {
        assert_eq!(f["status"], "ran");
        assert_eq!(f["step"]["id"], id);
        assert_eq!(f["step"]["file"], "stack.kdl");
        assert_eq!(f["step"]["line"], line);
        assert!(f["seconds"].is_f64());
    }
    assert_eq!(finished[1]["done"], 2);
    assert_eq!(finished[1]["total"], 2);
    let result = of_kind(&ev, "result");
    assert_eq!(result.len(), 1);
    assert_eq!(result[0]["image"], "app");
    assert_eq!(result[0]["tags"], serde_json::json!(["example/app:1"]));
    let digest = result[0]["digest"].as_str().unwrap();
    assert!(stdout(&out).contains(digest), "stdout names the same digest: {}", stdout(&out));
    let summary = ev.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!((summary["ran"].as_u64(), summary["cached"].as_u64()), (Some(2), Some(0)));

    // Again: both steps are cached, with the same ids.
    let again = run_stack(dir.path(), &dir.path().join("cache"), &["build", "--progress", "json"]);
    let ev = events(&again);
    let cached: Vec<&Value> =
        of_kind(&ev, "step-finished").into_iter().filter(|f| f["status"] == "cached").collect();
    assert_eq!(cached.len(), 2, "{ev:?}");
    assert_eq!(cached[0]["step"]["id"], "app#1");
}

#[test]
fn progress_json_of_a_failing_build_names_the_step_and_its_line() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    run \"echo before\"\n    run \"false\"\n    run \"echo never\"\n}}\n",
        base.display()
    ));
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build", "--progress", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let ev = events(&out);
    let failed: Vec<&Value> =
        of_kind(&ev, "step-finished").into_iter().filter(|f| f["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{ev:?}");
    assert_eq!(failed[0]["step"]["id"], "app#2");
    assert_eq!(failed[0]["step"]["name"], "[app] run \"false\"");
    assert_eq!(failed[0]["step"]["line"], 5);
    assert_eq!(failed[0]["exit_code"], 1);
    assert!(failed[0]["message"].as_str().unwrap().contains("exited with code 1"));
    let diagnostic = of_kind(&ev, "diagnostic");
    assert_eq!(diagnostic.len(), 1, "{ev:?}");
    assert_eq!(diagnostic[0]["code"], "stack::step-failed");
    assert_eq!(
        (diagnostic[0]["file"].as_str(), diagnostic[0]["line"].as_u64()),
        (Some("stack.kdl"), Some(5))
    );
    assert!(of_kind(&ev, "result").is_empty());
    let summary = ev.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["exit_code"], 3);
    assert_eq!(summary["failed"], 1);
}

#[test]
fn progress_json_reports_problems_of_the_build_file_as_events() {
    let dir =
        project("stack version=1\nimage app {\n    from \"scratch\"\n    cpy \"a\" to=\"/a\"\n}\n");
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build", "--progress", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let ev = events(&out);
    let diagnostic = of_kind(&ev, "diagnostic");
    assert_eq!(diagnostic[0]["code"], "stack::unknown-node", "{ev:?}");
    assert_eq!(diagnostic[0]["line"], 4);
    assert_eq!(ev.last().unwrap()["exit_code"], 1);
    // An operational error is an `error` event.
    let out = run_stack(
        dir.path(),
        &dir.path().join("cache"),
        &["build", "--progress", "json", "nosuch.kdl"],
    );
    let ev = events(&out);
    assert_eq!(of_kind(&ev, "error").len(), 1, "{ev:?}");
    assert_eq!(ev.last().unwrap()["exit_code"], 4);
}

/// A spinner glyph of the live view (braille patterns).
fn spinner(row: &str) -> bool {
    row.chars().any(|c| ('\u{2800}'..='\u{28ff}').contains(&c))
}

#[test]
fn the_live_view_counts_steps_cuts_lines_and_leaves_nothing_after_ctrl_c() {
    if !crate::support::have("tmux") {
        return crate::support::skip("tmux is missing (apt-get install tmux)");
    }
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    file \"/a\" \"a\"\n    run \"echo ünïcödé-ünïcödé-ünïcödé-ünïcödé-ünïcödé-ünïcödé-ünïcödé-ünïcödé && \\\n        sleep 60 # tail-beyond-the-width\"\n    run \"echo never\"\n}}\n",
        base.display()
    ));
    // `CI` turns the live view off: the test's own environment may have it.
    let command = format!(
        "cd {} && env -u CI STACK_CACHE_DIR=cache {} build; echo EXIT=$?; sleep 60",
        dir.path().display(),
        env!("CARGO_BIN_EXE_stack")
    );
    let tmux = Tmux::start(&command);
    let running = |s: &[String]| {
        s.iter().any(|r| r.contains("1/3 steps"))
            && s.iter().any(|r| spinner(r) && r.contains("run \"echo"))
    };
    let screen = tmux.wait_for("the counter and the running `run` step", running);
    let text = screen.join("\n");
    let step = screen.iter().find(|r| spinner(r) && r.contains("run \"echo")).unwrap();
    assert!(step.contains('…'), "the step's line is not cut:\n{text}");
    assert!(!text.contains("tail-beyond"), "a line wrapped instead of being cut:\n{text}");
    assert!(!screen.iter().any(|r| r.trim_end().ends_with('\\')), "a stray `\\`:\n{text}");
    assert!(screen.iter().all(|r| r.chars().count() <= 60));

    tmux.command().args(["send-keys", "C-c"]).status().unwrap();
    let screen = tmux.wait_for("the build's end", |s| s.iter().any(|r| r.starts_with("EXIT=")));
    let text = screen.join("\n");
    assert!(screen.iter().any(|r| r == "EXIT=130"), "{text}");
    assert!(!screen.iter().any(|r| spinner(r)), "a spinner line was left behind:\n{text}");
    assert!(!text.contains("/3 steps"), "the counter was left behind:\n{text}");
    assert!(!text.contains("^C"), "{text}");
    assert!(text.contains("interrupted"), "{text}");
}

#[test]
fn a_failing_multi_command_run_is_named_on_one_line_and_says_what_is_known() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let build = |run: &str| {
        let dir = project(&format!(
            "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    user \"nobody\"\n    run {run}\n}}\n",
            base.display()
        ));
        let out =
            run_stack(dir.path(), &dir.path().join("cache"), &["build", "--progress", "plain"]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        stderr(&out).split_whitespace().collect::<Vec<_>>().join(" ")
    };
    // A plain `&&` chain: the failing command is named (marks work for any user).
    let err = build("\"echo one && \\\n        true && false && echo four\"");
    assert!(err.contains("[app] run \"echo one && true && false && echo four\" ..."), "{err}");
    assert!(err.contains("FAILED: command 3 of 4 (`false`) exited with code 1"), "{err}");
    assert!(!err.contains("cannot tell"), "{err}");
    // Commands joined with `;` cannot be told apart: stack says so, with what points at it.
    let err = build("\"echo one; false\"");
    assert!(err.contains("FAILED: the command exited with code 1"), "{err}");
    assert!(err.contains("holds several commands and stack cannot tell which one failed"), "{err}");
    assert!(err.contains("start the script with `set -x`"), "{err}");
}

#[test]
fn marking_a_chain_leaves_nothing_in_the_image() {
    let Some(base) = busybox_base() else { return };
    if !sandbox_ready() {
        return;
    }
    let dir = project(&format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    run \"echo a > /a && echo b > /b\"\n}}\n",
        base.display()
    ));
    let out = run_stack(dir.path(), &dir.path().join("cache"), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files = crate::support::image_files(&dir.path().join("stack-out"), "app");
    assert!(files.contains_key("a") && files.contains_key("b"));
    assert!(!files.keys().any(|k| k.contains("stack-marks")), "{:?}", files.keys());
}
