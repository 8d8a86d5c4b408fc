//! The `haseed` command: parse the command line, dispatch, exit.
use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    // `haseed --version`: which build, and which plugin contract it runs.
    let version = format!(
        "{} ({}, plugin contract haseed:policy@{})",
        env!("CARGO_PKG_VERSION"),
        env!("HASEED_BUILD"),
        haseed::contract::WIT_VERSION
    );
    let matches = haseed::cli::Cli::command().version(version).get_matches();
    match haseed::cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => haseed::cli::run(cli),
        Err(e) => e.exit(),
    }
}
