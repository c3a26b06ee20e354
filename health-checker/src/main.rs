//! `health-checker`: the command-line entry point. Parsing, logging and the
//! mapping of errors to exit codes live here; everything else is the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = health_checker::cli::Cli::parse();
    health_checker::logging::init(cli.global.verbose);
    match health_checker::cli::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("health-checker: {}", health_checker::exit::chain(&err));
            health_checker::exit::code_for(&err).into()
        }
    }
}
