//! `1ldd`: the 1ld daemon. Thin: parse the command line, load the config,
//! set up logging and hand over to [`oneld::daemon::run`].

use std::process::ExitCode;

use clap::Parser;
use oneld::daemon::cli::Cli;

fn main() -> ExitCode {
    // Before anything is read: the daemon will hold secrets in memory.
    if let Err(e) = oneld::daemon::harden::no_core_dumps() {
        eprintln!("1ldd: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let config = match oneld::config::Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("1ldd: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    if cli.check_config {
        println!("1ldd: configuration {} is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("1ldd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = oneld::daemon::RunOptions::production(cli.config);
    match runtime.block_on(oneld::daemon::run(config, opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("1ldd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
