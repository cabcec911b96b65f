//! The one canonical JSON form stack writes: keys sorted, no insignificant whitespace, no
//! trailing newline. Every config, manifest and index goes through [`to_canonical`], so the same
//! value always has the same digest.

use serde_json::Value;

/// Serialises a value canonically. `serde_json::Map` is a `BTreeMap` (the `preserve_order`
/// feature is never enabled), so round-tripping through [`Value`] sorts every object's keys.
pub(crate) fn to_canonical<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let value: Value = serde_json::to_value(value).expect("stack's own types always serialise");
    serde_json::to_vec(&value).expect("a Value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_at_every_depth() {
        let v = serde_json::json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 1}], "c": "é"}});
        assert_eq!(
            String::from_utf8(to_canonical(&v)).unwrap(),
            r#"{"a":{"c":"é","z":[1,{"x":1,"y":2}]},"b":1}"#
        );
    }
}
