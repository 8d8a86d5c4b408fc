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
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = haseed::cli::Cli::command()
        .version(version)
        .try_get_matches_from(&args)
        .and_then(|m| haseed::cli::Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => haseed::cli::run(cli),
        Err(e) => haseed::cli::usage_error(&args, e),
    }
}
