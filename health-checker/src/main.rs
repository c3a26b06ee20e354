//! `health-checker`: the command-line entry point. Parsing, logging and the
//! mapping of errors to exit codes live here; everything else is the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = health_checker::cli::Cli::parse();
    health_checker::logging::init(cli.global.verbose);
    let result = health_checker::cli::run(cli);
    // Whatever a probe left that could not be killed at its end.
    health_checker::probes::cgroup::cleanup();
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("health-checker: {}", health_checker::exit::chain(&err));
            health_checker::exit::code_for(&err).into()
        }
    }
}
