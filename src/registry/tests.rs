//! Integration tests against the reference registry.
