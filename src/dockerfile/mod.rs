//! Dockerfile → stack.kdl importer. Parses a Dockerfile with BuildKit's semantics and writes an
//! equivalent, idiomatic build file. Never runs anything.
