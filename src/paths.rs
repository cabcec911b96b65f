//! Path arithmetic shared by the build context, the layer extractor and the merged file-system
//! view: normalising relative paths, and resolving symlinks lexically with a root acting as `/`.
//!
//! Invariant: nothing here touches the disk; callers say what a symlink points to.

/// Normalises a relative path (drops `.`, empty components and leading `/`); `None` when `..`
/// climbs above the root.
pub(crate) fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Resolves the symlinks in `path` with the root as `/`: `..` stops at the root and absolute
/// targets restart from it, so the result never leaves the root. `link` gives the target of a
/// (relative, normalised) path that is a symlink. With `follow_last` the final component is
/// followed too. `None` after 40 symlinks (a loop).
pub(crate) fn resolve_in_root(
    path: &str,
    follow_last: bool,
    link: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let mut done: Vec<String> = Vec::new();
    let mut pending: Vec<String> =
        path.split('/').filter(|s| !s.is_empty()).rev().map(str::to_owned).collect();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => done.push(c),
        }
        if pending.is_empty() && !follow_last {
            break;
        }
        if let Some(target) = link(&done.join("/")) {
            hops += 1;
            if hops > 40 {
                return None;
            }
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            pending.extend(target.split('/').filter(|s| !s.is_empty()).rev().map(str::to_owned));
        }
    }
    Some(done.join("/"))
}

/// Removes every key below folder `path` (`path/…`) from a map keyed by relative paths.
pub(crate) fn remove_below<V>(map: &mut std::collections::BTreeMap<String, V>, path: &str) {
    let prefix = format!("{path}/");
    let below: Vec<String> = map
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in below {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_to_climb() {
        assert_eq!(normalize("./a//b/../c/").as_deref(), Some("a/c"));
        assert_eq!(normalize("/x").as_deref(), Some("x"));
        assert_eq!(normalize("a/../../b"), None);
    }

    #[test]
    fn removes_only_what_is_below() {
        let mut m: std::collections::BTreeMap<String, u8> =
            ["a", "a/b", "a/b/c", "a.txt", "ab"].iter().map(|k| ((*k).to_owned(), 0)).collect();
        remove_below(&mut m, "a");
        assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "a.txt", "ab"]);
    }

    #[test]
    fn resolves_inside_the_root() {
        let link = |p: &str| match p {
            "abs" => Some("/real".to_owned()),
            "up" => Some("../../../real".to_owned()),
            "loop" => Some("loop".to_owned()),
            _ => None,
        };
        assert_eq!(resolve_in_root("abs/f", true, &link).as_deref(), Some("real/f"));
        assert_eq!(resolve_in_root("up/f", true, &link).as_deref(), Some("real/f"));
        assert_eq!(resolve_in_root("x/abs", false, &link).as_deref(), Some("x/abs"));
        assert_eq!(resolve_in_root("loop", true, &link), None);
    }
}
