//! The flags that shape what is planned beyond the build file: `--build-context`, `--label`,
//! `--network` and `--add-host` (value parsers for clap, and the [`PlanRequest`] they make).

use std::net::IpAddr;
use std::path::PathBuf;

use super::args::FileArgs;
use crate::plan::{NamedContext, PlanRequest};
use crate::syntax::ast::Network;

/// The forms `--build-context NAME=VALUE` accepts, for messages.
const CONTEXT_FORMS: &str = "a folder, `docker-image://REF` or `oci-layout://DIR[:TAG]`";

/// `NAME=DIR`, `NAME=docker-image://REF` or `NAME=oci-layout://DIR[:TAG]`.
pub(crate) fn parse_build_context(s: &str) -> Result<(String, NamedContext), String> {
    let Some((name, value)) = s.split_once('=').filter(|(n, v)| !n.is_empty() && !v.is_empty())
    else {
        return Err(format!("`{s}` is not NAME=VALUE, where VALUE is {CONTEXT_FORMS}"));
    };
    let context = if let Some(reference) = value.strip_prefix("docker-image://") {
        crate::registry::Reference::parse(reference)
            .map_err(|e| format!("`{reference}` is not an image reference: {e}"))?;
        NamedContext::Image(reference.to_owned())
    } else if let Some(layout) = value.strip_prefix("oci-layout://") {
        NamedContext::Image(oci_layout_reference(layout)?)
    } else if let Some((scheme, _)) = value.split_once("://") {
        return Err(format!(
            "`{scheme}://` contexts are not supported; a named context is {CONTEXT_FORMS}"
        ));
    } else {
        let dir = PathBuf::from(value);
        if !dir.is_dir() {
            return Err(format!("`{value}` is not a folder; a named context is {CONTEXT_FORMS}"));
        }
        NamedContext::Dir(dir)
    };
    Ok((name.to_owned(), context))
}

/// `oci-layout://DIR[:TAG]` as stack's `oci:DIR:TAG` with an absolute DIR (relative paths
/// are the caller's, not the build file's).
fn oci_layout_reference(layout: &str) -> Result<String, String> {
    if layout.contains('@') {
        return Err(format!(
            "`oci-layout://{layout}`: a digest is not supported; write `oci-layout://DIR[:TAG]`"
        ));
    }
    let (dir, tag) = layout.split_once(':').unwrap_or((layout, ""));
    let dir = std::path::absolute(dir).map_err(|e| format!("`{dir}`: {e}"))?;
    if !dir.join("index.json").is_file() {
        return Err(format!("`{}` is not an OCI layout (no `index.json`)", dir.display()));
    }
    Ok(format!("oci:{}:{tag}", dir.display()))
}

/// `default` (a private network), `host` or `none`, as a step's `network` says.
pub(crate) fn parse_network(s: &str) -> Result<Network, String> {
    match s {
        "default" | "private" => Ok(Network::Default),
        "host" => Ok(Network::Host),
        "none" => Ok(Network::None),
        _ => Err(format!("`{s}` is not a network: use `default`, `host` or `none`")),
    }
}

/// The `--network` value that means `network`.
pub(crate) fn network_name(network: Network) -> &'static str {
    match network {
        Network::Default => "default",
        Network::Host => "host",
        Network::None => "none",
    }
}

/// `NAME:IP` (docker's form; `NAME=IP` too), IP v4 or v6 (whose colons stay with the IP).
pub(crate) fn parse_add_host(s: &str) -> Result<(String, String), String> {
    let split = s.split_once('=').or_else(|| s.split_once(':'));
    let Some((name, ip)) = split.filter(|(n, _)| !n.is_empty()) else {
        return Err(format!("`{s}` is not NAME:IP"));
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if ip == "host-gateway" {
        return Err(
            "`host-gateway` needs a daemon's bridge, which stack has none of; write the address"
                .to_owned(),
        );
    }
    let ip: IpAddr = ip.parse().map_err(|_| format!("`{ip}` in `{s}` is not an IP address"))?;
    if name.contains(char::is_whitespace) {
        return Err(format!("`{name}` is not a host name"));
    }
    Ok((name.to_owned(), ip.to_string()))
}

/// What to plan, from the command line: build args (`NAME` alone from the environment,
/// unset means the default, as docker does), targets and the flags of this module.
pub(super) fn plan_request(args: &FileArgs) -> PlanRequest {
    PlanRequest {
        args: args.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect(),
        targets: args.targets.clone(),
        labels: args.labels.iter().cloned().collect(),
        default_network: args.network.unwrap_or_default(),
        add_hosts: args.add_hosts.clone(),
        contexts: args.build_contexts.iter().cloned().collect(),
        platforms: args.platform_lists.iter().flatten().fold(Vec::new(), |mut all, p| {
            if !all.contains(p) {
                all.push(p.clone());
            }
            all
        }),
        platform: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_takes_v4_and_v6_and_refuses_the_rest() {
        assert_eq!(parse_add_host("db:10.0.0.5"), Ok(("db".into(), "10.0.0.5".into())));
        assert_eq!(parse_add_host("db=::1"), Ok(("db".into(), "::1".into())));
        assert_eq!(parse_add_host("v6:fe80::1"), Ok(("v6".into(), "fe80::1".into())));
        assert!(parse_add_host("db").is_err());
        assert!(parse_add_host("db:nope").is_err());
        assert!(parse_add_host("db:host-gateway").unwrap_err().contains("address"));
    }

    #[test]
    fn build_contexts_name_the_supported_forms() {
        let (name, c) = parse_build_context("base=docker-image://alpine:3.20").unwrap();
        assert_eq!((name.as_str(), c), ("base", NamedContext::Image("alpine:3.20".into())));
        assert!(parse_build_context("x=/").is_ok());
        let e = parse_build_context("x=https://example.com/a.tar").unwrap_err();
        assert!(e.contains("`https://` contexts are not supported"), "{e}");
        assert!(parse_build_context("x=/nonexistent-folder").unwrap_err().contains("not a folder"));
        assert!(parse_build_context("=dir").is_err());
    }
}
