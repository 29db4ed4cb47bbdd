//! `1ldd`: the 1ld daemon. Thin: parse the command line, load the config,
//! set up logging and hand over to [`oneld::daemon::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The 1ld daemon: deploys, supervises and backs up homelab apps in LXC
/// containers on this Proxmox VE node, and serves the 1ld API on a Unix socket.
#[derive(Debug, Parser)]
#[command(name = "1ldd", version)]
struct Cli {
    /// Configuration file (a missing file means all defaults).
    #[arg(long, value_name = "FILE", default_value = oneld::paths::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Validate the configuration file, print the result and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
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
