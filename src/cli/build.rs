//! `stack build`: load, plan, execute, write the output, print each image's digest.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use super::args::{BuildArgs, CompressionArg, Format, Progress};
use super::load::{CliResolver, error_chain, load_files, open_store, print_plan_errors};
use super::{Failure, fail, output};
use crate::diag::{Diagnostic, Report};
use crate::exec::{BuildError, BuildOptions, Event, SecretValue};
use crate::oci::compress::Compression;
use crate::oci::layout::{write_archive, write_layout};
use crate::plan::{PlanRequest, plan};

pub(super) fn run(args: &BuildArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let files = load_files(&args.file)?;
    let store = open_store(&args.file)?;
    let resolver = CliResolver::new(&files, &store, &args.file)?;
    let request = PlanRequest {
        args: args.file.args.iter().cloned().collect(),
        targets: args.file.targets.clone(),
    };
    let p = plan(&files, &request, &resolver).map_err(|d| {
        print_plan_errors(&files, d);
        Failure::UserFiles
    })?;
    resolver.save_stat_caches();
    let opts = BuildOptions {
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        },
        epoch: args.source_date_epoch.unwrap_or(0),
        no_cache: args.no_cache,
        no_cache_stages: args.no_cache_filter.clone(),
        jobs: args.jobs.unwrap_or_else(crate::exec::build::default_jobs),
        secrets: parse_secrets(&args.secrets)?,
        keep_going: args.keep_going,
        explain: args.explain,
        cancel: std::sync::Arc::default(),
    };
    let progress = Printer { mode: args.progress, plan: &p, lock: Mutex::new(()) };
    let report = match crate::exec::build(&p, &store, &opts, &|e| progress.event(&e)) {
        Ok(r) => r,
        Err(BuildError::Step { node, label, message, output_tail }) => {
            let n = &p.graph[node];
            let mut d = Diagnostic::error(
                "step-failed",
                format!("step `{label}` failed: {message}"),
                n.span,
                "this step failed",
            );
            if !output_tail.is_empty() {
                d = d.with_help(format!("last lines of its output:\n{}", output_tail.join("\n")));
            }
            output::print_report(&Report::new(files[n.file].source.clone(), vec![d]));
            eprintln!("error: the build failed; no image was written");
            return Err(Failure::StepFailed);
        }
        Err(BuildError::Interrupted) => {
            eprintln!("interrupted: the running steps were stopped; no image was written");
            return Err(Failure::Interrupted);
        }
        Err(e) => return Err(fail(error_chain(&e), None)),
    };
    let result = match args.format {
        Format::Oci => write_layout(&args.out, &report.images, &store),
        Format::OciArchive => write_archive(&args.out, &report.images, &store, false),
        Format::DockerArchive => write_archive(&args.out, &report.images, &store, true),
    };
    result.map_err(|e| fail(error_chain(&e), None))?;
    resolver.save_lock()?;
    let mut stdout = std::io::stdout().lock();
    for image in &report.images {
        writeln!(stdout, "{} {}", image.name, image.manifest.digest)?;
    }
    drop(stdout);
    if args.push {
        super::push::push_all(resolver.registry(), &store, &report.images)?;
    }
    eprintln!(
        "built {} image(s) into {} in {:.2}s: {} step(s) run, {} reused",
        report.images.len(),
        args.out.display(),
        started.elapsed().as_secs_f64(),
        report.steps_run,
        report.steps_reused
    );
    Ok(())
}

fn parse_secrets(specs: &[String]) -> Result<BTreeMap<String, SecretValue>, Failure> {
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

/// Prints build events as plain lines (one per event) or JSON objects.
struct Printer<'a> {
    mode: Progress,
    plan: &'a crate::plan::Plan,
    lock: Mutex<()>,
}

impl Printer<'_> {
    fn event(&self, e: &Event) {
        let _guard = self.lock.lock();
        let name = |n: petgraph::stable_graph::NodeIndex| {
            let node = &self.plan.graph[n];
            if node.stage.is_empty() {
                node.label.clone()
            } else {
                format!("[{}] {}", node.stage, node.label)
            }
        };
        let mut err = std::io::stderr().lock();
        if self.mode == Progress::Json {
            let v = match e {
                Event::Started { node } => {
                    serde_json::json!({"event": "started", "step": name(*node)})
                }
                Event::Reused { node } => {
                    serde_json::json!({"event": "reused", "step": name(*node)})
                }
                Event::Output { node, bytes } => {
                    serde_json::json!({"event": "output", "step": name(*node), "text": String::from_utf8_lossy(bytes)})
                }
                Event::Finished { node, elapsed, layer } => {
                    serde_json::json!({"event": "finished", "step": name(*node), "seconds": elapsed.as_secs_f64(), "layer_bytes": layer})
                }
                Event::Failed { node, message } => {
                    serde_json::json!({"event": "failed", "step": name(*node), "message": message})
                }
                Event::Explain { node, reasons } => {
                    serde_json::json!({"event": "explain", "step": name(*node), "reasons": reasons})
                }
            };
            let _ = writeln!(err, "{v}");
            return;
        }
        let _ = match e {
            Event::Started { node } => writeln!(err, "{} ...", name(*node)),
            Event::Reused { node } => writeln!(err, "{} (cached)", name(*node)),
            Event::Output { node, bytes } => {
                let prefix = format!("[{}]", self.plan.graph[*node].stage);
                for line in String::from_utf8_lossy(bytes).lines() {
                    let _ = writeln!(err, "{prefix} | {line}");
                }
                Ok(())
            }
            Event::Finished { node, elapsed, layer } => match layer {
                Some(bytes) => writeln!(
                    err,
                    "{} done in {:.2}s ({})",
                    name(*node),
                    elapsed.as_secs_f64(),
                    human(*bytes)
                ),
                None => writeln!(
                    err,
                    "{} done in {:.2}s (no changes)",
                    name(*node),
                    elapsed.as_secs_f64()
                ),
            },
            Event::Failed { node, message } => writeln!(err, "{} FAILED: {message}", name(*node)),
            Event::Explain { node, reasons } => {
                for r in reasons {
                    let _ = writeln!(err, "{} runs because {r}", name(*node));
                }
                Ok(())
            }
        };
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}
