//! Resolves a `user` string (`name[:group]`, `uid[:gid]`) through the image's `/etc/passwd`
//! and `/etc/group`, like Docker: numeric ids need no entry, names must exist, supplementary
//! groups are every group listing the user by name (only when the group is not given).
//!
//! Invariant: pure functions over file contents; no IO here.

/// The ids a command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups: those listing the user by name, as runc sets them (the primary
    /// gid only when a group lists the user), none when the group is given.
    pub(crate) groups: Vec<u32>,
    /// The home directory from `/etc/passwd` (`/` when unknown).
    pub(crate) home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or("/"),
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 || line.starts_with('#') {
            return None;
        }
        let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).collect());
        Some((f[0], f[2].parse().ok()?, members.unwrap_or_default()))
    })
}

/// Resolves `spec` (empty means root) against the given file contents.
pub(crate) fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, String> {
    let spec = if spec.is_empty() { "0" } else { spec };
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = if let Ok(uid) = user.parse::<u32>() {
        passwd_entries(passwd).find(|e| e.uid == uid)
    } else {
        Some(
            passwd_entries(passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| format!("no user `{user}` in /etc/passwd"))?,
        )
    };
    let uid = user.parse::<u32>().ok().or(entry.as_ref().map(|e| e.uid)).unwrap_or(0);
    let gid = match grp {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(group)
                .find(|(name, _, _)| *name == g)
                .map(|(_, gid, _)| gid)
                .ok_or_else(|| format!("no group `{g}` in /etc/group"))?,
        },
        None => entry.as_ref().map_or(0, |e| e.gid),
    };
    let mut groups = Vec::new();
    // runc (and so BuildKit) adds supplementary groups only in the implicit form: a `user`
    // that names its group runs with that group alone.
    if let Some(e) = entry.as_ref().filter(|_| grp.is_none()) {
        for (_, g, members) in group_entries(group) {
            if members.contains(&e.name) && !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    let home = entry.as_ref().map_or("/", |e| e.home).to_owned();
    Ok(ResolvedUser { uid, gid, groups, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\n";

    #[test]
    fn names_ids_and_groups_resolve_like_docker() {
        let app = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((app.uid, app.gid, app.groups.clone()), (1000, 1000, vec![10, 29]));
        assert_eq!(app.home, "/home/app");
        let by_id = resolve("1000", PASSWD, GROUP).unwrap();
        assert_eq!(by_id, app);
        let explicit = resolve("app:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((explicit.gid, explicit.groups), (10, vec![]));
        let unknown = resolve("4242:77", PASSWD, GROUP).unwrap();
        assert_eq!((unknown.uid, unknown.gid, unknown.groups), (4242, 77, vec![]));
        assert_eq!(resolve("", PASSWD, GROUP).unwrap().uid, 0);
        assert!(resolve("nobody", PASSWD, GROUP).unwrap_err().contains("`nobody`"));
        assert!(resolve("app:nogroup", PASSWD, GROUP).unwrap_err().contains("`nogroup`"));
    }
}
