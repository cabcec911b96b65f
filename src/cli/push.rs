//! Pushing built images: `stack build --push` and `stack push`.

use std::io::Write;
use std::path::Path;

use super::load::error_chain;
use super::{Failure, fail};
use crate::exec::BuiltImage;
use crate::oci::image::{Manifest, OCI_MANIFEST};
use crate::registry::{Client, PushOptions, Reference};
use crate::store::Store;

/// Whether a tag names a registry host (`host.tld/…`, `host:port/…`, `localhost/…`); bare
/// names like `example/app` are not pushed anywhere implicitly.
pub(super) fn names_registry(tag: &str) -> bool {
    tag.split_once('/').is_some_and(|(first, _)| {
        first.contains('.') || first.contains(':') || first == "localhost"
    })
}

/// Repositories that may already hold an image's blobs: its bases' and those this run has
/// pushed to. A registry mounts a blob from one of its own repositories instead of taking
/// it again (`POST …/blobs/uploads/?mount=DIGEST&from=REPO`).
#[derive(Debug, Default)]
pub(super) struct MountSources {
    /// Most recent first: a repository just pushed to holds every blob of that image.
    pushed: Vec<Reference>,
}

impl MountSources {
    /// The repositories of `target`'s registry to try, other than `target`'s own: this run's
    /// pushes, then the bases (given as references).
    fn for_target(&self, target: &Reference, bases: &[String]) -> Vec<String> {
        let bases = bases.iter().filter_map(|b| Reference::parse(b).ok());
        let mut out: Vec<String> = Vec::new();
        for r in self.pushed.iter().cloned().chain(bases) {
            if r.registry == target.registry
                && r.repository != target.repository
                && !out.contains(&r.repository)
            {
                out.push(r.repository);
            }
        }
        out
    }
}

/// Pushes one image under `tag`, checking that the registry's digest equals ours; blobs are
/// mounted from `mounts`' repositories when the registry holds them there.
pub(super) fn push_one(
    client: &Client,
    store: &Store,
    image: &BuiltImage,
    tag: &str,
    mounts: &mut MountSources,
    bases: &[String],
) -> Result<(), Failure> {
    let target =
        Reference::parse(tag).map_err(|e| fail(format!("cannot push to `{tag}`: {e}"), None))?;
    let manifest =
        store.read_blob(&image.manifest.digest).map_err(|e| fail(error_chain(&e), None))?;
    let opts =
        PushOptions { mount_from: mounts.for_target(&target, bases), ..PushOptions::default() };
    let report = client
        .push_with(&manifest, OCI_MANIFEST, &image.blobs(), &target, store, &opts)
        // Authentication errors say to run `stack login` themselves; others need no hint.
        .map_err(|e| fail(error_chain(&e), None))?;
    if report.digest != image.manifest.digest {
        return Err(fail(
            format!(
                "`{tag}`: the registry stored digest `{}`, not `{}`",
                report.digest, image.manifest.digest
            ),
            None,
        ));
    }
    let _ = writeln!(
        std::io::stderr(),
        "pushed {tag}@{} ({} blob(s) uploaded, {} already there, {} mounted)",
        report.digest,
        report.uploaded.len(),
        report.skipped.len(),
        report.mounted.len()
    );
    mounts.pushed.insert(0, target);
    Ok(())
}

/// The line standard output gets per pushed tag.
fn print_pushed(tag: &str, image: &BuiltImage) {
    let _ = writeln!(std::io::stdout(), "{tag} {}", image.manifest.digest);
}

/// Pushes every registry tag of the built images; `bases` gives each image's base image
/// references (by image name), whose repositories may hold its first layers. `quiet` (`-q`)
/// leaves standard output to the images' digests.
pub(super) fn push_all(
    client: &Client,
    store: &Store,
    images: &[BuiltImage],
    bases: &dyn Fn(&str) -> Vec<String>,
    quiet: bool,
) -> Result<(), Failure> {
    let mut mounts = MountSources::default();
    for image in images {
        let bases = bases(&image.name);
        let targets: Vec<&String> = image.tags.iter().filter(|t| names_registry(t)).collect();
        if targets.is_empty() {
            eprintln!(
                "note: `{}` has no tag that names a registry (e.g. `registry.example.com/{}:1.0`); not pushed",
                image.name, image.name
            );
        }
        for t in targets {
            push_one(client, store, image, t, &mut mounts, &bases)?;
            if !quiet {
                print_pushed(t, image);
            }
        }
    }
    Ok(())
}

/// `stack push NAME TARGET`: an image from an OCI layout to a registry.
pub(super) fn push_from_layout(
    client: &Client,
    store: &Store,
    layout: &Path,
    name: &str,
    target: &str,
) -> Result<(), Failure> {
    // The error for a missing name lists the names the layout holds.
    let desc = super::inspect::Layout::open(layout)?.find(name)?;
    let import = |d: &crate::oci::image::Descriptor| -> Result<(), Failure> {
        let path = layout.join("blobs/sha256").join(d.digest.hex());
        let mut f = fs_err::File::open(&path)?;
        store.import_blob(&mut f, &d.digest, Some(d.size)).map_err(|e| fail(error_chain(&e), None))
    };
    import(&desc)?;
    let manifest: Manifest = serde_json::from_slice(
        &store.read_blob(&desc.digest).map_err(|e| fail(error_chain(&e), None))?,
    )
    .map_err(|e| fail(format!("manifest `{}` is invalid: {e}", desc.digest), None))?;
    import(&manifest.config)?;
    for l in &manifest.layers {
        import(l)?;
    }
    let image = BuiltImage {
        name: name.to_owned(),
        tags: vec![target.to_owned()],
        manifest: desc,
        config: manifest.config,
        layers: manifest.layers,
    };
    push_one(client, store, &image, target, &mut MountSources::default(), &[])?;
    print_pushed(target, &image);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{MountSources, Reference, names_registry};

    #[test]
    fn mounts_come_from_the_same_registry_latest_push_first() {
        let r = |s: &str| Reference::parse(s).unwrap();
        let m = MountSources { pushed: vec![r("reg:5000/b:1"), r("reg:5000/a:1"), r("other/x")] };
        let bases = ["reg:5000/base:3".to_owned(), "docker.io/library/alpine".to_owned()];
        assert_eq!(m.for_target(&r("reg:5000/a:2"), &bases), ["b", "base"]);
        assert!(m.for_target(&r("elsewhere:1/a"), &[]).is_empty());
    }

    #[test]
    fn only_tags_with_a_host_are_pushed() {
        assert!(names_registry("127.0.0.1:5000/app:1"));
        assert!(names_registry("registry.example.com/team/app"));
        assert!(names_registry("localhost/app"));
        assert!(!names_registry("example/app:1.0"));
        assert!(!names_registry("app"));
    }
}
