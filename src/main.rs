//! The `stack` binary: everything lives in the library (`src/lib.rs`).

fn main() -> std::process::ExitCode {
    stack::main()
}
