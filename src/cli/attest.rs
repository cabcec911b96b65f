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
use crate::oci::image::AttachedIndex;
use crate::oci::index::{PlatformImage, Statement};
use crate::plan::{FileInput, Plan};
use crate::sbom::Format;
use crate::store::Store;

/// The attestations of one image, as in-toto statements, and the SBOM document itself.
#[derive(Debug, Clone, Default)]
pub(super) struct ImageAttestations {
    pub image: String,
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
    images
        .iter()
        .map(|image| {
            let sbom = match s.wanted.sbom {
                Some(format) => Some(sbom(s, format, image)?),
                None => None,
            };
            let provenance = s.wanted.provenance.then(|| provenance(s, image, &build_files));
            Ok(ImageAttestations { image: image.name.clone(), sbom, provenance })
        })
        .collect()
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
    let target = s.plan.images.iter().find(|t| t.name == image.name);
    let mut deps = build_files.to_vec();
    if let Some(t) = target {
        deps.extend(crate::attest::inputs::plan_dependencies(s.plan, t.node));
    }
    let platform = target.map(|t| super::results::platform_of(&t.config)).unwrap_or_default();
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
        if let Some((format, doc, _)) = &a.sbom {
            let path = write_one(dir, &format!("{}.{}", a.image, format.extension()), doc)?;
            output::note(format!("wrote the SBOM of {} to {}", a.image, path.display()));
        }
        if let Some(statement) = &a.provenance {
            let path = write_one(dir, &format!("{}.provenance.json", a.image), statement)?;
            output::note(format!("wrote the provenance of {} to {}", a.image, path.display()));
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
    for image in images {
        let Some(a) = all.iter().find(|a| a.image == image.name) else { continue };
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

/// Publishes each image that has attestations as an image index holding its manifest and an
/// attestation manifest (see [`crate::oci::index`]); the new documents go to the store.
pub(super) fn attach(
    store: &Store,
    plan: &Plan,
    images: &mut [BuiltImage],
    all: &[ImageAttestations],
) -> Result<(), Failure> {
    for image in images.iter_mut() {
        let Some(a) = all.iter().find(|a| a.image == image.name) else { continue };
        let statements = statements(a);
        let mut manifest = image.manifest.clone();
        manifest.platform =
            plan.images.iter().find(|t| t.name == image.name).map(|t| platform(&t.config));
        let assembled = crate::oci::index::assemble(&[PlatformImage {
            manifest,
            blobs: image.blobs(),
            statements,
        }]);
        for (desc, bytes) in &assembled.documents {
            store.put_blob(bytes).map_err(|e| {
                fail(
                    format!(
                        "cannot store attestation document `{}` of `{}`: {}",
                        desc.digest,
                        image.name,
                        error_chain(&e)
                    ),
                    None,
                )
            })?;
        }
        image.index =
            Some(AttachedIndex { descriptor: assembled.index, children: assembled.children });
    }
    Ok(())
}

/// The platform of an image config (`os`, `architecture`, `variant`).
fn platform(config: &crate::oci::image::ImageConfig) -> crate::oci::image::Platform {
    crate::oci::image::Platform {
        architecture: config.architecture(),
        os: config.os(),
        variant: config.string("variant").filter(|v| !v.is_empty()),
    }
}
