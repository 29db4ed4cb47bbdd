//! `pct`: container lifecycle, configuration, files, snapshots.
//!
//! Specs render their own argv. Behaviour that differs between PVE 8 and 9 is
//! made explicit: `--unprivileged 0|1` is always passed on create, `--keep-env
//! 0` on exec, and `--features nesting=1` by default (systemd guests need it,
//! and PVE 9 warns without it). PVE 9-only options are refused on PVE 8.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::parse::pct_config::{parse_pct_config, CtConfig};
use super::parse::pct_list::{parse_pct_list, PctListEntry};
use super::parse::pct_snapshot::{parse_listsnapshot, SnapshotEntry};
use super::parse::pct_status::{parse_pct_status, CtStatus};
use super::types::{is_valid_tag, render_tags, Features, NetSpec};
use super::{parsed, Args, Output, Pve, PveError, Span};

/// Lowest vmid PVE accepts.
pub const MIN_VMID: u32 = 100;
/// Highest vmid PVE accepts.
pub const MAX_VMID: u32 = 999_999_999;
/// Longest description PVE accepts (bytes).
pub const MAX_DESCRIPTION: usize = 8 * 1024;

fn check_vmid(vmid: u32) -> Result<(), PveError> {
    if !(MIN_VMID..=MAX_VMID).contains(&vmid) {
        return Err(PveError::Invalid {
            what: "vmid",
            message: format!("{vmid} is outside {MIN_VMID}..={MAX_VMID}"),
        });
    }
    Ok(())
}

/// Options shared by create, set and restore (all optional: unset = not sent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CtOptions {
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--cores`.
    pub cores: Option<u32>,
    /// `--memory` in MiB.
    pub memory: Option<u32>,
    /// `--swap` in MiB.
    pub swap: Option<u32>,
    /// `--netN` by index.
    pub net: BTreeMap<u32, NetSpec>,
    /// `--features` (only enabled features are rendered).
    pub features: Option<Features>,
    /// `--onboot 0|1`.
    pub onboot: Option<bool>,
    /// `--tags` (replaces the whole set; normalised as PVE does).
    pub tags: Option<Vec<String>>,
    /// `--description` (may contain newlines, max 8 KiB).
    pub description: Option<String>,
    /// `--timezone` (`host` or a zone name).
    pub timezone: Option<String>,
    /// `--nameserver` (space/comma separated IPs).
    pub nameserver: Option<String>,
    /// `--searchdomain`.
    pub searchdomain: Option<String>,
    /// `--startup` (`order=N,up=N,down=N`).
    pub startup: Option<String>,
    /// `--protection 0|1`.
    pub protection: Option<bool>,
}

impl CtOptions {
    fn push_args(&self, a: &mut Args, major: u32) -> Result<(), PveError> {
        a.opt_some("hostname", self.hostname.as_deref())
            .opt_some("cores", self.cores)
            .opt_some("memory", self.memory)
            .opt_some("swap", self.swap);
        for (i, n) in &self.net {
            if n.host_managed.is_some() && major < 9 {
                return Err(PveError::Unsupported {
                    what: "net host-managed",
                    major,
                });
            }
            a.opt(&format!("net{i}"), n.to_property_string());
        }
        if let Some(f) = self
            .features
            .as_ref()
            .and_then(Features::to_property_string)
        {
            a.opt("features", f);
        }
        if let Some(b) = self.onboot {
            a.bool("onboot", b);
        }
        if let Some(tags) = &self.tags {
            if let Some(bad) = tags
                .iter()
                .flat_map(|t| t.split([',', ';', ' ']))
                .find(|t| !t.is_empty() && !is_valid_tag(t))
            {
                return Err(PveError::Invalid {
                    what: "tag",
                    message: format!("'{bad}': tags are [a-z0-9_][a-z0-9_+.-]*"),
                });
            }
            a.opt("tags", render_tags(tags));
        }
        if let Some(d) = &self.description {
            if d.len() > MAX_DESCRIPTION {
                return Err(PveError::Invalid {
                    what: "description",
                    message: format!("{} bytes; PVE allows at most {MAX_DESCRIPTION}", d.len()),
                });
            }
            a.opt("description", d);
        }
        a.opt_some("timezone", self.timezone.as_deref())
            .opt_some("nameserver", self.nameserver.as_deref())
            .opt_some("searchdomain", self.searchdomain.as_deref())
            .opt_some("startup", self.startup.as_deref());
        if let Some(p) = self.protection {
            a.bool("protection", p);
        }
        Ok(())
    }
}

/// A new root volume: `STORAGE:SIZE_IN_GiB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsSpec {
    /// Storage id (must support `rootdir`).
    pub storage: String,
    /// Size in GiB.
    pub size_gib: u32,
}

impl RootfsSpec {
    /// `--rootfs` value.
    pub fn to_arg(&self) -> String {
        format!("{}:{}", self.storage, self.size_gib)
    }
}

/// Everything `pct create` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSpec {
    /// The new id (see [`Pve::next_vmid`]).
    pub vmid: u32,
    /// Template volume id (`local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst`).
    pub ostemplate: String,
    /// Root volume to allocate.
    pub rootfs: RootfsSpec,
    /// Always sent explicitly (defaults differ: 0 on PVE 8, 1 on PVE 9).
    pub unprivileged: bool,
    /// `--ssh-public-keys`: a file on the host, one OpenSSH key per line.
    pub ssh_public_keys: Option<PathBuf>,
    /// `--ostype` (auto-detected from the template when unset).
    pub ostype: Option<String>,
    /// `--arch`.
    pub arch: Option<String>,
    /// `--start 1`: start after creation.
    pub start: bool,
    /// Everything else.
    pub options: CtOptions,
}

impl CreateSpec {
    /// An unprivileged CT with `nesting=1` (what systemd guests need).
    pub fn new(vmid: u32, ostemplate: impl Into<String>, rootfs: RootfsSpec) -> Self {
        Self {
            vmid,
            ostemplate: ostemplate.into(),
            rootfs,
            unprivileged: true,
            ssh_public_keys: None,
            ostype: None,
            arch: None,
            start: false,
            options: CtOptions {
                features: Some(Features::systemd()),
                ..CtOptions::default()
            },
        }
    }

    /// The argv for a node running PVE `major`.
    pub fn to_argv(&self, major: u32) -> Result<Vec<String>, PveError> {
        check_vmid(self.vmid)?;
        if self.ostemplate.is_empty() {
            return Err(PveError::Invalid {
                what: "ostemplate",
                message: "empty template volume id".to_string(),
            });
        }
        let mut a = Args::new(&["pct", "create"]);
        a.arg(self.vmid)
            .arg(&self.ostemplate)
            .opt("rootfs", self.rootfs.to_arg())
            .bool("unprivileged", self.unprivileged)
            .opt_some("ostype", self.ostype.as_deref())
            .opt_some("arch", self.arch.as_deref());
        self.options.push_args(&mut a, major)?;
        if let Some(p) = &self.ssh_public_keys {
            a.opt("ssh-public-keys", p.display());
        }
        a.flag("start", self.start);
        Ok(a.build())
    }
}

/// `pct restore` of a backup into `vmid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSpec {
    /// Target id.
    pub vmid: u32,
    /// Backup volume id or path.
    pub archive: String,
    /// Target storage for the volumes.
    pub storage: Option<String>,
    /// Overwrite an existing (stopped, unprotected) CT.
    pub force: bool,
    /// Fresh random MAC addresses.
    pub unique: bool,
    /// `--unprivileged`; unset keeps the backed-up value.
    pub unprivileged: Option<bool>,
    /// New root volume instead of the backed-up layout.
    pub rootfs: Option<RootfsSpec>,
    /// Settings that override the backed-up config.
    pub overrides: CtOptions,
}

impl RestoreSpec {
    /// Restores `archive` into `vmid` with the backed-up settings.
    pub fn new(vmid: u32, archive: impl Into<String>) -> Self {
        Self {
            vmid,
            archive: archive.into(),
            storage: None,
            force: false,
            unique: false,
            unprivileged: None,
            rootfs: None,
            overrides: CtOptions::default(),
        }
    }

    /// The argv for a node running PVE `major`.
    pub fn to_argv(&self, major: u32) -> Result<Vec<String>, PveError> {
        check_vmid(self.vmid)?;
        let mut a = Args::new(&["pct", "restore"]);
        a.arg(self.vmid)
            .arg(&self.archive)
            .opt_some("storage", self.storage.as_deref())
            .opt_some("rootfs", self.rootfs.as_ref().map(RootfsSpec::to_arg))
            .flag("force", self.force)
            .flag("unique", self.unique);
        if let Some(u) = self.unprivileged {
            a.bool("unprivileged", u);
        }
        self.overrides.push_args(&mut a, major)?;
        Ok(a.build())
    }
}

/// `pct set`: changes plus keys to delete.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetSpec {
    /// Values to set.
    pub options: CtOptions,
    /// Keys to remove (`--delete`), e.g. `net1`, `tags`.
    pub delete: Vec<String>,
}

impl SetSpec {
    /// The argv for `vmid` on a node running PVE `major`.
    pub fn to_argv(&self, vmid: u32, major: u32) -> Result<Vec<String>, PveError> {
        check_vmid(vmid)?;
        if let Some(k) = self
            .delete
            .iter()
            .find(|k| matches!(k.as_str(), "memory" | "rootfs" | "ostype"))
        {
            return Err(PveError::Invalid {
                what: "delete",
                message: format!("'{k}' cannot be deleted"),
            });
        }
        let mut a = Args::new(&["pct", "set"]);
        a.arg(vmid);
        self.options.push_args(&mut a, major)?;
        if !self.delete.is_empty() {
            a.opt("delete", self.delete.join(","));
        }
        let argv = a.build();
        if argv.len() == 3 {
            return Err(PveError::Invalid {
                what: "set",
                message: "no changes given".to_string(),
            });
        }
        Ok(argv)
    }
}

/// Ownership and mode for `pct push`/`pct pull`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileAttrs {
    /// Mode bits (sent in octal).
    pub perms: Option<u32>,
    /// Owner: a name (resolved inside the CT) or a number.
    pub user: Option<String>,
    /// Group: a name or a number.
    pub group: Option<String>,
}

impl FileAttrs {
    fn push_args(&self, a: &mut Args) {
        a.opt_some("perms", self.perms.map(|p| format!("{p:o}")))
            .opt_some("user", self.user.as_deref())
            .opt_some("group", self.group.as_deref());
    }
}

/// `pct destroy` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DestroyOptions {
    /// Also remove from backup jobs, replication and HA.
    pub purge: bool,
    /// Stop a running CT first.
    pub force: bool,
    /// Also delete unreferenced volumes named for this vmid.
    pub destroy_unreferenced_disks: bool,
}

impl DestroyOptions {
    /// Everything 1ld removes when it destroys a container of its own:
    /// purge, force, unreferenced disks.
    pub const FULL: DestroyOptions = DestroyOptions {
        purge: true,
        force: true,
        destroy_unreferenced_disks: true,
    };
}

/// Checks a snapshot name (`[a-z][a-z0-9_-]+`, max 40, not reserved).
pub fn check_snapshot_name(name: &str) -> Result<(), PveError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() >= 2
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok || name == "current" || name == "vzdump" {
        return Err(PveError::Invalid {
            what: "snapshot name",
            message: format!(
                "'{name}': use [a-z][a-z0-9_-]+ (2-40 chars), not 'current' or 'vzdump'"
            ),
        });
    }
    Ok(())
}

/// pct's own refusal of an `exec` (CT missing, not running, no command) as
/// a typed error; `Ok` when the exit status and stderr belong to the command.
pub fn exec_refusal(vmid: u32, out: &Output) -> Result<(), PveError> {
    // Only pct's own refusals are errors. Anything else on stderr belongs to
    // the command (e.g. `useradd: user 'x' already exists` must not become
    // AlreadyExists), so it is handed back with the command's exit code.
    let stderr = out.stderr_text();
    let refused = !out.success()
        && stderr.lines().any(|l| {
            let l = l.trim();
            (l.starts_with("Configuration file '") && l.ends_with("' does not exist"))
                || l == format!("container '{vmid}' not running!")
                || l == "missing command"
        });
    if refused {
        super::error::classify(&out.argv, out.code, "", &stderr)?;
    }
    Ok(())
}

/// `pct exec <vmid> --keep-env 0 -- <cmd...>`; an empty `cmd` is refused.
fn exec_argv<S: AsRef<str>>(vmid: u32, cmd: &[S]) -> Result<Vec<String>, PveError> {
    if cmd.is_empty() {
        return Err(PveError::Invalid {
            what: "exec command",
            message: "empty command".to_string(),
        });
    }
    let mut a = Args::new(&["pct", "exec"]);
    a.arg(vmid).opt("keep-env", 0).arg("--");
    for c in cmd {
        a.arg(c.as_ref());
    }
    Ok(a.build())
}

impl Pve {
    /// Runs a pct command whose output says nothing beyond success.
    async fn pct_simple(&self, argv: Vec<String>, span: Span) -> Result<(), PveError> {
        self.call(argv, span, None).await?;
        Ok(())
    }

    /// `pct <sub> <vmid> [--<flag> 1]`, its output parsed by `parse`.
    async fn pct_query<T>(
        &self,
        sub: &str,
        vmid: u32,
        flag: (&str, bool),
        parse: fn(&str) -> Result<T, super::parse::ParseError>,
    ) -> Result<T, PveError> {
        let argv = Args::new(&["pct", sub])
            .arg(vmid)
            .flag(flag.0, flag.1)
            .build();
        let (argv, text) = self.call_text(argv).await?;
        parsed(&argv, parse(&text))
    }

    /// `pct list`: containers on this node.
    pub async fn pct_list(&self) -> Result<Vec<PctListEntry>, PveError> {
        let (argv, text) = self.call_text(Args::new(&["pct", "list"]).build()).await?;
        parsed(&argv, parse_pct_list(&text))
    }

    /// `pct status <vmid> [--verbose 1]`.
    pub async fn pct_status(&self, vmid: u32, verbose: bool) -> Result<CtStatus, PveError> {
        self.pct_query("status", vmid, ("verbose", verbose), parse_pct_status)
            .await
    }

    /// `pct config <vmid> [--current 1]` (pending changes merged in unless `current`).
    pub async fn pct_config(&self, vmid: u32, current: bool) -> Result<CtConfig, PveError> {
        self.pct_query("config", vmid, ("current", current), parse_pct_config)
            .await
    }

    /// `pct create`. Fails with `AlreadyExists` if the id is taken anywhere in
    /// the cluster (retry with a new [`Pve::next_vmid`]).
    pub async fn pct_create(&self, spec: &CreateSpec) -> Result<(), PveError> {
        self.pct_simple(spec.to_argv(self.major())?, Span::Long)
            .await
    }

    /// `pct restore`.
    pub async fn pct_restore(&self, spec: &RestoreSpec) -> Result<(), PveError> {
        self.pct_simple(spec.to_argv(self.major())?, Span::Long)
            .await
    }

    /// `pct start <vmid>`.
    pub async fn pct_start(&self, vmid: u32) -> Result<(), PveError> {
        let argv = Args::new(&["pct", "start"]).arg(vmid).build();
        self.pct_simple(argv, Span::Long).await
    }

    /// `pct stop <vmid>`: hard stop.
    pub async fn pct_stop(&self, vmid: u32) -> Result<(), PveError> {
        let argv = Args::new(&["pct", "stop"]).arg(vmid).build();
        self.pct_simple(argv, Span::Long).await
    }

    /// `pct shutdown <vmid> [--timeout N] [--forceStop 1]`.
    pub async fn pct_shutdown(
        &self,
        vmid: u32,
        timeout_secs: Option<u32>,
        force_stop: bool,
    ) -> Result<(), PveError> {
        let argv = Args::new(&["pct", "shutdown"])
            .arg(vmid)
            .opt_some("timeout", timeout_secs)
            .flag("forceStop", force_stop)
            .build();
        self.pct_simple(argv, Span::Long).await
    }

    /// `pct reboot <vmid> [--timeout N]`.
    pub async fn pct_reboot(&self, vmid: u32, timeout_secs: Option<u32>) -> Result<(), PveError> {
        let argv = Args::new(&["pct", "reboot"])
            .arg(vmid)
            .opt_some("timeout", timeout_secs)
            .build();
        self.pct_simple(argv, Span::Long).await
    }

    /// `pct destroy <vmid>` with flags.
    pub async fn pct_destroy(&self, vmid: u32, opts: DestroyOptions) -> Result<(), PveError> {
        let argv = Args::new(&["pct", "destroy"])
            .arg(vmid)
            .flag("purge", opts.purge)
            .flag("force", opts.force)
            .flag(
                "destroy-unreferenced-disks",
                opts.destroy_unreferenced_disks,
            )
            .build();
        self.pct_simple(argv, Span::Long).await
    }

    /// `pct set <vmid> ...`.
    pub async fn pct_set(&self, vmid: u32, spec: &SetSpec) -> Result<(), PveError> {
        self.pct_simple(spec.to_argv(vmid, self.major())?, Span::Short)
            .await
    }

    /// `pct exec <vmid> --keep-env 0 -- <cmd...>`, optionally feeding `stdin`.
    ///
    /// The command's own exit status is returned in the output (non-zero is
    /// not an error); pct's errors (CT missing or not running) are.
    pub async fn pct_exec<S: AsRef<str>>(
        &self,
        vmid: u32,
        cmd: &[S],
        stdin: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<Output, PveError> {
        let argv = exec_argv(vmid, cmd)?;
        let out = match timeout {
            Some(t) => {
                let opts = super::RunOptions {
                    stdin,
                    timeout: Some(t),
                };
                self.runner().run(&argv, opts).await?
            }
            None => self.run_raw(argv, Span::Long, stdin).await?,
        };
        // Only pct's own refusals are errors. Anything else on stderr belongs to
        // the command (e.g. `useradd: user 'x' already exists` must not become
        // AlreadyExists), so it is handed back with the command's exit code.
        exec_refusal(vmid, &out)?;
        Ok(out)
    }

    /// `pct exec <vmid> --keep-env 0 -- <cmd...>` with stdout read line by
    /// line as it comes ([`LineStream`](super::LineStream)): for commands
    /// that run until stopped (`journalctl -f`). Dropping the stream kills
    /// `pct` and what it started on the host and closes the pipe the command
    /// in the container writes to. pct's refusals (CT missing or not
    /// running) show in the exit status and stderr; see [`exec_refusal`].
    pub async fn pct_exec_stream<S: AsRef<str>>(
        &self,
        vmid: u32,
        cmd: &[S],
    ) -> Result<super::LineStream, PveError> {
        Ok(self.runner().stream(&exec_argv(vmid, cmd)?).await?)
    }

    /// `pct push <vmid> <file> <destination>`: copies a host file into the CT
    /// (running CTs only; parent directories must exist).
    pub async fn pct_push(
        &self,
        vmid: u32,
        file: &std::path::Path,
        destination: &str,
        attrs: &FileAttrs,
    ) -> Result<(), PveError> {
        let mut a = Args::new(&["pct", "push"]);
        a.arg(vmid).arg(file.display()).arg(destination);
        attrs.push_args(&mut a);
        self.pct_simple(a.build(), Span::Long).await
    }

    /// `pct pull <vmid> <path> <destination>`: copies a CT file to the host.
    pub async fn pct_pull(
        &self,
        vmid: u32,
        path: &str,
        destination: &std::path::Path,
        attrs: &FileAttrs,
    ) -> Result<(), PveError> {
        let mut a = Args::new(&["pct", "pull"]);
        a.arg(vmid).arg(path).arg(destination.display());
        attrs.push_args(&mut a);
        self.pct_simple(a.build(), Span::Long).await
    }

    /// `pct snapshot <vmid> <name> [--description D]`.
    pub async fn pct_snapshot(
        &self,
        vmid: u32,
        name: &str,
        description: Option<&str>,
    ) -> Result<(), PveError> {
        check_snapshot_name(name)?;
        let argv = Args::new(&["pct", "snapshot"])
            .arg(vmid)
            .arg(name)
            .opt_some("description", description)
            .build();
        self.pct_simple(argv, Span::Long).await
    }

    /// `pct listsnapshot <vmid>` (always ends with the `current` entry).
    pub async fn pct_listsnapshot(&self, vmid: u32) -> Result<Vec<SnapshotEntry>, PveError> {
        let (argv, text) = self
            .call_text(Args::new(&["pct", "listsnapshot"]).arg(vmid).build())
            .await?;
        parsed(&argv, parse_listsnapshot(&text))
    }

    /// `pct rollback <vmid> <name> [--start 1]`.
    pub async fn pct_rollback(&self, vmid: u32, name: &str, start: bool) -> Result<(), PveError> {
        let argv = Args::new(&["pct", "rollback"])
            .arg(vmid)
            .arg(name)
            .flag("start", start)
            .build();
        self.pct_simple(argv, Span::Long).await
    }

    /// `pct delsnapshot <vmid> <name> [--force 1]`.
    pub async fn pct_delsnapshot(
        &self,
        vmid: u32,
        name: &str,
        force: bool,
    ) -> Result<(), PveError> {
        let argv = Args::new(&["pct", "delsnapshot"])
            .arg(vmid)
            .arg(name)
            .flag("force", force)
            .build();
        self.pct_simple(argv, Span::Long).await
    }

    /// `pct unlock <vmid>`. A CT without a lock gives `NotFound`.
    pub async fn pct_unlock(&self, vmid: u32) -> Result<(), PveError> {
        let argv = Args::new(&["pct", "unlock"]).arg(vmid).build();
        self.pct_simple(argv, Span::Short).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::types::{Ipv4Config, Ipv6Config};

    fn spec() -> CreateSpec {
        let mut s = CreateSpec::new(
            101,
            "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst",
            RootfsSpec {
                storage: "local-lvm".into(),
                size_gib: 8,
            },
        );
        s.options.hostname = Some("web01".into());
        s.options.cores = Some(2);
        s.options.memory = Some(1024);
        s.options.swap = Some(512);
        s.options.net.insert(
            0,
            NetSpec {
                ip: Some(Ipv4Config::Dhcp),
                ip6: Some(Ipv6Config::Auto),
                firewall: Some(true),
                ..NetSpec::new("eth0", "vmbr0")
            },
        );
        s.options.onboot = Some(true);
        s.options.tags = Some(vec!["Web".into(), "prod".into()]);
        s.options.description = Some("managed by 1ld\nline two".into());
        s
    }

    #[test]
    fn create_argv_is_explicit() {
        let argv = spec().to_argv(8).unwrap();
        let want: Vec<&str> = vec![
            "pct",
            "create",
            "101",
            "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst",
            "--rootfs",
            "local-lvm:8",
            "--unprivileged",
            "1",
            "--hostname",
            "web01",
            "--cores",
            "2",
            "--memory",
            "1024",
            "--swap",
            "512",
            "--net0",
            "name=eth0,bridge=vmbr0,firewall=1,ip=dhcp,ip6=auto",
            "--features",
            "nesting=1",
            "--onboot",
            "1",
            "--tags",
            "prod;web",
            "--description",
            "managed by 1ld\nline two",
        ];
        assert_eq!(argv, want);
        let mut priv_ = spec();
        priv_.unprivileged = false;
        priv_.start = true;
        priv_.ssh_public_keys = Some("/tmp/keys".into());
        let argv = priv_.to_argv(9).unwrap();
        let joined = argv.join(" ");
        assert!(joined.contains("--unprivileged 0"), "{joined}");
        assert!(
            joined.ends_with("--ssh-public-keys /tmp/keys --start 1"),
            "{joined}"
        );
    }

    #[test]
    fn create_rejects_pve9_only_options_on_pve8() {
        let mut s = spec();
        s.options.net.get_mut(&0).unwrap().host_managed = Some(true);
        assert!(matches!(
            s.to_argv(8),
            Err(PveError::Unsupported { major: 8, .. })
        ));
        assert!(s.to_argv(9).is_ok());
    }

    #[test]
    fn create_validates() {
        let mut s = spec();
        s.vmid = 99;
        assert!(s.to_argv(8).is_err());
        let mut s = spec();
        s.options.tags = Some(vec!["bad tag!".into()]);
        assert!(matches!(
            s.to_argv(8),
            Err(PveError::Invalid { what: "tag", .. })
        ));
        let mut s = spec();
        s.options.description = Some("x".repeat(MAX_DESCRIPTION + 1));
        assert!(s.to_argv(8).is_err());
    }

    #[test]
    fn set_argv() {
        let spec = SetSpec {
            options: CtOptions {
                memory: Some(2048),
                tags: Some(vec!["a".into()]),
                ..Default::default()
            },
            delete: vec!["net1".into(), "description".into()],
        };
        assert_eq!(
            spec.to_argv(101, 8).unwrap().join(" "),
            "pct set 101 --memory 2048 --tags a --delete net1,description"
        );
        assert!(SetSpec::default().to_argv(101, 8).is_err());
        let bad = SetSpec {
            delete: vec!["rootfs".into()],
            ..Default::default()
        };
        assert!(bad.to_argv(101, 8).is_err());
    }

    #[test]
    fn restore_argv() {
        let mut r = RestoreSpec::new(
            105,
            "local:backup/vzdump-lxc-101-2024_05_01-10_00_00.tar.zst",
        );
        r.storage = Some("local-lvm".into());
        r.force = true;
        r.unique = true;
        r.overrides.hostname = Some("web05".into());
        assert_eq!(
            r.to_argv(9).unwrap().join(" "),
            "pct restore 105 local:backup/vzdump-lxc-101-2024_05_01-10_00_00.tar.zst --storage local-lvm --force 1 --unique 1 --hostname web05"
        );
    }

    #[test]
    fn snapshot_names() {
        assert!(check_snapshot_name("before-upgrade").is_ok());
        assert!(check_snapshot_name("current").is_err());
        assert!(check_snapshot_name("vzdump").is_err());
        assert!(check_snapshot_name("1abc").is_err());
        assert!(check_snapshot_name("a").is_err());
        assert!(check_snapshot_name(&"a".repeat(41)).is_err());
        assert!(check_snapshot_name("Upper").is_err());
    }

    #[test]
    fn file_attrs_octal() {
        let mut a = Args::new(&["x"]);
        FileAttrs {
            perms: Some(0o644),
            user: Some("root".into()),
            group: None,
        }
        .push_args(&mut a);
        assert_eq!(a.build().join(" "), "x --perms 644 --user root");
    }
}
