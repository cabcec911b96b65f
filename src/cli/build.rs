//! `stack build`: load, plan, execute, write the output, print each image's digest.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::args::{BuildArgs, CompressionArg, Format};
use super::load::{CliResolver, error_chain, load_files, open_store, plan_files};
use super::outspec::Spec;
use super::results::{FailureInfo, Results, ShardInfo};
use super::{Failure, fail, output};
use crate::diag::Diagnostic;
use crate::exec::{BuildError, BuildOptions, SecretValue};
use crate::oci::compress::Compression;
use crate::oci::layout::{write_archive, write_layout};

pub(super) fn run(args: &BuildArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let shard = args.shard.map(|(index, count)| ShardInfo { index, count });
    let mut results = Results::new(shard, args.affected_since.clone());
    let outcome = build(args, &mut results, started);
    let Some(path) = &args.results else { return outcome };
    if let Err(e) = &outcome
        && results.failure.is_none()
    {
        results.fail(FailureInfo { message: failure_message(e), ..FailureInfo::default() });
    }
    results.duration_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let written = results.write(path).map_err(|e| {
        fail(format!("cannot write the results file `{}`: {e}", path.display()), None)
    });
    // The build's own failure says more than a results file that could not be written.
    outcome.and(written)
}

/// What the results file says of a failed build.
fn failure_message(e: &Failure) -> String {
    match e {
        Failure::UserFiles => "the build files have problems (reported on standard error)".into(),
        Failure::Registry => "a registry could not be reached (reported on standard error)".into(),
        Failure::StepFailed => "a step failed".into(),
        Failure::Machine => "the machine failed (reported on standard error)".into(),
        Failure::Interrupted => "interrupted".into(),
        Failure::Differs => "the images differ".into(),
        Failure::Other(e, _) => error_chain(e.as_ref()),
    }
}

/// Narrows the plan to the images `--affected-since` and `--shard` select.
fn select_images(
    p: &mut crate::plan::Plan,
    files: &[crate::plan::FileInput],
    args: &BuildArgs,
) -> Result<(), Failure> {
    if let Some(rev) = &args.affected_since {
        let found = super::affected::affected(files, p, &args.file, rev)?;
        let before = p.images.len();
        p.retain_images(&|name| found.contains_key(name));
        if !args.quiet {
            eprintln!(
                "{} of {before} image(s) affected by the changes since `{rev}`",
                p.images.len()
            );
        }
    }
    if let Some((index, count)) = args.shard {
        let before = p.images.len();
        p.retain_images(&|name| shard_of(name, count) == index);
        if !args.quiet {
            eprintln!("shard {index}/{count}: {} of {before} image(s)", p.images.len());
        }
    }
    Ok(())
}

/// The shard (1-based, of `count`) image `name` belongs to: by a hash of the name alone, so an
/// image never moves when others are added or removed.
pub(super) fn shard_of(name: &str, count: usize) -> usize {
    let hash = blake3::hash(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    (u64::from_le_bytes(first) % count as u64) as usize + 1
}

fn build(args: &BuildArgs, results: &mut Results, started: Instant) -> Result<(), Failure> {
    let output = Output::of(args)?;
    check_tags(&args.tags)?;
    let mut file_args = args.file.clone();
    file_args.tags.clone_from(&args.tags);
    let files = load_files(&file_args)?;
    let wanted = super::attest::wanted(args, &files);
    if wanted.any() && matches!(output, Output::Stdout { .. }) {
        return Err(fail(
            "`--sbom` and `--provenance` (or the build file's `attest`) write files beside the output, but the output is standard output",
            Some("write the image to a file or folder with `--out PATH`"),
        ));
    }
    let store = open_store(&args.file)?;
    let mut resolver = CliResolver::new(&files, &store, &args.file)?;
    if let Output::Path(path, _) | Output::Local(path) = &output {
        resolver.reserve_output(path);
    }
    let mut p = plan_files(&files, &resolver, &args.file)?;
    select_images(&mut p, &files, args)?;
    if p.images.is_empty() {
        if !args.quiet {
            eprintln!("nothing to build");
        }
        return Ok(());
    }
    check_output_fits_plan(&p, &output, args)?;
    let epoch = super::epoch::resolve(
        args.source_date_epoch,
        files.first().map(|f| f.context_dir.as_path()),
    );
    if args.explain {
        output::note(epoch.describe());
    }
    output::add_to_summary(
        serde_json::json!({"created": epoch.created, "created_from": epoch.origin()}),
    );
    let cache_config = super::fleet::config(&args.cache, &files)?;
    let (store, cache) = super::fleet::open(&cache_config, &args.file, store.clone());
    let opts = build_options(args, &epoch, cache.as_ref())?;
    let report = execute_noting(
        &p,
        &files,
        &store,
        &opts,
        (!args.quiet).then_some(args.progress),
        &mut |f| results.fail(f),
    );
    super::fleet::finish(cache.as_deref());
    let mut report = report?;
    results.record_steps(&report);
    let mut images = std::mem::take(&mut report.images);
    add_cli_tags(&mut images, &args.tags);
    let sources = super::attest::Sources {
        plan: &p,
        files: &files,
        store: &store,
        args,
        wanted,
        epoch: opts.created,
    };
    let attestations = super::attest::collect(&sources, &images)?;
    if args.attest_as == super::args::AttestAs::Index {
        super::attest::attach(&store, &mut images, &attestations)?;
    }
    output.write(&images, &store)?;
    results.record_images(&images, &output.describe_for_results());
    if !attestations.is_empty() {
        write_attestations(&output, &attestations)?;
    }
    resolver.save_lock()?;
    if let Some(path) = &args.iidfile {
        write_iidfile(path, &images[0])?;
    }
    if !matches!(output, Output::Stdout { .. }) {
        print_digests(&images, args.quiet)?;
    }
    if args.push {
        let pushed =
            push_images(&p, cache.as_deref(), resolver.registry(), &store, &images, args.quiet)?;
        results.record_pushes(&pushed);
        if args.attest_as == super::args::AttestAs::Referrers {
            super::attest::push_referrers(resolver.registry(), &store, &images, &attestations)?;
        }
    }
    if args.load {
        load(&images, &store)?;
    }
    if args.quiet {
        return Ok(());
    }
    print_summary(&images, &output, &report, started);
    Ok(())
}

/// Refuses outputs and `-t` tags the planned images do not fit: one image per archive or
/// tag, one platform per single-platform output.
fn check_output_fits_plan(
    p: &crate::plan::Plan,
    output: &Output,
    args: &BuildArgs,
) -> Result<(), Failure> {
    one_image_for(p, output, args)?;
    one_platform_for(p, output, args)?;
    let names = p.image_names();
    if !args.tags.is_empty() && names.len() != 1 {
        return Err(fail(
            format!(
                "`-t` tags one image, but this build makes {}: {}",
                names.len(),
                names.join(", ")
            ),
            Some("choose the image with `--target NAME`, or write `tag` in the build file"),
        ));
    }
    Ok(())
}

/// The executor's options, from the command line, the resolved epoch and the shared cache.
fn build_options(
    args: &BuildArgs,
    epoch: &super::epoch::Epoch,
    cache: Option<&std::sync::Arc<crate::fleet::RegistryCache>>,
) -> Result<BuildOptions, Failure> {
    Ok(BuildOptions {
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        },
        epoch: epoch.files,
        created: epoch.created,
        no_cache: args.no_cache,
        no_cache_stages: args.no_cache_filter.clone(),
        jobs: args.jobs.unwrap_or_else(crate::exec::build::default_jobs),
        secrets: parse_secrets(&args.secrets)?,
        ssh: parse_ssh(&args.ssh, std::env::var_os("SSH_AUTH_SOCK").as_deref())?,
        keep_going: args.keep_going,
        explain: args.explain,
        cancel: std::sync::Arc::default(),
        rerun: Vec::new(),
        shared: cache.cloned().map(|c| crate::exec::shared::SharedHandle(c)),
    })
}

/// Adds the `-t` tags to the image, when the build made one (more are refused earlier).
fn add_cli_tags(images: &mut [crate::exec::BuiltImage], tags: &[String]) {
    if let [image] = images {
        for t in tags {
            if !image.tags.contains(t) {
                image.tags.push(t.clone());
            }
        }
    }
}

/// Prints each image's digest on standard output (with its name unless `quiet`).
fn print_digests(images: &[crate::exec::BuiltImage], quiet: bool) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for image in images {
        if quiet {
            writeln!(stdout, "{}", image.digest())?;
        } else {
            writeln!(stdout, "{} {}", image.name, image.digest())?;
        }
    }
    Ok(())
}

/// Pushes the images under their tags, mounting blobs from their bases' repositories.
fn push_images(
    p: &crate::plan::Plan,
    cache: Option<&crate::fleet::RegistryCache>,
    client: &crate::registry::Client,
    store: &crate::store::Store,
    images: &[crate::exec::BuiltImage],
    quiet: bool,
) -> Result<Vec<super::push::PushedTag>, Failure> {
    // Blobs a step cache of the same registry holds are mounted from it, like the bases'.
    let caches: Vec<String> = cache
        .map(crate::fleet::RegistryCache::mountable)
        .unwrap_or_default()
        .iter()
        .map(crate::registry::Reference::name)
        .collect();
    let bases = |name: &str| {
        let mut from: Vec<String> = base_images(p, name).into_iter().map(|b| b.reference).collect();
        from.extend(caches.iter().cloned());
        from
    };
    super::push::push_all(client, store, images, &bases, quiet)
}

/// The closing lines of a build: a `result` event per image in JSON mode, else a summary
/// line and a table of the images.
fn print_summary(
    images: &[crate::exec::BuiltImage],
    output: &Output,
    report: &crate::exec::BuildReport,
    started: Instant,
) {
    if output::json() {
        for image in images {
            output::emit(&result_event(image, output));
        }
        output::add_to_summary(
            serde_json::json!({"images": images.len(), "seconds": started.elapsed().as_secs_f64()}),
        );
        return;
    }
    let from_caches: Vec<String> = report
        .steps_shared
        .iter()
        .map(|(source, n)| format!(", {n} from cache {source}"))
        .collect();
    let from_caches = from_caches.concat();
    eprintln!(
        "built {} image(s) into {} in {:.2}s: {} step(s) run, {} reused here{from_caches}",
        images.len(),
        output.describe(),
        started.elapsed().as_secs_f64(),
        report.steps_run,
        report.steps_reused
    );
    print_images(images);
}

/// The JSON `result` event of a built image: what the closing table says.
fn result_event(image: &crate::exec::BuiltImage, output: &Output) -> serde_json::Value {
    serde_json::json!({
        "event": "result",
        "image": image.name,
        "digest": image.digest().to_string(),
        "size": image_size(image),
        "tags": image.tags,
        "output": output.describe(),
    })
}

/// An image's bytes: its manifests (and index), configs and layers.
fn image_size(image: &crate::exec::BuiltImage) -> u64 {
    image.all_blobs().iter().map(|b| b.size).sum::<u64>()
}

/// Runs a plan with a progress display; a failed step is reported as a diagnostic at its
/// line.
pub(super) fn execute(
    p: &crate::plan::Plan,
    files: &[crate::plan::FileInput],
    store: &crate::store::Store,
    opts: &BuildOptions,
    progress: Option<super::args::Progress>,
) -> Result<crate::exec::BuildReport, Failure> {
    execute_noting(p, files, store, opts, progress, &mut |_| {})
}

/// [`execute`] that also hands a failed step's file, line and message to `note` (for the
/// results file).
fn execute_noting(
    p: &crate::plan::Plan,
    files: &[crate::plan::FileInput],
    store: &crate::store::Store,
    opts: &BuildOptions,
    progress: Option<super::args::Progress>,
    note: &mut dyn FnMut(FailureInfo),
) -> Result<crate::exec::BuildReport, Failure> {
    let progress = super::progress::Printer::start(progress, p, files);
    let built = crate::exec::build(p, store, opts, &|e| progress.event(&e));
    let tally = progress.finish();
    output::add_to_summary(summary_fields(&tally));
    match built {
        Ok(r) => Ok(r),
        Err(BuildError::Step { node, label, cause, output_tail }) => {
            let message = crate::diag::error_chain(&cause);
            let n = &p.graph[node];
            note(step_failure(&files[n.file], n.span, &label, &message));
            let mut d = Diagnostic::error(
                "step-failed",
                format!("step `{}` failed: {message}", super::progress::step_text(p, files, node)),
                n.span,
                "this step failed",
            );
            if !output_tail.is_empty() {
                let mut help = format!("last lines of its output:\n{}", output_tail.join("\n"));
                // `chown` to another user fails with EINVAL when only the caller is mapped.
                if crate::privilege::Privilege::current() == crate::privilege::Privilege::SingleId
                    && output_tail.iter().any(|l| l.contains("Invalid argument"))
                {
                    help.push_str(
                        "\nnote: this rootless build has no subordinate ids, so only root exists \
                         in the sandbox; give your user ranges in /etc/subuid and /etc/subgid \
                         (with `newuidmap` from Debian's `uidmap` package)",
                    );
                }
                d = d.with_help(help);
            }
            let run = super::progress::run_step(files, p, node);
            // A plain `&&` chain says which command failed in the message itself.
            let note = match cause.failed_command() {
                Some(_) => None,
                None => {
                    run.and_then(|r| super::progress::which_command_failed(r, cause.exit_code()))
                }
            };
            if let Some(note) = note {
                let help = match d.help.take() {
                    Some(help) => format!("{help}\nnote: {note}"),
                    None => format!("note: {note}"),
                };
                d = d.with_help(help);
            }
            output::print_report(&files[n.file].report(vec![d]));
            output::note("error: the build failed; no image was written");
            Err(Failure::StepFailed)
        }
        Err(BuildError::Interrupted) => {
            output::note("interrupted: the running steps were stopped; no image was written");
            Err(Failure::Interrupted)
        }
        Err(e @ BuildError::Machine { .. }) => Err(Failure::Other(
            Box::new(e),
            Some(
                "this is the machine, not the build file: free space where the store lives \
                 (`stack cache prune --keep-storage SIZE`, or `STACK_CACHE_DIR` elsewhere) and \
                 build again"
                    .into(),
            ),
        )),
        Err(e @ BuildError::Emulation(_)) => Err(Failure::Other(
            Box::new(e),
            Some("or build for this machine's platform only: `--platform` with one value".into()),
        )),
        // Kept whole, so the exit code can tell the machine's failures from others.
        Err(e) => Err(Failure::Other(Box::new(e), None)),
    }
}

/// A failed step as the results file gives it: the step, its file, line and column.
fn step_failure(
    file: &crate::plan::FileInput,
    span: miette::SourceSpan,
    label: &str,
    message: &str,
) -> FailureInfo {
    let before = &file.source.text[..span.offset().min(file.source.text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    FailureInfo {
        message: format!("step `{label}` failed: {message}"),
        step: Some(label.to_owned()),
        file: Some(file.source.name.clone()),
        line: Some(line),
        column: Some(column),
    }
}

/// The step counts of the JSON `summary` event.
fn summary_fields(t: &super::progress::Tally) -> serde_json::Value {
    serde_json::json!({
        "steps": t.total,
        "ran": t.ran,
        "cached": t.cached,
        "failed": t.failed,
        "cancelled": t.cancelled,
    })
}

/// Where the images go.
enum Output {
    /// A layout folder or an archive file.
    Path(PathBuf, Format),
    /// The image's files, written into a folder (`-o type=local,dest=DIR`).
    Local(PathBuf),
    /// An archive on standard output (`--out -`).
    Stdout { docker: bool },
}

impl Output {
    fn of(args: &BuildArgs) -> Result<Self, Failure> {
        let (out, format) = match super::outspec::parse(&args.out).map_err(|m| fail(m, None))? {
            Some(Spec::Local(dir)) => return Ok(Self::Local(dir)),
            Some(Spec::Archive(path, format)) => (path, Some(format)),
            None => (args.out.clone(), args.format),
        };
        if out != Path::new("-") {
            return Ok(Self::Path(out, format.unwrap_or(Format::Oci)));
        }
        let docker = match format {
            None | Some(Format::OciArchive) => false,
            Some(Format::DockerArchive) => true,
            Some(Format::Oci) => {
                return Err(fail(
                    "`--out -` writes an archive, not a layout folder",
                    Some(
                        "use `--format oci-archive` (the default for `--out -`) or `--format docker-archive`",
                    ),
                ));
            }
        };
        if args.push {
            return Err(fail(
                "`--out -` and `--push` both write to standard output",
                Some("write the archive to a file with `--out FILE`"),
            ));
        }
        if std::io::stdout().is_terminal() {
            return Err(fail(
                "refusing to write an image archive to a terminal",
                Some(
                    "redirect standard output (`stack build --out - > image.tar`), or write to a file with `--out FILE`",
                ),
            ));
        }
        Ok(Self::Stdout { docker })
    }

    fn write(
        &self,
        images: &[crate::exec::BuiltImage],
        store: &crate::store::Store,
    ) -> Result<(), Failure> {
        let err = |e: crate::oci::layout::LayoutError| fail(error_chain(&e), None);
        match self {
            Self::Path(out, Format::Oci) => write_layout(out, images, store).map_err(err),
            Self::Path(out, Format::OciArchive) => {
                write_archive(out, images, store, false).map_err(err)
            }
            Self::Path(out, Format::DockerArchive) => {
                write_archive(out, images, store, true).map_err(err)
            }
            Self::Local(dir) => {
                let done = crate::exec::export::export_image(store, &images[0], dir)
                    .map_err(|e| fail(error_chain(&e), None))?;
                if done.skipped_special > 0 {
                    eprintln!(
                        "note: {} device(s) or FIFO(s) of the image are not written to `{}`",
                        done.skipped_special,
                        dir.display()
                    );
                }
                Ok(())
            }
            Self::Stdout { docker } => {
                // The archive is written whole to a private file first, so a failed build
                // never leaves half an archive on standard output.
                let dir = tempfile::tempdir()?;
                let path = dir.path().join("image.tar");
                write_archive(&path, images, store, *docker).map_err(err)?;
                let mut file = fs_err::File::open(&path)?;
                let mut stdout = std::io::stdout().lock();
                std::io::copy(&mut file, &mut stdout)?;
                stdout.flush()?;
                Ok(())
            }
        }
    }

    /// The output as the results file names it: the path, or `-` for standard output.
    fn describe_for_results(&self) -> String {
        match self {
            Self::Path(p, _) | Self::Local(p) => p.display().to_string(),
            Self::Stdout { .. } => "-".to_owned(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Path(p, _) | Self::Local(p) => p.display().to_string(),
            Self::Stdout { .. } => "standard output".to_owned(),
        }
    }
}

/// A docker archive, `--load` and `-o type=local` hold one platform per image: with several,
/// say which and how to choose, before anything is built.
fn one_platform_for(
    p: &crate::plan::Plan,
    output: &Output,
    args: &BuildArgs,
) -> Result<(), Failure> {
    let what = match output {
        Output::Path(_, Format::DockerArchive) | Output::Stdout { docker: true } => {
            "`--format docker-archive`"
        }
        Output::Local(_) => "`-o type=local`",
        _ if args.load => "`--load`",
        _ => return Ok(()),
    };
    for image in &p.images {
        let platforms: Vec<String> = p
            .images
            .iter()
            .filter(|i| i.name == image.name)
            .map(|i| i.platform.to_string())
            .collect();
        if platforms.len() > 1 {
            return Err(fail(
                format!(
                    "{what} holds one platform per image, but `{}` is built for {}",
                    image.name,
                    platforms.join(", ")
                ),
                Some(
                    "choose one with `--platform`, or write an OCI layout or archive (`--format oci`, `--format oci-archive`), which holds them all",
                ),
            ));
        }
    }
    Ok(())
}

/// `--iidfile` and `-o type=local` write one image: with several, the build must say which.
fn one_image_for(p: &crate::plan::Plan, output: &Output, args: &BuildArgs) -> Result<(), Failure> {
    let what = match (output, &args.iidfile) {
        (Output::Local(_), _) => "`-o type=local` exports one image's files",
        (_, Some(_)) => "`--iidfile` names one image",
        _ => return Ok(()),
    };
    let names = p.image_names();
    if names.len() == 1 {
        return Ok(());
    }
    Err(fail(
        format!("{what}, but this build makes {}: {}", names.len(), names.join(", ")),
        Some("choose the image (or stage) with `--target NAME`"),
    ))
}

/// `--iidfile FILE`: the manifest digest, without a newline (as `docker build` writes it),
/// replaced whole.
fn write_iidfile(path: &Path, image: &crate::exec::BuiltImage) -> Result<(), Failure> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    fs_err::write(&tmp, image.digest().to_string())?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}

/// `--sbom`, `--provenance`: the documents beside the output (`NAME.spdx.json`,
/// `NAME.provenance.json`).
fn write_attestations(
    output: &Output,
    attestations: &[super::attest::ImageAttestations],
) -> Result<(), Failure> {
    // `build` refuses `--sbom` and `--provenance` with standard output before building.
    let (Output::Path(out, _) | Output::Local(out)) = output else { return Ok(()) };
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    super::attest::write_beside(dir, attestations)
}

/// The base images (registry or local) image `name` is built on, in build order.
pub(super) fn base_images(p: &crate::plan::Plan, name: &str) -> Vec<crate::sbom::spdx::Base> {
    let Some(target) = p.images.iter().find(|t| t.name == name) else { return Vec::new() };
    p.chain(target.node)
        .into_iter()
        .filter_map(|n| match &p.graph[n].op {
            crate::plan::Op::Base { reference, image } => Some(crate::sbom::spdx::Base {
                reference: reference.clone(),
                digest: image.manifest_digest.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// `--load`: a `docker load` archive of the images, handed to the local daemon's client.
fn load(images: &[crate::exec::BuiltImage], store: &crate::store::Store) -> Result<(), Failure> {
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("images.tar");
    write_archive(&archive, images, store, true).map_err(|e| fail(error_chain(&e), None))?;
    let said = crate::exec::load::load_archive(&archive).map_err(|e| {
        let hint = matches!(e, crate::exec::load::LoadError::NoClient)
            .then_some("install Docker or podman, or load the archive yourself: `--format docker-archive --out FILE`");
        fail(error_chain(&e), hint)
    })?;
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        output::note(line.trim());
    }
    Ok(())
}

/// `-t` values must be image references (`name`, `name:tag`, `host/repo:tag`).
fn check_tags(tags: &[String]) -> Result<(), Failure> {
    for t in tags {
        if let Err(e) = crate::registry::Reference::parse(t) {
            return Err(fail(
                format!("`-t {t}` is not an image name: {e}"),
                Some("write `-t name:tag`, e.g. `-t example/app:1.0`"),
            ));
        }
    }
    Ok(())
}

/// The closing table on standard error: each image with its digest, size and tags, so a build
/// says what it made without other tools.
fn print_images(images: &[crate::exec::BuiltImage]) {
    let rows: Vec<[String; 4]> = images
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.digest().to_string(),
                super::cache::human(image_size(i)),
                i.tags.join(", "),
            ]
        })
        .collect();
    let mut err = std::io::stderr().lock();
    let _ = super::inspect::write_table(&mut err, ["IMAGE", "DIGEST", "SIZE", "TAGS"], &rows);
}

/// `--ssh default`, `--ssh ID` (both the agent of `SSH_AUTH_SOCK`) and `--ssh ID=SOCKET`.
pub(super) fn parse_ssh(
    specs: &[String],
    auth_sock: Option<&std::ffi::OsStr>,
) -> Result<BTreeMap<String, std::path::PathBuf>, Failure> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, socket) = if let Some((id, path)) = spec.split_once('=') {
            (id, std::path::PathBuf::from(path))
        } else {
            let Some(sock) = auth_sock.filter(|s| !s.is_empty()) else {
                return Err(fail(
                    format!("`--ssh {spec}` needs an agent, but SSH_AUTH_SOCK is not set"),
                    Some(
                        "start one (`eval $(ssh-agent)`, then `ssh-add`), or write `--ssh ID=SOCKET`",
                    ),
                ));
            };
            (spec.as_str(), std::path::PathBuf::from(sock))
        };
        if id.is_empty() || socket.as_os_str().is_empty() || socket.to_string_lossy().contains(',')
        {
            return Err(fail(
                format!("`--ssh {spec}`: expected `ID`, or `ID=SOCKET` with one agent socket"),
                None,
            ));
        }
        match fs_err::metadata(&socket) {
            Ok(md) if md.file_type().is_socket() => {}
            Ok(_) => {
                return Err(fail(
                    format!("`--ssh {spec}`: `{}` is not an agent socket", socket.display()),
                    Some(
                        "stack forwards an agent, not key files: load the key with `ssh-add FILE` and pass `--ssh ID`",
                    ),
                ));
            }
            Err(e) => {
                return Err(fail(
                    format!("`--ssh {spec}`: cannot use `{}`: {e}", socket.display()),
                    None,
                ));
            }
        }
        out.insert(id.to_owned(), socket);
    }
    Ok(out)
}

pub(super) fn parse_secrets(specs: &[String]) -> Result<BTreeMap<String, SecretValue>, Failure> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let mut id = None;
        let mut value = None;
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_owned()),
                Some(("src" | "source", v)) => value = Some(SecretValue::File(v.into())),
                Some(("env", v)) => value = Some(SecretValue::Env(v.to_owned())),
                _ => {
                    return Err(fail(
                        format!("`--secret {spec}`: unknown part `{part}`"),
                        Some("write `--secret id=ID,src=FILE` or `--secret id=ID,env=VAR`"),
                    ));
                }
            }
        }
        let Some(id) = id else {
            return Err(fail(format!("`--secret {spec}` has no `id=`"), None));
        };
        let value = value.unwrap_or_else(|| SecretValue::Env(id.clone()));
        out.insert(id, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::shard_of;

    /// The slice of an image is a contract with CI configurations: pinned here.
    #[test]
    fn an_image_s_shard_depends_on_its_name_only() {
        let got: Vec<usize> =
            ["api", "web", "worker", "img0"].iter().map(|n| shard_of(n, 4)).collect();
        assert_eq!(got, [2, 1, 1, 2]);
        assert!((1..=1000).all(|i| (1..=3).contains(&shard_of(&format!("svc{i}"), 3))));
        assert_eq!(shard_of("anything", 1), 1);
    }
}
