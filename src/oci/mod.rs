//! OCI image-spec output and input: deterministic layer tars, canonical JSON, image layouts,
//! archives, and safe reading of local images.

pub mod compress;
pub mod diff;
pub mod extract;
pub mod image;
pub mod index;
pub mod layer;
pub mod layout;
pub mod local;
pub mod platform;
pub mod tar_writer;
