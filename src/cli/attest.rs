//! `--sbom` and `--provenance`: each image's SBOM and SLSA provenance, written beside the output
//! and attached to each image as attestation manifests of an image index (`attach`).

use std::path::Path;

use super::args::BuildArgs;
use super::load::error_chain;
use super::{Failure, fail, output};
use crate::attest::intoto::{self, Subject};
use crate::attest::provenance::{self, Dependency};
use crate::digest::OciDigest;
use crate::exec::BuiltImage;
use crate::oci::index::Statement;
use crate::plan::{FileInput, Plan};
use crate::sbom::Format;
use crate::store::Store;

/// The attestations of one image (one platform of it), as in-toto statements, and the SBOM
/// document itself.
#[derive(Debug, Clone, Default)]
pub(super) struct ImageAttestations {
    pub image: String,
    /// The platform, for one platform of a multi-platform image (its files are named by it).
    pub platform: Option<crate::oci::image::Platform>,
    /// The SBOM document as `--sbom-format` asked, and its in-toto statement.
    pub sbom: Option<(Format, Vec<u8>, Vec<u8>)>,
    /// The SLSA provenance statement.
    pub provenance: Option<Vec<u8>>,
}

/// What the build needs to describe its images.
pub(super) struct Sources<'a> {
    pub plan: &'a Plan,
    pub files: &'a [FileInput],
    pub store: &'a Store,
    pub args: &'a BuildArgs,
    pub wanted: Wanted,
    pub epoch: i64,
}

/// The attestations asked for, by the command line or the build files' `attest` nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Wanted {
    pub sbom: Option<Format>,
    pub provenance: bool,
}

impl Wanted {
    pub(super) fn any(self) -> bool {
        self.sbom.is_some() || self.provenance
    }
}

/// `--sbom`/`--provenance` or any build file's `attest sbom=#true`/`provenance=#true`; the
/// format is `--sbom-format`'s, else the first build file's `sbom-format`, else SPDX.
pub(super) fn wanted(args: &BuildArgs, files: &[FileInput]) -> Wanted {
    let decls: Vec<&crate::syntax::ast::AttestDecl> =
        files.iter().filter_map(|f| f.ast.attest.as_ref()).collect();
    let sbom = args.sbom || decls.iter().any(|d| d.sbom);
    let file_format = decls.iter().find_map(|d| d.sbom_format.as_deref()).map(|f| match f {
        "cyclonedx" => Format::CycloneDx,
        _ => Format::Spdx,
    });
    let format = args.sbom_format.map(Format::from).or(file_format).unwrap_or_default();
    Wanted {
        sbom: sbom.then_some(format),
        provenance: args.provenance || decls.iter().any(|d| d.provenance),
    }
}

/// The attestations `--sbom`/`--provenance` ask for, per image (empty when neither is asked).
pub(super) fn collect(
    s: &Sources<'_>,
    images: &[BuiltImage],
) -> Result<Vec<ImageAttestations>, Failure> {
    if !s.wanted.any() {
        return Ok(Vec::new());
    }
    let build_files = build_files(s.files);
    let mut all = Vec::new();
    for whole in images {
        // Each platform of a multi-platform image is described on its own.
        for image in whole.parts() {
            let sbom = match s.wanted.sbom {
                Some(format) => Some(sbom(s, format, image)?),
                None => None,
            };
            let provenance = s.wanted.provenance.then(|| provenance(s, image, &build_files));
            let platform = whole.is_multi_platform().then(|| image.platform.clone());
            all.push(ImageAttestations { image: image.name.clone(), platform, sbom, provenance });
        }
    }
    Ok(all)
}

fn sbom(
    s: &Sources<'_>,
    format: Format,
    image: &BuiltImage,
) -> Result<(Format, Vec<u8>, Vec<u8>), Failure> {
    let bases = super::build::base_images(s.plan, &image.name);
    let digest = &image.manifest.digest;
    let doc =
        crate::sbom::document(s.store, format, &image.name, digest, &image.layers, &bases, s.epoch)
            .map_err(|e| {
                let what = format!("cannot make the SBOM of `{}` ({digest})", image.name);
                fail(format!("{what}: {}", error_chain(&e)), None)
            })?;
    let predicate = match format {
        Format::Spdx => intoto::SPDX_PREDICATE,
        Format::CycloneDx => intoto::CYCLONEDX_PREDICATE,
    };
    let statement = intoto::wrap_document(&Subject { name: &image.name, digest }, predicate, &doc)
        .map_err(|e| {
            fail(format!("the SBOM of `{}` ({digest}) is not JSON: {e}", image.name), None)
        })?;
    Ok((format, doc, statement))
}

fn provenance(s: &Sources<'_>, image: &BuiltImage, build_files: &[Dependency]) -> Vec<u8> {
    let target =
        s.plan.images.iter().find(|t| t.name == image.name && t.platform == image.platform);
    let mut deps = build_files.to_vec();
    if let Some(t) = target {
        deps.extend(crate::attest::inputs::plan_dependencies(s.plan, t.node));
    }
    let platform = image.platform.to_string();
    let args = super::request::plan_request(&s.args.file).args;
    provenance::statement_of(&provenance::Build {
        image: &image.name,
        digest: &image.manifest.digest,
        build_file: build_files.first().map_or("", |d| d.name.as_str()),
        args: &args,
        platform: &platform,
        dependencies: &deps,
        epoch: s.epoch,
        compression: match s.args.compression {
            super::args::CompressionArg::Gzip => "gzip",
            super::args::CompressionArg::Zstd => "zstd",
        },
    })
}

/// The build file and its includes, named relative to the main build context (a file outside
/// it by its file name alone), with the sha256 of the text the user wrote (for an imported
/// Dockerfile, the Dockerfile's).
fn build_files(files: &[FileInput]) -> Vec<Dependency> {
    let root = files.first().and_then(|f| fs_err::canonicalize(&f.context_dir).ok());
    files
        .iter()
        .map(|f| {
            let (name, text) = match &f.origin {
                Some(origin) => (origin.0.name.as_str(), origin.0.text.as_bytes()),
                None => (f.source.name.as_str(), f.source.text.as_bytes()),
            };
            let rel = relative(Path::new(name), root.as_deref());
            Dependency { uri: format!("file:{rel}"), name: rel, digest: OciDigest::of(text) }
        })
        .collect()
}

fn relative(path: &Path, root: Option<&Path>) -> String {
    let abs = fs_err::canonicalize(path).ok();
    let inside = abs.as_deref().zip(root).and_then(|(a, r)| a.strip_prefix(r).ok());
    match inside {
        Some(rel) => rel.to_string_lossy().into_owned(),
        None => path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
    }
}

/// Writes `NAME.spdx.json` (or `.cdx.json`) and `NAME.provenance.json` in `dir`, each whole or
/// not at all.
pub(super) fn write_beside(dir: &Path, all: &[ImageAttestations]) -> Result<(), Failure> {
    for a in all {
        // One platform of several: `NAME.linux-arm64-v8.spdx.json`.
        let stem = match &a.platform {
            Some(p) => format!("{}.{}", a.image, p.to_string().replace('/', "-")),
            None => a.image.clone(),
        };
        if let Some((format, doc, _)) = &a.sbom {
            let path = write_one(dir, &format!("{stem}.{}", format.extension()), doc)?;
            output::note(format!("wrote the SBOM of {stem} to {}", path.display()));
        }
        if let Some(statement) = &a.provenance {
            let path = write_one(dir, &format!("{stem}.provenance.json"), statement)?;
            output::note(format!("wrote the provenance of {stem} to {}", path.display()));
        }
    }
    Ok(())
}

fn write_one(dir: &Path, name: &str, bytes: &[u8]) -> Result<std::path::PathBuf, Failure> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    fs_err::write(&tmp, bytes)?;
    fs_err::rename(&tmp, &path)?;
    Ok(path)
}

/// The in-toto statements of an image's attestations, SBOM first.
fn statements(a: &ImageAttestations) -> Vec<Statement> {
    let mut out = Vec::new();
    if let Some((format, _, statement)) = &a.sbom {
        let predicate_type = match format {
            Format::Spdx => intoto::SPDX_PREDICATE,
            Format::CycloneDx => intoto::CYCLONEDX_PREDICATE,
        };
        out.push(Statement { predicate_type: predicate_type.into(), bytes: statement.clone() });
    }
    if let Some(statement) = &a.provenance {
        out.push(Statement {
            predicate_type: intoto::SLSA_PREDICATE.into(),
            bytes: statement.clone(),
        });
    }
    out
}

/// `--attest-as referrers`: each image's attestations as OCI 1.1 referrers in every repository
/// it was pushed to (through the tag schema where the registry has no referrers API).
pub(super) fn push_referrers(
    client: &crate::registry::Client,
    store: &Store,
    images: &[BuiltImage],
    all: &[ImageAttestations],
) -> Result<(), Failure> {
    for image in images.iter().flat_map(BuiltImage::parts) {
        let Some(a) = attestations_of(all, image) else { continue };
        let referrers: Vec<_> =
            statements(a).iter().map(|s| crate::oci::index::referrer(&image.manifest, s)).collect();
        let mut repos: Vec<crate::registry::Reference> = Vec::new();
        for tag in image.tags.iter().filter(|t| super::push::names_registry(t)) {
            let Ok(r) = crate::registry::Reference::parse(tag) else { continue };
            if !repos.iter().any(|x| x.registry == r.registry && x.repository == r.repository) {
                repos.push(r);
            }
        }
        for repo in &repos {
            let mode = client
                .push_referrers(repo, &image.manifest.digest, &referrers, store)
                .map_err(|e| fail(error_chain(&e), None))?;
            let how = match mode {
                crate::registry::referrers::ReferrersMode::Api => "the referrers API",
                crate::registry::referrers::ReferrersMode::TagSchema => "the fallback tag",
            };
            output::note(format!(
                "pushed {} attestation(s) of {} to {}/{} as referrers of {} (listed by {how})",
                referrers.len(),
                image.name,
                repo.registry,
                repo.repository,
                image.manifest.digest
            ));
        }
    }
    Ok(())
}

/// Publishes each image that has attestations as an image index holding its platforms'
/// manifests and an attestation manifest for each (see [`crate::oci::index`]); the new
/// documents go to the store.
pub(super) fn attach(
    store: &Store,
    images: &mut [BuiltImage],
    all: &[ImageAttestations],
) -> Result<(), Failure> {
    for image in images.iter_mut() {
        let statements: Vec<Vec<Statement>> = image
            .parts()
            .iter()
            .map(|part| attestations_of(all, part).map(statements).unwrap_or_default())
            .collect();
        if statements.iter().all(Vec::is_empty) {
            continue;
        }
        let index = crate::oci::image::index_of(image, &statements, store).map_err(|e| {
            let what = format!("cannot store the attestation documents of `{}`", image.name);
            fail(format!("{what}: {}", error_chain(&e)), None)
        })?;
        image.index = Some(index);
    }
    Ok(())
}

/// The attestations of one platform's image.
fn attestations_of<'a>(
    all: &'a [ImageAttestations],
    image: &BuiltImage,
) -> Option<&'a ImageAttestations> {
    all.iter()
        .find(|a| a.image == image.name && a.platform.as_ref().is_none_or(|p| *p == image.platform))
}
