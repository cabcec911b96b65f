//! Which images a set of changed files can change (`stack affected`), from each step's real
//! inputs: the context files a `copy`/`add`/`bind` selects, the build files, the bases
//! `stack.lock` pins. No IO: the caller says which paths changed and whether they exist.
//!
//! Invariant: a path is reported as affecting an image only through a step whose key covers
//! it (or, for a path that no longer exists, whose source pattern would select it), so a
//! change to a file nothing selects affects nothing. Build files are coarser: see
//! [`Changes::build_files`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use petgraph::stable_graph::NodeIndex;

use super::{CopySource, Op, Plan, PlannedMount};

/// What changed, as the caller found it.
pub(crate) struct Changes<'a> {
    /// Changed files: absolute path (symlinks resolved as the context resolves them) and the
    /// name to report (relative to the repository).
    pub paths: Vec<(PathBuf, String)>,
    /// The absolute path of each build file, by file index; a change to the main file (0)
    /// affects every image, one to an included file the images with a step from it (or every
    /// image when it includes others).
    pub build_files: Vec<PathBuf>,
    /// Whether each included file includes others.
    pub includes_others: Vec<bool>,
    /// Normalised base references whose `stack.lock` pin changed, with the reason to report.
    pub locked_bases: BTreeMap<String, String>,
    /// A changed `stack.lock` URL pin, when one did: affects every `add` of a URL.
    pub locked_urls: Option<String>,
    /// For a changed build file (by index) whose edit is confined to `template` nodes: the
    /// spans, in its current text, of the templates that changed (see [`changed_templates`]).
    /// It then reaches only the images with a step from one of them.
    pub template_edits: HashMap<usize, Vec<miette::SourceSpan>>,
    /// Questions about the working tree.
    pub world: &'a dyn World,
}

/// What the computation needs to know of the working tree (the caller does the IO).
pub(crate) trait World {
    /// Whether a path exists now (a path that does not was deleted).
    fn exists(&self, path: &Path) -> bool;
    /// Whether the ignore file of the context at `root` excludes `rel`.
    fn ignored(&self, root: &Path, rel: &str) -> bool;
    /// A folder's path with symlinks resolved, as the contexts' roots are.
    fn canonical(&self, path: &Path) -> PathBuf;
    /// The name `stack.lock` pins a base reference under.
    fn lock_name(&self, reference: &str) -> String;
}

/// The context sources of one step: the context root and the source paths (may hold globs),
/// relative to it.
struct Sources {
    root: PathBuf,
    patterns: Vec<Pattern>,
}

/// The images `changes` can change, each with the reasons (changed paths), sorted.
pub(crate) fn affected(plan: &Plan, changes: &Changes<'_>) -> BTreeMap<String, BTreeSet<String>> {
    let mut node_reasons: HashMap<NodeIndex, BTreeSet<String>> = HashMap::new();
    let (by_path, sources) = index_inputs(plan, changes.world);
    for (abs, shown) in &changes.paths {
        for n in steps_affected_by(abs, &by_path, &sources, changes) {
            node_reasons.entry(n).or_default().insert(shown.clone());
        }
    }
    for n in plan.graph.node_indices() {
        let why = match &plan.graph[n].op {
            Op::Base { reference, .. } => {
                changes.locked_bases.get(&changes.world.lock_name(reference))
            }
            Op::Copy(c) if matches!(c.source, CopySource::Remote { .. }) => {
                changes.locked_urls.as_ref()
            }
            _ => None,
        };
        if let Some(why) = why {
            node_reasons.entry(n).or_default().insert(why.clone());
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let changed_build_files = changed_build_files(changes);
    for image in &plan.images {
        let mut reasons = build_file_reasons(plan, image, changes, &changed_build_files);
        for n in plan.ancestors(image.node) {
            if let Some(r) = node_reasons.get(&n) {
                reasons.extend(r.iter().cloned());
            }
        }
        if !reasons.is_empty() {
            out.insert(image.name.clone(), reasons);
        }
    }
    out
}

/// The steps a changed path reaches: those that selected it, or, for a deleted path (or an
/// ignore file), those whose sources would select it.
fn steps_affected_by(
    abs: &Path,
    by_path: &HashMap<PathBuf, Vec<NodeIndex>>,
    sources: &[(NodeIndex, Sources)],
    changes: &Changes<'_>,
) -> BTreeSet<NodeIndex> {
    let mut hit: BTreeSet<NodeIndex> = by_path.get(abs).into_iter().flatten().copied().collect();
    let is_ignore_file =
        abs.file_name().is_some_and(|n| n == ".stackignore" || n == ".dockerignore");
    if !is_ignore_file && changes.world.exists(abs) {
        return hit;
    }
    for (node, s) in sources {
        let Some(rel) = abs.strip_prefix(&s.root).ok().and_then(|r| r.to_str()) else {
            continue;
        };
        // A new ignore file can change what every source of its context selects.
        let selects = if is_ignore_file && abs.parent() == Some(s.root.as_path()) {
            true
        } else {
            s.patterns.iter().any(|p| p.selects(rel)) && !changes.world.ignored(&s.root, rel)
        };
        if selects {
            hit.insert(*node);
        }
    }
    hit
}

/// Every context file each step selected (by absolute path), and each step's sources.
fn index_inputs(
    plan: &Plan,
    world: &dyn World,
) -> (HashMap<PathBuf, Vec<NodeIndex>>, Vec<(NodeIndex, Sources)>) {
    let mut by_path: HashMap<PathBuf, Vec<NodeIndex>> = HashMap::new();
    let mut sources = Vec::new();
    for n in plan.graph.node_indices() {
        let mut add = |root: &Path, rel: &str| {
            by_path.entry(root.join(rel)).or_default().push(n);
        };
        match &plan.graph[n].op {
            Op::Copy(c) => {
                if let CopySource::Context { selected, sources: patterns } = &c.source {
                    let mut root = None;
                    for item in selected.iter().flatten() {
                        root.get_or_insert_with(|| item.root.clone());
                        for (_, meta) in &item.entries {
                            add(&item.root, &meta.rel);
                        }
                    }
                    if let Some(root) = root {
                        sources.push((
                            n,
                            Sources {
                                root,
                                patterns: patterns.iter().map(|p| Pattern::new(p)).collect(),
                            },
                        ));
                    }
                }
            }
            Op::Run(r) => {
                for m in &r.mounts {
                    let PlannedMount::BindContext { file, named, source, folder, .. } = m else {
                        continue;
                    };
                    let root = match (folder, named) {
                        (Some(f), _) => f.root.clone(),
                        (None, Some(name)) => {
                            plan.named_contexts.get(name).cloned().unwrap_or_default()
                        }
                        (None, None) => plan.context_dirs[*file].clone(),
                    };
                    let root = world.canonical(&root);
                    let rel = crate::paths::normalize(source).unwrap_or_default();
                    add(&root, &rel);
                    for (_, meta) in folder.iter().flat_map(|f| &f.entries) {
                        add(&root, &meta.rel);
                    }
                    sources.push((n, Sources { root, patterns: vec![Pattern::new(&rel)] }));
                }
            }
            _ => {}
        }
    }
    (by_path, sources)
}

/// A `copy` source (relative to the context root, maybe a glob), which selects a path itself
/// or a folder above it.
struct Pattern {
    text: String,
    /// `None` when the source is not a valid glob: then only the path itself matches.
    glob: Option<globset::GlobMatcher>,
}

impl Pattern {
    /// Compiles a source once: a deleted folder can bring thousands of paths to match.
    fn new(text: &str) -> Self {
        let glob = globset::GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .ok()
            .map(|g| g.compile_matcher());
        Self { text: text.to_owned(), glob }
    }

    fn selects(&self, rel: &str) -> bool {
        if self.text.is_empty() {
            return true;
        }
        let mut cur = Some(rel);
        while let Some(p) = cur {
            if p == self.text || self.glob.as_ref().is_some_and(|g| g.is_match(p)) {
                return true;
            }
            cur = p.rsplit_once('/').map(|(parent, _)| parent);
        }
        false
    }
}

/// The build files among the changed paths: file index and the name to report. Looked up once,
/// not per image: a deleted folder can bring thousands of paths.
fn changed_build_files(changes: &Changes<'_>) -> Vec<(usize, String)> {
    let index: HashMap<&Path, usize> =
        changes.build_files.iter().enumerate().map(|(i, b)| (b.as_path(), i)).collect();
    changes
        .paths
        .iter()
        .filter_map(|(abs, shown)| index.get(abs.as_path()).map(|&f| (f, shown.clone())))
        .collect()
}

/// The changed build files that reach `image`.
fn build_file_reasons(
    plan: &Plan,
    image: &super::ImageTarget,
    changes: &Changes<'_>,
    changed: &[(usize, String)],
) -> BTreeSet<String> {
    let mut files: BTreeSet<usize> =
        plan.ancestors(image.node).into_iter().map(|n| plan.graph[n].file).collect();
    files.insert(image.file);
    let mut out = BTreeSet::new();
    for (f, shown) in changed {
        let reaches = if let Some(edited) = changes.template_edits.get(f) {
            plan.ancestors(image.node).into_iter().any(|n| {
                let node = &plan.graph[n];
                node.file == *f && edited.iter().any(|t| inside(node.span, *t))
            })
        } else {
            let whole = *f == 0 || changes.includes_others.get(*f).copied().unwrap_or(true);
            whole || files.contains(f)
        };
        if reaches {
            out.insert(shown.clone());
        }
    }
    out
}

fn slice(text: &str, s: miette::SourceSpan) -> Option<&str> {
    text.get(s.offset()..s.offset() + s.len())
}

fn inside(span: miette::SourceSpan, outer: miette::SourceSpan) -> bool {
    outer.offset() <= span.offset() && span.offset() + span.len() <= outer.offset() + outer.len()
}

/// When the build file texts `old` and `new` differ only inside `template` nodes: the spans in
/// `new` of the templates that changed or were added. `None` when anything else differs (or
/// either text does not parse): the file then counts as changed as a whole.
pub(crate) fn changed_templates(old: &str, new: &str) -> Option<Vec<miette::SourceSpan>> {
    let templates = |text: &str| -> Option<(BTreeMap<String, miette::SourceSpan>, String)> {
        let (Some(ast), diags) = crate::syntax::parse(text) else { return None };
        if diags.iter().any(crate::diag::Diagnostic::is_error) {
            return None;
        }
        let spans: BTreeMap<String, miette::SourceSpan> =
            ast.templates.iter().map(|t| (t.name.value.clone(), t.span)).collect();
        let mut rest = String::new();
        let mut at = 0;
        let mut sorted: Vec<_> = spans.values().copied().collect();
        sorted.sort_by_key(miette::SourceSpan::offset);
        for span in sorted {
            rest.push_str(text.get(at..span.offset())?);
            at = span.offset() + span.len();
        }
        rest.push_str(text.get(at..)?);
        Some((spans, rest))
    };
    let (old_t, old_rest) = templates(old)?;
    let (new_t, new_rest) = templates(new)?;
    if old_rest != new_rest {
        return None;
    }
    let changed = new_t
        .iter()
        .filter(|(name, span)| old_t.get(*name).and_then(|o| slice(old, *o)) != slice(new, **span))
        .map(|(_, span)| *span)
        .collect();
    Some(changed)
}

#[cfg(test)]
mod tests {
    use super::{Pattern, changed_templates};

    #[test]
    fn only_the_edited_templates_count_when_nothing_else_changed() {
        let old = "stack version=1\ntemplate a {\n    expose 1\n}\ntemplate b {\n    expose 2\n}\n";
        let new = old.replace("expose 2", "expose 3");
        let spans = changed_templates(old, &new).unwrap();
        assert_eq!(spans.len(), 1);
        assert!(new[spans[0].offset()..].starts_with("template b"));
        assert_eq!(changed_templates(old, old).unwrap().len(), 0);
        let elsewhere = format!("{old}arg X\n");
        assert!(changed_templates(old, &elsewhere).is_none(), "a change outside templates");
        assert!(changed_templates(old, "stack version=1\ntemplate {").is_none());
    }

    fn pattern_selects(pattern: &str, rel: &str) -> bool {
        Pattern::new(pattern).selects(rel)
    }

    #[test]
    fn sources_select_themselves_what_is_below_and_glob_matches() {
        assert!(pattern_selects("svc/a", "svc/a/main.go"));
        assert!(pattern_selects("svc/a", "svc/a"));
        assert!(!pattern_selects("svc/a", "svc/ab/main.go"));
        assert!(pattern_selects("lib/*.txt", "lib/x.txt"));
        assert!(!pattern_selects("lib/*.txt", "lib/x.md"));
        assert!(pattern_selects("*", "anything/below"));
        assert!(pattern_selects("", "any/file"));
    }
}
