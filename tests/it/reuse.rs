//! Writing steps once for many images: templates (`template`/`use`), matrices, and included
//! build files with their own args. Checked through `stack check`, `stack graph` (the keys),
//! `stack affected` and real builds on `scratch`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{have, image_files, run_stack, skip, stderr, stdout, write_files};

/// The shared template of these tests, in `templates.kdl`.
const TEMPLATES: &str = r#"stack version=1
template "service" {
    param "name" description="the service's name"
    param "port" type="int" default=8080 description="the port it listens on"
    param "debug" type="bool" default=#false
    copy "src/" to="/srv/${name}/"
    file "/etc/${name}.conf" "port=${port} debug=${debug} home=${HOME}"
    expose "${port}"
}
"#;

fn main_file(extra: &str) -> String {
    format!(
        "stack version=1\ninclude \"templates.kdl\" \"services/*/stack.kdl\"\narg HOME default=\"/home\"\n{extra}"
    )
}

fn service(name: &str, body: &str) -> (String, String) {
    (
        format!("services/{name}/stack.kdl"),
        format!("stack version=1\nimage {name} {{\n    from \"scratch\"\n{body}}}\n"),
    )
}

fn project(files: &[(String, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    write_files(dir.path(), &files);
    dir
}

/// A monorepo whose services `api` and `web` use the template and `plain` does not.
fn monorepo() -> tempfile::TempDir {
    let (api, web, plain) = (
        service("api", "    use \"service\" name=\"api\" port=9000 debug=#true\n"),
        service("web", "    use \"service\" name=\"web\"\n"),
        service("plain", "    copy \"src/\" to=\"/srv/plain/\"\n"),
    );
    project(&[
        ("stack.kdl".into(), main_file("")),
        ("templates.kdl".into(), TEMPLATES.into()),
        api,
        web,
        plain,
        ("services/api/src/main.txt".into(), "api\n".into()),
        ("services/web/src/main.txt".into(), "web\n".into()),
        ("services/plain/src/main.txt".into(), "plain\n".into()),
    ])
}

/// Each step's key in `stack graph`, by its `[stage] label` line.
fn keys(dir: &Path) -> BTreeMap<String, String> {
    let o = run_stack(dir, &dir.join("cache"), &["graph"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .filter_map(|l| {
            let label = l.split_once("label=\"")?.1;
            let (step, rest) = label.split_once("\\n")?;
            let key = rest.get(..12)?;
            step.starts_with('[').then(|| (step.to_owned(), key.to_owned()))
        })
        .collect()
}

#[test]
fn a_template_gives_each_user_its_own_steps() {
    let dir = monorepo();
    let out = dir.path().join("out");
    let o =
        run_stack(dir.path(), &dir.path().join("cache"), &["build", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let api = image_files(&out, "api");
    assert_eq!(
        api["srv/api/main.txt"].as_deref(),
        Some(&b"api\n"[..]),
        "copy from api's own folder"
    );
    assert_eq!(api["etc/api.conf"].as_deref(), Some(&b"port=9000 debug=true home=/home"[..]));
    let web = image_files(&out, "web");
    assert_eq!(web["etc/web.conf"].as_deref(), Some(&b"port=8080 debug=false home=/home"[..]));
    let graph = keys(dir.path());
    assert!(graph.keys().any(|k| k.starts_with("[api] (use service) copy")), "{graph:?}");
}

#[test]
fn editing_a_template_changes_exactly_its_users_keys() {
    let dir = monorepo();
    let before = keys(dir.path());
    write_files(
        dir.path(),
        &[("templates.kdl", &TEMPLATES.replace("debug=${debug}", "dbg=${debug}"))],
    );
    let after = keys(dir.path());
    let changed: Vec<&String> = before
        .iter()
        .filter(|(step, key)| after.get(*step) != Some(*key))
        .map(|(s, _)| s)
        .collect();
    assert!(changed.iter().any(|s| s.starts_with("[api]")), "{changed:?}");
    assert!(changed.iter().any(|s| s.starts_with("[web]")), "{changed:?}");
    assert!(!changed.iter().any(|s| s.starts_with("[plain]")), "{changed:?}");
    // Only the edited step and what follows it: the copy before it keeps its key.
    assert!(!changed.iter().any(|s| s.contains("copy")), "{changed:?}");
}

#[test]
fn changing_a_template_affects_the_images_using_it() {
    if !have("git") {
        skip("git is missing (apt-get install git)");
        return;
    }
    let dir = monorepo();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .current_dir(dir.path())
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    write_files(dir.path(), &[(".gitignore", "cache/\n")]);
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "start"]);
    write_files(dir.path(), &[("templates.kdl", &TEMPLATES.replace("expose", "expose \"1\""))]);
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["affected", "--since", "HEAD"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().collect::<Vec<_>>(), ["api", "web"]);
}

#[test]
fn template_problems_are_reported_at_the_use_and_at_the_template() {
    let (bad, more) = (
        service(
            "bad",
            "    use \"service\" name=\"bad\" port=\"9000\" colour=1\n    use \"servise\"\n    use \"service\"\n",
        ),
        service("more", "    use \"service\" name=\"more\"\n"),
    );
    let dir = project(&[
        ("stack.kdl".into(), main_file("")),
        ("templates.kdl".into(), TEMPLATES.into()),
        bad,
        more,
        // `more` has no `src/`: the template's copy fails for it.
    ]);
    write_files(dir.path(), &[("services/bad/src/x", "x")]);
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stderr(&o);
    for (code, count) in [
        ("stack::wrong-param-type", 1),
        ("stack::unknown-param", 1),
        ("stack::unknown-template", 1),
        ("stack::missing-param", 1),
        ("stack::source-not-found", 1),
    ] {
        assert_eq!(text.matches(code).count(), count, "{code}: {text}");
    }
    assert!(text.contains("parameter `port` is an int, found the string `9000`"), "{text}");
    assert!(text.contains("did you mean `service`?"), "{text}");
    assert!(text.contains("(name: the service's name)"), "the description helps: {text}");
    // The use site in the service's file, and the parameter's line in the template's file.
    assert!(text.contains("services/bad/stack.kdl:4:"), "{text}");
    assert!(text.contains("templates.kdl:4:5]"), "{text}");
    // The failing copy is shown in the template and at the use in `more`.
    assert!(text.contains("templates.kdl:6:10]"), "{text}");
    assert!(text.contains("services/more/stack.kdl:4:5]"), "{text}");
    assert!(text.contains("in `more`, from `use service` here"), "{text}");
}

#[test]
fn a_template_cannot_use_itself() {
    let dir = project(&[(
        "stack.kdl".into(),
        "stack version=1\ntemplate a {\n    use b\n}\ntemplate b {\n    use a\n}\nimage x {\n    from \"scratch\"\n    use a\n}\n".into(),
    )]);
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("stack::template-cycle"), "{}", stderr(&o));
}

#[test]
fn a_matrix_makes_one_image_per_combination() {
    let kdl = "stack version=1\nimage \"svc-${name}-${os}\" {\n    matrix {\n        name \"a\" \"b\"\n        os \"x\" \"y\"\n    }\n    from \"scratch\"\n    file \"/id\" \"${name} on ${os}\"\n    tag \"example/${name}:${os}\"\n}\n";
    let dir = project(&[("stack.kdl".into(), kdl.into())]);
    let out = dir.path().join("out");
    let o =
        run_stack(dir.path(), &dir.path().join("cache"), &["build", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let graph = keys(dir.path());
    let stages: Vec<&str> = graph.keys().map(|k| k[1..].split_once(']').unwrap().0).collect();
    assert_eq!(stages, ["svc-a-x", "svc-a-y", "svc-b-x", "svc-b-y"]);
    assert_eq!(image_files(&out, "example/b:y")["id"].as_deref(), Some(&b"b on y"[..]));
}

#[test]
fn a_matrix_whose_names_collide_is_an_error_naming_both_combinations() {
    let kdl = "stack version=1\nimage \"svc-${name}\" {\n    matrix {\n        name \"a\" \"b\"\n        os \"x\" \"y\"\n    }\n    from \"scratch\"\n}\n";
    let dir = project(&[("stack.kdl".into(), kdl.into())]);
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stderr(&o);
    assert!(
        text.contains("the matrix makes `svc-a` twice: for name=a, os=x and for name=a, os=y"),
        "{text}"
    );
}

#[test]
fn a_name_defined_in_two_files_is_an_error_naming_both() {
    let (a, b) = (service("a", "    copy \"x\" to=\"/\"\n"), service("b", ""));
    let b = (b.0, b.1.replace("image b", "image a"));
    let dir = project(&[
        ("stack.kdl".into(), main_file("")),
        ("templates.kdl".into(), format!("{TEMPLATES}template service {{\n    expose 1\n}}\n")),
        a,
        b,
    ]);
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stderr(&o);
    assert!(text.contains("`a` is defined twice (first in `./services/a/stack.kdl`)"), "{text}");
    assert!(text.contains("services/b/stack.kdl:2:7]"), "{text}");
    assert!(text.contains("services/a/stack.kdl:2:7]"), "{text}");
    assert!(text.contains("template `service` is defined twice"), "{text}");
    assert!(
        text.contains("templates.kdl:10:10]") && text.contains("templates.kdl:2:10]"),
        "{text}"
    );
}

#[test]
fn an_included_file_reads_paths_and_its_ignore_file_from_its_own_folder() {
    let (a, b) = (
        service("a", "    copy \"src/\" to=\"/srv/\"\n"),
        service("b", "    copy \"src/\" to=\"/srv/\"\n"),
    );
    let dir = project(&[
        ("stack.kdl".into(), "stack version=1\ninclude \"services/*/stack.kdl\"\n".into()),
        (".stackignore".into(), "**/*.log\n".into()),
        a,
        b,
        ("services/a/.stackignore".into(), "src/*.tmp\n".into()),
        ("services/a/src/main.txt".into(), "a\n".into()),
        ("services/a/src/x.tmp".into(), "ignored in a\n".into()),
        ("services/b/src/main.txt".into(), "b\n".into()),
        ("services/b/src/x.tmp".into(), "kept in b\n".into()),
        ("services/b/src/x.log".into(), "the root's ignore file is not b's\n".into()),
    ]);
    let out = dir.path().join("out");
    let o =
        run_stack(dir.path(), &dir.path().join("cache"), &["build", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = image_files(&out, "a");
    assert_eq!(a["srv/main.txt"].as_deref(), Some(&b"a\n"[..]));
    assert!(!a.contains_key("srv/x.tmp"), "{a:?}");
    let b = image_files(&out, "b");
    assert!(b.contains_key("srv/x.tmp") && b.contains_key("srv/x.log"), "{b:?}");
}

/// `services/NAME/stack.kdl` declaring `arg PORT default="80"` and writing it to `/port`.
fn port_service(name: &str) -> (String, String) {
    (
        format!("services/{name}/stack.kdl"),
        format!(
            "stack version=1\narg PORT default=\"80\"\nimage {name} {{\n    from \"scratch\"\n    file \"/port\" \"${{PORT}}\"\n}}\n"
        ),
    )
}

#[test]
fn an_include_sets_the_args_of_the_file_it_includes() {
    let main = "stack version=1\ninclude \"services/api/stack.kdl\" {\n    arg PORT \"8080\"\n}\ninclude \"services/web/stack.kdl\"\n";
    let dir =
        project(&[("stack.kdl".into(), main.into()), port_service("api"), port_service("web")]);
    let port = |args: &[&str]| {
        let out = dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        let mut all = vec!["build", "-o", out.to_str().unwrap()];
        all.extend(args);
        let o = run_stack(dir.path(), &dir.path().join("cache"), &all);
        assert!(o.status.success(), "{}", stderr(&o));
        let get =
            |n: &str| String::from_utf8(image_files(&out, n)["port"].clone().unwrap()).unwrap();
        (get("api"), get("web"))
    };
    assert_eq!(port(&[]), ("8080".into(), "80".into()));
    assert_eq!(port(&["--arg", "PORT=1"]), ("1".into(), "1".into()), "the command line wins");
}

#[test]
fn include_args_must_be_declared_and_not_clash_with_the_main_file() {
    let main = "stack version=1\narg PORT default=\"1\"\ninclude \"services/api/stack.kdl\" {\n    arg PROT \"8080\"\n}\n";
    let dir = project(&[("stack.kdl".into(), main.into()), port_service("api")]);
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stderr(&o);
    assert!(
        text.contains("declares no top-level arg `PROT`") && text.contains("did you mean `PORT`?"),
        "{text}"
    );
    assert!(text.contains("stack.kdl:4:9]"), "{text}");
    assert!(text.contains("arg `PORT` is declared here and in the main file"), "{text}");
    assert!(
        text.contains("services/api/stack.kdl:2:5]") && text.contains("stack.kdl:2:5]"),
        "{text}"
    );
}

#[test]
fn malformed_templates_and_matrices_are_reported_in_one_run() {
    let kdl = r#"stack version=1
template t {
    param a type="float"
    param b type="int" default="8080"
    param c
    param c
    from "scratch"
    expose 1
}
image "x-${v}" {
    matrix {
        v
    }
    from "scratch"
}
"#;
    let dir = project(&[("stack.kdl".into(), kdl.into())]);
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stderr(&o);
    for needle in [
        "`float` is not one of",
        "parameter `b` is an int, found the string `8080`",
        "parameter `c` is declared twice",
        "a template cannot hold `from`",
        "`v` is missing at least one value",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn a_bad_value_from_a_template_is_shown_at_the_template_and_the_use_in_one_file() {
    let kdl = "stack version=1\ntemplate web {\n    param port\n    expose \"${port}\"\n}\nimage a {\n    from \"scratch\"\n    use web port=\"http\"\n}\n";
    let dir = project(&[("stack.kdl".into(), kdl.into())]);
    let o = run_stack(dir.path(), &dir.path().join("cache"), &["check"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stderr(&o);
    assert!(
        text.contains("stack::invalid-port") && text.contains("`http` is not a port"),
        "{text}"
    );
    assert!(text.contains("stack.kdl:4:12]"), "{text}");
    assert!(text.contains("in `a`, from `use web` here"), "{text}");
}

#[test]
fn editing_a_template_in_the_main_file_affects_only_its_users() {
    if !have("git") {
        skip("git is missing (apt-get install git)");
        return;
    }
    let template = "template service {\n    param name\n    copy \"src/\" to=\"/srv/${name}/\"\n}\ntemplate unused {\n    expose 1\n}\n";
    let main = format!("stack version=1\ninclude \"services/*/stack.kdl\"\n{template}");
    let (api, plain) = (
        service("api", "    use service name=\"api\"\n"),
        service("plain", "    copy \"src/\" to=\"/srv/plain/\"\n"),
    );
    let dir = project(&[
        ("stack.kdl".into(), main.clone()),
        (".gitignore".into(), "cache/\n".into()),
        api,
        plain,
        ("services/api/src/main.txt".into(), "api\n".into()),
        ("services/plain/src/main.txt".into(), "plain\n".into()),
    ]);
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .current_dir(dir.path())
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "start"]);
    let affected = |text: &str| {
        write_files(dir.path(), &[("stack.kdl", text)]);
        let o = run_stack(dir.path(), &dir.path().join("cache"), &["affected", "--since", "HEAD"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(affected(&main.replace("/srv/${name}/", "/opt/${name}/")), ["api"]);
    assert!(affected(&main.replace("expose 1", "expose 2")).is_empty(), "a template nobody uses");
    assert_eq!(affected(&format!("{main}// more\n")), ["api", "plain"], "outside templates");
}
