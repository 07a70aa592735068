//! The `chancy` binary: the CLI with the built-in job handlers.

fn main() {
    std::process::exit(chancy::cli::run(chancy::Registry::new()));
}
