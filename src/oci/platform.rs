//! Platforms (`linux/amd64`, `linux/arm64/v8`): parsing and normalising what people write,
//! the host's, and picking an index entry for one.
//!
//! Invariant: a `Platform` made here is normalised the way registries and `BuildKit` compare
//! them: `arm64` carries its implied variant `v8`, `arm` its `v7`, other architectures none
//! unless given; the aliases `x86_64`/`aarch64` become `amd64`/`arm64`.

use std::fmt;

use super::image::{Descriptor, Index, Platform, host_arch};

impl Platform {
    /// This machine's platform.
    pub fn host() -> Self {
        Self::normalised("linux", host_arch(), None)
    }

    /// Parses `os/arch[/variant]` (or a bare `arch`, taken as Linux).
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => {
                return Err(format!(
                    "`{text}` is no platform (write OS/ARCH[/VARIANT], e.g. linux/arm64)"
                ));
            }
        };
        if [os, arch]
            .iter()
            .chain(variant.iter())
            .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "`{text}` is no platform (write OS/ARCH[/VARIANT], e.g. linux/arm64)"
            ));
        }
        if os != "linux" {
            return Err(format!("`{text}`: stack builds Linux images only"));
        }
        Ok(Self::normalised(os, arch, variant))
    }

    /// Parses a comma-separated list (`linux/amd64,linux/arm64`), dropping repeats.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let mut out: Vec<Self> = Vec::new();
        for p in text.split(',').filter(|p| !p.trim().is_empty()) {
            let p = Self::parse(p)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn normalised(os: &str, arch: &str, variant: Option<&str>) -> Self {
        let architecture = match arch {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            "armhf" | "armel" => "arm",
            "i386" | "i686" => "386",
            other => other,
        };
        let variant = match (architecture, variant) {
            ("arm64", None | Some("8")) => Some("v8".to_owned()),
            ("arm", None) => Some("v7".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        Self { architecture: architecture.to_owned(), os: os.to_owned(), variant }
    }

    /// Whether this is the host's platform (its programs run without emulation).
    pub fn is_host(&self) -> bool {
        *self == Self::host()
    }

    /// The args `BuildKit` predefines for a platform with this prefix (`TARGET`, `BUILD`):
    /// `…PLATFORM`, `…OS`, `…ARCH`, `…VARIANT`.
    pub fn args(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}PLATFORM"), self.to_string()),
            (format!("{prefix}OS"), self.os.clone()),
            (format!("{prefix}ARCH"), self.architecture.clone()),
            (format!("{prefix}VARIANT"), self.variant.clone().unwrap_or_default()),
        ]
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// Picks the entry of `index` for `want`: an exact variant match first, then an entry without
/// a variant, then (for `arm64`, whose `v8` is implied) any variant.
pub(crate) fn pick_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == want.os
                    && Platform::normalised(&p.os, &p.architecture, None).architecture
                        == want.architecture
            })
        })
        .collect();
    let variant = |d: &Descriptor| d.platform.as_ref().and_then(|p| p.variant.clone());
    candidates
        .iter()
        .find(|d| variant(d) == want.variant)
        .or_else(|| candidates.iter().find(|d| variant(d).is_none()))
        .or_else(|| {
            if want.variant.is_none() || want.architecture == "arm64" {
                candidates.first()
            } else {
                None
            }
        })
        .copied()
}

/// The platforms an index offers, for messages (`linux/amd64, linux/arm64/v8`).
pub(crate) fn offered(index: &Index) -> String {
    let list: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(ToString::to_string)
        .collect();
    if list.is_empty() { "no platform".to_owned() } else { list.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_normalised_as_registries_compare_them() {
        let p = |s| Platform::parse(s).unwrap().to_string();
        assert_eq!(p("linux/arm64"), "linux/arm64/v8");
        assert_eq!(p("linux/aarch64"), "linux/arm64/v8");
        assert_eq!(p("arm64"), "linux/arm64/v8");
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/arm/v6"), "linux/arm/v6");
        assert!(Platform::parse("windows/amd64").unwrap_err().contains("Linux"));
        assert!(Platform::parse("linux//x").is_err());
        assert!(Platform::parse("linux/amd64/v2/x").is_err());
        let list = Platform::parse_list("linux/amd64, linux/arm64,linux/arm64/v8").unwrap();
        assert_eq!(list.len(), 2);
    }
}
