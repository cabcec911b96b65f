//! The merged file system of a stack of extracted layers, computed from their indexes: what a
//! path is after every layer's changes and whiteouts are applied, and where its bytes live.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::oci::extract::{IndexEntry, IndexKind, LayerIndex};
use crate::oci::layer::{Entry, EntryKind};

/// The merged view of several layers.
#[derive(Debug, Default)]
pub(crate) struct View {
    entries: BTreeMap<String, (usize, IndexEntry)>,
    trees: Vec<PathBuf>,
}

impl View {
    /// Applies layers bottom first; `tree` is where each layer's files are.
    pub(crate) fn new(layers: &[(LayerIndex, PathBuf)]) -> Self {
        let mut view = Self::default();
        for (i, (index, tree)) in layers.iter().enumerate() {
            view.trees.push(tree.clone());
            for (path, e) in index {
                match e.kind {
                    IndexKind::Whiteout => {
                        view.entries.remove(path);
                        view.remove_below(path);
                    }
                    IndexKind::OpaqueDir => {
                        view.remove_below(path);
                        view.entries.insert(path.clone(), (i, e.clone()));
                    }
                    _ => {
                        if !e.is_dir() {
                            view.remove_below(path);
                        }
                        view.entries.insert(path.clone(), (i, e.clone()));
                    }
                }
            }
        }
        view
    }

    fn remove_below(&mut self, path: &str) {
        crate::paths::remove_below(&mut self.entries, path);
    }

    /// The entry at a relative path, without following symlinks.
    pub(crate) fn get(&self, path: &str) -> Option<&IndexEntry> {
        self.entries.get(path).map(|(_, e)| e)
    }

    /// Where the bytes of a file at `path` are.
    pub(crate) fn source(&self, path: &str) -> Option<PathBuf> {
        self.entries.get(path).map(|(i, _)| self.trees[*i].join(path))
    }

    /// Resolves symlinks with the view's root as `/`; `follow_last` also follows the final
    /// component. Returns a relative path.
    pub(crate) fn resolve(&self, path: &str, follow_last: bool) -> Option<String> {
        crate::paths::resolve_in_root(path, follow_last, &|p| {
            self.get(p)
                .filter(|e| e.kind == IndexKind::Symlink)
                .map(|e| e.link.clone().unwrap_or_default())
        })
    }

    pub(crate) fn is_dir(&self, path: &str) -> bool {
        path.is_empty()
            || self
                .resolve(path, true)
                .and_then(|p| self.get(&p).cloned())
                .is_some_and(|e| e.is_dir())
    }

    /// Everything below a folder (relative to it), sorted.
    pub(crate) fn below(&self, dir: &str) -> Vec<(String, &IndexEntry)> {
        if dir.is_empty() {
            return self.entries.iter().map(|(k, (_, e))| (k.clone(), e)).collect();
        }
        let prefix = format!("{dir}/");
        self.entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, (_, e))| (k[prefix.len()..].to_owned(), e))
            .collect()
    }

    /// All paths, sorted (for glob matching).
    pub(crate) fn paths(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    /// A layer entry that reproduces the object at `path` (hard links become plain files,
    /// since their target may not be copied along).
    pub(crate) fn entry(&self, path: &str, e: &IndexEntry) -> Entry {
        let tree = self
            .entries
            .get(path)
            .map_or_else(|| Path::new("/nonexistent").to_owned(), |(i, _)| self.trees[*i].clone());
        let mut entry = e.to_entry(path, &tree);
        if let EntryKind::Hardlink { .. } = entry.kind {
            entry.kind = EntryKind::File { source: tree.join(path), size: e.size };
        }
        entry
    }

    /// Reads a small file (e.g. `/etc/passwd`) after following symlinks.
    pub(crate) fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        let p = self.resolve(path, true)?;
        let e = self.get(&p)?;
        if !matches!(e.kind, IndexKind::File | IndexKind::Hardlink) || e.size > (16 << 20) {
            return None;
        }
        fs_err::read(self.source(&p)?).ok()
    }

    /// Resolves `user[:group]` (names or ids) through this file system's `/etc/passwd` and
    /// `/etc/group`. A user without a group uses the user's primary group when the name is
    /// known, else the same number (Docker's rule for `--chown`).
    pub(crate) fn resolve_owner(&self, spec: &str) -> Result<(u32, u32), String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let passwd =
            String::from_utf8_lossy(&self.read_file("etc/passwd").unwrap_or_default()).into_owned();
        let groups =
            String::from_utf8_lossy(&self.read_file("etc/group").unwrap_or_default()).into_owned();
        let (uid, primary) = if let Ok(n) = user.parse::<u32>() {
            (n, lookup(&passwd, user, 0).and_then(|f| f[3].parse().ok()))
        } else {
            let f = lookup(&passwd, user, 0)
                .ok_or_else(|| format!("user `{user}` is not in the image's /etc/passwd"))?;
            (
                f[2].parse().map_err(|_| format!("bad uid for `{user}` in /etc/passwd"))?,
                f[3].parse().ok(),
            )
        };
        let gid = match group {
            None => {
                if user.parse::<u32>().is_ok() {
                    uid
                } else {
                    primary.unwrap_or(uid)
                }
            }
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup(&groups, g, 0)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| format!("group `{g}` is not in the image's /etc/group"))?,
            },
        };
        Ok((uid, gid))
    }
}

/// Finds the `:`-separated line whose field `field` is `name`.
fn lookup<'a>(file: &'a str, name: &str, field: usize) -> Option<Vec<&'a str>> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[field] == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ie(kind: IndexKind) -> IndexEntry {
        IndexEntry {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: None,
            xattrs: vec![],
            hash: None,
        }
    }

    #[test]
    fn whiteouts_and_opaque_dirs_apply() {
        let mut l0 = LayerIndex::new();
        l0.insert("a".into(), ie(IndexKind::Dir));
        l0.insert("a/x".into(), ie(IndexKind::File));
        l0.insert("b".into(), ie(IndexKind::Dir));
        l0.insert("b/y".into(), ie(IndexKind::File));
        l0.insert("c".into(), IndexEntry { link: Some("/a".into()), ..ie(IndexKind::Symlink) });
        let mut l1 = LayerIndex::new();
        l1.insert("a".into(), ie(IndexKind::OpaqueDir));
        l1.insert("a/new".into(), ie(IndexKind::File));
        l1.insert("b/y".into(), ie(IndexKind::Whiteout));
        let v = View::new(&[(l0, "/t0".into()), (l1, "/t1".into())]);
        assert!(v.get("a/x").is_none());
        assert!(v.get("a/new").is_some());
        assert!(v.get("b/y").is_none());
        assert_eq!(v.resolve("c/new", true).as_deref(), Some("a/new"));
        assert!(v.is_dir("c"));
        assert_eq!(v.source("a/new").unwrap(), PathBuf::from("/t1/a/new"));
    }
}
