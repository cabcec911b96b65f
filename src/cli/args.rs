//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `stack --version`: the version, the commit it was built from, and what this build can do.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STACK_GIT_COMMIT"),
    ")\nfeatures: sandbox (namespaces, overlayfs, seccomp, slirp4netns networking), rootless \
     (subordinate ids), compression (gzip, zstd), Dockerfile import, registries (OCI, Docker)"
);

/// Build reproducible OCI container images from a declarative build file, without a daemon.
#[derive(Debug, Parser)]
#[command(
    name = "stack",
    version,
    long_version = LONG_VERSION,
    about,
    long_about = None,
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Build the images of a build file into an OCI layout (or an archive)
    Build(BuildArgs),
    /// Rebuild the images from nothing and compare them with the normal build, bit for bit
    Verify(VerifyArgs),
    /// Parse and plan a build file, report every problem, build nothing
    Check(CheckArgs),
    /// Print the layer DAG of a build file as Graphviz DOT
    Graph(GraphArgs),
    /// List the images whose output can change between a git revision and the working tree
    Affected(AffectedArgs),
    /// Convert a Dockerfile into an equivalent build file
    Import(ImportArgs),
    /// Resolve every registry reference again and rewrite `stack.lock`
    Lock(LockArgs),
    /// List the images of an OCI layout (the output of `stack build`)
    Images(ImagesArgs),
    /// Show an image of an OCI layout: its configuration and layers, its files, or one file
    Inspect(InspectArgs),
    /// Print the SBOM of an image of an OCI layout (its OS packages and base)
    Sbom(SbomArgs),
    /// Print the SLSA provenance attached to an image of an OCI layout (`build --provenance`)
    Provenance(ProvenanceArgs),
    /// Push an image from an OCI layout to a registry
    Push(PushArgs),
    /// Store credentials for a registry
    Login(LoginArgs),
    /// Inspect and manage the local store (cache)
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Write the man pages (stack(1) and one per command)
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Folder to write `stack.1` and `stack-COMMAND.1` into; without it, `stack.1` goes to
    /// standard output
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    #[command(flatten)]
    pub file: FileArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ImagesArgs {
    /// The OCI layout to read
    #[arg(long = "from", value_name = "DIR", default_value = "stack-out")]
    pub layout: PathBuf,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The image's name or tag in the layout
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The OCI layout to read
    #[arg(long = "from", value_name = "DIR", default_value = "stack-out")]
    pub layout: PathBuf,
    /// List the image's files (mode, owner, size, path) instead
    #[arg(long, conflicts_with = "cat")]
    pub files: bool,
    /// Print the content of one file of the image instead
    #[arg(long, value_name = "PATH")]
    pub cat: Option<String>,
    /// Print JSON (with the manifest and config, or the file list)
    #[arg(long, conflicts_with = "cat")]
    pub json: bool,
}

/// An image of a layout, and where to write what is read from it (`stack sbom`, `stack
/// provenance`).
#[derive(Debug, Args)]
pub(crate) struct LayoutImageArgs {
    /// The image's name or tag in the layout
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The OCI layout to read
    #[arg(long = "from", value_name = "DIR", default_value = "stack-out")]
    pub layout: PathBuf,
    /// Write the document to this file instead of standard output
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ProvenanceArgs {
    #[command(flatten)]
    pub image: LayoutImageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SbomArgs {
    #[command(flatten)]
    pub image: LayoutImageArgs,
    /// The document's format
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = SbomFormat::Spdx)]
    pub format: SbomFormat,
    /// The document's creation time (seconds since the epoch; default: the image's)
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
}

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The image's name in the layout
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to push it, e.g. `registry.example.com/team/app:1.0`
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// The OCI layout holding the image
    #[arg(long = "from", value_name = "DIR", default_value = "stack-out")]
    pub layout: PathBuf,
    /// Speak plain HTTP to this registry (repeatable)
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// The local store (cache) folder
    #[arg(long, env = "STACK_CACHE_DIR", value_name = "DIR", hide_env_values = true)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Show how much space the store takes, per area
    Du(CacheDuArgs),
    /// Remove cached objects, least recently used first
    Prune(CachePruneArgs),
    /// Re-hash every blob, check every extracted layer, drop what is corrupt
    Verify(CacheVerifyArgs),
}

/// The store a `cache` command works on.
#[derive(Debug, Args, Clone)]
pub(crate) struct StoreArgs {
    /// The local store (cache) folder
    #[arg(long, env = "STACK_CACHE_DIR", value_name = "DIR", hide_env_values = true)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The registry host, e.g. `registry.example.com` or `localhost:5000`
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
    /// The user name
    #[arg(short, long)]
    pub username: String,
    /// The password (visible to other users in the process list; prefer `--password-stdin`)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input (otherwise from `STACK_REGISTRY_PASSWORD`, else
    /// asked on the terminal)
    #[arg(long)]
    pub password_stdin: bool,
    /// Speak plain HTTP to this registry (repeatable)
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CacheDuArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: RemoteStoreArgs,
}

/// A registry step cache a `cache` command works on instead of the local store.
#[derive(Debug, Args, Clone)]
pub(crate) struct RemoteStoreArgs {
    /// Work on this registry step cache (`registry.example/team/cache`) instead of the local
    /// store
    #[arg(long = "remote", value_name = "REPO")]
    pub repository: Option<String>,
    /// Speak plain HTTP to this registry (repeatable; loopback registries always are)
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CachePruneArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Remove least recently used objects until the store takes at most SIZE (`0`, `500M`,
    /// `10GB`; K, M, G, T are powers of 1024)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub keep_storage: Option<u64>,
    /// Remove everything
    #[arg(long, conflicts_with = "keep_storage")]
    pub all: bool,
    /// Print JSON instead of a summary
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: RemoteStoreArgs,
    /// With `--remote`: delete the entries written longer ago than this (`90m`, `36h`, `7d`,
    /// `2w`)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "repository")]
    pub older_than: Option<u64>,
    /// With `--remote`: say what would be deleted, delete nothing
    #[arg(long, requires = "repository")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CacheVerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Options shared by the commands that read a build file.
#[derive(Debug, Args, Clone)]
pub(crate) struct FileArgs {
    /// The build file; or a folder holding `stack.kdl` (else a `Dockerfile`); with `-f`, the
    /// build context folder (as in `docker build -f FILE DIR`)
    #[arg(value_name = "FILE|DIR")]
    pub file: Option<PathBuf>,
    /// The build file: `stack.kdl` or a Dockerfile (imported on the fly), told apart by name
    /// and content
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub dockerfile: Option<PathBuf>,
    /// Build only these images or stages (repeatable); default: every `image`
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Set a build argument (repeatable); `NAME` alone takes the value from the environment
    #[arg(long = "arg", visible_alias = "build-arg", value_name = "NAME[=VALUE]", value_parser = parse_build_arg)]
    pub args: Vec<(String, Option<String>)>,
    /// Build every image for these platforms, over the build file's `platforms`: a
    /// comma-separated list (repeatable), e.g. `linux/amd64,linux/arm64`
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT],…", value_parser = parse_platforms, action = clap::ArgAction::Append)]
    pub platform_lists: Vec<Vec<crate::oci::image::Platform>>,
    /// Tags for the image, set by `stack build -t` (it names an imported Dockerfile's image)
    #[arg(skip)]
    pub tags: Vec<String>,
    /// The build context for `copy` (default: the build file's folder)
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,
    /// An extra named context for `copy from=NAME` and `bind from=NAME` (repeatable): a
    /// folder, `docker-image://REF` or `oci-layout://DIR[:TAG]`
    #[arg(long = "build-context", value_name = "NAME=VALUE", value_parser = super::request::parse_build_context)]
    pub build_contexts: Vec<(String, crate::plan::NamedContext)>,
    /// Set a label on every image (repeatable); wins over the build file's label of that key
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// The network of `run` steps that do not choose one: `default` (private), `host`, `none`
    #[arg(long, value_name = "MODE", value_parser = super::request::parse_network)]
    pub network: Option<crate::syntax::ast::Network>,
    /// Add a line to the `/etc/hosts` of every `run` step (repeatable)
    #[arg(long = "add-host", value_name = "NAME:IP", value_parser = super::request::parse_add_host)]
    pub add_hosts: Vec<(String, String)>,
    /// Speak plain HTTP to this registry (repeatable; loopback registries always are)
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Fail instead of changing `stack.lock` (for CI)
    #[arg(long)]
    pub locked: bool,
    /// The local store (cache) folder
    #[arg(long, env = "STACK_CACHE_DIR", value_name = "DIR", hide_env_values = true)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Where to write the images; `-` writes an archive to standard output; or docker's
    /// `type=local,dest=DIR` (the image's files into a folder), `type=oci|docker,dest=FILE`
    #[arg(
        long,
        short = 'o',
        visible_alias = "output",
        value_name = "PATH|SPEC",
        default_value = "stack-out"
    )]
    pub out: PathBuf,
    /// Write a JSON document of what was built and pushed (digests, tags, platform, steps) to
    /// this file, also when the build fails
    #[arg(long, visible_alias = "metadata-file", value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Build only the I-th of N slices of the images (1-based, e.g. `--shard 2/4`), chosen by
    /// a hash of each image's name
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Build only the images whose output can change since this git revision (see `stack
    /// affected`)
    #[arg(long, value_name = "REV")]
    pub affected_since: Option<String>,
    /// Print only each image's digest on standard output, no progress (as `docker build -q`)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image's manifest digest (`sha256:…`) to this file; the build must make one
    /// image
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Output form: an OCI layout folder (default), an OCI archive (default for `--out -`), or
    /// a `docker load` archive
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Tag the image (repeatable), as `docker build -t` does; the build must make one image
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Layer compression
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Rebuild every step instead of reusing cached results
    #[arg(long)]
    pub no_cache: bool,
    /// Rebuild the steps of these stages (repeatable)
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Steps to run at once (default: twice the number of cores, at least 4)
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Keep building independent steps after a failure
    #[arg(long)]
    pub keep_going: bool,
    /// A secret for `run` steps: `id=ID,src=FILE` or `id=ID,env=VAR` (repeatable)
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// An SSH agent for `ssh` mounts: `default` or `ID` (the agent of `SSH_AUTH_SOCK`), or
    /// `ID=SOCKET` (repeatable)
    #[arg(long = "ssh", value_name = "SPEC")]
    pub ssh: Vec<String>,
    /// Also push each image to every tag that names a registry
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub cache: RemoteCacheArgs,
    /// Also load the images into the local Docker daemon (`docker load`, else `podman load`)
    #[arg(long)]
    pub load: bool,
    /// Say why each step that is not reused has to run
    #[arg(long)]
    pub explain: bool,
    /// Also write each image's SBOM, `NAME.spdx.json`, beside the output
    #[arg(long)]
    pub sbom: bool,
    /// The SBOM's format: SPDX 2.3 (`NAME.spdx.json`, the default) or CycloneDX 1.5
    /// (`NAME.cdx.json`)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub sbom_format: Option<SbomFormat>,
    /// Also write each image's SLSA provenance v1, `NAME.provenance.json`, beside the output
    #[arg(long)]
    pub provenance: bool,
    /// How attestations are attached: in the image's index (BuildKit's attestation manifests),
    /// or as OCI 1.1 referrers pushed beside the image
    #[arg(long, value_enum, value_name = "HOW", default_value_t = AttestAs::Index)]
    pub attest_as: AttestAs,
    /// How to show progress
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Timestamp for everything the output holds (seconds since the epoch); without it the
    /// image is created at the context's last git commit (else 0) and files keep time 0
    #[arg(long, env = "SOURCE_DATE_EPOCH", hide_env_values = true, value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
}

/// The registry step caches a build shares with other machines.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct RemoteCacheArgs {
    /// Reuse steps from this registry step cache, e.g. `registry.example/team/cache`
    /// (repeatable; `STACK_CACHE_FROM` takes a comma-separated list)
    #[arg(
        long = "cache-from",
        value_name = "REPO",
        env = "STACK_CACHE_FROM",
        value_delimiter = ','
    )]
    pub from: Vec<String>,
    /// Export the steps built here to this registry step cache (which is read too)
    #[arg(long = "cache-to", value_name = "REPO", env = "STACK_CACHE_TO")]
    pub to: Option<String>,
    /// Only read step caches, whatever the build file says (for untrusted builds, such as
    /// pull requests)
    #[arg(long = "cache-read-only", env = "STACK_CACHE_READ_ONLY")]
    pub read_only: bool,
    /// Use no registry step cache, not even the build file's
    #[arg(long = "no-remote-cache", conflicts_with_all = ["from", "to"])]
    pub no_remote: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 identical, 5 differs (or a step is not deterministic), 6 could not build"
)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Compare the rebuild with this image instead of the normal build: a registry reference,
    /// `oci:DIR:NAME`, `oci-archive:FILE[:NAME]` or `docker-archive:FILE[:NAME]` (one image)
    #[arg(long, value_name = "REF")]
    pub against: Option<String>,
    /// Also run every `run` step a second time over the same input and name the steps that
    /// are not deterministic by themselves
    #[arg(long)]
    pub steps: bool,
    /// Steps to run at once in the normal build (the rebuild uses another count)
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// A secret for `run` steps, given to both builds: `id=ID,src=FILE` or `id=ID,env=VAR`
    /// (repeatable)
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// An SSH agent for `ssh` mounts, given to both builds: `default` or `ID` (the agent of
    /// `SSH_AUTH_SOCK`), or `ID=SOCKET` (repeatable)
    #[arg(long = "ssh", value_name = "SPEC")]
    pub ssh: Vec<String>,
    /// Layer compression
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// How to show the normal build's progress
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Timestamp for everything the output holds (seconds since the epoch); without it the
    /// image is created at the context's last git commit (else 0) and files keep time 0
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub file: FileArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AffectedArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The git revision to compare the working tree with (`main`, `HEAD~1`, a commit)
    #[arg(long, value_name = "REV")]
    pub since: String,
    /// Print JSON (the images, and why each is affected) instead of one name per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    #[command(flatten)]
    pub file: FileArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The Dockerfile to convert (default: ./Dockerfile)
    #[arg(value_name = "DOCKERFILE")]
    pub dockerfile: Option<PathBuf>,
    /// Write the build file here instead of standard output
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace the `--output` file when it exists
    #[arg(long, requires = "output")]
    pub force: bool,
    /// The stage to export as the image (default: the last)
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Name of the exported image (default: the stage's name, else `app`)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Treat every warning as an error
    #[arg(long)]
    pub strict: bool,
    /// Override a Dockerfile ARG's default (repeatable)
    #[arg(long = "build-arg", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub build_args: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Oci,
    OciArchive,
    DockerArchive,
}

/// Where attestations go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AttestAs {
    /// An image index holding the image and an attestation manifest (as BuildKit)
    Index,
    /// OCI 1.1 referrers (`subject`) pushed with `--push`; the image stays a manifest
    Referrers,
}

/// The format of an SBOM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SbomFormat {
    /// SPDX 2.3 JSON
    Spdx,
    /// CycloneDX 1.5 JSON
    Cyclonedx,
}

impl From<SbomFormat> for crate::sbom::Format {
    fn from(f: SbomFormat) -> Self {
        match f {
            SbomFormat::Spdx => Self::Spdx,
            SbomFormat::Cyclonedx => Self::CycloneDx,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionArg {
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Progress {
    /// A live view on a terminal, plain lines otherwise
    Auto,
    /// One line per event
    Plain,
    /// One JSON object per event
    Json,
}

/// Parses a size such as `0`, `512`, `1.5G`, `500MiB` or `10GB` (units are powers of 1024, as
/// in Docker).
/// A duration in seconds from `90s`, `90m`, `36h`, `7d` or `2w`.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{s}` is not a duration such as `7d`"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{s}` needs a unit: s, m, h, d or w (e.g. `7d`)")),
    };
    n.checked_mul(unit_secs).ok_or_else(|| format!("`{s}` is too long"))
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("`{s}` is not a size: use a number with K, M, G or T")),
    };
    let value: f64 = num.parse().map_err(|_| format!("`{s}` is not a size"))?;
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// `NAME=VALUE`, or `NAME` whose value comes from the environment (none when it is unset).
fn parse_platforms(s: &str) -> Result<Vec<crate::oci::image::Platform>, String> {
    crate::oci::image::Platform::parse_list(s)
}

fn parse_build_arg(s: &str) -> Result<(String, Option<String>), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), Some(v.to_owned()))),
        None if !s.is_empty() => Ok((s.to_owned(), std::env::var(s).ok())),
        _ => Err(format!("`{s}` is not NAME=VALUE or NAME")),
    }
}

/// `I/N` with `1 <= I <= N`.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}` is not a shard such as `1/4` (the first of four)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) =
        (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i == 0 || i > n {
        return Err(format!("`{s}`: the shard must be between 1/N and N/N, with N at least 1"));
    }
    Ok((i, n))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_shard, parse_size};

    #[test]
    fn shards_are_one_based_and_within_their_count() {
        assert_eq!(parse_shard("1/4"), Ok((1, 4)));
        assert_eq!(parse_shard("4/4"), Ok((4, 4)));
        assert!(parse_shard("0/4").is_err());
        assert!(parse_shard("5/4").is_err());
        assert!(parse_shard("1/0").is_err());
        assert!(parse_shard("2").is_err());
    }

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("10GB"), Ok(10 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("").is_err());
    }
}
