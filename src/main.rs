//! The `stack` binary: everything lives in the library; see `stack::cli`.

fn main() -> std::process::ExitCode {
    stack::cli::main()
}
