//! Build-file text → typed AST with spans. No IO.
//!
//! Invariant: parsing never stops at the first problem; it returns every diagnostic it can
//! find together with whatever AST it could build.

pub mod ast;
pub mod interp;
mod parse;

pub use parse::{
    RUN_CHILDREN, STEPS, SUPPORTED_VERSIONS, TOP_LEVEL, is_var_name, parse, parse_duration,
    parse_mode,
};
