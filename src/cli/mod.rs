//! The command line: argument parsing, one file per subcommand, printing and exit codes.
//! The only module that prints.
//!
//! Exit codes: 0 success; 1 a problem in the user's build file or Dockerfile (diagnostics
//! printed); 2 bad command-line usage; 3 a build step failed; 4 any other error (IO, store,
//! images, registry). `stack verify`: 0 identical, 5 the images or a step differ, 6 could
//! not build (any of 1, 3 and 4 above, its message printed as usual).

#![allow(clippy::disallowed_macros, reason = "cli is the module that prints")]

mod affected;
mod args;
mod attest;
mod build;
mod cache;
mod check;
mod docs;
mod epoch;
mod fleet;
mod graph;
mod import;
mod inspect;
mod load;
mod lock;
mod login;
mod output;
mod outspec;
mod progress;
mod push;
mod remote_cache;
mod request;
mod results;
mod sbom;
mod verify;

use std::process::ExitCode;

use clap::Parser;

pub(crate) use args::Cli;

/// How a command ended, mapped to the documented exit codes.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Diagnostics were printed.
    UserFiles,
    /// Only registries that could not be reached stopped planning (diagnostics were printed).
    Registry,
    /// A build step failed (its diagnostic was printed).
    StepFailed,
    /// Only the machine (a full disk, no memory) stopped planning (diagnostics were printed).
    Machine,
    /// Ctrl-C or SIGTERM stopped the build.
    Interrupted,
    /// `stack verify` found a difference (already printed).
    Differs,
    /// Anything else: printed as `error:` with its causes.
    Other(Box<dyn std::error::Error + Send + Sync>, Option<String>),
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Other(Box::new(e), None)
    }
}

/// Entry point of the `stack` binary.
pub fn main() -> ExitCode {
    if let Some(code) = crate::exec::sandbox::helper_main() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    std::panic::set_hook(Box::new(|info| {
        output::note(format!(
            "error: stack crashed: {info}\n  this is a bug in stack; please report it with the \
             command you ran"
        ));
    }));
    let cli = Cli::parse();
    if let args::Command::Build(a) = &cli.command
        && a.progress == args::Progress::Json
    {
        output::use_json();
    }
    if matches!(
        cli.command,
        args::Command::Build(_) | args::Command::Cache(_) | args::Command::Verify(_)
    ) {
        enter_user_namespace();
    }
    crate::exec::cancel::install_handlers();
    let color = output::stderr_color();
    let verifying = matches!(cli.command, args::Command::Verify(_));
    let result = match cli.command {
        args::Command::Build(a) => build::run(&a),
        args::Command::Verify(a) => verify::run(&a),
        args::Command::Check(a) => check::run(&a),
        args::Command::Graph(a) => graph::run(&a),
        args::Command::Affected(a) => affected::run(&a),
        args::Command::Import(a) => import::run(&a),
        args::Command::Lock(a) => lock::run(&a),
        args::Command::Login(a) => login::run(&a),
        args::Command::Images(a) => inspect::images(&a),
        args::Command::Inspect(a) => inspect::inspect(&a),
        args::Command::Sbom(a) => sbom::run(&a),
        args::Command::Provenance(a) => sbom::provenance(&a),
        args::Command::Push(a) => push_cmd(&a),
        args::Command::Cache(c) => cache::run(&c),
        args::Command::Completions(a) => docs::completions(&a),
        args::Command::Man(a) => docs::man(&a),
    };
    let code = match result {
        Ok(()) => 0,
        Err(Failure::UserFiles) => 1,
        Err(Failure::Registry) => 4,
        Err(Failure::StepFailed) => 3,
        Err(Failure::Machine) => 7,
        Err(Failure::Interrupted) => 130,
        Err(Failure::Differs) => 5,
        Err(Failure::Other(e, hint)) => {
            if is_broken_pipe(e.as_ref()) {
                return ExitCode::SUCCESS;
            }
            output::print_error(e.as_ref(), hint.as_deref(), color);
            if crate::diag::is_machine_error(e.as_ref()) || lacks_a_tool(e.as_ref()) {
                7
            } else {
                4
            }
        }
    };
    // For `stack verify`, every way of failing to build is one code, apart from "differs".
    let code = if verifying && matches!(code, 1 | 3 | 4 | 7) { 6 } else { code };
    output::finish(code);
    ExitCode::from(code)
}

/// Rootless with subordinate ids: builds and cache commands run as root of a user namespace
/// that maps them (before any thread starts), so layers keep their owners and steps may run as
/// other users. See `exec::sandbox::userns`.
fn enter_user_namespace() {
    use crate::exec::sandbox::userns::{self, Entered};
    if let Entered::No(Some(reason)) = userns::enter() {
        output::note(format!(
            "warning: cannot use subordinate ids ({reason}); steps can run as root only \
             (set {}=off to silence this)",
            userns::SUBIDS_ENV
        ));
    }
}

fn push_cmd(a: &args::PushArgs) -> Result<(), Failure> {
    let dir = a.cache_dir.clone().unwrap_or_else(crate::store::Store::default_dir);
    let store = crate::store::Store::open(&dir).map_err(|e| fail(load::error_chain(&e), None))?;
    let client = crate::registry::Client::new(crate::registry::ClientOptions {
        insecure_registries: a.insecure_registries.clone(),
        ..Default::default()
    });
    push::push_from_layout(&client, &store, &a.layout, &a.name, &a.target)
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A plain message error for the CLI's own problems.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Message(pub String);

fn fail(msg: impl Into<String>, hint: Option<&str>) -> Failure {
    Failure::Other(Box::new(Message(msg.into())), hint.map(str::to_owned))
}

/// Whether the machine lacks a tool the build needs (an emulator for a platform): the
/// machine's failure, like a full disk.
fn lacks_a_tool(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<crate::exec::BuildError>(),
        Some(crate::exec::BuildError::Emulation(_))
    )
}
