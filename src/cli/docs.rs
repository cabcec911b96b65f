//! `stack completions` and `stack man`: shell completions and man pages, generated from the
//! same clap definitions as the parser, so they never drift from the real flags.

use std::io::Write;

use clap::CommandFactory;

use super::Failure;
use super::args::{Cli, CompletionsArgs, ManArgs};

/// Prints the completion script for one shell to standard output.
pub(super) fn completions(args: &CompletionsArgs) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "stack", &mut out);
    out.flush()?;
    Ok(())
}

/// Writes `stack.1` (to standard output, or with one page per command to `--out DIR`).
pub(super) fn man(args: &ManArgs) -> Result<(), Failure> {
    let cmd = Cli::command();
    let Some(dir) = &args.out else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        out.flush()?;
        return Ok(());
    };
    fs_err::create_dir_all(dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    fs_err::write(dir.join("stack.1"), page)?;
    for sub in cmd.get_subcommands() {
        let name = format!("stack-{}", sub.get_name());
        // The page's title names the command as it is typed (`stack-build`).
        let sub = sub.clone().display_name(name.clone()).bin_name(name.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).title(name.clone()).render(&mut page)?;
        fs_err::write(dir.join(format!("{name}.1")), page)?;
    }
    Ok(())
}
