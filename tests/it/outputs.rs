//! Several builds sharing one output layout or one store: every image lands, and what a dead
//! build left behind is cleaned by the next one.

use std::fmt::Write;

use crate::support::{project, stack, stderr};

#[test]
fn concurrent_builds_into_one_layout_all_land() {
    const N: usize = 8;
    let mut kdl = String::from("stack version=1\n");
    for i in 0..N {
        let _ = write!(
            kdl,
            "image img{i} {{\n    from \"scratch\"\n    file \"/id\" \"{i}\\n\"\n    tag \"example/img:{i}\"\n}}\n"
        );
    }
    let dir = project(&kdl);
    // Five rounds: the race between reading and replacing `index.json` is narrow.
    for round in 0..5 {
        let out = dir.path().join(format!("out{round}"));
        let children: Vec<_> = (0..N)
            .map(|i| {
                stack()
                    .current_dir(dir.path())
                    .env("STACK_CACHE_DIR", dir.path().join(format!("cache{i}")))
                    .args(["build", "--target", &format!("img{i}"), "--out"])
                    .arg(&out)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "a build failed: {}", stderr(&o));
        }
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap())
            .collect();
        for i in 0..N {
            assert!(
                names.contains(&format!("img{i}").as_str()),
                "round {round}: img{i} lost: {names:?}"
            );
            assert!(
                names.contains(&format!("example/img:{i}").as_str()),
                "round {round}: {names:?}"
            );
        }
        let stray: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("tmp") || n.starts_with(".index"))
            .collect();
        assert!(stray.is_empty(), "temporary files left: {stray:?}");
    }
}

#[test]
fn a_folder_that_is_no_layout_is_refused_untouched() {
    let dir =
        project("stack version=1\nimage a {\n    from \"scratch\"\n    file \"/id\" \"a\"\n}\n");
    std::fs::create_dir(dir.path().join("notes")).unwrap();
    std::fs::write(dir.path().join("notes/a.txt"), "mine").unwrap();
    let out = crate::support::run_stack(
        dir.path(),
        &dir.path().join("cache"),
        &["build", "--out", "notes"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not an OCI image layout"), "{}", stderr(&out));
    let names: Vec<_> = std::fs::read_dir(dir.path().join("notes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["a.txt"]);
}
