//! `stack import`: Dockerfile → build file.

use std::io::Write;
use std::path::PathBuf;

use super::args::ImportArgs;
use super::{Failure, output};
use crate::diag::{Report, SourceFile};
use crate::dockerfile::{ImportOptions, import};

pub(super) fn run(args: &ImportArgs) -> Result<(), Failure> {
    let path = args.dockerfile.clone().unwrap_or_else(|| PathBuf::from("Dockerfile"));
    let text = fs_err::read_to_string(&path)?;
    let opts = ImportOptions {
        target: args.target.clone(),
        image_name: args.name.clone(),
        strict: args.strict,
        build_args: args.build_args.clone(),
    };
    let src = SourceFile::new(path.display().to_string(), text.clone());
    match import(&text, &opts) {
        Ok(imported) => {
            if !imported.warnings.is_empty() {
                output::print_report(&Report::new(src, imported.warnings));
            }
            match &args.output {
                Some(out) if out.exists() && !args.force => {
                    return Err(super::fail(
                        format!("`{}` exists; stack import does not overwrite it", out.display()),
                        Some("pass `--force` to replace it, or choose another `-o` file"),
                    ));
                }
                Some(out) => fs_err::write(out, imported.kdl.as_bytes())?,
                None => std::io::stdout().write_all(imported.kdl.as_bytes())?,
            }
            Ok(())
        }
        Err(diags) => {
            output::print_report(&Report::new(src, diags));
            Err(Failure::UserFiles)
        }
    }
}
