//! Reading build files (with includes, or a Dockerfile imported on the fly) and the resolver
//! that gives the planner base images and context files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::args::FileArgs;
use super::{Failure, fail, output};
use crate::context::{Context, SelectError, Selected};
use crate::diag::{Diagnostic, Report, SourceFile};
use crate::oci::image::Platform;
use crate::oci::local::{self, LoadedImage, LocalRef};
use crate::plan::{FileDiagnostic, FileInput, Resolver};
use crate::store::Store;

/// Where the build file is, what it is, and the context a positional folder names.
pub(super) struct Located {
    pub path: PathBuf,
    pub dockerfile: bool,
    /// `stack build -f FILE DIR`: DIR, as `docker build -f FILE DIR` takes it.
    pub context: Option<PathBuf>,
}

/// The names stack looks for in a folder, in order.
const BUILD_FILES: [&str; 3] = ["stack.kdl", "Dockerfile", "Containerfile"];

/// Finds the build file the way `docker build` habits expect: `-f FILE` names it (and a
/// positional argument is then the context folder); a positional folder holds `stack.kdl`, else
/// a `Dockerfile`; a positional file is the build file; nothing means the current folder.
pub(super) fn locate(args: &FileArgs) -> Result<Located, Failure> {
    let (path, context) = match (&args.dockerfile, &args.file) {
        (Some(f), positional) => {
            if let Some(ctx) = positional
                && !ctx.is_dir()
            {
                return Err(fail(
                    format!("`{}` is not a folder", ctx.display()),
                    Some(
                        "with `-f FILE`, the positional argument is the build context folder, as in `docker build -f FILE DIR`",
                    ),
                ));
            }
            (f.clone(), positional.clone())
        }
        (None, Some(p)) if p.is_dir() => (find_in(p)?, None),
        (None, Some(p)) => (p.clone(), None),
        (None, None) => (find_in(Path::new("."))?, None),
    };
    let dockerfile = is_dockerfile(&path);
    Ok(Located { path, dockerfile, context })
}

/// The build file of a folder: the first of `BUILD_FILES` it holds.
fn find_in(dir: &Path) -> Result<PathBuf, Failure> {
    let found = BUILD_FILES.iter().map(|n| dir.join(n)).find(|p| p.is_file());
    found.map(|p| p.strip_prefix("./").map(Path::to_path_buf).unwrap_or(p)).ok_or_else(|| {
        fail(
            format!("`{}` holds no `stack.kdl` and no `Dockerfile`", dir.display()),
            Some("run stack in a folder with a `stack.kdl` (or a `Dockerfile`), or name the file: `stack build path/to/stack.kdl` or `-f FILE`"),
        )
    })
}

/// Whether a build file is a Dockerfile: by its name (`*.kdl` never is; `Dockerfile`,
/// `Containerfile`, `*.dockerfile`, `Dockerfile.*` are), else by its content (a build file
/// starts with `stack version=…`).
fn is_dockerfile(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("kdl")) {
        return false;
    }
    for stem in ["dockerfile", "containerfile"] {
        if name == stem
            || name.ends_with(&format!(".{stem}"))
            || name.starts_with(&format!("{stem}."))
        {
            return true;
        }
    }
    let Ok(text) = fs_err::read_to_string(path) else { return false };
    !looks_like_kdl(&text)
}

/// Whether text reads as a build file: a line that starts with the `stack` node.
fn looks_like_kdl(text: &str) -> bool {
    text.lines().map(str::trim_start).any(|l| {
        l.strip_prefix("stack").is_some_and(|rest| rest.trim_start().starts_with("version"))
    })
}

/// The name of an image imported from a Dockerfile: the repository of the first `-t` tag (its
/// last path component), else the context folder's name, else `app`; never a name the user did
/// not choose that could overwrite a real `app` image on `docker load`.
fn imported_name(args: &FileArgs, context: &Path) -> String {
    let from_tag = args.tags.first().map(|t| {
        let repo = t.split('@').next().unwrap_or(t);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        last.split(':').next().unwrap_or(last).to_owned()
    });
    let from_folder = || {
        fs_err::canonicalize(context)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    let clean = |n: String| -> Option<String> {
        let n: String = n
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
            .collect();
        let n = n.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned();
        (!n.is_empty()).then_some(n)
    };
    from_tag
        .and_then(clean)
        .or_else(|| from_folder().and_then(clean))
        .unwrap_or_else(|| "app".to_owned())
}

/// Reads the main build file and everything it includes; prints diagnostics on failure.
pub(super) fn load_files(args: &FileArgs) -> Result<Vec<FileInput>, Failure> {
    let Located { path, dockerfile, context } = locate(args)?;
    let text = fs_err::read_to_string(&path).map_err(|e| Failure::Other(Box::new(e), None))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let context = args.context.clone().or(context);
    let fixed_context = context.is_some();
    let context_dir = context.unwrap_or_else(|| dir.clone());
    let mut origin = None;
    let (name, text) = if dockerfile {
        // `--target STAGE` exports that stage under its own name, as `docker build --target`
        // does; without one the last stage is named by `imported_name`.
        let opts = match args.targets.as_slice() {
            [t] => crate::dockerfile::ImportOptions {
                target: Some(t.clone()),
                image_name: Some(t.clone()),
                ..Default::default()
            },
            _ => crate::dockerfile::ImportOptions {
                image_name: Some(imported_name(args, &context_dir)),
                ..Default::default()
            },
        };
        let src = SourceFile::new(path.display().to_string(), text.clone());
        match crate::dockerfile::import(&text, &opts) {
            Ok(imported) => {
                if !imported.warnings.is_empty() {
                    output::print_report(&Report::new(src.clone(), imported.warnings));
                }
                origin = Some(std::sync::Arc::new((src, imported.origins)));
                (format!("{} (imported)", path.display()), imported.kdl)
            }
            Err(diags) => {
                output::print_report(&Report::new(src, diags));
                return Err(Failure::UserFiles);
            }
        }
    } else {
        (path.display().to_string(), text)
    };
    let mut loader = Loader { fixed_context, origin, ..Loader::default() };
    let ok = loader.load(&SourceFile::new(name, text), &path, &dir, &context_dir, None);
    if !ok {
        loader.report_plan_problems(args);
        return Err(Failure::UserFiles);
    }
    Ok(loader.files)
}

/// Reads a build file and its includes.
#[derive(Default)]
struct Loader {
    fixed_context: bool,
    files: Vec<FileInput>,
    seen: Vec<PathBuf>,
    /// Every file was read and parsed to a syntax tree and every include found: the errors
    /// are in single nodes, which the parser dropped.
    whole: bool,
    /// Where the parse errors are, by index in `files`.
    error_spans: Vec<(usize, miette::SourceSpan)>,
    /// The Dockerfile the main build file was imported from, if it was.
    origin: Option<std::sync::Arc<(SourceFile, crate::dockerfile::SpanMap)>>,
}

impl Loader {
    /// Loads one file and, recursively, its includes; false when anything was wrong (the
    /// diagnostics are printed).
    fn load(
        &mut self,
        src: &SourceFile,
        path: &Path,
        dir: &Path,
        context_dir: &Path,
        included: Option<crate::plan::Included>,
    ) -> bool {
        if self.seen.is_empty() {
            self.whole = true;
        }
        self.seen.push(fs_err::canonicalize(path).unwrap_or_else(|_| path.to_owned()));
        let (ast, diags) = crate::syntax::parse(&src.text);
        let has_errors = diags.iter().any(Diagnostic::is_error);
        let index = self.files.len();
        self.error_spans.extend(diags.iter().filter(|d| d.is_error()).map(|d| (index, d.span)));
        if !diags.is_empty() {
            output::print_report(&Report::new(src.clone(), diags));
        }
        let Some(ast) = ast else {
            self.whole = false;
            return false;
        };
        let includes = ast.includes.clone();
        self.files.push(FileInput {
            source: src.clone(),
            ast,
            context_dir: context_dir.to_owned(),
            origin: if index == 0 { self.origin.clone() } else { None },
            included,
        });
        let mut ok = !has_errors;
        for (inc, args) in includes.iter().flat_map(|i| i.paths.iter().map(move |p| (p, &i.args))) {
            let pattern = dir.join(&inc.value);
            let matches: Vec<PathBuf> = glob_paths(&pattern);
            if matches.is_empty() {
                let d = Diagnostic::error(
                    "include-not-found",
                    format!("`{}` matches no file", inc.value),
                    inc.span,
                    "nothing to include",
                )
                .with_help("include paths are relative to the including file's folder");
                output::print_report(&Report::new(src.clone(), vec![d]));
                self.whole = false;
                ok = false;
                continue;
            }
            for m in matches {
                let canon = fs_err::canonicalize(&m).unwrap_or_else(|_| m.clone());
                if self.seen.contains(&canon) {
                    continue;
                }
                let text = match fs_err::read_to_string(&m) {
                    Ok(t) => t,
                    Err(e) => {
                        output::print_error(&e, None, output::stderr_color());
                        self.whole = false;
                        ok = false;
                        continue;
                    }
                };
                let sub_dir = m.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
                // An included file's paths resolve from its own folder.
                let ctx = if self.fixed_context { context_dir.to_owned() } else { sub_dir.clone() };
                let by = Some(crate::plan::Included { by: index, args: args.clone() });
                let src = SourceFile::new(m.display().to_string(), text);
                ok &= self.load(&src, &m, &sub_dir, &ctx, by);
            }
        }
        ok
    }

    /// Whether every file's parse errors leave it whole enough to plan.
    fn errors_inside_stages(&self) -> bool {
        self.files.iter().enumerate().all(|(i, f)| {
            let errors: Vec<miette::SourceSpan> =
                self.error_spans.iter().filter(|(fi, _)| *fi == i).map(|(_, e)| *e).collect();
            crate::syntax::errors_are_contained(&f.ast, &errors)
        })
    }

    /// After parse errors in single nodes, plans what is left so that one run reports every
    /// independent problem (a misspelt node does not hide a bad port or an unknown stage
    /// elsewhere). Problems where the parser already reported one are left out; nothing but
    /// the planner's diagnostics comes of it.
    fn report_plan_problems(&self, args: &FileArgs) {
        if !self.whole || self.files.is_empty() || !self.errors_inside_stages() {
            return;
        }
        let Ok(store) = open_store(args) else { return };
        let Ok(resolver) = CliResolver::new(&self.files, &store, args) else { return };
        let request = super::request::plan_request(args);
        let Err(diags) = crate::plan::plan(&self.files, &request, &resolver) else { return };
        let overlaps = |file: usize, span: miette::SourceSpan| {
            self.error_spans.iter().any(|(f, e)| {
                *f == file
                    && span.offset() < e.offset() + e.len().max(1)
                    && e.offset() < span.offset() + span.len().max(1)
            })
        };
        let fresh: Vec<FileDiagnostic> =
            diags.into_iter().filter(|d| !overlaps(d.file, d.diagnostic.span)).collect();
        print_plan_errors(&self.files, fresh);
    }
}

/// Expands a path that may hold `*`/`?` in its components (sorted results).
fn glob_paths(pattern: &Path) -> Vec<PathBuf> {
    let s = pattern.to_string_lossy();
    if !s.contains(['*', '?', '[']) {
        return if pattern.exists() { vec![pattern.to_owned()] } else { Vec::new() };
    }
    let Ok(glob) = globset::GlobBuilder::new(&s).literal_separator(true).build() else {
        return Vec::new();
    };
    let m = glob.compile_matcher();
    let static_part: PathBuf = pattern
        .components()
        .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
        .collect();
    let depth = pattern.components().count() - static_part.components().count();
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(&static_part)
        .min_depth(1)
        .max_depth(depth)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && m.is_match(e.path()))
        .map(walkdir::DirEntry::into_path)
        .collect();
    out.sort();
    out
}

/// Plans the build `args` asks for; prints the diagnostics when planning fails, and saves what
/// the contexts' stat caches learned when it succeeds.
pub(super) fn plan_files(
    files: &[FileInput],
    resolver: &CliResolver<'_>,
    args: &FileArgs,
) -> Result<crate::plan::Plan, Failure> {
    // `--build-arg NAME` without a value takes it from the environment, and an unset one is
    // dropped (the arg keeps its default), as `docker build` does.
    warn_undeclared_args(files, args.args.iter().map(|(k, _)| k.as_str()));
    let request = super::request::plan_request(args);
    let planned = crate::plan::plan(files, &request, resolver);
    // Ctrl-C or SIGTERM while planning: the errors it caused are not the user's mistakes.
    if crate::exec::cancel::interrupted() {
        output::note("interrupted: stopped while planning; nothing was built");
        return Err(Failure::Interrupted);
    }
    let p = planned.map_err(|d| {
        let errors: Vec<&str> = d
            .iter()
            .filter(|d| d.diagnostic.severity == crate::diag::Severity::Error)
            .map(|d| d.diagnostic.code)
            .collect();
        print_plan_errors(files, d);
        // Only the machine or unreachable servers: the build file may well be right.
        let not_the_file = ["machine", "base-unreachable", "remote-unreachable"];
        if !errors.iter().all(|c| not_the_file.contains(c)) {
            Failure::UserFiles
        } else if errors.contains(&"machine") {
            Failure::Machine
        } else {
            Failure::Registry
        }
    })?;
    resolver.save_stat_caches();
    Ok(p)
}

/// Warns about `--arg NAME` for a NAME no file declares (a typo, usually), as `BuildKit` does.
fn warn_undeclared_args<'a>(files: &[FileInput], given: impl Iterator<Item = &'a str>) {
    // The platform args the planner predefines count as declared.
    let host = crate::oci::image::Platform::host();
    let predefined: Vec<String> =
        crate::plan::predefined_args(&host, &host).into_iter().map(|(name, _)| name).collect();
    let mut declared: Vec<&str> = predefined.iter().map(String::as_str).collect();
    for f in files {
        declared.extend(f.ast.args.iter().map(|a| a.name.value.as_str()));
        for t in &f.ast.targets {
            declared.extend(t.steps.iter().filter_map(|s| match &s.kind {
                crate::syntax::ast::StepKind::Arg(a) => Some(a.name.value.as_str()),
                _ => None,
            }));
        }
    }
    let mut warned: Vec<&str> = Vec::new();
    for name in given {
        if declared.contains(&name) || warned.contains(&name) {
            continue;
        }
        warned.push(name);
        let hint = match crate::diag::did_you_mean(name, declared.iter().copied()) {
            Some(s) => format!(" (did you mean `{s}`?)"),
            None => String::new(),
        };
        output::note(format!(
            "warning: `--arg {name}` sets an arg the build file does not declare{hint}; it is unused"
        ));
    }
}

/// Prints planner diagnostics, each in the file it points into.
pub(super) fn print_plan_errors(files: &[FileInput], diags: Vec<FileDiagnostic>) {
    let mut by_file: Vec<Vec<Diagnostic>> = vec![Vec::new(); files.len()];
    for d in diags {
        by_file[d.file].push(d.diagnostic);
    }
    for (f, ds) in files.iter().zip(by_file) {
        if !ds.is_empty() {
            output::print_report(&f.report(ds));
        }
    }
}

/// How `stack.lock` is used while resolving registry references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LockMode {
    /// Use pinned digests; pin new references.
    Use,
    /// Resolve every reference again (`stack lock`).
    Refresh,
    /// Use pinned digests; a reference that is not pinned is an error (`--locked`).
    Locked,
}

/// Resolves images and context files for the planner.
pub(super) struct CliResolver<'a> {
    pub files: &'a [FileInput],
    pub store: &'a Store,
    contexts: Mutex<HashMap<usize, Arc<Context>>>,
    /// The folders of `--build-context NAME=DIR`, opened when first read.
    named_dirs: HashMap<String, PathBuf>,
    named_contexts: Mutex<HashMap<String, Arc<Context>>>,
    images: Mutex<HashMap<String, Arc<LoadedImage>>>,
    registry: crate::registry::Client,
    lock: Mutex<crate::lockfile::Lock>,
    /// The lock as read, for `stack lock` to report what it changed.
    previous_lock: crate::lockfile::Lock,
    lock_path: PathBuf,
    lock_mode: LockMode,
    lock_changed: std::sync::atomic::AtomicBool,
    /// stack's own paths, kept out of every context (see `Context::reserve`).
    reserved: Vec<(PathBuf, &'static str)>,
}

impl<'a> CliResolver<'a> {
    pub(super) fn new(
        files: &'a [FileInput],
        store: &'a Store,
        args: &FileArgs,
    ) -> Result<Self, Failure> {
        let mode = if args.locked { LockMode::Locked } else { LockMode::Use };
        Self::with_mode(files, store, args, mode)
    }

    pub(super) fn with_mode(
        files: &'a [FileInput],
        store: &'a Store,
        args: &FileArgs,
        mode: LockMode,
    ) -> Result<Self, Failure> {
        let lock_path = lock_path(args);
        let lock = match fs_err::read_to_string(&lock_path) {
            Ok(text) => crate::lockfile::Lock::parse(&text).map_err(|e| {
                fail(e.to_string(), Some("delete it and run `stack lock` to write a new one"))
            })?,
            Err(_) => crate::lockfile::Lock::default(),
        };
        let previous_lock = lock.clone();
        // `stack lock` pins afresh what the build files use: entries nothing uses are dropped,
        // except those of platforms this build does not plan (pinned by another build).
        let lock = if mode == LockMode::Refresh {
            let planned = planned_platforms(files, args);
            crate::lockfile::Lock {
                entries: lock
                    .entries
                    .into_iter()
                    .filter(|((_, p), _)| !planned.contains(p))
                    .collect(),
                urls: std::collections::BTreeMap::new(),
            }
        } else {
            lock
        };
        let opts = crate::registry::ClientOptions {
            insecure_registries: args.insecure_registries.clone(),
            cancelled: crate::exec::cancel::interrupted,
            ..Default::default()
        };
        Ok(Self {
            files,
            store,
            contexts: Mutex::new(HashMap::new()),
            named_dirs: args
                .build_contexts
                .iter()
                .filter_map(|(name, c)| match c {
                    crate::plan::NamedContext::Dir(d) => Some((name.clone(), d.clone())),
                    crate::plan::NamedContext::Image(_) => None,
                })
                .collect(),
            named_contexts: Mutex::new(HashMap::new()),
            images: Mutex::new(HashMap::new()),
            registry: crate::registry::Client::new(opts),
            lock: Mutex::new(lock),
            previous_lock,
            lock_path,
            lock_mode: mode,
            lock_changed: std::sync::atomic::AtomicBool::new(false),
            // The default output folder is reserved even when `--out` points elsewhere: what a
            // folder of that name holds is an earlier build's output, not a source.
            reserved: vec![
                (PathBuf::from(DEFAULT_OUT), "output"),
                (store.root().to_owned(), "store"),
            ],
        })
    }

    /// Keeps this build's output (a layout folder or an archive) out of every context.
    pub(super) fn reserve_output(&mut self, out: &Path) {
        self.reserved.push((out.to_owned(), "output"));
    }

    /// Writes `stack.lock` when resolving pinned something new (or on `stack lock`).
    pub(super) fn save_lock(&self) -> Result<(), Failure> {
        let changed = self.lock_changed.load(std::sync::atomic::Ordering::SeqCst);
        if changed || self.lock_mode == LockMode::Refresh {
            let lock = self.lock.lock().expect("no panics while locked");
            if lock.is_empty() && !self.lock_path.exists() {
                return Ok(());
            }
            let tmp = self.lock_path.with_extension("lock.tmp");
            fs_err::write(&tmp, lock.render())?;
            fs_err::rename(&tmp, &self.lock_path)?;
        }
        Ok(())
    }

    /// What the lock holds now against what was read: (pinned, added, changed, dropped).
    pub(super) fn lock_changes(&self) -> (usize, usize, usize, usize) {
        let now = self.lock.lock().expect("no panics while locked");
        let before = &self.previous_lock;
        let mut added = 0;
        let mut changed = 0;
        for (k, d) in &now.entries {
            match before.entries.get(k) {
                None => added += 1,
                Some(old) if old != d => changed += 1,
                Some(_) => {}
            }
        }
        for (k, d) in &now.urls {
            match before.urls.get(k) {
                None => added += 1,
                Some(old) if old != d => changed += 1,
                Some(_) => {}
            }
        }
        let dropped = before.entries.keys().filter(|k| !now.entries.contains_key(*k)).count()
            + before.urls.keys().filter(|k| !now.urls.contains_key(*k)).count();
        (now.entries.len() + now.urls.len(), added, changed, dropped)
    }

    /// The registry client (for pushes).
    pub(super) fn registry(&self) -> &crate::registry::Client {
        &self.registry
    }

    fn pull(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Arc<LoadedImage>, crate::plan::BaseError> {
        let r = crate::registry::Reference::parse(reference).map_err(|e| {
            format!(
                "`{reference}` is neither a stage of this build nor a valid image reference: {e}"
            )
        })?;
        let name = r.to_string();
        let pinned = if self.lock_mode == LockMode::Refresh {
            None
        } else {
            self.lock
                .lock()
                .expect("no panics while locked")
                .get(&name, &platform.to_string())
                .cloned()
        };
        let target = match (&r.digest, pinned) {
            (None, Some(d)) => r.with_digest(d),
            (None, None) if self.lock_mode == LockMode::Locked => {
                return Err(format!(
                    "`{name}` is not pinned in `{}`, and `--locked` forbids changing it; run `stack lock`",
                    self.lock_path.display()
                )
                .into());
            }
            (Some(_), _) | (None, None) => r.clone(),
        };
        let pulled = match self.registry.pull_image_for(&target, self.store, platform) {
            Ok(pulled) => pulled,
            // The registry has the image, not for this platform: no other place to look.
            Err(e @ crate::registry::RegistryError::NoPlatform { .. }) => {
                return Err(crate::plan::BaseError::caused_by(e, false));
            }
            Err(e) => {
                let err = error_chain(&e);
                let unreachable = registry_failed(&e);
                // A base only the local daemon holds (built or loaded there): used as
                // `docker build` would, unless the lock pins another image.
                let pinned = match (&r.digest, &target.digest) {
                    (Some(d), _) | (None, Some(d)) => Some(d.clone()),
                    (None, None) => None,
                };
                return match self.load_from_daemon(&name, reference, pinned.as_ref(), platform) {
                    Ok(image) => {
                        output::note(format!(
                            "note: `{reference}` comes from the local image store of the daemon \
                             (no registry answered: {err})"
                        ));
                        Ok(image)
                    }
                    Err(_) => Err(crate::plan::BaseError::caused_by(
                        NotInDaemonEither { registry: e },
                        unreachable,
                    )),
                };
            }
        };
        self.pin(&name, platform, pulled.registry_digest.clone())?;
        Ok(Arc::new(pulled.image))
    }

    /// Records `digest` for `name` (and this platform) in `stack.lock`; with `--locked`, a
    /// digest other than the pinned one is an error.
    fn pin(
        &self,
        name: &str,
        platform: &Platform,
        digest: crate::digest::OciDigest,
    ) -> Result<(), String> {
        let mut lock = self.lock.lock().expect("no panics while locked");
        if lock.insert(name, &platform.to_string(), digest) {
            if self.lock_mode == LockMode::Locked {
                return Err(format!(
                    "`{name}` resolved to a digest other than the one pinned in `stack.lock`"
                ));
            }
            self.lock_changed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// Image `name` from the local Docker or podman daemon (`docker save` through its socket),
    /// pinned in `stack.lock` under `lock_name` like a registry image. `required`: the digest
    /// it must have (a pin from `stack.lock` or the reference itself).
    fn load_from_daemon(
        &self,
        lock_name: &str,
        name: &str,
        required: Option<&crate::digest::OciDigest>,
        platform: &Platform,
    ) -> Result<Arc<LoadedImage>, crate::plan::BaseError> {
        use crate::registry::daemon;
        let socket = daemon::find(name).map_err(|e| crate::plan::BaseError::caused_by(e, false))?;
        let tmp = self
            .store
            .temp_dir("daemon-")
            .map_err(|e| crate::plan::BaseError::caused_by(e, false))?;
        let path = tmp.path().join("image.tar");
        daemon::save(&socket, name, &path)
            .map_err(|e| crate::plan::BaseError::caused_by(e, false))?;
        let local = LocalRef::DockerArchive { path, tag: None };
        let image = local::load(&format!("docker-daemon:{name}"), &local, self.store, platform)
            .map_err(|e| crate::plan::BaseError::caused_by(e, false))?;
        if let Some(required) = required
            && *required != image.manifest_digest
        {
            return Err(format!(
                "the daemon's `{name}` is `{}`, not `{required}` as pinned",
                image.manifest_digest
            )
            .into());
        }
        let pinned = if self.lock_mode == LockMode::Refresh {
            None
        } else {
            self.lock
                .lock()
                .expect("no panics while locked")
                .get(lock_name, &platform.to_string())
                .cloned()
        };
        if required.is_none()
            && let Some(pinned) = pinned
            && pinned != image.manifest_digest
            && self.lock_mode == LockMode::Locked
        {
            return Err(format!(
                "the daemon's `{name}` is `{}`, not `{pinned}` as pinned in `stack.lock`",
                image.manifest_digest
            )
            .into());
        }
        self.pin(lock_name, platform, image.manifest_digest.clone())?;
        Ok(Arc::new(image))
    }

    fn context(&self, file: usize) -> Result<Arc<Context>, SelectError> {
        let mut map = self.contexts.lock().expect("no panics while locked");
        if let Some(c) = map.get(&file) {
            return Ok(Arc::clone(c));
        }
        let c = self.open_context(&self.files[file].context_dir)?;
        map.insert(file, Arc::clone(&c));
        Ok(c)
    }

    /// The named context `name` (`--build-context NAME=DIR`), read as the build context is:
    /// its ignore file, stack's reserved paths, files opened beneath its root.
    fn named_context(&self, name: &str) -> Result<Arc<Context>, SelectError> {
        let mut map = self.named_contexts.lock().expect("no panics while locked");
        if let Some(c) = map.get(name) {
            return Ok(Arc::clone(c));
        }
        let dir = self
            .named_dirs
            .get(name)
            .ok_or_else(|| crate::context::ContextError::Missing { path: PathBuf::from(name) })?;
        let c = self.open_context(dir)?;
        map.insert(name.to_owned(), Arc::clone(&c));
        Ok(c)
    }

    fn open_context(&self, dir: &Path) -> Result<Arc<Context>, SelectError> {
        let mut c = Context::open(dir)?;
        for (path, what) in &self.reserved {
            c.reserve(path, what);
        }
        // An earlier build run from the context's folder left its output there.
        let earlier = c.root.join(DEFAULT_OUT);
        if earlier.join("oci-layout").is_file() {
            c.reserve(&earlier, "output");
        }
        c.cancelled = crate::exec::cancel::interrupted;
        c.stat_cache = Arc::new(crate::context::statcache::StatCache::load(
            &self.store.stat_cache_path(&c.root),
        ));
        Ok(Arc::new(c))
    }
}

impl CliResolver<'_> {
    /// Saves what the contexts' stat caches learned (best effort: a lost cache only costs
    /// hashing next time).
    pub(super) fn save_stat_caches(&self) {
        let contexts = self.contexts.lock().expect("no panics while locked");
        let named = self.named_contexts.lock().expect("no panics while locked");
        for c in contexts.values().chain(named.values()) {
            if c.stat_cache.is_dirty() {
                let _ = self.store.save_stat_cache(&c.root, &c.stat_cache.encode());
            }
        }
    }
}

/// Whether a pull failed because of the registry or the network rather than the reference
/// (an unknown image or tag is the build file's problem).
fn registry_failed(e: &crate::registry::RegistryError) -> bool {
    use crate::registry::RegistryError as E;
    match e {
        E::ConnectionRefused { .. }
        | E::HostNotFound { .. }
        | E::Transport { .. }
        | E::Tls { .. }
        | E::CaFile { .. }
        | E::Unauthorized { .. }
        | E::Denied { .. }
        | E::RateLimited { .. }
        | E::Credentials { .. } => true,
        E::Http { status, .. } => *status >= 500,
        _ => false,
    }
}

impl Resolver for CliResolver<'_> {
    fn image(
        &self,
        reference: &str,
        file: usize,
        platform: &Platform,
    ) -> Result<Arc<LoadedImage>, crate::plan::BaseError> {
        let cache_key = format!("{platform} {reference}");
        if let Some(i) = self.images.lock().expect("no panics while locked").get(&cache_key) {
            return Ok(Arc::clone(i));
        }
        let dir = self.files[file].source.name.rsplit_once('/').map_or(".", |(d, _)| d).to_owned();
        let image = match LocalRef::parse(reference, Path::new(&dir)) {
            Some(local) => {
                let loaded = local::load(reference, &local, self.store, platform);
                Arc::new(loaded.map_err(|e| crate::plan::BaseError::caused_by(e, false))?)
            }
            None => match reference.strip_prefix("docker-daemon:") {
                Some(name) => self.load_from_daemon(reference, name, None, platform)?,
                None => self.pull(reference, platform)?,
            },
        };
        check_platform(reference, &image, platform)?;
        self.images.lock().expect("no panics while locked").insert(cache_key, Arc::clone(&image));
        Ok(image)
    }

    fn select(
        &self,
        file: usize,
        source: &str,
        excludes: &[String],
    ) -> Result<Vec<Selected>, SelectError> {
        self.context(file)?.select(source, excludes)
    }

    fn select_named(
        &self,
        name: &str,
        source: &str,
        excludes: &[String],
    ) -> Result<Vec<Selected>, SelectError> {
        self.named_context(name)?.select(source, excludes)
    }

    fn remote(
        &self,
        url: &str,
        checksum: Option<&crate::digest::OciDigest>,
    ) -> Result<crate::plan::RemoteFile, crate::plan::BaseError> {
        use crate::registry::download::{DownloadError, fetch_to_store};
        let file = |(digest, size)| crate::plan::RemoteFile {
            path: self.store.blob_path(&digest),
            digest,
            size,
        };
        // `checksum=` pins the file in the build file itself; stack.lock is not needed then.
        if checksum.is_some() {
            return fetch_to_store(&self.registry, self.store, url, checksum)
                .map(file)
                .map_err(download_failed);
        }
        let pinned = if self.lock_mode == LockMode::Refresh {
            None
        } else {
            self.lock.lock().expect("no panics while locked").get_url(url).cloned()
        };
        let lock = self.lock_path.display();
        if let Some(pinned) = pinned {
            return fetch_to_store(&self.registry, self.store, url, Some(&pinned))
                .map_err(|e| match e {
                    DownloadError::Checksum { .. } => format!(
                        "{e}: the file changed since `{lock}` pinned it; run `stack lock` to take the new content, or pin it with checksum="
                    )
                    .into(),
                    e => download_failed(e),
                })
                .map(file);
        }
        if self.lock_mode == LockMode::Locked {
            return Err(format!(
                "it is not pinned in `{lock}`, and `--locked` forbids changing it; run `stack lock`, or pin it with checksum="
            )
            .into());
        }
        let (digest, size) =
            fetch_to_store(&self.registry, self.store, url, None).map_err(download_failed)?;
        if self.lock.lock().expect("no panics while locked").insert_url(url, digest.clone()) {
            self.lock_changed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(file((digest, size)))
    }
}

pub(crate) use crate::diag::error_chain;

/// A download that failed, as the planner takes it: unreachable when the server could not be
/// reached or failed itself (refused, unknown host, TLS, 5xx), which is no mistake in the
/// build file.
fn download_failed(e: crate::registry::download::DownloadError) -> crate::plan::BaseError {
    use crate::registry::download::DownloadError;
    let unreachable = match &e {
        DownloadError::Request(_) => true,
        DownloadError::Status(status) => *status >= 500,
        _ => false,
    };
    crate::plan::BaseError::caused_by(e, unreachable)
}

/// A base no registry gave, which the local daemon does not have either; the registry's error
/// is kept whole.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}; the local Docker or podman daemon does not have it either (an image on this machine \
     can be named `docker-daemon:NAME`, `oci:DIR:NAME`, `oci-archive:FILE` or \
     `docker-archive:FILE`)",
    error_chain(registry)
)]
struct NotInDaemonEither {
    registry: crate::registry::RegistryError,
}

/// Every platform a build of `files` with `args` plans, as `stack.lock` names them: the
/// command line's, else the files' (top level and images), else this machine's.
fn planned_platforms(files: &[FileInput], args: &FileArgs) -> Vec<String> {
    let given: Vec<String> =
        args.platform_lists.iter().flatten().map(ToString::to_string).collect();
    if !given.is_empty() {
        return given;
    }
    let written = files.iter().flat_map(|f| {
        f.ast.platforms.iter().chain(f.ast.targets.iter().flat_map(|t| t.platforms.iter()))
    });
    let mut found: Vec<String> =
        written.filter_map(|p| Platform::parse(&p.value).ok()).map(|p| p.to_string()).collect();
    let image_without_own =
        files.iter().any(|f| f.ast.targets.iter().any(|t| t.platforms.is_empty()));
    if found.is_empty() || (image_without_own && files.iter().all(|f| f.ast.platforms.is_empty())) {
        found.push(Platform::host().to_string());
    }
    found
}

/// A base whose config says another platform than the one asked for is an error naming what
/// it is: a single-platform image cannot stand in for another platform.
fn check_platform(
    reference: &str,
    image: &LoadedImage,
    want: &Platform,
) -> Result<(), crate::plan::BaseError> {
    let field = |k: &str| image.config.0.get(k).and_then(serde_json::Value::as_str);
    let (Some(os), Some(arch)) = (field("os"), field("architecture")) else { return Ok(()) };
    let text = match field("variant") {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    };
    match Platform::parse(&text) {
        Ok(has) if has.os == want.os && has.architecture == want.architecture => Ok(()),
        Ok(has) => Err(format!("`{reference}` is an image for {has} only, not {want}").into()),
        Err(_) => Ok(()),
    }
}

/// Where `stack build` writes its images unless `--out` says otherwise (relative to the
/// current folder).
pub(super) const DEFAULT_OUT: &str = "stack-out";

/// `stack.lock` sits next to the build file (or Dockerfile).
pub(super) fn lock_path(args: &FileArgs) -> PathBuf {
    let file = locate(args).map_or_else(|_| PathBuf::from("stack.kdl"), |l| l.path);
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("stack.lock"), |d| d.join("stack.lock"))
}

/// Opens the store chosen by `--cache-dir`/`STACK_CACHE_DIR` or the default, holding its lock
/// shared for as long as the store lives (so `stack cache prune` waits for the build).
pub(super) fn open_store(args: &FileArgs) -> Result<Store, Failure> {
    let dir = args.cache_dir.clone().unwrap_or_else(Store::default_dir);
    let hint = Some("set STACK_CACHE_DIR to a writable folder");
    let store = Store::open(&dir).map_err(|e| fail(error_chain(&e), hint))?;
    let lock = if let Some(lock) =
        store.try_lock_shared().map_err(|e| fail(error_chain(&e), hint))?
    {
        lock
    } else {
        output::note(format!("waiting for `stack cache` to release the store `{}`", dir.display()));
        store.lock_shared().map_err(|e| fail(error_chain(&e), hint))?
    };
    // What killed builds left in `tmp/` goes now, not after an hour.
    store.remove_dead_temp();
    Ok(store.holding(lock))
}
