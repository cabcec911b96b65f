//! Pushing built images: `stack build --push` and `stack push`.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::load::error_chain;
use super::{Failure, fail};
use crate::digest::OciDigest;
use crate::exec::BuiltImage;
use crate::oci::image::{AttachedIndex, Descriptor, Index, Manifest, OCI_INDEX};
use crate::oci::index::Child;
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

/// What `--push` did with one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PushStatus {
    /// The manifest was put (and the blobs the registry lacked sent).
    Pushed,
    /// The tag already named the image's digest: nothing was sent.
    Unchanged,
}

impl PushStatus {
    /// The word the output and the results file use.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pushed => "pushed",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One tag `--push` handled.
#[derive(Debug, Clone)]
pub(super) struct PushedTag {
    pub image: String,
    pub tag: String,
    pub status: PushStatus,
}

/// At most this many tags are checked at once: enough to hide the round trips of a
/// monorepo's many tags, few enough not to look like an attack to the registry.
const PARALLEL_CHECKS: usize = 8;

/// The digest each tag names on its registry now (`None`: no such tag, or it cannot be
/// told), asked in parallel with one manifest `HEAD` each.
fn current_digests(client: &Client, tags: &[&str]) -> Result<Vec<Option<OciDigest>>, Failure> {
    let next = AtomicUsize::new(0);
    let found: Mutex<Vec<Option<Result<Option<OciDigest>, String>>>> =
        Mutex::new(vec![None; tags.len()]);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_CHECKS.min(tags.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(tag) = tags.get(i) else { return };
                    let answer = check_tag(client, tag);
                    found.lock().expect("no panics while locked")[i] = Some(answer);
                }
            });
        }
    });
    found
        .into_inner()
        .expect("no panics while locked")
        .into_iter()
        .map(|a| a.expect("every tag was checked").map_err(|m| fail(m, None)))
        .collect()
}

/// One tag's current digest; a reference without a tag (pushed by digest) is never skipped.
fn check_tag(client: &Client, tag: &str) -> Result<Option<OciDigest>, String> {
    let target = Reference::parse(tag).map_err(|e| format!("cannot push to `{tag}`: {e}"))?;
    if target.tag.is_none() || target.digest.is_some() {
        return Ok(None);
    }
    client.tag_digest(&target).map_err(|e| error_chain(&e))
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
    let opts =
        PushOptions { mount_from: mounts.for_target(&target, bases), ..PushOptions::default() };
    // An index's manifests go first, by digest: a registry refuses an index whose manifests
    // it does not have.
    let by_digest = Reference { tag: None, ..target.clone() };
    for child in image.children() {
        let bytes =
            store.read_blob(&child.manifest.digest).map_err(|e| fail(error_chain(&e), None))?;
        client
            .push_with(&bytes, &child.manifest.media_type, &child.blobs, &by_digest, store, &opts)
            .map_err(|e| fail(error_chain(&e), None))?;
    }
    let top = image.top();
    let manifest = store.read_blob(&top.digest).map_err(|e| fail(error_chain(&e), None))?;
    let blobs = if image.index.is_some() { Vec::new() } else { image.blobs() };
    let report = client
        .push_with(&manifest, &top.media_type, &blobs, &target, store, &opts)
        // Authentication errors say to run `stack login` themselves; others need no hint.
        .map_err(|e| fail(error_chain(&e), None))?;
    if report.digest != top.digest {
        return Err(fail(
            format!(
                "`{tag}`: the registry stored digest `{}`, not `{}`",
                report.digest, top.digest
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
    mounts.pushed.insert(0, target);
    Ok(())
}

/// Pushes `image` under `tag` unless the tag already names its digest (`current`).
fn push_or_skip(
    client: &Client,
    store: &Store,
    image: &BuiltImage,
    tag: &str,
    current: Option<&OciDigest>,
    mounts: &mut MountSources,
    bases: &[String],
) -> Result<PushStatus, Failure> {
    if current == Some(&image.top().digest) {
        super::output::note(format!(
            "unchanged {tag}@{} (the registry has it already; nothing sent)",
            image.top().digest
        ));
        // The repository holds every blob of the image: a source for mounts as well.
        if let Ok(target) = Reference::parse(tag) {
            mounts.pushed.insert(0, target);
        }
        return Ok(PushStatus::Unchanged);
    }
    push_one(client, store, image, tag, mounts, bases)?;
    Ok(PushStatus::Pushed)
}

/// The line standard output gets per pushed (or unchanged) tag.
fn print_pushed(tag: &str, image: &BuiltImage) {
    let _ = writeln!(std::io::stdout(), "{tag} {}", image.digest());
}

/// Pushes every registry tag of the built images, leaving alone the tags that already name
/// the image (checked first, in parallel); `bases` gives each image's base image references
/// (by image name), whose repositories may hold its first layers. `quiet` (`-q`) leaves
/// standard output to the images' digests.
pub(super) fn push_all(
    client: &Client,
    store: &Store,
    images: &[BuiltImage],
    bases: &dyn Fn(&str) -> Vec<String>,
    quiet: bool,
) -> Result<Vec<PushedTag>, Failure> {
    let mut targets: Vec<(&BuiltImage, &str)> = Vec::new();
    for image in images {
        let before = targets.len();
        targets
            .extend(image.tags.iter().filter(|t| names_registry(t)).map(|t| (image, t.as_str())));
        if targets.len() == before {
            super::output::note(format!(
                "note: `{}` has no tag that names a registry (e.g. `registry.example.com/{}:1.0`); not pushed",
                image.name, image.name
            ));
        }
    }
    let tags: Vec<&str> = targets.iter().map(|(_, t)| *t).collect();
    let current = current_digests(client, &tags)?;
    let mut mounts = MountSources::default();
    let mut done = Vec::new();
    for ((image, tag), current) in targets.into_iter().zip(&current) {
        let bases = bases(&image.name);
        let status =
            push_or_skip(client, store, image, tag, current.as_ref(), &mut mounts, &bases)?;
        if !quiet {
            print_pushed(tag, image);
        }
        done.push(PushedTag { image: image.name.clone(), tag: tag.to_owned(), status });
    }
    Ok(done)
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
    let import = |d: &Descriptor| -> Result<(), Failure> {
        let path = layout.join("blobs/sha256").join(d.digest.hex());
        let mut f = fs_err::File::open(&path)?;
        store.import_blob(&mut f, &d.digest, Some(d.size)).map_err(|e| fail(error_chain(&e), None))
    };
    // A manifest and its blobs, imported into the store.
    let manifest_of = |d: &Descriptor| -> Result<Manifest, Failure> {
        import(d)?;
        let m: Manifest = serde_json::from_slice(
            &store.read_blob(&d.digest).map_err(|e| fail(error_chain(&e), None))?,
        )
        .map_err(|e| fail(format!("manifest `{}` is invalid: {e}", d.digest), None))?;
        import(&m.config)?;
        m.layers.iter().try_for_each(&import)?;
        Ok(m)
    };
    let mut index = None;
    let mut top = desc.clone();
    if desc.media_type == OCI_INDEX {
        import(&desc)?;
        let idx: Index = serde_json::from_slice(
            &store.read_blob(&desc.digest).map_err(|e| fail(error_chain(&e), None))?,
        )
        .map_err(|e| fail(format!("index `{}` is invalid: {e}", desc.digest), None))?;
        let mut children = Vec::new();
        for d in &idx.manifests {
            let m = manifest_of(d)?;
            let mut blobs = vec![m.config];
            blobs.extend(m.layers);
            children.push(Child { manifest: d.clone(), blobs });
        }
        let first = idx.manifests.iter().find(|d| !crate::oci::index::is_attestation(d));
        top = first.cloned().ok_or_else(|| {
            fail(format!("index `{}` of `{name}` lists no image manifest", desc.digest), None)
        })?;
        index = Some(AttachedIndex { descriptor: desc, children });
    }
    let manifest = manifest_of(&top)?;
    let image = BuiltImage {
        name: name.to_owned(),
        tags: vec![target.to_owned()],
        platform: top.platform.clone().unwrap_or_else(crate::oci::image::Platform::host),
        manifest: top,
        config: manifest.config,
        layers: manifest.layers,
        platforms: Vec::new(),
        index,
    };
    let current = current_digests(client, &[target])?;
    let mut mounts = MountSources::default();
    push_or_skip(client, store, &image, target, current[0].as_ref(), &mut mounts, &[])?;
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
