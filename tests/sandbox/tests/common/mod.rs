//! Shared helpers for the golden-output tests: a throw-away sandbox root with
//! hand-placed configs, a runner for the built binary, and transcript files
//! compared against `tests/golden/<name>.txt` (`UPDATE_GOLDEN=1` rewrites them).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temp sandbox root. Node name `pve`, storages `local` (dir),
/// `local-lvm` (lvmthin), `backup` (dir, backup only), `off` (disabled);
/// other node `pve2` with qemu 105 and lxc 106.
pub struct Sandbox {
    _dir: tempfile::TempDir,
    /// The state root.
    pub root: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc/pve/lxc")).unwrap();
        std::fs::write(root.join("etc/sandbox.conf"), "node: pve\n").unwrap();
        let vz = root.join("var/lib/vz");
        let cfg = format!(
            "dir: local\n\tpath {}\n\tcontent iso,vztmpl,backup\n\nlvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n\ndir: backup\n\tpath {}/backup\n\tcontent backup\n\ndir: off\n\tpath {}/off\n\tcontent rootdir\n\tdisable\n",
            vz.display(),
            root.display(),
            root.display()
        );
        std::fs::write(root.join("etc/pve/storage.cfg"), cfg).unwrap();
        std::fs::write(
            root.join("etc/pve/other-nodes"),
            "pve2 qemu 105 win11\npve2 lxc 106 proxy\n",
        )
        .unwrap();
        Sandbox { _dir: dir, root }
    }

    pub fn write_conf(&self, vmid: u32, text: &str) {
        std::fs::write(self.root.join(format!("etc/pve/lxc/{vmid}.conf")), text).unwrap();
    }

    pub fn read_conf(&self, vmid: u32) -> String {
        std::fs::read_to_string(self.root.join(format!("etc/pve/lxc/{vmid}.conf"))).unwrap()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pve-sandbox"));
        c.args(args)
            .env("PVE_SANDBOX_ROOT", &self.root)
            .env("TZ", "UTC")
            .env_remove("PVE_SANDBOX_PVE_MAJOR")
            .env_remove("PVE_SANDBOX_FAULTS")
            .env_remove("PVE_SANDBOX_NOW")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

/// A transcript of commands with their exit codes and outputs.
pub struct Transcript {
    name: String,
    text: String,
    root: PathBuf,
}

impl Transcript {
    pub fn new(name: &str, sb: &Sandbox) -> Transcript {
        Transcript {
            name: name.into(),
            text: String::new(),
            root: sb.root.clone(),
        }
    }

    fn norm(&self, s: &[u8]) -> String {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut t = String::from_utf8_lossy(s).replace(&self.root.display().to_string(), "<ROOT>");
        if !kernel.trim().is_empty() {
            t = t.replace(kernel.trim(), "<KERNEL>");
        }
        t
    }

    /// Run one command and record it.
    pub fn step(&mut self, sb: &Sandbox, args: &[&str]) -> Output {
        self.step_env(sb, args, &[])
    }

    /// Run one command with extra environment and record it.
    pub fn step_env(&mut self, sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = sb.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let entry = step_text(&args.join(" "), env, &out, |s| self.norm(s.as_bytes()));
        self.text.push_str(&entry);
        out
    }

    /// Record a note (e.g. a file's content).
    pub fn note(&mut self, title: &str, body: &str) {
        let body = self.norm(body.as_bytes());
        self.text.push_str(&format!("### {title}\n{body}\n"));
    }

    /// Compare with (or, with `UPDATE_GOLDEN=1`, rewrite) the golden file.
    pub fn check(self) {
        check_golden(&self.name, &self.text);
    }
}

/// One transcript entry: `$ ` and the command line (after `env` as
/// `K=V `), then exit code, stdout and stderr, the outputs through `norm`.
pub fn step_text(
    cmdline: &str,
    env: &[(&str, &str)],
    out: &Output,
    norm: impl Fn(&str) -> String,
) -> String {
    let envs: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    format!(
        "$ {envs}{cmdline}\n--- exit {}\n--- stdout\n{}--- stderr\n{}\n",
        out.status.code().unwrap_or(-1),
        norm(&String::from_utf8_lossy(&out.stdout)),
        norm(&String::from_utf8_lossy(&out.stderr))
    )
}

/// Compare `text` with (or, with `UPDATE_GOLDEN=1`, rewrite)
/// `tests/golden/<name>.txt`; a mismatch leaves `<name>.got` next to it.
pub fn check_golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if want != text {
        let got = path.with_extension("got");
        std::fs::write(&got, text).unwrap();
        panic!(
            "golden mismatch for {name}: see diff -u {} {}",
            path.display(),
            got.display()
        );
    }
}

/// A CT config like one `pct create` leaves behind.
pub const CT101: &str = "#web server\n#line%3A two\narch: amd64\ncores: 2\nfeatures: nesting=1\nhostname: web01\nmemory: 1024\nnet0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:12:34:56,ip=dhcp,type=veth\nonboot: 1\nostype: debian\nrootfs: local-lvm:vm-101-disk-0,size=8G\nswap: 512\ntags: prod;web\nunprivileged: 1\n";

/// A CT on dir storage with pending changes, snapshots and a raw lxc key.
pub const CT102: &str = "arch: amd64\nhostname: db01\nmemory: 512\nostype: debian\nparent: after\nrootfs: local:102/vm-102-disk-0.raw,size=4G\nswap: 512\nlxc.apparmor.profile: unconfined\n\n[pve:pending]\ndelete: swap\nmemory: 2048\n\n[after]\n#after upgrade\narch: amd64\nhostname: db01\nmemory: 512\nostype: debian\nparent: before\nrootfs: local:102/vm-102-disk-0.raw,size=4G\nsnaptime: 1714557700\nswap: 512\n\n[before]\n#before upgrade\n#second line\narch: amd64\nhostname: db01\nmemory: 512\nostype: debian\nrootfs: local:102/vm-102-disk-0.raw,size=4G\nsnaptime: 1714557600\nswap: 512\n";

// ---------------------------------------------------------------------------
// The root-only tier (real LXC): `PVE_SANDBOX_E2E=1`.

/// The appliance template the root-only tests create CTs from.
pub const E2E_TEMPLATE: &str = "debian-12-standard_12.12-1_amd64.tar.zst";

/// Whether the root-only tier was asked for (`PVE_SANDBOX_E2E=1`); then it
/// must run as root. Otherwise says so for `test` and returns false.
pub fn e2e_requested(test: &str) -> bool {
    if std::env::var("PVE_SANDBOX_E2E").as_deref() != Ok("1") {
        eprintln!("{test}: set PVE_SANDBOX_E2E=1 (as root) to run");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "PVE_SANDBOX_E2E=1 needs root"
    );
    true
}

/// The appliance mirror (`PVE_SANDBOX_MIRROR`, default the shared cache).
pub fn e2e_mirror() -> String {
    std::env::var("PVE_SANDBOX_MIRROR").unwrap_or_else(|_| "/var/cache/pve-sandbox/mirror".into())
}

/// A private sandbox node with its own bridge and subnet, `up`; `down` on
/// drop, whatever happened.
pub struct LiveNode {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl LiveNode {
    /// A root in a fresh temp dir under `/tmp` (name starting with `prefix`).
    pub fn up(prefix: &str, bridge: &str, subnet: &str) -> LiveNode {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/sandbox.conf"),
            format!("node: pve\nbridge: {bridge}\nsubnet: {subnet}\n"),
        )
        .unwrap();
        // parents of an unprivileged rootfs need o+x
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let n = LiveNode { root, _dir: dir };
        n.ok(&["up"]);
        n
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pve-sandbox"));
        c.args(args)
            .env("PVE_SANDBOX_ROOT", &self.root)
            .env_remove("PVE_SANDBOX_PVE_MAJOR")
            .env_remove("PVE_SANDBOX_FAULTS")
            .env_remove("PVE_SANDBOX_NOW")
            .stdin(Stdio::null());
        c
    }

    pub fn pve(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.pve(args);
        assert!(
            o.status.success(),
            "{args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `pct exec <vmid> -- <argv>` with `input` on its stdin; its output.
    pub fn exec_stdin(&self, vmid: &str, argv: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut args = vec!["pct", "exec", vmid, "--"];
        args.extend_from_slice(argv);
        let mut child = self
            .cmd(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// A CT's config file.
    pub fn read_conf(&self, vmid: &str) -> String {
        std::fs::read_to_string(self.root.join(format!("etc/pve/lxc/{vmid}.conf"))).unwrap()
    }

    /// A CT's `net0` MAC (lower case), from its config.
    pub fn mac_of(&self, vmid: &str) -> String {
        self.read_conf(vmid)
            .lines()
            .find_map(|l| l.strip_prefix("net0: "))
            .and_then(|v| v.split(',').find_map(|p| p.strip_prefix("hwaddr=")))
            .unwrap()
            .to_lowercase()
    }
}

impl Drop for LiveNode {
    fn drop(&mut self) {
        let _ = self.pve(&["down"]);
    }
}

/// Poll `f` every 100 ms until it gives a value; panic after `max`.
pub fn wait_for<T>(what: &str, max: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < max,
            "timed out after {max:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
