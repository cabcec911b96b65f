//! Bad input is normal input: thousands of mutated build files, Dockerfiles, layer tars and
//! index files go through the parsers and the extractor; none may panic.

use std::path::Path;

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutates bytes: flips, inserts interesting bytes, deletes and duplicates ranges.
/// The generator for one test and how many inputs it tries: fixed in CI, other values with
/// `STACK_FUZZ_SEED=N` and `STACK_FUZZ_SCALE=K` (K times the inputs) for a longer local search.
fn fuzz(test_seed: u64, inputs: usize) -> (Rng, usize) {
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seed = test_seed ^ var("STACK_FUZZ_SEED").unwrap_or(0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let scale = var("STACK_FUZZ_SCALE").unwrap_or(1).max(1);
    (Rng(seed), inputs * usize::try_from(scale).unwrap_or(1))
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"{}\"\\=$#/\n\t\0\xff-.*[]:;";
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            2 if v.len() > 2 => {
                let a = rng.below(v.len());
                let b = (a + rng.below(16)).min(v.len());
                v.drain(a..b);
            }
            _ if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + rng.below(32)).min(v.len());
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    v
}

fn corpus(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).into_iter().flatten() {
        if e.path().extension().is_some_and(|x| x == ext) {
            out.push(std::fs::read(e.path()).unwrap());
        }
    }
    out
}

#[test]
fn mutated_build_files_never_panic() {
    let mut seeds = corpus("tests/data/errors", "kdl");
    seeds.extend(corpus("examples", "kdl"));
    seeds.push(std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap());
    let (mut rng, inputs) = fuzz(0x5eed_1234_abcd_0001, 4000);
    for i in 0..inputs {
        let seed = &seeds[i % seeds.len()];
        let text = String::from_utf8_lossy(&mutate(&mut rng, seed)).into_owned();
        let (_, diags) = stack::api::syntax::parse(&text);
        for d in &diags {
            assert!(d.span.offset() <= text.len(), "a span points past the end");
        }
        let _ = stack::api::diag::Report::new(
            stack::api::diag::SourceFile::new("f", text.clone()),
            diags,
        )
        .render(false);
    }
}

#[test]
fn mutated_dockerfiles_never_panic() {
    let seeds = corpus("tests/data/dockerfile", "Dockerfile");
    assert!(!seeds.is_empty());
    let (mut rng, inputs) = fuzz(0x5eed_1234_abcd_0002, 3000);
    let opts = stack::api::dockerfile::ImportOptions::default();
    for i in 0..inputs {
        let seed = &seeds[i % seeds.len()];
        let text = String::from_utf8_lossy(&mutate(&mut rng, seed)).into_owned();
        if let Ok(imported) = stack::api::dockerfile::import(&text, &opts) {
            // Whatever the importer accepts must be a valid build file.
            let (ast, diags) = stack::api::syntax::parse(&imported.kdl);
            assert!(
                ast.is_some() && diags.iter().all(|d| !d.is_error()),
                "import gave invalid KDL for:\n{text}\n---\n{}\n{diags:?}",
                imported.kdl
            );
        }
    }
}

#[test]
fn mutated_layer_tars_never_panic_or_escape() {
    let mut b = tar::Builder::new(Vec::new());
    for (path, body) in
        [("etc/passwd", "root:x:0:0::/:/bin/sh\n"), ("bin/sh", "#!"), ("a/b/c/d.txt", "data")]
    {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, body.as_bytes()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "link", "../../../../etc").unwrap();
    let seed = b.into_inner().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (mut rng, inputs) = fuzz(0x5eed_1234_abcd_0003, 1500);
    for _ in 0..inputs {
        let bytes = mutate(&mut rng, &seed);
        let dir = tempfile::tempdir_in(outside.path()).unwrap();
        let digest = stack::api::digest::OciDigest::of(&bytes);
        let _ = stack::api::oci::extract::extract(
            &mut bytes.as_slice(),
            &digest,
            None,
            &dir.path().join("x"),
        );
        // Nothing may appear beside the extraction folder.
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(names.len() <= 1, "extraction wrote outside its folder: {names:?}");
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn mutated_ignore_files_and_lock_files_never_panic() {
    let (mut rng, inputs) = fuzz(0x5eed_1234_abcd_0004, 2000);
    let ignore = b"# comment\n*.md\n!README.md\nbuild/**\n/tmp\n[a-z]?.log\n";
    let lock = b"lock version=1\nimage \"docker.io/library/alpine:3\" platform=\"linux/amd64\" digest=\"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n";
    for _ in 0..inputs {
        let text = String::from_utf8_lossy(&mutate(&mut rng, ignore)).into_owned();
        if let Ok(rules) = stack::api::context::IgnoreRules::parse(".dockerignore", &text) {
            let _ = rules.is_excluded("a/b/README.md");
        }
        let text = String::from_utf8_lossy(&mutate(&mut rng, lock)).into_owned();
        let _ = stack::api::lockfile::Lock::parse(&text);
    }
}

/// Plans without any outside world: no images, an empty context.
struct NoWorld;

impl stack::api::plan::Resolver for NoWorld {
    fn image(
        &self,
        reference: &str,
        _file: usize,
        _platform: &stack::api::oci::image::Platform,
    ) -> Result<std::sync::Arc<stack::api::oci::local::LoadedImage>, stack::api::plan::BaseError>
    {
        Err(format!("no image `{reference}` here").into())
    }

    fn select(
        &self,
        _file: usize,
        source: &str,
        _excludes: &[String],
    ) -> Result<Vec<stack::api::context::Selected>, stack::api::context::SelectError> {
        Err(stack::api::context::SelectError::NotFound {
            source_path: source.to_owned(),
            excluded: false,
        })
    }
}

/// `stack check` plans build files whose parse errors are contained in single steps (to report
/// every independent problem): the planner must take such partial trees without panicking.
#[test]
fn partial_trees_with_contained_errors_plan_without_panics() {
    let mut seeds = corpus("tests/data/errors", "kdl");
    seeds.extend(corpus("examples", "kdl"));
    let (mut rng, inputs) = fuzz(0x5eed_1234_abcd_0002, 3000);
    let mut planned = 0;
    for i in 0..inputs {
        let seed = &seeds[i % seeds.len()];
        let text = String::from_utf8_lossy(&mutate(&mut rng, seed)).into_owned();
        let (Some(ast), diags) = stack::api::syntax::parse(&text) else { continue };
        let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).map(|d| d.span).collect();
        if errors.is_empty() || !stack::api::syntax::errors_are_contained(&ast, &errors) {
            continue;
        }
        let files = [stack::api::plan::FileInput {
            source: stack::api::diag::SourceFile::new("stack.kdl", text.clone()),
            ast,
            context_dir: std::path::PathBuf::from("."),
            origin: None,
            included: None,
        }];
        let _ = stack::api::plan::plan(&files, &stack::api::plan::PlanRequest::default(), &NoWorld);
        planned += 1;
    }
    assert!(planned > 0, "no mutated input had contained errors");
}
