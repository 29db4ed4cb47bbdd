//! The `1ldctl` command line (clap derive), in the library so the man page
//! `1ldctl.1` and the shell completions come from the same definition
//! (`build.rs` includes this file to write the man page at build time).
//!
//! Invariants: depends on `clap` and `std` only (the build script compiles
//! it on its own); secrets never appear in argv ([`SecretArg`] takes a file
//! or `-` for stdin, and refuses a literal value).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The default API socket (= `crate::paths::DEFAULT_SOCKET`).
pub const DEFAULT_SOCKET: &str = "/run/1ld/1ld.sock";

/// Deploy, supervise and inspect homelab apps on this Proxmox VE node,
/// through the 1ld daemon (1ldd).
#[derive(Debug, Parser)]
#[command(
    name = "1ldctl",
    version,
    propagate_version = true,
    after_long_help = "Exit status: 0 ok; 1 the operation failed (or was cancelled); \
                       2 usage or validation error; 3 not found; 4 permission denied; \
                       5 conflict (locked, busy, or wrong state); 69 the daemon is unavailable; \
                       130 detached from a running operation (Ctrl-C twice).\n\n\
                       --json prints the API's JSON on stdout (errors as \
                       {\"error\":{\"code\",\"message\"}} on stderr); see docs/cli.md."
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The daemon's API socket.
    #[arg(long, global = true, value_name = "PATH", env = "ONELD_SOCKET",
          default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the API's JSON instead of tables (stable; for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors (and what was asked for).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more (operation logs while waiting; repeat for HTTP traces).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No colour (also when NO_COLOR is set or the output is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The app catalog, or one app's settings and defaults.
    Apps {
        /// Show one app.
        #[command(subcommand)]
        cmd: Option<AppsCmd>,
    },
    /// Deploy an app into a new container.
    Deploy(DeployArgs),
    /// Create or converge deployments declared in a spec file; prints the diff.
    Apply {
        /// The spec file (TOML).
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Return once the operation is accepted.
        #[arg(long)]
        no_wait: bool,
    },
    /// One line per deployment.
    #[command(visible_alias = "list")]
    Ls,
    /// Everything about one deployment: settings, drift, recent events.
    Status {
        /// Deployment name.
        name: String,
    },
    /// Start a deployment's container and service.
    Start(TargetArgs),
    /// Stop a deployment's container.
    Stop(TargetArgs),
    /// Restart a deployment.
    Restart(TargetArgs),
    /// Destroy a deployment and its container (asks first on a terminal).
    Destroy {
        /// The deployment.
        #[command(flatten)]
        target: TargetArgs,
        /// Do not ask (required when stdin is not a terminal).
        #[arg(short, long)]
        yes: bool,
    },
    /// Back a deployment up now (vzdump, app-aware; retention per its policy).
    Backup {
        /// Deployment name.
        name: String,
        /// Storage (content `backup`) for this backup; default: the deployment's policy.
        #[arg(long)]
        storage: Option<String>,
        /// Mark this backup protected (never pruned).
        #[arg(long)]
        protected: bool,
        /// Return once the operation is accepted.
        #[arg(long)]
        no_wait: bool,
    },
    /// Restore a backup as a new deployment (default) or over its deployment.
    Restore {
        /// The backup's volid (`1ldctl backups` lists them).
        volid: String,
        /// Restore over the deployment's own container instead.
        #[arg(long, conflicts_with = "name")]
        in_place: bool,
        /// The new deployment's name (default `<deployment>-restored`).
        #[arg(long)]
        name: Option<String>,
        /// Return once the operation is accepted.
        #[arg(long)]
        no_wait: bool,
    },
    /// Upgrade a deployment (or all) to the app version this node ships:
    /// safety point first (snapshot, else backup), rollback on failure.
    Upgrade {
        /// Deployment name.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Every deployment that is not at the shipped version, one at a time.
        #[arg(long)]
        all: bool,
        /// Show current → target and the safety point; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The version to reach (must be the one this node ships).
        #[arg(long)]
        to_version: Option<String>,
        /// Upgrade even when already at the target (re-push binary and config).
        #[arg(long)]
        force: bool,
        /// Return once the operation is accepted.
        #[arg(long)]
        no_wait: bool,
    },
    /// Prove a backup works: restore it into a throwaway container (link
    /// down), run the app's self-check, record the result, destroy it.
    Verify {
        /// The backup's volid (`1ldctl backups` lists them).
        volid: String,
        /// Return once the operation is accepted.
        #[arg(long)]
        no_wait: bool,
    },
    /// Backups (all, or one deployment's): storage reconciled with what 1ld recorded.
    Backups {
        /// Deployment name.
        name: Option<String>,
    },
    /// Supervised health: state, incident, remediations, uptime and history.
    Health {
        /// Deployment name.
        name: String,
        /// Window start: a duration back from now (90m, 24h, 7d) or an RFC 3339 time.
        #[arg(long, default_value = "24h")]
        since: String,
    },
    /// The service's journal inside the container.
    Logs {
        /// Deployment name.
        name: String,
        /// Follow: keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print first.
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<u32>,
    },
    /// Take an existing container under 1ld's care.
    Adopt {
        /// The container's VMID.
        vmid: u32,
        /// The app it runs.
        #[arg(long)]
        app: String,
        /// Deployment name (default: the container's hostname).
        #[arg(long)]
        name: Option<String>,
        /// Return once the operation is accepted.
        #[arg(long)]
        no_wait: bool,
    },
    /// Operations, newest first.
    Ops(OpsArgs),
    /// One operation; --wait follows it to the end, --log prints its log.
    Op {
        /// Operation id.
        id: String,
        /// Follow its progress until it ends (exit 1 unless it succeeded).
        #[arg(short, long)]
        wait: bool,
        /// Print its log (with --wait: follow it).
        #[arg(short, long)]
        log: bool,
    },
    /// Ask the daemon to cancel an operation (its compensation runs).
    Cancel {
        /// Operation id.
        id: String,
    },
    /// The daemon's recent events (the last 1024 it holds), readable; -f follows the live stream.
    Events {
        /// Follow the live stream (until Ctrl-C) instead of listing the recent events.
        #[arg(short, long)]
        follow: bool,
        /// Only events after this sequence number; with -f, the held ones
        /// first, then live ones, without a gap (resume a stream).
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Only these types (repeat or comma-separate).
        #[arg(short = 't', long = "type", value_enum, value_delimiter = ',')]
        types: Vec<EventKind>,
    },
    /// The node: Proxmox version, storages, bridges, templates.
    Host,
    /// Notification targets, the delivery queue and its failures; test sends; target secrets.
    Notify {
        /// What to do.
        #[command(subcommand)]
        cmd: NotifyCmd,
    },
    /// Container templates.
    Template {
        /// What to do.
        #[command(subcommand)]
        cmd: TemplateCmd,
    },
    /// Check the environment and say what to fix.
    Doctor,
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Client and daemon versions.
    Version,
}

/// `1ldctl apps ...`.
#[derive(Debug, Subcommand)]
pub enum AppsCmd {
    /// One app: versions, settings with their types and defaults, secrets.
    Show {
        /// App name.
        app: String,
    },
}

/// `1ldctl template ...`.
#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// Download a template from the appliance index (an operation).
    Download {
        /// The template file name (see `1ldctl host`).
        template: String,
        /// A storage with content type vztmpl.
        #[arg(long, default_value = "local")]
        storage: String,
        /// Return once the operation is accepted.
        #[arg(long)]
        no_wait: bool,
    },
}

/// `1ldctl notify ...`.
#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// The targets (with their queue and last error) and the notifications, newest first.
    #[command(visible_alias = "list")]
    Ls {
        /// Only this status: pending, delivered or failed.
        #[arg(long)]
        status: Option<String>,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// At most this many notifications (default 50, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Only notifications with an id below this one (the next page).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
    },
    /// Send a test message now to TARGET, or to every target; exit 1 unless
    /// every one was delivered.
    Test {
        /// The target (default: all).
        target: Option<String>,
    },
    /// Set a target's secret (webhook HMAC key, ntfy access token, Gotify app
    /// token, Home Assistant webhook id), read from stdin or --from-file;
    /// never from the command line (it would show in `ps`).
    SetSecret {
        /// The target.
        target: String,
        /// Read the value from this file (one trailing newline removed).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// Delete a target's secret.
    DeleteSecret {
        /// The target.
        target: String,
    },
}

/// A deployment named on the command line.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Deployment name.
    pub name: String,
    /// Return once the operation is accepted.
    #[arg(long)]
    pub no_wait: bool,
}

/// `1ldctl ops` filters.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Only these states (comma-separated: queued,running,succeeded,failed,cancelled,interrupted).
    #[arg(long)]
    pub status: Option<String>,
    /// Only this kind (template.download, deploy, ...).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this target (ct/140, template/local/FILE).
    #[arg(long)]
    pub target: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// `1ldctl deploy`.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// The app (see `1ldctl apps`).
    pub app: Option<String>,
    /// Deployment name (default: the app's name).
    #[arg(long)]
    pub name: Option<String>,
    /// A setting (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// A secret, read from a file (`key=@FILE`) or stdin (`key=-`); never a
    /// literal value (it would show in `ps`).
    /// (Parsed by [`parse_secret`] after clap, so a mistaken literal value
    /// is never echoed back in an error.)
    #[arg(long = "secret", value_name = "KEY=@FILE|KEY=-")]
    pub secret: Vec<String>,
    /// A spec file (TOML) with the deployment; flags override it.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    pub file: Option<PathBuf>,
    /// CPU cores.
    #[arg(long)]
    pub cores: Option<u32>,
    /// Memory in MiB.
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u32>,
    /// Root disk in GiB.
    #[arg(long, value_name = "GIB")]
    pub disk: Option<u32>,
    /// The container's VMID (default: the next free one).
    #[arg(long)]
    pub vmid: Option<u32>,
    /// Storage for the root disk (content type rootdir).
    #[arg(long)]
    pub storage: Option<String>,
    /// Bridge for the network interface.
    #[arg(long)]
    pub bridge: Option<String>,
    /// Print the plan (including the exact `pct create` command) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the container when the deploy fails (for debugging).
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Return once the operation is accepted.
    #[arg(long)]
    pub no_wait: bool,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretArg {
    /// The secret's key.
    pub key: String,
    /// Its source.
    pub source: SecretSource,
}

/// A secret's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `key=@FILE`: the file's content (one trailing newline removed).
    File(PathBuf),
    /// `key=-`: standard input (one trailing newline removed).
    Stdin,
}

/// Event families for `--type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventKind {
    /// Operation state and progress.
    Operation,
    /// Requests that changed something, daemon start/stop.
    Lifecycle,
    /// Health changes.
    Health,
    /// Backups.
    Backup,
}

impl EventKind {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Operation => "operation",
            EventKind::Lifecycle => "lifecycle",
            EventKind::Health => "health",
            EventKind::Backup => "backup",
        }
    }
}

/// Shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// `KEY=VALUE`, with a non-empty key.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

/// `KEY=@FILE` or `KEY=-`; a literal value is refused without echoing it.
pub fn parse_secret(s: &str) -> Result<SecretArg, String> {
    let Some((key, src)) = s.split_once('=') else {
        return Err(
            "expected KEY=@FILE or KEY=- (secrets are never taken from the \
                    command line)"
                .to_string(),
        );
    };
    let key = key.trim();
    if key.is_empty() {
        return Err("the secret's KEY is empty; expected KEY=@FILE or KEY=-".to_string());
    }
    let source = if src == "-" {
        SecretSource::Stdin
    } else if let Some(path) = src.strip_prefix('@').filter(|p| !p.is_empty()) {
        SecretSource::File(PathBuf::from(path))
    } else {
        return Err(format!(
            "secret '{key}': give a file (--secret {key}=@FILE) or stdin (--secret {key}=-); \
             a value on the command line would show in `ps`"
        ));
    };
    Ok(SecretArg {
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_valid_and_the_default_socket_is_the_paths_one() {
        Cli::command().debug_assert();
        assert_eq!(DEFAULT_SOCKET, crate::paths::DEFAULT_SOCKET);
    }

    #[test]
    fn secrets_come_from_files_or_stdin_only() {
        assert_eq!(
            parse_secret("token=@/run/t").unwrap(),
            SecretArg {
                key: "token".into(),
                source: SecretSource::File("/run/t".into())
            }
        );
        assert_eq!(parse_secret("token=-").unwrap().source, SecretSource::Stdin);
        let e = parse_secret("token=hunter2").unwrap_err();
        assert!(!e.contains("hunter2") && e.contains("@FILE"), "{e}");
        assert!(parse_secret("=@x").is_err() && parse_secret("token=@").is_err());
    }

    #[test]
    fn settings_are_key_value() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert!(parse_key_value("nokey").is_err());
    }
}
