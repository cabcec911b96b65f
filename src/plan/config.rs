//! Steps that change the image config (`env`, `label`, `user`, `shell`, `cmd`, `entrypoint`,
//! `expose`, `volume`, `onbuild`, `healthcheck`, …) and the small layer steps `workdir` and
//! `file`: how each sets the config and what goes into its key.

use serde_json::Value;

use super::{Digest, Op};
use crate::oci::image::ImageConfig;
use crate::syntax::ast::Healthcheck;
use crate::syntax::parse_duration;

/// Named inputs of `file` and `workdir` steps, for `--explain`.
pub(super) fn simple_inputs(op: &Op, parent_fs: Digest) -> Vec<(String, String)> {
    let mut inputs = vec![("parent".to_owned(), parent_fs.to_hex())];
    match op {
        Op::File(f) => {
            inputs.push(("path".into(), f.path.clone()));
            inputs.push(("content".into(), Digest::of(&f.content).short()));
            inputs.push(("options".into(), format!("chown={:?} chmod={:o}", f.chown, f.chmod)));
        }
        Op::Workdir { path, user } => {
            inputs.push(("path".into(), path.clone()));
            inputs.push(("user".into(), user.clone()));
        }
        _ => {}
    }
    inputs
}

/// The `ExposedPorts` keys of one `expose` value; a range (`7000-7002/udp`) is every port in
/// it, as Docker's port parser gives.
pub(super) fn normalize_port(v: &str) -> Option<Vec<String>> {
    let (port, proto) = v.split_once('/').unwrap_or((v, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return None;
    }
    let valid = |p: &str| p.parse::<u16>().ok().filter(|&n| n > 0);
    let (first, last) = match port.split_once('-') {
        Some((a, b)) => (valid(a)?, valid(b)?),
        None => (valid(port)?, valid(port)?),
    };
    (first <= last).then(|| (first..=last).map(|p| format!("{p}/{proto}")).collect())
}

/// Sets `Cmd` or `Entrypoint`; an empty list leaves the field absent, as `BuildKit` writes it.
pub(super) fn set_argv(config: &mut ImageConfig, field: &str, argv: &[String]) {
    if argv.is_empty() {
        config.config_mut().remove(field);
    } else {
        config.set_strings(field, argv);
    }
}

pub(super) fn healthcheck_json(hc: &Healthcheck) -> Value {
    match hc {
        Healthcheck::None => serde_json::json!({"Test": ["NONE"]}),
        Healthcheck::Check {
            test,
            shell,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let mut m = serde_json::Map::new();
            let mut t: Vec<Value> =
                vec![Value::String(if *shell { "CMD-SHELL" } else { "CMD" }.into())];
            t.extend(test.iter().map(|s| Value::String(s.value.clone())));
            m.insert("Test".into(), Value::Array(t));
            for (key, v) in [
                ("Interval", interval),
                ("Timeout", timeout),
                ("StartPeriod", start_period),
                ("StartInterval", start_interval),
            ] {
                if let Some(ns) = v.as_ref().and_then(|d| parse_duration(&d.value)) {
                    m.insert(key.into(), Value::from(ns));
                }
            }
            if let Some(r) = retries {
                m.insert("Retries".into(), Value::from(r.value));
            }
            Value::Object(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let one = |v: &str| normalize_port(v).map(|p| p.join(" "));
        assert_eq!(one("8080").as_deref(), Some("8080/tcp"));
        assert_eq!(one("53/UDP").as_deref(), Some("53/udp"));
        assert_eq!(one("http"), None);
        assert_eq!(one("7000-7002/udp").as_deref(), Some("7000/udp 7001/udp 7002/udp"));
        assert_eq!(one("9-8"), None);
    }
}
