//! The OS packages recorded in a root file system's package databases: dpkg's
//! `var/lib/dpkg/status` and `status.d/` (distroless images), apk's `lib/apk/db/installed`.
//!
//! Invariant: pure text parsing, no IO; the result is sorted, so it never depends on the order
//! of the database or of the folder listing.

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// `deb`, `apk` or `rpm`: the purl type.
    pub kind: &'static str,
    /// The distribution (`debian`, `ubuntu`, `alpine`, …): the purl namespace.
    pub distro: String,
}

impl Package {
    /// The package URL, e.g. `pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64`.
    /// An rpm `EPOCH:VERSION-RELEASE` goes in as `VERSION-RELEASE` with an `epoch` qualifier.
    pub(crate) fn purl(&self) -> String {
        let (epoch, version) = match self.version.split_once(':') {
            Some((e, v)) if self.kind == "rpm" && e.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(e), v)
            }
            _ => (None, self.version.as_str()),
        };
        let mut p =
            format!("pkg:{}/{}/{}@{}", self.kind, enc(&self.distro), enc(&self.name), enc(version));
        let mut qualifiers = Vec::new();
        if !self.arch.is_empty() {
            qualifiers.push(format!("arch={}", enc(&self.arch)));
        }
        if let Some(e) = epoch {
            qualifiers.push(format!("epoch={e}"));
        }
        if !qualifiers.is_empty() {
            p.push('?');
            p.push_str(&qualifiers.join("&"));
        }
        p
    }
}

/// Percent-encodes everything but the characters purl leaves as they are.
pub(crate) fn enc(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The stanzas of an RFC 822-like database (dpkg's and apk's), as (field, value) lists;
/// continuation lines are dropped (no field this module reads spans lines).
fn stanzas(text: &str) -> Vec<Vec<(&str, &str)>> {
    let mut out = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            out.push(Vec::new());
        } else if !line.starts_with([' ', '\t'])
            && let Some((k, v)) = line.split_once(':')
            && let Some(cur) = out.last_mut()
        {
            cur.push((k, v.trim()));
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn field<'a>(stanza: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    stanza.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// Installed packages of a dpkg status file (or a `status.d/` entry, which has no `Status`).
pub(crate) fn dpkg(text: &str, distro: &str) -> Vec<Package> {
    let mut out: Vec<Package> = stanzas(text)
        .iter()
        .filter(|s| field(s, "Status").is_none_or(|st| st.ends_with(" installed")))
        .filter_map(|s| {
            Some(Package {
                name: field(s, "Package")?.to_owned(),
                version: field(s, "Version")?.to_owned(),
                arch: field(s, "Architecture").unwrap_or_default().to_owned(),
                kind: "deb",
                distro: distro.to_owned(),
            })
        })
        .collect();
    out.sort();
    out
}

/// Installed packages of apk's database (`P:` name, `V:` version, `A:` architecture).
pub(crate) fn apk(text: &str, distro: &str) -> Vec<Package> {
    let mut out: Vec<Package> = stanzas(text)
        .iter()
        .filter_map(|s| {
            Some(Package {
                name: field(s, "P")?.to_owned(),
                version: field(s, "V")?.to_owned(),
                arch: field(s, "A").unwrap_or_default().to_owned(),
                kind: "apk",
                distro: distro.to_owned(),
            })
        })
        .collect();
    out.sort();
    out
}

/// The `ID=` of an os-release file, lower-case and unquoted.
pub(crate) fn os_id(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.strip_prefix("ID=")?.trim().trim_matches(['"', '\'']);
        (!v.is_empty()).then(|| v.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_lists_installed_packages_only() {
        let status = "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b2\nDescription: shell\n long text\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\n";
        let p = dpkg(status, "debian");
        assert_eq!(p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["base-files", "bash"]);
        assert_eq!(p[1].purl(), "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64");
    }

    #[test]
    fn apk_reads_name_version_arch() {
        let db =
            "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\n";
        let p = apk(db, "alpine");
        assert_eq!(p[0].purl(), "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64");
        assert_eq!(p[1].name, "musl");
    }

    #[test]
    fn os_id_is_unquoted() {
        assert_eq!(os_id("NAME=\"Debian\"\nID=debian\n").as_deref(), Some("debian"));
        assert_eq!(os_id("ID=\"alpine\"\n").as_deref(), Some("alpine"));
    }
}
