//! The library's public surface, and all of it: the binary's integration tests and tools that
//! embed stack use these. Everything else is `pub(crate)`, so `unreachable_pub` can tell when an
//! item is public without a reason. Paths mirror the modules the items live in.

/// Parsing build files: the tree, and the node names the book and schemas document.
pub mod syntax {
    pub use crate::syntax::{RUN_CHILDREN, STEPS, TOP_LEVEL, ast, errors_are_contained, parse};
}

/// Planning parsed files into a layer DAG, against a [`plan::Resolver`] of the outside world.
pub mod plan {
    pub use crate::plan::{BaseError, FileInput, PlanRequest, Resolver, plan};
}

/// Build contexts: `.dockerignore` rules and selecting sources.
pub mod context {
    pub use crate::context::{IgnoreRules, SelectError, Selected};
}

/// Diagnostics, as shown to people.
pub mod diag {
    pub use crate::diag::{Report, SourceFile};
}

/// Content digests.
pub mod digest {
    pub use crate::digest::OciDigest;
}

/// The Dockerfile importer.
pub mod dockerfile {
    pub use crate::dockerfile::{ImportOptions, import};
}

/// Running steps.
pub mod exec {
    /// The sandbox steps run in.
    pub mod sandbox {
        pub use crate::exec::sandbox::{Unavailable, probe};
    }
}

/// `stack.lock`.
pub mod lockfile {
    pub use crate::lockfile::Lock;
}

/// OCI images: platforms, layer extraction, images loaded from layouts.
pub mod oci {
    /// Image configs and platforms.
    pub mod image {
        pub use crate::oci::image::{Platform, host_arch};
    }
    /// Layer extraction into a folder.
    pub mod extract {
        pub use crate::oci::extract::extract;
    }
    /// Images read from OCI layouts.
    pub mod local {
        pub use crate::oci::local::LoadedImage;
    }
}

/// The content-addressed store.
pub mod store {
    pub use crate::store::Store;
}
