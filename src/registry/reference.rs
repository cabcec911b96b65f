//! Image references (`alpine`, `ghcr.io/o/app:1.2@sha256:…`, `localhost:5000/x`) parsed and
//! normalised the way Docker's `distribution/reference` does.
//!
//! Invariant: a parsed [`Reference`] is fully qualified: it always names a registry host and a
//! repository, and carries a tag, a digest, or both (a bare name gets `latest`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::digest::OciDigest;

/// The registry that unqualified names live on.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves the API for [`DOCKER_HUB`].
pub(crate) const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The key Docker uses for Docker Hub in `config.json`.
pub(super) const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Reference {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// `library/alpine`, `owner/app`.
    pub repository: String,
    pub tag: Option<String>,
    /// When set, it wins over the tag.
    pub digest: Option<OciDigest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference `{0}` is longer than 255 characters")]
    TooLong(String),
    #[error(
        "image reference `{reference}` has an invalid repository name `{name}`: use lowercase letters, digits and `.`, `_`, `__`, `-` between them"
    )]
    Repository { reference: String, name: String },
    #[error("image reference `{reference}` has an invalid registry host `{host}`")]
    Host { reference: String, host: String },
    #[error(
        "image reference `{reference}` has an invalid tag `{tag}`: up to 128 of letters, digits, `_`, `.`, `-`, not starting with `.` or `-`"
    )]
    Tag { reference: String, tag: String },
    #[error("image reference `{reference}` has an invalid digest")]
    Digest {
        reference: String,
        #[source]
        source: crate::digest::DigestParseError,
    },
}

impl Reference {
    /// Parses and normalises a reference: `alpine` becomes `docker.io/library/alpine:latest`,
    /// `user/app` becomes `docker.io/user/app:latest`, `index.docker.io` becomes `docker.io`.
    /// A first path component is a registry host when it contains `.` or `:` or is
    /// `localhost` (Docker's rule).
    pub(crate) fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let digest = d
                    .parse::<OciDigest>()
                    .map_err(|source| ReferenceError::Digest { reference: s.to_owned(), source })?;
                (r, Some(digest))
            }
            None => (s, None),
        };
        // A tag follows the last `:` that comes after the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        if name.len() > 255 {
            return Err(ReferenceError::TooLong(s.to_owned()));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                (first.to_owned(), remainder.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_owned() } else { registry };
        if !valid_host(&registry) {
            return Err(ReferenceError::Host { reference: s.to_owned(), host: registry });
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository) {
            return Err(ReferenceError::Repository { reference: s.to_owned(), name: repository });
        }
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::Tag { reference: s.to_owned(), tag: t.clone() });
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_owned()) } else { tag };
        Ok(Self { registry, repository, tag, digest })
    }

    /// The host (and port) the API is spoken to: `registry-1.docker.io` for Docker Hub.
    #[cfg(test)] // used by the registry tests only
    pub(crate) fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// What is asked of `/v2/<repo>/manifests/<reference>`: the digest when there is one.
    pub(crate) fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// `registry/repository`, without tag or digest.
    pub(crate) fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with a digest instead of the tag.
    #[must_use]
    pub(crate) fn with_digest(&self, digest: OciDigest) -> Self {
        Self { digest: Some(digest), ..self.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The API host for a registry name (`docker.io` is served by `registry-1.docker.io`).
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB || registry == "index.docker.io" { DOCKER_HUB_API } else { registry }
}

/// The host part of `host[:port]` or `[v6][:port]`.
pub(super) fn host_without_port(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

/// Whether a registry is spoken to over plain HTTP without being listed as insecure:
/// `localhost`, `127.0.0.0/8` and `::1`, as Docker does.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = host_without_port(registry);
    host == "localhost"
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return false };
        if v6.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        (None, after.strip_prefix(':'))
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(h), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return false;
    }
    host.is_none_or(|host| {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    })
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`.
fn valid_repository(r: &str) -> bool {
    r.split('/').all(|c| {
        let b = c.as_bytes();
        if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if is_alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !is_alnum(b[i]) {
                i += 1;
            }
            let sep = &c[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
            if !ok {
                return false;
            }
        }
        true
    })
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let table: &[(&str, &str)] = &[
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.20", "docker.io/library/alpine:3.20"),
            ("library/alpine", "docker.io/library/alpine:latest"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/library/debian:12-slim", "docker.io/library/debian:12-slim"),
            ("user/app", "docker.io/user/app:latest"),
            ("user/team/app:v1", "docker.io/user/team/app:v1"),
            ("ghcr.io/owner/app:1.2.3", "ghcr.io/owner/app:1.2.3"),
            ("quay.io/app", "quay.io/app:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:dev", "localhost:5000/app:dev"),
            ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            ("registry:5000/app", "registry:5000/app:latest"),
            ("my_registry/app", "docker.io/my_registry/app:latest"),
            ("a-b_c__d/e---f.g", "docker.io/a-b_c__d/e---f.g:latest"),
        ];
        for (input, want) in table {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
        }
    }

    #[test]
    fn digests_win_over_tags() {
        let r = Reference::parse(&format!("alpine:3.20@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("3.20"));
        assert_eq!(r.manifest_reference(), D);
        let r = Reference::parse(&format!("localhost:5000/x@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.to_string(), format!("localhost:5000/x@{D}"));
    }

    #[test]
    fn rejects_invalid_references() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine:-x",
            "alpine@sha256:abc",
            "alpine@md5:0123",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a_b.c/app",
            "host:99999/app",
            "host:/app",
            "[zz]:5000/app",
            "docker.io/",
            &format!("a:{}", "t".repeat(129)),
            &"a".repeat(256),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn hosts_and_plain_http() {
        assert_eq!(Reference::parse("alpine").unwrap().api_host(), "registry-1.docker.io");
        assert_eq!(Reference::parse("ghcr.io/a/b").unwrap().api_host(), "ghcr.io");
        for (reg, plain) in [
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("127.9.8.7", true),
            ("[::1]:5000", true),
            ("[::1]", true),
            ("128.0.0.1:5000", false),
            ("docker.io", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(is_loopback(reg), plain, "{reg}");
        }
    }
}
