//! What this process may do with file owners, decided once from its effective uid and its user
//! namespace's uid map: root on the host, root of a user namespace that maps a range of ids
//! (a rootless build with subordinate ids, or a rootless container), or neither.
//!
//! Extracted layer trees depend on it (owners kept or flattened, which xattr namespace marks
//! opaque directories), so the store keeps one tree per kind ([`Privilege::tree_suffix`]).

use std::sync::OnceLock;

/// The process's standing, see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Privilege {
    /// Root in the initial user namespace: exact owners, device nodes, `trusted.` xattrs.
    HostRoot,
    /// Root of a user namespace that maps a range of ids: exact owners for the ids it maps,
    /// `user.` xattrs (overlay mounted with `userxattr`), no device nodes.
    MappedRoot,
    /// Anything else (an unprivileged user, or root of a namespace that maps one id): files
    /// belong to the caller whatever the layer says; the layer index keeps the real owners.
    SingleId,
}

/// One line of a `/proc/PID/uid_map` or `gid_map`: `count` ids from `inside` map to `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

impl Privilege {
    pub(crate) const ALL: [Privilege; 3] =
        [Privilege::HostRoot, Privilege::MappedRoot, Privilege::SingleId];

    /// The standing of this process (read once; `stack` enters its user namespace before
    /// anything asks).
    pub(crate) fn current() -> Privilege {
        static CURRENT: OnceLock<Privilege> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let euid = rustix::process::geteuid().as_raw();
            let map = fs_err::read_to_string("/proc/self/uid_map").ok();
            Privilege::from_ids(euid, map.as_deref())
        })
    }

    /// Decides from the effective uid and the uid map (`None`: unreadable, taken as the
    /// initial namespace).
    pub(crate) fn from_ids(euid: u32, uid_map: Option<&str>) -> Privilege {
        if euid != 0 {
            return Privilege::SingleId;
        }
        let Some(map) = uid_map else { return Privilege::HostRoot };
        let ranges = parse_id_map(map);
        let initial = ranges.iter().any(|r| r.inside == 0 && r.outside == 0 && r.count == u32::MAX);
        let mapped: u64 = ranges.iter().map(|r| u64::from(r.count)).sum();
        if initial {
            Privilege::HostRoot
        } else if mapped > 1 {
            Privilege::MappedRoot
        } else {
            Privilege::SingleId
        }
    }

    /// Whether extraction can give files the owners their layer records.
    pub(crate) fn keeps_owners(self) -> bool {
        self != Privilege::SingleId
    }

    /// The xattr namespace of overlay's markers in lower dirs (`trusted` needs host root).
    pub(crate) fn overlay_xattr_prefix(self) -> &'static str {
        if self == Privilege::HostRoot { "trusted" } else { "user" }
    }

    /// Appended to a layer's folder name in the store, so trees extracted with different
    /// standing never mix.
    pub(crate) fn tree_suffix(self) -> &'static str {
        match self {
            Privilege::HostRoot => "",
            Privilege::MappedRoot => ".userns",
            Privilege::SingleId => ".flat",
        }
    }
}

/// Parses a uid or gid map; malformed lines are skipped.
pub(crate) fn parse_id_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(str::parse::<u32>);
            match (f.next(), f.next(), f.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) => {
                    Some(IdRange { inside, outside, count })
                }
                _ => None,
            }
        })
        .collect()
}

/// Whether `id` (as seen inside the namespace) is mapped by `ranges`.
pub(crate) fn maps(ranges: &[IdRange], id: u32) -> bool {
    ranges
        .iter()
        .any(|r| id >= r.inside && u64::from(id) < u64::from(r.inside) + u64::from(r.count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_comes_from_the_uid_and_the_map() {
        let initial = "         0          0 4294967295\n";
        assert_eq!(Privilege::from_ids(0, Some(initial)), Privilege::HostRoot);
        assert_eq!(Privilege::from_ids(0, None), Privilege::HostRoot);
        assert_eq!(Privilege::from_ids(1000, Some(initial)), Privilege::SingleId);
        let subids = "0 1000 1\n1 100000 65536\n";
        assert_eq!(Privilege::from_ids(0, Some(subids)), Privilege::MappedRoot);
        assert_eq!(Privilege::from_ids(0, Some("0 1000 1\n")), Privilege::SingleId);
        assert_eq!(Privilege::from_ids(0, Some("0 100000 65536\n")), Privilege::MappedRoot);
    }

    #[test]
    fn maps_checks_every_range() {
        let ranges = parse_id_map("0 1000 1\n1 100000 65536\nnot a line\n");
        assert_eq!(ranges.len(), 2);
        assert!(maps(&ranges, 0));
        assert!(maps(&ranges, 1000));
        assert!(maps(&ranges, 65536));
        assert!(!maps(&ranges, 65537));
        let all = parse_id_map("0 0 4294967295");
        assert!(maps(&all, u32::MAX - 1));
    }

    #[test]
    fn each_standing_has_its_own_trees() {
        let suffixes: std::collections::HashSet<_> =
            Privilege::ALL.map(Privilege::tree_suffix).into_iter().collect();
        assert_eq!(suffixes.len(), 3);
    }
}
