//! OCI image-spec output and input: deterministic layer tars, canonical JSON, image layouts,
//! archives, and safe reading of local images.

pub(crate) mod compress;
pub(crate) mod diff;
pub(crate) mod extract;
pub(crate) mod image;
pub(crate) mod index;
pub(crate) mod layer;
pub(crate) mod layout;
pub(crate) mod local;
pub(crate) mod platform;
pub(crate) mod tar_writer;
