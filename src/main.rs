fn main() { stack::cli::main() }
