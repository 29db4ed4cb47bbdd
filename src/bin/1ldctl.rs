//! `1ldctl`: the 1ld client. Thin: parse the command line, run the command
//! on a small single-threaded runtime, exit with its documented status
//! (see [`oneld::client::error`]).

use std::process::ExitCode;

use clap::Parser;
use oneld::client::cli::Cli;
use oneld::client::{commands, error, Output};

fn main() -> ExitCode {
    // clap exits 2 on usage errors (and 0 for --help/--version).
    let cli = Cli::parse();
    let out = Output::from_global(&cli.global);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("1ldctl: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_FAILED);
        }
    };
    let code = runtime.block_on(commands::run(cli, &out));
    // Do not wait for the pool's idle connections.
    runtime.shutdown_background();
    ExitCode::from(code)
}
