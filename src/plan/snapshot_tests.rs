//! The planner on its own: every `tests/data/plan/*.kdl` is planned against a made-up world
//! (images and context files invented from their names, no IO) and its DAG, or every
//! diagnostic it gets, is pinned as a snapshot in `src/plan/snapshots/`. A change to keys, args
//! scoping, stage pruning, platform branches or a message shows up as a snapshot diff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::context::FileMeta;
use crate::oci::image::{Descriptor, LayerRef};

/// Images and context files made up from their names. Names containing `missing` do not
/// exist, `unreadable` ones cannot be read, `nospace` ones meet a full disk; `unreachable`
/// registries do not answer; a source ending in `/` is a folder.
struct World;

impl Resolver for World {
    fn image(
        &self,
        reference: &str,
        _file: usize,
        platform: &Platform,
    ) -> Result<Arc<LoadedImage>, BaseError> {
        if reference.contains("missing") {
            return Err(format!("`{reference}` does not exist").into());
        }
        if reference.contains("nospace") {
            let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(BaseError::caused_by(full, false));
        }
        if reference.contains("unreachable") {
            let message = format!("`{reference}`: connection refused");
            return Err(BaseError::caused_by(std::io::Error::other(message), true));
        }
        let manifest = OciDigest::of(format!("{reference} {platform}").as_bytes());
        let mut config = ImageConfig::scratch_for(platform);
        config.set_env("PATH", "/usr/bin:/bin");
        let blob = OciDigest::of(format!("layer of {reference} {platform}").as_bytes());
        let layer = LayerRef {
            diff_id: blob.clone(),
            blob: Descriptor::new("application/vnd.oci.image.layer.v1.tar+gzip", blob, 100),
        };
        Ok(Arc::new(LoadedImage { manifest_digest: manifest, config, layers: vec![layer] }))
    }

    fn select(
        &self,
        _file: usize,
        source: &str,
        _excludes: &[String],
    ) -> Result<Vec<Selected>, SelectError> {
        let source_path = source.to_owned();
        match source {
            s if s.contains("missing") => {
                return Err(SelectError::NotFound { source_path, excluded: false });
            }
            s if s.contains("excluded") => {
                return Err(SelectError::NotFound { source_path, excluded: true });
            }
            s if s.starts_with("stack-out") => {
                let path = "stack-out".to_owned();
                return Err(SelectError::Reserved { source_path, what: "output", path });
            }
            s if s.contains("loop") => return Err(SelectError::SymlinkLoop { source_path }),
            s if s.contains("unreadable") => {
                let path = PathBuf::from("/ctx").join(s);
                let source = std::io::Error::from_raw_os_error(libc::EACCES);
                return Err(SelectError::Context(crate::context::ContextError::Io {
                    path,
                    source,
                }));
            }
            s if s.contains("socket") => {
                let path = PathBuf::from("/ctx").join(s);
                return Err(SelectError::Context(crate::context::ContextError::Socket { path }));
            }
            _ => {}
        }
        if source.starts_with("..") {
            return Err(SelectError::Outside { source_path: source.to_owned() });
        }
        let name = source.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
        let file = |rel: &str| FileMeta {
            kind: FileKind::File,
            mode: 0o644,
            size: rel.len() as u64,
            hash: Some(Digest::of(rel.as_bytes())),
            link: None,
            abs: PathBuf::from("/ctx").join(rel),
            rel: rel.to_owned(),
            stamp: None,
        };
        let entries = if source.ends_with('/') {
            let dir = FileMeta { kind: FileKind::Dir, mode: 0o755, hash: None, ..file(source) };
            vec![(String::new(), dir), ("a.txt".to_owned(), file(&format!("{source}a.txt")))]
        } else {
            vec![(String::new(), file(source))]
        };
        let is_dir = source.ends_with('/');
        Ok(vec![Selected { name, root: PathBuf::from("/ctx"), is_dir, entries }])
    }

    fn select_named(
        &self,
        _name: &str,
        source: &str,
        excludes: &[String],
    ) -> Result<Vec<Selected>, SelectError> {
        self.select(0, source, excludes)
    }

    fn remote(&self, url: &str, _checksum: Option<&OciDigest>) -> Result<RemoteFile, BaseError> {
        if url.contains("missing") {
            return Err(format!("`{url}` answered 404").into());
        }
        if url.contains("unreachable") {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(BaseError::caused_by(refused, true));
        }
        if url.contains("nospace") {
            let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(BaseError::caused_by(full, false));
        }
        let digest = OciDigest::of(url.as_bytes());
        Ok(RemoteFile { digest, size: 10, path: PathBuf::from("/store/blob") })
    }
}

/// The plan as text: images, then every node in a stable order with its key and what it is.
fn describe(plan: &Plan) -> String {
    let mut out = String::new();
    let short = |d: &Digest| d.to_hex()[..12].to_owned();
    let order = petgraph::algo::toposort(&plan.graph, None).expect("acyclic");
    let name = |n: NodeIndex| {
        let node = &plan.graph[n];
        format!("{} {}", short(&node.key), node.label)
    };
    for image in &plan.images {
        let _ = writeln!(out, "image {} {} <- {}", image.name, image.platform, name(image.node));
        for tag in &image.tags {
            let _ = writeln!(out, "  tag {tag}");
        }
        let _ = writeln!(
            out,
            "  config {}",
            String::from_utf8_lossy(&crate::json::to_canonical(&image.config.0))
        );
    }
    for n in order {
        let node = &plan.graph[n];
        let _ = writeln!(out, "node {} [{}] {}", name(n), node.stage, node.identity);
        if let Some(p) = node.parent {
            let _ = writeln!(out, "  parent {}", name(p));
        }
        let _ = writeln!(out, "  op {}", op_summary(&node.op));
        for (k, v) in &node.inputs {
            let _ = writeln!(out, "  input {k} = {v}");
        }
    }
    out
}

fn op_summary(op: &Op) -> String {
    match op {
        Op::Scratch => "scratch".into(),
        Op::Base { reference, image } => format!("base {reference} {}", image.manifest_digest),
        Op::Copy(c) => format!("copy to {} (dir {}, add {})", c.dest, c.dest_is_dir, c.add),
        Op::File(f) => format!("file {} mode {:o}", f.path, f.chmod),
        Op::Workdir { path, user } => format!("workdir {path} user `{user}`"),
        Op::Run(r) => format!(
            "run {:?} as `{}` in {} on {}, {} mount(s)",
            r.argv,
            r.user,
            r.cwd,
            r.platform,
            r.mounts.len()
        ),
        Op::Config => "config".into(),
    }
}

/// Every diagnostic as `severity code line:col message (label) help`.
fn describe_errors(files: &[FileInput], diags: &[FileDiagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let f = &files[d.file];
        let (line, col) = f.source.line_col(d.diagnostic.span.offset());
        let g = &d.diagnostic;
        let _ = writeln!(
            out,
            "{:?} stack::{} {line}:{col} {} ({})",
            g.severity, g.code, g.message, g.label
        );
        if let Some(h) = &g.help {
            let _ = writeln!(out, "  help: {h}");
        }
    }
    out
}

fn plan_fixture(path: &Path) -> String {
    let text = fs_err::read_to_string(path).expect("fixture");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("fixture").to_owned();
    let files = fixture_files(&name, &text);
    match plan(&files, &request_of(&files[0].source.text), &World) {
        Ok(p) => describe(&p),
        Err(diags) => describe_errors(&files, &diags),
    }
}

/// A fixture's build files: the text up to the first `// file: NAME` line is the main file,
/// and each such line starts a file the main file includes by that name (with the args its
/// `include` gives).
fn fixture_files(name: &str, text: &str) -> Vec<FileInput> {
    let mut parts = vec![(name.to_owned(), String::new())];
    for line in text.split_inclusive('\n') {
        match line.strip_prefix("// file: ") {
            Some(file) => parts.push((file.trim().to_owned(), String::new())),
            None => parts.last_mut().expect("the main file").1.push_str(line),
        }
    }
    let mut files: Vec<FileInput> = Vec::new();
    for (name, text) in parts {
        let (ast, diags) = crate::syntax::parse(&text);
        let ast = ast.unwrap_or_else(|| panic!("{name} does not parse: {diags:?}"));
        let included = files.first().map(|main| {
            let include =
                main.ast.includes.iter().find(|i| i.paths.iter().any(|p| p.value == name));
            Included { by: 0, args: include.map(|i| i.args.clone()).unwrap_or_default() }
        });
        files.push(FileInput {
            source: crate::diag::SourceFile::new(name, text),
            ast,
            context_dir: PathBuf::from("/ctx"),
            origin: None,
            included,
        });
    }
    files
}

/// The request a fixture's first line asks for: `// request: --target NAME --arg K=V
/// --platform P --build-context NAME=DIR|docker-image://REF` (each repeatable).
fn request_of(text: &str) -> PlanRequest {
    let mut request = PlanRequest::default();
    let Some(line) = text.lines().next().and_then(|l| l.strip_prefix("// request:")) else {
        return request;
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    for pair in words.chunks(2) {
        match pair {
            ["--target", t] => request.targets.push((*t).to_owned()),
            ["--arg", kv] => {
                let (k, v) = kv.split_once('=').expect("K=V");
                request.args.insert(k.to_owned(), v.to_owned());
            }
            ["--platform", p] => request.platforms.push(Platform::parse(p).expect("platform")),
            ["--build-context", kv] => {
                let (k, v) = kv.split_once('=').expect("NAME=VALUE");
                let c = match v.strip_prefix("docker-image://") {
                    Some(image) => NamedContext::Image(image.to_owned()),
                    None => NamedContext::Dir(PathBuf::from(v)),
                };
                request.contexts.insert(k.to_owned(), c);
            }
            other => panic!("unknown request words {other:?}"),
        }
    }
    request
}

#[test]
fn fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/plan");
    let mut paths: Vec<PathBuf> = fs_err::read_dir(&dir)
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 6, "fixtures are missing");
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots");
    settings.bind(|| {
        for path in paths {
            let name = path.file_stem().and_then(|s| s.to_str()).expect("utf-8").to_owned();
            insta::assert_snapshot!(name.clone(), plan_fixture(&path), &format!("{name}.kdl"));
        }
    });
}
