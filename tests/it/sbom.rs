//! `stack build --sbom`: an SPDX 2.3 document per image listing the packages of the image's
//! dpkg and apk databases and its base images, byte-identical across stores, valid for
//! `pyspdxtools`.

use std::collections::BTreeSet;
use std::path::Path;
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

/// A build file whose image holds the machine's dpkg status, a distroless `status.d/` entry and
/// an apk database.
fn write_fixture(dir: &Path, base: &Path) {
    std::fs::copy("/var/lib/dpkg/status", dir.join("status")).unwrap();
    write_files(
        dir,
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
}

#[test]
fn sbom_lists_the_dpkg_and_apk_packages_and_the_base() {
    let Some(base) = busybox_base() else { return };
    let status = std::path::Path::new("/var/lib/dpkg/status");
    if !status.exists() || !have("dpkg-query") {
        return skip("needs a dpkg database (/var/lib/dpkg/status) and dpkg-query");
    }
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), &base);
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

/// Validates `doc` against the vendored CycloneDX 1.5 JSON schema (`tests/data/cyclonedx`)
/// with Python's `jsonschema`; skips when it is missing.
fn check_cyclonedx(doc: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cyclonedx");
    let script = "import json,sys,pathlib,jsonschema\n\
        from referencing import Registry, Resource\n\
        d=pathlib.Path(sys.argv[1])\n\
        load=lambda n: json.load(open(d/n))\n\
        reg=Registry().with_resources([(load(n)['$id'], Resource.from_contents(load(n))) for n in ['spdx.schema.json','jsf-0.82.schema.json']])\n\
        s=load('bom-1.5.schema.json')\n\
        jsonschema.Draft7Validator.check_schema(s)\n\
        jsonschema.Draft7Validator(s, registry=reg).validate(json.load(open(sys.argv[2])))\n";
    let probe = Command::new("python3").args(["-c", "import jsonschema, referencing"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return skip("python3 with jsonschema is missing (pip install jsonschema)");
    }
    let out = Command::new("python3").arg("-c").arg(script).arg(&dir).arg(doc).output().unwrap();
    assert!(out.status.success(), "{}: {}", doc.display(), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn cyclonedx_sbom_lists_what_the_spdx_one_lists_and_is_valid() {
    let Some(base) = busybox_base() else { return };
    if !Path::new("/var/lib/dpkg/status").exists() {
        return skip("needs a dpkg database (/var/lib/dpkg/status)");
    }
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), &base);
    let build = |store: &str, out: &str| {
        let args = ["build", "--sbom", "--sbom-format", "cyclonedx", "--out", out];
        let o = run_stack(dir.path(), &dir.path().join(store), &args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    build("c1", "one/out");
    let bytes = std::fs::read(dir.path().join("one/app.cdx.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["specVersion"], "1.5");
    assert_eq!(doc["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
    let serial = doc["serialNumber"].as_str().unwrap();
    assert!(serial.starts_with("urn:uuid:"), "{serial}");

    // The same packages, with the same purls, as the SPDX document of the same image.
    let out = run_stack(
        dir.path(),
        &dir.path().join("c1"),
        &["sbom", "app", "--from", "one/out", "-o", "app.spdx.json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let spdx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("app.spdx.json")).unwrap()).unwrap();
    let spdx_purls: BTreeSet<String> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["primaryPackagePurpose"] == "OPERATING-SYSTEM")
        .map(|p| p["externalRefs"][0]["referenceLocator"].as_str().unwrap().to_owned())
        .collect();
    let cdx_purls: BTreeSet<String> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| c["purl"].as_str().unwrap().to_owned())
        .collect();
    assert!(cdx_purls.len() > 2, "{cdx_purls:?}");
    assert_eq!(cdx_purls, spdx_purls);
    let base_component = &doc["components"][0];
    assert_eq!(base_component["type"], "container");
    assert!(base_component["version"].as_str().unwrap().starts_with("sha256:"));

    // Another store and folder give the same bytes; `stack sbom --format cyclonedx` too.
    build("c2", "two/out");
    assert_eq!(std::fs::read(dir.path().join("two/app.cdx.json")).unwrap(), bytes);
    let out = run_stack(
        dir.path(),
        &dir.path().join("c2"),
        &["sbom", "app", "--from", "two/out", "--format", "cyclonedx", "-o", "layout.cdx.json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let from_layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("layout.cdx.json")).unwrap())
            .unwrap();
    assert_eq!(from_layout["serialNumber"], doc["serialNumber"]);
    check_cyclonedx(&dir.path().join("one/app.cdx.json"));
}

/// An rpm header blob (as rpm keeps it in `rpmdb.sqlite`): string tags and an int32 epoch.
fn rpm_header(strings: &[(u32, &str)], epoch: Option<u32>) -> Vec<u8> {
    let (mut index, mut data) = (Vec::new(), Vec::new());
    let mut entry = |tag: u32, kind: u32, off: usize| {
        for v in [tag, kind, u32::try_from(off).unwrap(), 1] {
            index.extend_from_slice(&v.to_be_bytes());
        }
    };
    if let Some(e) = epoch {
        entry(1003, 4, data.len());
        data.extend_from_slice(&e.to_be_bytes());
    }
    for (tag, s) in strings {
        entry(*tag, 6, data.len());
        data.extend_from_slice(s.as_bytes());
        data.push(0);
    }
    let mut blob = u32::try_from(index.len() / 16).unwrap().to_be_bytes().to_vec();
    blob.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    blob.extend(index);
    blob.extend(data);
    blob
}

/// `rpmdb.sqlite` with rpm's `Packages` table holding `blobs`, made by Python's sqlite3.
fn write_rpmdb(path: &Path, blobs: &[Vec<u8>]) -> bool {
    let list = path.with_extension("blobs");
    let mut framed = Vec::new();
    for b in blobs {
        framed.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
        framed.extend_from_slice(b);
    }
    std::fs::write(&list, framed).unwrap();
    let script = "import sqlite3,struct,sys\n\
        db=sqlite3.connect(sys.argv[1]);d=open(sys.argv[2],'rb').read();i=0\n\
        db.execute('CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)')\n\
        while i<len(d):\n (n,)=struct.unpack('>I',d[i:i+4]);db.execute('INSERT INTO Packages (blob) VALUES (?)',(d[i+4:i+4+n],));i+=4+n\n\
        db.commit()\n";
    let o = Command::new("python3").arg("-c").arg(script).arg(path).arg(&list).output();
    o.is_ok_and(|o| o.status.success())
}

#[test]
fn sbom_lists_the_packages_of_an_rpm_sqlite_database() {
    let Some(base) = busybox_base() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Enough packages for interior b-tree pages, one header larger than a page (overflow).
    let mut want = BTreeSet::new();
    let mut blobs = Vec::new();
    for i in 0..400 {
        let name = format!("pkg{i:03}");
        let big = "x".repeat(if i == 7 { 20_000 } else { 10 });
        let epoch = (i % 5 == 0).then_some(2);
        blobs.push(rpm_header(
            &[(1000, &name), (1001, "1.0"), (1002, "3.el9"), (1022, "x86_64"), (1005, &big)],
            epoch,
        ));
        let qualifiers = if epoch.is_some() { "?arch=x86_64&epoch=2" } else { "?arch=x86_64" };
        want.insert(format!("pkg:rpm/rocky/{name}@1.0-3.el9{qualifiers}"));
    }
    if !write_rpmdb(&dir.path().join("rpmdb.sqlite"), &blobs) {
        return skip("python3 with sqlite3 is missing");
    }
    write_files(
        dir.path(),
        &[(
            "stack.kdl",
            &format!(
                "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    copy \"rpmdb.sqlite\" to=\"/var/lib/rpm/rpmdb.sqlite\"\n    file \"/etc/os-release\" \"ID=\\\"rocky\\\"\\n\"\n}}\n",
                base.display()
            ),
        )],
    );
    let o = run_stack(
        dir.path(),
        &dir.path().join("c"),
        &["build", "--sbom", "--sbom-format", "cyclonedx", "--out", "out/lay"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/app.cdx.json")).unwrap())
            .unwrap();
    let got: BTreeSet<String> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| c["purl"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, want);
    check_cyclonedx(&dir.path().join("out/app.cdx.json"));

    // A damaged database is an error naming it, not a panic or an empty list.
    std::fs::write(dir.path().join("rpmdb.sqlite"), b"SQLite format 3\0garbage").unwrap();
    let o = run_stack(dir.path(), &dir.path().join("c"), &["build", "--sbom", "--out", "out/lay"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("var/lib/rpm/rpmdb.sqlite") && err.contains("SBOM of `app`"), "{err}");
}
