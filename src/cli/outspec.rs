//! docker's `-o`/`--output` specs (`type=local,dest=DIR`, `type=oci,dest=FILE`, …) read as
//! stack's outputs; any other `-o` value is a path, as `--out` always was.

use std::path::{Path, PathBuf};

use super::args::Format;

/// What an `-o type=…` spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Spec {
    /// The image's files into a folder.
    Local(PathBuf),
    /// An archive (`dest=-`: standard output) in this format.
    Archive(PathBuf, Format),
}

/// `None` for a plain path; `Some` for a `type=…` spec; an error for a spec stack has no
/// equivalent of, saying what to use instead.
pub(super) fn parse(out: &Path) -> Result<Option<Spec>, String> {
    let Some(text) = out.to_str().filter(|t| t.starts_with("type=")) else { return Ok(None) };
    let (mut kind, mut dest) = ("", None);
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = v,
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => {
                return Err(format!(
                    "`-o {text}`: `{part}` is not supported; write `type=TYPE,dest=PATH`"
                ));
            }
        }
    }
    let need_dest = || dest.clone().ok_or_else(|| format!("`-o {text}` needs `dest=PATH`"));
    match kind {
        "local" => Ok(Some(Spec::Local(need_dest()?))),
        "oci" => Ok(Some(Spec::Archive(need_dest()?, Format::OciArchive))),
        "docker" => Ok(Some(Spec::Archive(need_dest()?, Format::DockerArchive))),
        "image" | "registry" => Err(format!(
            "`-o type={kind}`: push with `--push` (tags that name a registry), or load into Docker with `--load`"
        )),
        "tar" => {
            Err("`-o type=tar` (the files as one tar) is not supported; use `type=local,dest=DIR`"
                .into())
        }
        _ => Err(format!("`-o type={kind}` is not supported: use `local`, `oci` or `docker`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_map_to_outputs_and_paths_stay_paths() {
        let p = |s: &str| parse(Path::new(s));
        assert_eq!(p("stack-out"), Ok(None));
        assert_eq!(p("type=local,dest=bin"), Ok(Some(Spec::Local("bin".into()))));
        assert_eq!(p("type=oci,dest=-"), Ok(Some(Spec::Archive("-".into(), Format::OciArchive))));
        assert_eq!(
            p("type=docker,dest=i.tar"),
            Ok(Some(Spec::Archive("i.tar".into(), Format::DockerArchive)))
        );
        assert!(p("type=local").unwrap_err().contains("dest="));
        assert!(p("type=registry").unwrap_err().contains("--push"));
        assert!(p("type=local,dest=x,compression=zstd").is_err());
    }
}
