//! `stack build --sbom`: an SPDX 2.3 document per image listing the packages of the image's
//! dpkg and apk databases and its base images, byte-identical across stores, valid for
//! `pyspdxtools`.

use std::collections::BTreeSet;
use std::process::Command;

use crate::support::{busybox_base, have, run_stack, skip, stderr, write_files};

const APK_DB: &str =
    "C:Q1x=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\n";
const DISTROLESS: &str = "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n";

/// `Package Version Architecture` of every package `dpkg-query` says is installed.
fn dpkg_query(admindir: &str) -> BTreeSet<String> {
    let out = Command::new("dpkg-query")
        .args([
            &format!("--admindir={admindir}"),
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${Architecture}\\n",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("installed "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn sbom_lists_the_dpkg_and_apk_packages_and_the_base() {
    let Some(base) = busybox_base() else { return };
    let status = std::path::Path::new("/var/lib/dpkg/status");
    if !status.exists() || !have("dpkg-query") {
        return skip("needs a dpkg database (/var/lib/dpkg/status) and dpkg-query");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(status, dir.path().join("status")).unwrap();
    write_files(
        dir.path(),
        &[
            ("apk", APK_DB),
            ("tzdata", DISTROLESS),
            (
                "stack.kdl",
                &format!(
                    "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    copy \"status\" to=\"/var/lib/dpkg/status\"\n    copy \"tzdata\" to=\"/var/lib/dpkg/status.d/tzdata\"\n    copy \"apk\" to=\"/lib/apk/db/installed\"\n    file \"/etc/os-release\" \"ID=debian\\n\"\n}}\n",
                    base.display()
                ),
            ),
        ],
    );
    let out =
        run_stack(dir.path(), &dir.path().join("c1"), &["build", "--sbom", "--out", "one/out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(dir.path().join("one/app.spdx.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    let purl = |p: &serde_json::Value| {
        p["externalRefs"][0]["referenceLocator"].as_str().unwrap().to_owned()
    };
    let packages = doc["packages"].as_array().unwrap();
    let debs: BTreeSet<String> = packages
        .iter()
        .filter(|p| purl(p).starts_with("pkg:deb/debian/") && p["versionInfo"] != "2024a-0+deb12u1")
        .map(|p| {
            let arch = purl(p).rsplit_once("?arch=").unwrap().1.to_owned();
            format!("{} {} {arch}", p["name"].as_str().unwrap(), p["versionInfo"].as_str().unwrap())
        })
        .collect();
    let want = dpkg_query("/var/lib/dpkg");
    assert!(
        debs == want,
        "the SBOM lists what dpkg-query lists: only in the SBOM {:?}, only in dpkg-query {:?}",
        debs.difference(&want).collect::<Vec<_>>(),
        want.difference(&debs).collect::<Vec<_>>()
    );
    let purls: BTreeSet<String> = packages.iter().map(purl).collect();
    assert!(purls.contains("pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all"), "{purls:?}");
    assert!(purls.contains("pkg:apk/debian/musl@1.2.5-r0?arch=x86_64"), "{purls:?}");
    let base_pkg = packages.iter().find(|p| p["SPDXID"] == "SPDXRef-Base-0").unwrap();
    assert!(base_pkg["versionInfo"].as_str().unwrap().starts_with("sha256:"), "{base_pkg}");
    let rels = doc["relationships"].to_string();
    assert!(rels.contains("DESCENDANT_OF"), "{rels}");

    // Another store, another folder: the same bytes.
    let out =
        run_stack(dir.path(), &dir.path().join("c2"), &["build", "--sbom", "--out", "two/out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join("two/app.spdx.json")).unwrap(), bytes);

    // `stack sbom` reads the same packages from the layout (it knows no base there).
    let out = run_stack(
        dir.path(),
        &dir.path().join("c2"),
        &["sbom", "app", "--from", "one/out", "-o", "layout.spdx.json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let from_layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("layout.spdx.json")).unwrap())
            .unwrap();
    let os_packages = |d: &serde_json::Value| {
        d["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["primaryPackagePurpose"] == "OPERATING-SYSTEM")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(os_packages(&from_layout), os_packages(&doc));
    assert_eq!(from_layout["documentNamespace"], doc["documentNamespace"]);

    if !have("pyspdxtools") {
        return skip("pyspdxtools is missing (pip install spdx-tools)");
    }
    let v = Command::new("pyspdxtools")
        .arg("-i")
        .arg(dir.path().join("one/app.spdx.json"))
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "pyspdxtools: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}
