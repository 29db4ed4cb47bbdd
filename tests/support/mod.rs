//! Shared by the sandbox-tier tests and the sandbox bench: a private sandbox
//! PVE node (own state root, bridge and subnet) that is torn down on drop,
//! and a bounded `wait_for`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oneld::pve::pct::{CreateSpec, RootfsSpec};
use oneld::pve::types::{Ipv4Config, Ipv6Config, NetSpec};
use oneld::pve::Runner;

pub const TEMPLATE: &str = "debian-12-standard_12.12-1_amd64.tar.zst";
pub const NODE: &str = "pve";

pub fn enabled() -> bool {
    std::env::var("PVE_SANDBOX_E2E").as_deref() == Ok("1")
}

/// `target/sandbox/bin`, where `make sandbox-bin` links pct, pveam, ...
pub fn bin_dir() -> PathBuf {
    std::env::var_os("PVE_SANDBOX_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sandbox/bin"))
}

/// A private sandbox node; `pve-sandbox down` on drop, even when the test fails.
pub struct SandboxNode {
    root: tempfile::TempDir,
    bin: PathBuf,
    bridge: String,
}

impl SandboxNode {
    pub fn up(major: u8, bridge: &str, subnet: &str) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "PVE_SANDBOX_E2E=1 but not root: the sandbox tier needs root (run `make test` as root)"
        );
        let bin = bin_dir();
        assert!(
            bin.join("pct").exists(),
            "no sandbox binaries in {}: run `make sandbox-bin`",
            bin.display()
        );
        let root = tempfile::Builder::new()
            .prefix("pve-sbx-test")
            .tempdir()
            .expect("temp root");
        std::fs::create_dir_all(root.path().join("etc")).expect("etc");
        std::fs::write(
            root.path().join("etc/sandbox.conf"),
            format!("node: {NODE}\npve-major: {major}\nbridge: {bridge}\nsubnet: {subnet}\n"),
        )
        .expect("sandbox.conf");
        let node = SandboxNode {
            root,
            bin,
            bridge: bridge.to_string(),
        };
        node.admin("up");
        node
    }

    pub fn admin(&self, verb: &str) {
        let out = Command::new(self.bin.join("pve-sandbox"))
            .arg(verb)
            .env("PVE_SANDBOX_ROOT", self.root.path())
            .output()
            .expect("run pve-sandbox");
        assert!(
            out.status.success(),
            "pve-sandbox {verb} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn runner(&self) -> Runner {
        Runner::new(Some(self.bin.clone()))
            .with_env("PVE_SANDBOX_ROOT", self.root.path().display().to_string())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
}

impl Drop for SandboxNode {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("pve-sandbox"))
            .arg("down")
            .env("PVE_SANDBOX_ROOT", self.root.path())
            .status();
        let bridge_left = Path::new("/sys/class/net").join(&self.bridge).exists();
        if bridge_left && !std::thread::panicking() {
            panic!("pve-sandbox down left bridge {} behind", self.bridge);
        }
    }
}

/// Polls `f` every 200 ms until it yields a value or `limit` passes.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The test container: unprivileged, nesting, DHCP on `bridge`, 1 core,
/// 512 MB, 4 GB on local-lvm, tags and a description that need escaping.
pub fn spec(vmid: u32, bridge: &str) -> CreateSpec {
    let mut s = CreateSpec::new(
        vmid,
        format!("local:vztmpl/{TEMPLATE}"),
        RootfsSpec {
            storage: "local-lvm".into(),
            size_gib: 4,
        },
    );
    s.options.hostname = Some(format!("sbx-{vmid}"));
    s.options.cores = Some(1);
    s.options.memory = Some(512);
    s.options.swap = Some(256);
    s.options.tags = Some(vec!["1LD".into(), "1ld-test web".into()]);
    s.options.description = Some("managed by 1ld\nkey: value 100%".into());
    let mut net = NetSpec::new("eth0", bridge);
    net.ip = Some(Ipv4Config::Dhcp);
    net.ip6 = Some(Ipv6Config::Manual);
    s.options.net.insert(0, net);
    s
}
