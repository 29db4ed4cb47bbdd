//! Build script: writes the man pages `1ldctl.1` and `1ldd.8` from the
//! command-line definitions (`src/client/cli.rs`, `src/daemon/cli.rs`, which
//! depend on clap only) into `$OUT_DIR/man/`. `make man` copies them to
//! `target/man/`.

use std::path::Path;

#[allow(dead_code, missing_docs)]
#[path = "src/client/cli.rs"]
mod client_cli;
#[allow(dead_code, missing_docs)]
#[path = "src/daemon/cli.rs"]
mod daemon_cli;

use clap::CommandFactory;

fn render(cmd: clap::Command, section: &str, out: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone())
        .section(section)
        .manual("1ld")
        .source(format!("1ld {}", env!("CARGO_PKG_VERSION")));
    man.render(&mut buf)?;
    // One page per subcommand too (`1ldctl-deploy.1`), as git and incus do.
    if section == "1" {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let sub_name = format!("{name}-{}", sub.get_name());
            // clap wants a 'static name; a build script may leak it.
            let sub = sub.clone().name(sub_name.clone().leak() as &str);
            let mut sub_buf = Vec::new();
            clap_mangen::Man::new(sub)
                .section(section)
                .manual("1ld")
                .source(format!("1ld {}", env!("CARGO_PKG_VERSION")))
                .render(&mut sub_buf)?;
            std::fs::write(out.join(format!("{sub_name}.{section}")), sub_buf)?;
        }
    }
    std::fs::write(out.join(format!("{name}.{section}")), buf)
}

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/client/cli.rs");
    println!("cargo:rerun-if-changed=src/daemon/cli.rs");
    let out_dir = std::env::var_os("OUT_DIR")
        .ok_or_else(|| std::io::Error::other("cargo did not set OUT_DIR"))?;
    let man_dir = Path::new(&out_dir).join("man");
    std::fs::create_dir_all(&man_dir)?;
    render(client_cli::Cli::command(), "1", &man_dir)?;
    render(daemon_cli::Cli::command(), "8", &man_dir)?;
    println!("cargo:rustc-env=ONELD_MAN_DIR={}", man_dir.display());
    Ok(())
}
