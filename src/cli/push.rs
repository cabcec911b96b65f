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

/// Pushes one image under `tag`, checking that the registry's digest equals ours.
pub(super) fn push_one(
    client: &Client,
    store: &Store,
    image: &BuiltImage,
    tag: &str,
) -> Result<(), Failure> {
    let target =
        Reference::parse(tag).map_err(|e| fail(format!("cannot push to `{tag}`: {e}"), None))?;
    let manifest =
        store.read_blob(&image.manifest.digest).map_err(|e| fail(error_chain(&e), None))?;
    let report = client
        .push_with(&manifest, OCI_MANIFEST, &image.blobs(), &target, store, &PushOptions::default())
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
    super::output::note(format!(
        "pushed {tag}@{} ({} blob(s) uploaded, {} already there, {} mounted)",
        report.digest,
        report.uploaded.len(),
        report.skipped.len(),
        report.mounted.len()
    ));
    let _ = writeln!(std::io::stdout(), "{tag} {}", report.digest);
    Ok(())
}

/// Pushes every registry tag of the built images.
pub(super) fn push_all(
    client: &Client,
    store: &Store,
    images: &[BuiltImage],
) -> Result<(), Failure> {
    for image in images {
        let targets: Vec<&String> = image.tags.iter().filter(|t| names_registry(t)).collect();
        if targets.is_empty() {
            super::output::note(format!(
                "note: `{}` has no tag that names a registry (e.g. `registry.example.com/{}:1.0`); not pushed",
                image.name, image.name
            ));
        }
        for t in targets {
            push_one(client, store, image, t)?;
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
    push_one(client, store, &image, target)
}

#[cfg(test)]
mod tests {
    use super::names_registry;

    #[test]
    fn only_tags_with_a_host_are_pushed() {
        assert!(names_registry("127.0.0.1:5000/app:1"));
        assert!(names_registry("registry.example.com/team/app"));
        assert!(names_registry("localhost/app"));
        assert!(!names_registry("example/app:1.0"));
        assert!(!names_registry("app"));
    }
}
