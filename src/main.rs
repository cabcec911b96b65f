fn main() {
    // The sandbox re-executes this binary as its single-threaded helper; it must be the
    // first thing main does (see `stack::exec::sandbox`).
    if let Some(code) = stack::exec::sandbox::helper_main() {
        std::process::exit(code)
    }
    stack::cli::main();
}
