//! `stack affected --since REV`: the images whose output can change between a git revision
//! and the working tree; also behind `stack build --affected-since REV`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::args::{AffectedArgs, FileArgs};
use super::load::{
    CliResolver, error_chain, load_files, locate, lock_path, open_store, plan_files,
};
use super::{Failure, fail};
use crate::context::Context;
use crate::exec::git;
use crate::lockfile::Lock;
use crate::plan::affected::{Changes, World};
use crate::plan::{FileInput, Plan};

/// Affected images by name, each with the changed paths (or `stack.lock` pins) that reach it.
pub(super) type Affected = BTreeMap<String, BTreeSet<String>>;

pub(super) fn run(args: &AffectedArgs) -> Result<(), Failure> {
    let files = load_files(&args.file)?;
    let store = open_store(&args.file)?;
    let resolver = CliResolver::new(&files, &store, &args.file)?;
    let p = plan_files(&files, &resolver, &args.file)?;
    let found = affected(&files, &p, &args.file, &args.since)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "since": args.since,
            "images": found.keys().collect::<Vec<_>>(),
            "reasons": found,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        for name in found.keys() {
            writeln!(out, "{name}")?;
        }
    }
    if found.is_empty() {
        eprintln!("no image is affected by the changes since `{}`", args.since);
    }
    Ok(())
}

/// The images of plan `p` that the changes since `rev` can change.
pub(super) fn affected(
    files: &[FileInput],
    p: &Plan,
    args: &FileArgs,
    rev: &str,
) -> Result<Affected, Failure> {
    let main = locate(args)?.path;
    let main = fs_err::canonicalize(&main)?;
    let dir = main.parent().unwrap_or(Path::new("/"));
    let git_failed = |e: git::GitError| {
        fail(error_chain(&e), Some("`stack affected` needs the build file inside a git repository"))
    };
    let top = git::toplevel(dir).map_err(git_failed)?;
    let top = fs_err::canonicalize(&top)?;
    let paths: Vec<(PathBuf, String)> = git::changed_paths(&top, rev)
        .map_err(git_failed)?
        .into_iter()
        .map(|rel| (top.join(&rel), rel))
        .collect();
    let mut build_files = vec![main];
    for f in &files[1..] {
        let path = PathBuf::from(&f.source.name);
        build_files.push(fs_err::canonicalize(&path).unwrap_or(path));
    }
    let includes_others = files.iter().map(|f| !f.ast.includes.is_empty()).collect();
    let (locked_bases, locked_urls) = lock_changes(&top, args, rev)?;
    let world = Tree::default();
    let template_edits = template_edits(files, &top, &build_files, &paths, rev)?;
    let changes = Changes {
        paths,
        build_files,
        includes_others,
        locked_bases,
        locked_urls,
        template_edits,
        world: &world,
    };
    Ok(crate::plan::affected::affected(p, &changes))
}

/// The changed build files whose edit since `rev` is confined to templates, with the spans of
/// the templates that changed (`plan::affected::changed_templates`).
fn template_edits(
    files: &[FileInput],
    top: &Path,
    build_files: &[PathBuf],
    paths: &[(PathBuf, String)],
    rev: &str,
) -> Result<HashMap<usize, Vec<miette::SourceSpan>>, Failure> {
    let mut out = HashMap::new();
    for (abs, rel) in paths {
        let Some(f) = build_files.iter().position(|b| b == abs) else { continue };
        if files[f].origin.is_some() {
            continue; // imported from a Dockerfile: its text is not the file's
        }
        let Some(old) = git::show(top, rev, rel).map_err(|e| fail(error_chain(&e), None))? else {
            continue;
        };
        let old = String::from_utf8_lossy(&old);
        if let Some(spans) = crate::plan::affected::changed_templates(&old, &files[f].source.text) {
            out.insert(f, spans);
        }
    }
    Ok(out)
}

/// The base references whose `stack.lock` pin differs between `rev` and now (with the reason
/// to report), and whether a URL pin does.
fn lock_changes(
    top: &Path,
    args: &FileArgs,
    rev: &str,
) -> Result<(BTreeMap<String, String>, Option<String>), Failure> {
    let path = lock_path(args);
    let path = fs_err::canonicalize(&path).unwrap_or(path);
    let parse = |text: Option<Vec<u8>>, what: &str| -> Result<Lock, Failure> {
        let Some(text) = text else { return Ok(Lock::default()) };
        Lock::parse(&String::from_utf8_lossy(&text))
            .map_err(|e| fail(format!("`stack.lock` {what}: {}", error_chain(&e)), None))
    };
    let now = parse(fs_err::read(&path).ok(), "in the working tree")?;
    let old = match path.strip_prefix(top).ok().and_then(Path::to_str) {
        Some(rel) => git::show(top, rev, rel).map_err(|e| fail(error_chain(&e), None))?,
        None => None,
    };
    let old = parse(old, &format!("at `{rev}`"))?;
    let mut bases = BTreeMap::new();
    for key in old.entries.keys().chain(now.entries.keys()) {
        if old.entries.get(key) != now.entries.get(key) {
            bases.insert(key.0.clone(), format!("stack.lock: {}", key.0));
        }
    }
    let urls = (old.urls != now.urls).then(|| "stack.lock: URL pins".to_owned());
    Ok((bases, urls))
}

/// The working tree, as `plan::affected` asks about it; opened contexts are kept for their
/// ignore rules.
#[derive(Default)]
struct Tree {
    contexts: Mutex<HashMap<PathBuf, Option<Context>>>,
}

impl World for Tree {
    fn exists(&self, path: &Path) -> bool {
        fs_err::symlink_metadata(path).is_ok()
    }

    fn ignored(&self, root: &Path, rel: &str) -> bool {
        let mut map = self.contexts.lock().expect("no panics while locked");
        let ctx = map.entry(root.to_owned()).or_insert_with(|| Context::open(root).ok());
        ctx.as_ref().is_some_and(|c| c.ignore.is_excluded(rel))
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        fs_err::canonicalize(path).unwrap_or_else(|_| path.to_owned())
    }

    fn lock_name(&self, reference: &str) -> String {
        crate::registry::Reference::parse(reference)
            .map_or_else(|_| reference.to_owned(), |r| r.to_string())
    }
}
