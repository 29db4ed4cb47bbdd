//! `wikijs-integration` binary: the agent (see the library docs), plus the
//! pre-backup hook `--backup-db DEST [--config FILE]`, which writes a
//! consistent copy of `wiki-agent.db` for 1ld's app-aware backups.

use std::process::ExitCode;

use agent_runtime::Agent as _;
use wikijs_integration::agent::WikiAgent;
use wikijs_integration::config::Config;
use wikijs_integration::store::Store;

fn backup(args: &[String]) -> ExitCode {
    let mut dest = None;
    let mut config = std::path::PathBuf::from("/etc/wikijs-integration/config.toml");
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backup-db" => dest = it.next().cloned(),
            "--config" => match it.next() {
                Some(c) => config = c.into(),
                None => {
                    eprintln!("wikijs-integration: --config needs a file");
                    return ExitCode::from(64);
                }
            },
            other => {
                eprintln!("wikijs-integration: unexpected argument {other:?} with --backup-db (usage: --backup-db DEST [--config FILE])");
                return ExitCode::from(64);
            }
        }
    }
    let Some(dest) = dest else {
        eprintln!("wikijs-integration: --backup-db needs a destination file");
        return ExitCode::from(64);
    };
    let cfg: Config = match agent_runtime::config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wikijs-integration: {e}");
            return ExitCode::from(78);
        }
    };
    let settings = match cfg
        .service
        .resolve(WikiAgent::INFO.name, WikiAgent::INFO.default_port)
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wikijs-integration: {}: {e:?}", config.display());
            return ExitCode::from(78);
        }
    };
    let store = match Store::open_read_only(&settings.state_dir) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "wikijs-integration: no database in {} yet; nothing to back up",
                settings.state_dir.display()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wikijs-integration: {e}");
            return ExitCode::from(1);
        }
    };
    let dest = std::path::PathBuf::from(dest);
    if let Some(parent) = dest.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            eprintln!(
                "wikijs-integration: cannot create {}: {e}",
                parent.display()
            );
            return ExitCode::from(1);
        }
    }
    // VACUUM INTO refuses an existing file: write beside it, then rename.
    let tmp = dest.with_extension("tmp-backup");
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = store.backup_to(&tmp) {
        eprintln!("wikijs-integration: {e}");
        return ExitCode::from(1);
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
    }
    if let Err(e) = std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &dest))
    {
        eprintln!("wikijs-integration: cannot write {}: {e}", dest.display());
        return ExitCode::from(1);
    }
    println!("{}", dest.display());
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--backup-db") {
        return backup(&args);
    }
    agent_runtime::run::main::<WikiAgent>()
}
