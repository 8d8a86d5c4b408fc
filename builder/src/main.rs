//! The `haseed` command: parse the command line, dispatch, exit.
use clap::Parser;

fn main() -> std::process::ExitCode {
    haseed::cli::run(haseed::cli::Cli::parse())
}
