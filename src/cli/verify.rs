//! `stack verify`: builds the images as usual, rebuilds them from nothing in a child `stack
//! build` (fresh store and temporary folders, another umask, time zone and job count) and
//! compares the two; `--steps` runs every `run` step again over the same input and names
//! those that are not deterministic by themselves.
//!
//! Exit codes (mapped in `cli::main`): 0 identical, 5 differs, 6 could not build.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use petgraph::stable_graph::NodeIndex;

use super::args::{CompressionArg, VerifyArgs};
use super::load::{CliResolver, LockMode, error_chain, load_files, open_store, plan_files};
use super::{Failure, fail};
use crate::digest::OciDigest;
use crate::exec::rebuild::{Fresh, rebuild};
use crate::exec::{BuildOptions, BuildReport, BuiltImage};
use crate::oci::compress::Compression;
use crate::oci::diff::{Difference, compare, read_layer};
use crate::oci::image::Descriptor;
use crate::oci::local::LocalRef;
use crate::plan::{FileInput, Op, Plan};
use crate::store::Store;

/// One side of a comparison: an image whose blobs are in `store`.
#[derive(Clone)]
struct Side<'a> {
    store: &'a Store,
    manifest: OciDigest,
    layers: Vec<Descriptor>,
}

pub(super) fn run(args: &VerifyArgs) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let jobs = args.jobs.unwrap_or_else(crate::exec::build::default_jobs);
    // Chosen before any thread starts: reading the umask briefly changes it.
    let dir = tempfile::Builder::new().prefix("stack-verify-").tempdir()?;
    let fresh = Fresh::unlike_this_process(dir.path(), jobs);
    let files = load_files(&args.file)?;
    let store = open_store(&args.file)?;
    let resolver = CliResolver::new(&files, &store, &args.file)?;
    let plan = plan_files(&files, &resolver, &args.file)?;
    // The rebuild resolves the same times from the same context and commit (it gets
    // `--source-date-epoch` only when this verify was given one).
    let epoch = super::epoch::resolve(
        args.source_date_epoch,
        files.first().map(|f| f.context_dir.as_path()),
    );
    let opts = options(args, jobs, &epoch)?;
    let normal = super::build::execute(&plan, &files, &store, &opts, Some(args.progress))?;
    // The rebuild runs `--locked`: it must pin bases exactly as this build did.
    resolver.save_lock()?;
    let built_at = std::time::Instant::now();
    eprintln!(
        "rebuilding from nothing in `{}` (umask {:04o}, TZ={}, --jobs {})",
        dir.path().display(),
        fresh.umask,
        fresh.tz,
        fresh.jobs
    );
    // A step writing the time in seconds must see another second in the rebuild.
    wait_for_next_second(built_at);
    let cwd = std::env::current_dir()?;
    rebuild(&child_args(args, &cwd), &fresh).map_err(|e| fail(error_chain(&e), None))?;
    let rebuilt_at = std::time::Instant::now();
    let fresh_store = Store::open(&fresh.store()).map_err(|e| fail(error_chain(&e), None))?;
    let mut differs = false;
    for image in &normal.images {
        // An index is compared platform by platform: the first differing step is per platform.
        let parts = image.parts();
        for part in parts {
            let against = load_against(args, &files, &plan, &fresh_store, &part.platform)?;
            let rebuilt = load_image(&fresh.out(), &image.name, &fresh_store, &part.platform)?;
            let reference = against.unwrap_or_else(|| Side {
                store: &store,
                manifest: part.manifest.digest.clone(),
                layers: part.layers.clone(),
            });
            let label = if image.is_multi_platform() {
                format!("{} ({})", image.name, part.platform)
            } else {
                image.name.clone()
            };
            let makers = layer_makers(&plan, &normal, part);
            differs |= report_image(&label, &reference, &rebuilt, &makers, &plan, &files)?;
        }
    }
    if args.steps {
        wait_for_next_second(rebuilt_at);
        differs |= check_steps(args, &files, &fresh_store, &epoch)?;
    }
    eprintln!("verified in {:.2}s", started.elapsed().as_secs_f64());
    if differs { Err(Failure::Differs) } else { Ok(()) }
}

/// Sleeps until a second has passed since `then`: the commonest non-determinism is a
/// timestamp in seconds (`date +%s`, a build date), which two runs within one second would
/// hide.
fn wait_for_next_second(then: std::time::Instant) {
    let second = std::time::Duration::from_secs(1);
    if let Some(rest) = second.checked_sub(then.elapsed()) {
        std::thread::sleep(rest);
    }
}

fn options(
    args: &VerifyArgs,
    jobs: usize,
    epoch: &super::epoch::Epoch,
) -> Result<BuildOptions, Failure> {
    Ok(BuildOptions {
        compression: compression(args.compression),
        epoch: epoch.files,
        created: epoch.created,
        jobs,
        secrets: super::build::parse_secrets(&args.secrets)?,
        ssh: super::build::parse_ssh(&args.ssh, std::env::var_os("SSH_AUTH_SOCK").as_deref())?,
        ..BuildOptions::default()
    })
}

/// A `--secret` or `--ssh` spec for the rebuild, which runs in another folder: a relative
/// `src=`/`source=` file or `ID=SOCKET` path made absolute.
fn absolute_spec(spec: &str, secret: bool, cwd: &Path) -> OsString {
    let abs = |p: &str| cwd.join(p).into_os_string();
    if !secret {
        return match spec.split_once('=') {
            Some((id, socket)) => {
                let mut v = OsString::from(format!("{id}="));
                v.push(abs(socket));
                v
            }
            None => spec.into(),
        };
    }
    let mut out = OsString::new();
    for (i, part) in spec.split(',').enumerate() {
        if i > 0 {
            out.push(",");
        }
        match part.split_once('=') {
            Some((k @ ("src" | "source"), path)) => {
                out.push(format!("{k}="));
                out.push(abs(path));
            }
            _ => out.push(part),
        }
    }
    out
}

fn compression(c: CompressionArg) -> Compression {
    match c {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
    }
}

/// `stack build`'s arguments for the same build file, images and args as this verify.
/// Paths are made absolute: the rebuild runs in another folder, so that nothing can depend on
/// where `stack` was started.
fn child_args(args: &VerifyArgs, cwd: &Path) -> Vec<OsString> {
    let f = &args.file;
    let abs = |p: &Path| OsString::from(cwd.join(p));
    let mut v: Vec<OsString> = Vec::new();
    let mut pair = |flag: &str, value: OsString| {
        v.push(flag.into());
        v.push(value);
    };
    if let Some(d) = &f.dockerfile {
        pair("--file", abs(d));
    }
    for t in &f.targets {
        pair("--target", t.into());
    }
    for (k, val) in &f.args {
        // An arg without a value was unset in the environment: the build ignores it too.
        if let Some(val) = val {
            pair("--arg", format!("{k}={val}").into());
        }
    }
    if let Some(c) = &f.context {
        pair("--context", abs(c));
    }
    for h in &f.insecure_registries {
        pair("--insecure-registry", h.into());
    }
    for (name, c) in &f.build_contexts {
        let value = match c {
            crate::plan::NamedContext::Dir(d) => abs(d),
            crate::plan::NamedContext::Image(r) => match r.strip_prefix("oci:") {
                Some(layout) => format!("oci-layout://{layout}").into(),
                None => format!("docker-image://{r}").into(),
            },
        };
        let mut spec = OsString::from(format!("{name}="));
        spec.push(value);
        pair("--build-context", spec);
    }
    for (k, val) in &f.labels {
        pair("--label", format!("{k}={val}").into());
    }
    if let Some(n) = f.network {
        pair("--network", super::request::network_name(n).into());
    }
    for (name, ip) in &f.add_hosts {
        pair("--add-host", format!("{name}={ip}").into());
    }
    for platforms in &f.platform_lists {
        let list: Vec<String> = platforms.iter().map(ToString::to_string).collect();
        pair("--platform", list.join(",").into());
    }
    if let Some(epoch) = args.source_date_epoch {
        pair("--source-date-epoch", epoch.to_string().into());
    }
    for spec in &args.secrets {
        pair("--secret", absolute_spec(spec, true, cwd));
    }
    for spec in &args.ssh {
        pair("--ssh", absolute_spec(spec, false, cwd));
    }
    pair("--compression", compression(args.compression).name().into());
    pair("--progress", "plain".into());
    match (&f.file, &f.dockerfile) {
        (Some(file), _) => v.push(abs(file)),
        // `stack build` alone reads the current folder; `-f FILE` alone, FILE's folder.
        (None, None) => v.push(cwd.into()),
        (None, Some(_)) => {}
    }
    v
}

/// `--against REF`: the one image to compare the rebuild with (a local image, or a registry
/// reference resolved now, whatever `stack.lock` says), loaded into `store`.
fn load_against<'a>(
    args: &VerifyArgs,
    files: &[FileInput],
    plan: &Plan,
    store: &'a Store,
    platform: &crate::oci::image::Platform,
) -> Result<Option<Side<'a>>, Failure> {
    let Some(spec) = &args.against else { return Ok(None) };
    let names = plan.image_names();
    if names.len() != 1 {
        return Err(fail(
            format!("`--against {spec}` compares one image, but this build makes {}", names.len()),
            Some("choose the image with `--target NAME`"),
        ));
    }
    let loaded = if let Some(local) = LocalRef::parse(spec, Path::new(".")) {
        crate::oci::local::load(spec, &local, store, platform)
            .map_err(|e| fail(error_chain(&e), None))?
    } else {
        // Resolved now: the image a tag names today, not a pin of `stack.lock`.
        let resolver = CliResolver::with_mode(files, store, &args.file, LockMode::Refresh)?;
        let image = crate::plan::Resolver::image(&resolver, spec, 0, platform).map_err(|e| {
            fail(
                format!("`--against {spec}`: {e}"),
                Some("write a registry reference, `oci:DIR:NAME`, `oci-archive:FILE` or `docker-archive:FILE`"),
            )
        })?;
        (*image).clone()
    };
    Ok(Some(Side {
        store,
        manifest: loaded.manifest_digest,
        layers: loaded.layers.into_iter().map(|l| l.blob).collect(),
    }))
}

/// Image `name` of the layout `dir` (its `platform` manifest), loaded into `store`.
fn load_image<'a>(
    dir: &Path,
    name: &str,
    store: &'a Store,
    platform: &crate::oci::image::Platform,
) -> Result<Side<'a>, Failure> {
    let spec = format!("oci:{}:{name}", dir.display());
    let local = LocalRef::OciDir { path: dir.to_owned(), tag: Some(name.to_owned()) };
    let loaded = crate::oci::local::load(&spec, &local, store, platform)
        .map_err(|e| fail(error_chain(&e), None))?;
    Ok(Side {
        store,
        manifest: loaded.manifest_digest,
        layers: loaded.layers.into_iter().map(|l| l.blob).collect(),
    })
}

/// For each layer of `image`, the step that made it.
fn layer_makers(plan: &Plan, report: &BuildReport, image: &BuiltImage) -> Vec<NodeIndex> {
    let found = plan.images.iter().find(|t| t.name == image.name && t.platform == image.platform);
    let Some(target) = found else {
        return Vec::new();
    };
    let mut makers = Vec::new();
    for node in plan.chain(target.node) {
        let count = report.node_layers.get(&node).map_or(0, Vec::len);
        while makers.len() < count {
            makers.push(node);
        }
    }
    makers
}

/// Where a step is written, as `FILE:LINE`.
fn location(files: &[FileInput], plan: &Plan, node: NodeIndex) -> String {
    let n = &plan.graph[node];
    let file = &files[n.file];
    let (line, _) = file.source.line_col(n.span.offset());
    format!("{}:{line}", file.source.name)
}

/// Prints the comparison of one image; true when it differs.
fn report_image(
    name: &str,
    reference: &Side<'_>,
    rebuilt: &Side<'_>,
    makers: &[NodeIndex],
    plan: &Plan,
    files: &[FileInput],
) -> Result<bool, Failure> {
    let mut out = std::io::stdout().lock();
    if reference.manifest == rebuilt.manifest {
        writeln!(out, "{name}: identical {}", reference.manifest)?;
        return Ok(false);
    }
    writeln!(out, "{name}: differs")?;
    writeln!(out, "  expected: {}", reference.manifest)?;
    writeln!(out, "  rebuilt:  {}", rebuilt.manifest)?;
    let first = reference
        .layers
        .iter()
        .zip(&rebuilt.layers)
        .position(|(a, b)| a.digest != b.digest)
        .or_else(|| {
            (reference.layers.len() != rebuilt.layers.len())
                .then(|| reference.layers.len().min(rebuilt.layers.len()))
        });
    let Some(i) = first else {
        writeln!(out, "  the layers are identical; the image config or manifest differs")?;
        for line in config_differences(reference, rebuilt)? {
            writeln!(out, "    {line}")?;
        }
        return Ok(true);
    };
    let step = makers.get(i).map_or_else(
        || "a step this build does not have".to_owned(),
        |n| format!("step `{}` at {}", plan.graph[*n].label, location(files, plan, *n)),
    );
    writeln!(
        out,
        "  first differing layer: {} of {}, made by {step}",
        i + 1,
        rebuilt.layers.len()
    )?;
    match (reference.layers.get(i), rebuilt.layers.get(i)) {
        (Some(a), Some(b)) => print_layer_diff(&mut out, (reference.store, a), (rebuilt.store, b))?,
        _ => writeln!(out, "    the images have different numbers of layers")?,
    }
    Ok(true)
}

/// The image config of a side, read through its manifest.
fn config_of(side: &Side<'_>) -> Result<serde_json::Value, Failure> {
    let read = |d: &OciDigest| -> Result<serde_json::Value, Failure> {
        let bytes = side.store.read_blob(d).map_err(|e| fail(error_chain(&e), None))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| fail(format!("blob `{d}` is not JSON: {e}"), None))
    };
    let manifest = read(&side.manifest)?;
    let config: OciDigest = manifest["config"]["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| fail(format!("manifest `{}` names no config", side.manifest), None))?;
    read(&config)
}

/// `key: expected vs rebuilt` for every config field (one level into `config`) that differs.
fn config_differences(a: &Side<'_>, b: &Side<'_>) -> Result<Vec<String>, Failure> {
    let (x, y) = (config_of(a)?, config_of(b)?);
    let mut out = Vec::new();
    let empty = serde_json::Map::new();
    let fields = |v: &serde_json::Value| v.as_object().unwrap_or(&empty).clone();
    let (fx, fy) = (fields(&x), fields(&y));
    let mut keys: Vec<&String> = fx.keys().chain(fy.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (vx, vy) = (fx.get(k), fy.get(k));
        if vx == vy {
            continue;
        }
        if k == "config" {
            let (cx, cy) = (fields(&x["config"]), fields(&y["config"]));
            let mut sub: Vec<&String> = cx.keys().chain(cy.keys()).collect();
            sub.sort();
            sub.dedup();
            for s in sub.into_iter().filter(|s| cx.get(*s) != cy.get(*s)) {
                out.push(format!("config.{s}: {} vs {}", show(cx.get(s)), show(cy.get(s))));
            }
        } else {
            out.push(format!("{k}: {} vs {}", show(vx), show(vy)));
        }
    }
    Ok(out)
}

fn show(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(|| "(none)".to_owned(), ToString::to_string)
}

fn print_layer_diff(
    out: &mut impl Write,
    left: (&Store, &Descriptor),
    right: (&Store, &Descriptor),
) -> Result<(), Failure> {
    let a = read_layer(left.0, left.1).map_err(|e| fail(error_chain(&e), None))?;
    let b = read_layer(right.0, right.1).map_err(|e| fail(error_chain(&e), None))?;
    let diffs = compare(&a, &b);
    if diffs.is_empty() {
        writeln!(out, "    the files are the same; only the compressed bytes differ")?;
    }
    for d in &diffs {
        print_difference(out, d)?;
    }
    if let Some(dir) = diffoscope_inputs(&diffs, &a, &b)? {
        writeln!(
            out,
            "    diffoscope report: diffoscope {} {}",
            dir.join("expected").display(),
            dir.join("rebuilt").display()
        )?;
    }
    Ok(())
}

/// When `diffoscope` is on `PATH`: both sides of each file whose content differs (and whose
/// bytes the comparison kept, up to 256 KiB), in a kept temporary folder
/// (`expected/PATH`, `rebuilt/PATH`) for a report of them. `None` without diffoscope or such
/// files.
fn diffoscope_inputs(
    diffs: &[Difference],
    a: &[crate::oci::diff::TarEntry],
    b: &[crate::oci::diff::TarEntry],
) -> Result<Option<std::path::PathBuf>, Failure> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("diffoscope").is_file()));
    let small = |side: &[crate::oci::diff::TarEntry], path: &str| {
        side.iter().find(|e| e.path == path).and_then(|e| e.small.clone())
    };
    let pairs: Vec<(&str, Vec<u8>, Vec<u8>)> = diffs
        .iter()
        .filter_map(|d| match d {
            Difference::Content { path, .. } => {
                Some((path.as_str(), small(a, path)?, small(b, path)?))
            }
            _ => None,
        })
        .collect();
    if !on_path || pairs.is_empty() {
        return Ok(None);
    }
    let dir = tempfile::Builder::new().prefix("stack-verify-diffoscope-").tempdir()?.keep();
    for (path, left, right) in pairs {
        let Some(rel) = crate::paths::normalize(path).filter(|r| !r.is_empty()) else { continue };
        for (side, bytes) in [("expected", left), ("rebuilt", right)] {
            let file = dir.join(side).join(&rel);
            if let Some(parent) = file.parent() {
                fs_err::create_dir_all(parent)?;
            }
            fs_err::write(&file, bytes)?;
        }
    }
    Ok(Some(dir))
}

fn print_difference(out: &mut impl Write, d: &Difference) -> std::io::Result<()> {
    match d {
        Difference::Only { path, left: true } => {
            writeln!(out, "    /{path}: only in the expected image")
        }
        Difference::Only { path, left: false } => writeln!(out, "    /{path}: only in the rebuild"),
        Difference::Attribute { path, what, left, right } => {
            writeln!(out, "    /{path}: {what} differs: {left} vs {right}")
        }
        Difference::Content { path, left_size, right_size, diff } => {
            writeln!(out, "    /{path}: content differs ({left_size} vs {right_size} bytes)")?;
            for line in diff.iter().flat_map(|d| d.lines()) {
                writeln!(out, "      {line}")?;
            }
            Ok(())
        }
        Difference::Order => writeln!(out, "    the entries are the same but in another order"),
    }
}

/// `--steps`: in the rebuild's store (which holds every step's result), runs each `run`
/// step once more over the same input and compares its layer with the first run's. Steps are
/// taken last first, so that the step run again never changes the input of one still to
/// check. True when a step is not deterministic.
fn check_steps(
    args: &VerifyArgs,
    files: &[FileInput],
    store: &Store,
    epoch: &super::epoch::Epoch,
) -> Result<bool, Failure> {
    let resolver = CliResolver::new(files, store, &args.file)?;
    let plan = plan_files(files, &resolver, &args.file)?;
    let opts = options(args, args.jobs.unwrap_or_else(crate::exec::build::default_jobs), epoch)?;
    let quiet = |_: crate::exec::Event| {};
    let run = |o: &BuildOptions| {
        crate::exec::build(&plan, store, o, &quiet).map_err(|e| fail(error_chain(&e), None))
    };
    let first = run(&opts)?;
    let steps: Vec<NodeIndex> = crate::exec::build::needed_in_order(&plan)
        .into_iter()
        .filter(|n| matches!(plan.graph[*n].op, Op::Run(_)))
        .collect();
    eprintln!("running {} `run` step(s) a second time", steps.len());
    let mut out = std::io::stdout().lock();
    let mut found = false;
    for &node in steps.iter().rev() {
        let again = run(&BuildOptions { rerun: vec![node], ..opts.clone() })?;
        let (a, b) = (own_layer(&plan, &first, node), own_layer(&plan, &again, node));
        if a.as_ref().map(|l| &l.diff_id) == b.as_ref().map(|l| &l.diff_id) {
            continue;
        }
        found = true;
        let n = &plan.graph[node];
        writeln!(
            out,
            "step `{}` at {} is not deterministic: run twice over the same input, its layers differ",
            n.label,
            location(files, &plan, node)
        )?;
        if let (Some(a), Some(b)) = (a, b) {
            print_layer_diff(&mut out, (store, &a.blob), (store, &b.blob))?;
        }
    }
    if !found {
        writeln!(out, "every `run` step gave the same layer twice")?;
    }
    Ok(found)
}

/// The layer `node` itself added, if any.
fn own_layer(
    plan: &Plan,
    report: &BuildReport,
    node: NodeIndex,
) -> Option<crate::oci::image::LayerRef> {
    let layers: &HashMap<_, Vec<_>> = &report.node_layers;
    let mine = layers.get(&node)?;
    let parent = plan.graph[node].parent.and_then(|p| layers.get(&p)).map_or(0, Vec::len);
    mine.get(parent..).and_then(|l| l.last()).cloned()
}
