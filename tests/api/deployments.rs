//! Apps and deployments through the API.
//!
//! Fast tier (no root): the catalog, validation (every schema violation,
//! names, traversal, metacharacters, oversized values), dry runs against the
//! sandbox tools (config-only: storages, templates, cluster ids).
//!
//! Root tier (`PVE_SANDBOX_E2E=1`; fails when not root): a private sandbox
//! node with real LXC containers, its own bridge, subnet and DHCP; the
//! agents from `target/release` (`make agents-bin`). The agents' upstreams
//! are the in-process fakes (`fake_upstreams`: NetBox, Wiki.js replaying
//! recorded transcripts) on the test bridge's host address, so deployments
//! end `healthy`; one test deploys with the upstream down to show the
//! `degraded` rule.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::Method;
use oneld::api::{
    AppCatalog, AppInfo, ApplyPreview, ContainerState, Deployment, HealthStatus, OpStatus,
    Operation, Plan, UnmanagedContainer,
};
use serde_json::{json, Value};

use crate::daemon::{root_tier, Client, Daemon, Options};

use crate::support;

pub(crate) const TOKEN: &str = "nbt_0123456789ab.deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
pub(crate) const WIKI_KEY: &str = "eyJhbGciOiJSUzI1NiJ9.test.key";

pub(crate) fn agents_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release")
}

/// A daemon on the sandbox tools (no containers) whose sysfs has `vmbr1ldt`.
pub(crate) fn fast_daemon(
    extra: impl FnOnce(&mut oneld::config::Config) + Send + 'static,
) -> (Daemon, tempfile::TempDir) {
    let net = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(net.path().join("vmbr1ldt/bridge")).expect("fake bridge");
    std::fs::create_dir_all(net.path().join("eth0")).expect("fake nic");
    let agents = tempfile::tempdir().expect("tmp");
    for a in ["netbox-agent", "wikijs-integration"] {
        std::fs::write(agents.path().join(a), b"#!/bin/false\n").expect("agent");
    }
    let sys = net.path().to_path_buf();
    let ag = agents.path().to_path_buf();
    let d = Daemon::with(Options {
        config: Box::new(move |c| {
            c.apps.sys_class_net = sys;
            c.apps.agents_dir = ag;
            c.apps.storage = "ctdata".into();
            c.apps.dir = c.state_dir.join("apps.d");
            extra(c);
        }),
        ..Options::default()
    })
    .expect("daemon");
    // Keep the fake sysfs alive with the daemon (agents dir too).
    std::mem::forget(agents);
    (d, net)
}

fn nb_request(extra: Value) -> Value {
    let mut v = json!({
        "app": "netbox-agent",
        "settings": {"netbox_url": "http://netbox.lan:8000"},
        "secrets": {"netbox_token": TOKEN},
        "overrides": {"bridge": "vmbr1ldt"},
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

async fn put(c: &Client, path: &str, body: &Value) -> crate::daemon::Resp {
    c.raw(
        Method::PUT,
        path,
        &[("content-type", "application/json")],
        serde_json::to_vec(body).expect("json"),
    )
    .await
}

#[tokio::test]
async fn catalog_lists_builtins_and_reports_bad_user_files() {
    let (d, _net) = fast_daemon(|_| {});
    let dir = d.config.apps.dir.clone();
    std::fs::create_dir_all(&dir).expect("apps.d");
    std::fs::write(
        dir.join("broken.toml"),
        "name = \"x\"\n[container]\ncores = \"two\"\n",
    )
    .expect("bad");
    let c = d.client();
    let cat: AppCatalog = c.get("/v1/apps").await.expect(200).json();
    let names: Vec<&str> = cat.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["netbox-agent", "wikijs-integration"]);
    assert_eq!(cat.errors.len(), 1, "{:?}", cat.errors);
    assert!(cat.errors[0].file.ends_with("broken.toml"));
    assert_eq!(cat.errors[0].line, Some(3));
    let nb: AppInfo = c.get("/v1/apps/netbox-agent").await.expect(200).json();
    assert_eq!((nb.container.vmid_min, nb.container.vmid_max), (140, 200));
    let (code, msg) = c.get("/v1/apps/nope").await.expect(404).error();
    assert_eq!(code, "not_found");
    assert!(msg.contains("netbox-agent"), "{msg}");
}

#[tokio::test]
async fn dry_run_plans_and_changes_nothing() {
    let (d, _net) = fast_daemon(|_| {});
    let c = d.client();
    // A VM on the fake other node holds 140: the plan skips it.
    std::fs::write(
        d.tools().root.join("etc/pve/other-nodes"),
        "pve2 qemu 140 winvm\n",
    )
    .expect("other");
    let before = std::fs::read_dir(d.tools().root.join("etc/pve"))
        .expect("ls")
        .count();
    let plan: Plan = c
        .post("/v1/deployments", &nb_request(json!({"dry_run": true})))
        .await
        .expect(200)
        .json();
    assert_eq!(plan.vmid, 141);
    assert_eq!(plan.name, "netbox-agent");
    assert!(plan.template_download, "{plan:?}");
    assert_eq!(&plan.pct_create[..3], &["pct", "create", "141"]);
    let argv = plan.pct_create.join(" ");
    assert!(
        argv.contains("--tags 1ld;1ld-netbox-agent;netbox"),
        "{argv}"
    );
    assert!(
        argv.contains("--rootfs ctdata:8")
            && argv.contains("--cores 2")
            && argv.contains("--memory 2048"),
        "{argv}"
    );
    assert!(
        argv.contains("bridge=vmbr1ldt") && argv.contains("ip=dhcp"),
        "{argv}"
    );
    assert!(!argv.contains(TOKEN) && !serde_json::to_string(&plan).unwrap().contains(TOKEN));
    assert_eq!(plan.settings["netbox_token"], json!("***"));
    let secret = plan.files.iter().find(|f| f.secret).expect("secret file");
    assert_eq!(
        (secret.mode.as_str(), secret.owner.as_str()),
        ("0600", "netbox-agent:netbox-agent")
    );
    assert_eq!(plan.steps.len(), 10);
    // Nothing changed: no CT config, no deployment, no operation.
    assert_eq!(
        std::fs::read_dir(d.tools().root.join("etc/pve"))
            .expect("ls")
            .count(),
        before
    );
    let list: Vec<Deployment> = c.get("/v1/deployments").await.expect(200).json();
    assert!(list.is_empty());
    let ops: Vec<Operation> = c.get("/v1/operations").await.expect(200).json();
    assert!(ops.is_empty(), "{ops:?}");
}

#[tokio::test]
async fn dry_run_with_the_proxy_plans_nginx_in_front() {
    let (d, _net) = fast_daemon(|_| {});
    let c = d.client();
    let plan: Plan = c
        .post(
            "/v1/deployments",
            &nb_request(
                json!({"dry_run": true, "overrides": {"bridge": "vmbr1ldt", "proxy": true}}),
            ),
        )
        .await
        .expect(200)
        .json();
    let argv = plan.pct_create.join(" ");
    assert!(
        argv.contains("--tags 1ld;1ld-netbox-agent;1ld-proxy;netbox"),
        "{argv}"
    );
    let files: Vec<(&str, &str)> = plan
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.source.as_str()))
        .collect();
    for want in [
        (
            "/root/1ld-debs/nginx-common_<version>.deb",
            "package:nginx-common",
        ),
        ("/root/1ld-debs/nginx_<version>.deb", "package:nginx"),
        ("/etc/nginx/conf.d/1ld-proxy.conf", "proxy"),
    ] {
        assert!(files.contains(&want), "{want:?} not in {files:?}");
    }
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("nginx on port 80 in front of 127.0.0.1:8080")),
        "{:?}",
        plan.warnings
    );
    // Off by default: no tag, no nginx.
    let plan: Plan = c
        .post("/v1/deployments", &nb_request(json!({"dry_run": true})))
        .await
        .expect(200)
        .json();
    assert!(!plan.pct_create.join(" ").contains("1ld-proxy"));
    assert!(!plan.files.iter().any(|f| f.path.contains("nginx")));
    // An app without a port to put it in front of is refused.
    let dir = d.config.apps.dir.clone();
    std::fs::create_dir_all(&dir).expect("apps.d");
    let m = include_str!("../../src/apps/builtin/netbox-agent.toml")
        .replace("name = \"netbox-agent\"", "name = \"nb-exec\"")
        .replace("ports = [8080]", "ports = []")
        .replace("upstream_port = 8080\n", "")
        .replace(
            "kind = \"http\"\nport = 8080\npath = \"/health\"",
            "kind = \"exec\"\ncommand = [\"netbox-agent\", \"--self-check\"]",
        )
        .replace("json_field = \"status\"\n", "")
        .replace("status_path = \"/status\"\n", "");
    std::fs::write(dir.join("nb-exec.toml"), m).expect("manifest");
    let mut req =
        nb_request(json!({"dry_run": true, "overrides": {"bridge": "vmbr1ldt", "proxy": true}}));
    req["app"] = json!("nb-exec");
    let (_, msg) = c.post("/v1/deployments", &req).await.expect(400).error();
    assert!(
        msg.contains("overrides.proxy: app 'nb-exec' has no service port"),
        "{msg}"
    );
}

#[tokio::test]
async fn every_problem_is_reported_at_once_naming_the_field() {
    let (d, _net) = fast_daemon(|_| {});
    let c = d.client();
    let bad = json!({
        "app": "netbox-agent",
        "name": "Bad_Name",
        "settings": {"netbox_url": "ftp://x", "interval": "soon", "bogus": 1},
        "secrets": {},
        "overrides": {"storage": "local", "bridge": "vmbr9", "cores": 0, "memory": 1, "ip": "10.0.0.300/24", "ip6": "static",
                      "supervise": {"interval_secs": 0, "unhealthy_after": 1000}},
    });
    let (code, msg) = c.post("/v1/deployments", &bad).await.expect(400).error();
    assert_eq!(code, "bad_request");
    for needle in [
        "name: 'Bad_Name' is not a DNS label",
        "settings.netbox_url: 'ftp://x' is not an http:// or https:// URL",
        "settings.interval: 'soon' is not a duration",
        "settings.bogus: unknown setting; this app has: adopt_existing, full_sync_interval,",
        "secrets.netbox_token: required",
        "overrides.cores: 0 is outside 1..=512",
        "overrides.memory: 1 MiB is outside 16..=4194304 MiB",
        "overrides.ip: '10.0.0.300/24'",
        "overrides.ip6: the app wants a static IPv6 address",
        "bridge 'vmbr9' does not exist on this node; candidates: vmbr1ldt",
        "storage 'local' does not exist or has no content 'rootdir'; candidates: ctdata",
        "overrides.supervise.interval_secs: 0 is out of range; use 1..=3600",
        "overrides.supervise.unhealthy_after: 1000 is out of range; use 1..=100",
    ] {
        assert!(msg.contains(needle), "missing «{needle}» in: {msg}");
    }
    // Unknown app, unknown field, bad JSON types.
    let (_, msg) = c
        .post("/v1/deployments", &json!({"app": "nope"}))
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("no app called 'nope'; known apps: netbox-agent, wikijs-integration"),
        "{msg}"
    );
    let (_, msg) = c
        .post(
            "/v1/deployments",
            &nb_request(json!({"overrides": {"cpu": 2}})),
        )
        .await
        .expect(400)
        .error();
    assert!(msg.contains("unknown field `cpu`"), "{msg}");
    let (_, msg) = c
        .post(
            "/v1/deployments",
            &nb_request(json!({"overrides": {"supervise": {"every": 5}}})),
        )
        .await
        .expect(400)
        .error();
    assert!(msg.contains("unknown field `every`"), "{msg}");
    let (_, msg) = c
        .post(
            "/v1/deployments",
            &nb_request(json!({"settings": {"netbox_url": "http://n", "interval": 5}})),
        )
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("settings.interval: expected a string"),
        "{msg}"
    );
    // A secret in settings, a setting in secrets.
    let (_, msg) = c
        .post("/v1/deployments", &nb_request(json!({"settings": {"netbox_url": "http://n", "netbox_token": "x"}, "secrets": {"netbox_url": "http://n"}})))
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("settings.netbox_token: is a secret")
            && msg.contains("secrets.netbox_url: is not a secret"),
        "{msg}"
    );
}

#[tokio::test]
async fn names_traversal_metacharacters_and_oversized_values() {
    let (d, _net) = fast_daemon(|_| {});
    let c = d.client();
    for name in [
        "../../etc",
        "a/b",
        "x;reboot",
        "$(id)",
        "adopt",
        "unmanaged",
        "-x",
        "a b",
        &"a".repeat(64),
        "",
    ] {
        let (_, msg) = c
            .post(
                "/v1/deployments",
                &nb_request(json!({"name": name, "dry_run": true})),
            )
            .await
            .expect(400)
            .error();
        assert!(msg.starts_with("name: "), "{name}: {msg}");
    }
    // Metacharacters in settings are inert: accepted as text, quoted in the
    // rendered TOML, never near a shell (argv only).
    let evil = "http://n/$(reboot);`id`|x\"'\\";
    let plan: Plan = c
        .post("/v1/deployments", &nb_request(json!({"dry_run": true, "settings": {"netbox_url": evil}, "secrets": {"netbox_token": "'; rm -rf / #"}})))
        .await
        .expect(200)
        .json();
    assert_eq!(plan.settings["netbox_url"], json!(evil));
    // Control characters and oversized values are refused.
    let (_, msg) = c
        .post(
            "/v1/deployments",
            &nb_request(json!({"dry_run": true, "secrets": {"netbox_token": "a\nb"}})),
        )
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("secrets.netbox_token: control characters"),
        "{msg}"
    );
    let big = format!("http://n/{}", "x".repeat(2000));
    let (_, msg) = c
        .post(
            "/v1/deployments",
            &nb_request(json!({"dry_run": true, "settings": {"netbox_url": big}})),
        )
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("settings.netbox_url: 2009 bytes; at most 1024"),
        "{msg}"
    );
    let (_, msg) = c
        .post(
            "/v1/deployments",
            &nb_request(
                json!({"dry_run": true, "overrides": {"bridge": "br;x", "storage": "../x"}}),
            ),
        )
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("overrides.bridge: 'br;x' is not a bridge name"),
        "{msg}"
    );
    // Fixed vmid taken in the cluster (the other node).
    std::fs::write(
        d.tools().root.join("etc/pve/other-nodes"),
        "pve2 lxc 150 other\n",
    )
    .expect("other");
    let (_, msg) = c
        .post(
            "/v1/deployments",
            &nb_request(json!({"dry_run": true, "overrides": {"vmid": 150}})),
        )
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("overrides.vmid: vmid 150 is taken in the cluster"),
        "{msg}"
    );
    // Unknown deployments.
    c.get("/v1/deployments/nope").await.expect(404);
    c.post("/v1/deployments/nope/start", &json!({}))
        .await
        .expect(404);
    c.delete("/v1/deployments/nope").await.expect(404);
    // Apply dry run of a missing deployment is the create plan.
    let p: ApplyPreview = put(
        &c,
        "/v1/deployments/nb2",
        &nb_request(json!({"dry_run": true}))
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.remove("name");
                Value::Object(o)
            })
            .unwrap_or_default(),
    )
    .await
    .expect(200)
    .json();
    assert_eq!(p.create.map(|c| c.name), Some("nb2".into()));
}

// ---------------------------------------------------------------- root tier

/// A private sandbox node (real LXC, bridge, DHCP) and a daemon on it.
pub(crate) struct Node {
    pub(crate) daemon: Daemon,
    pub(crate) node: support::SandboxNode,
    bridge: String,
    /// The bridge's host address (`.1` of the test subnet).
    host: std::net::Ipv4Addr,
    /// The fake NetBox and Wiki.js, when started ([`Node::with_upstreams`]).
    upstreams: Option<Upstreams>,
    /// Daemons stopped by [`Node::restart_daemon`], kept so their state
    /// directory lives on.
    stopped: Vec<Daemon>,
}

/// The fakes the agents talk to, on the bridge's host address.
struct Upstreams {
    netbox: fake_upstreams::Handle,
    wikijs: fake_upstreams::Handle,
}

impl Upstreams {
    /// Both fakes were asked something, and only recorded requests.
    fn assert_used_cleanly(&self) {
        for h in [&self.netbox, &self.wikijs] {
            assert!(
                h.unrecorded().is_empty(),
                "{}: unrecorded requests: {:?}",
                h.name(),
                h.unrecorded()
            );
        }
    }
}

pub(crate) fn wrappers(dir: &Path, root: &Path) -> PathBuf {
    let bin = dir.join("pvebin");
    std::fs::create_dir_all(&bin).expect("bin");
    let exe = support::bin_dir().join("pve-sandbox");
    for tool in ["pct", "pveam", "pvesm", "pvesh", "pveversion", "vzdump"] {
        let p = bin.join(tool);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\nPVE_SANDBOX_ROOT='{}' exec '{}' {tool} \"$@\"\n",
                root.display(),
                exe.display()
            ),
        )
        .expect("wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

impl Node {
    /// A node whose daemon never checks drift.
    fn up(bridge: &str, subnet: &str) -> Node {
        Node::with_drift_every(bridge, subnet, 0)
    }

    /// A node whose daemon checks drift every `drift_secs` (0: never).
    fn with_drift_every(bridge: &str, subnet: &str, drift_secs: u64) -> Node {
        Node::with_config(bridge, subnet, drift_secs, |_, _| {})
    }

    /// [`Node::with_drift_every`], then `extra` changes the daemon's config
    /// (it gets the sandbox root to point paths into it).
    pub(crate) fn with_config(
        bridge: &str,
        subnet: &str,
        drift_secs: u64,
        extra: impl FnOnce(&mut oneld::config::Config, &Path) + Send + 'static,
    ) -> Node {
        assert!(
            agents_dir().join("netbox-agent").is_file()
                && agents_dir().join("wikijs-integration").is_file(),
            "no agent binaries in target/release: run `make agents-bin`"
        );
        let node = support::SandboxNode::up(8, bridge, subnet);
        let root = node.path("");
        let bin_holder = tempfile::tempdir().expect("tmp");
        let bin = wrappers(bin_holder.path(), &root);
        // An empty package cache: a deploy with the proxy makes the daemon
        // fetch nginx on the host itself.
        let packages = bin_holder.path().join("debs");
        std::mem::forget(bin_holder);
        let sroot = root.clone();
        let daemon = Daemon::with(Options {
            sandbox: false,
            config: Box::new(move |c| {
                c.pve.bin_dir = Some(bin);
                c.pve.command_timeout_secs = 60;
                c.pve.long_command_timeout_secs = 300;
                c.apps.agents_dir = agents_dir();
                // The test's own manifests, never the host's /etc/1ld/apps.d.
                c.apps.dir = c.state_dir.join("apps.d");
                c.apps.packages_dir = packages;
                c.apps.lease_timeout_secs = 20;
                c.apps.drift_interval_secs = drift_secs;
                extra(c, &sroot);
            }),
            ..Options::default()
        })
        .expect("daemon");
        let host = subnet
            .split_once('/')
            .and_then(|(net, _)| net.parse::<std::net::Ipv4Addr>().ok())
            .map(|a| {
                let [x, y, z, _] = a.octets();
                std::net::Ipv4Addr::new(x, y, z, 1)
            })
            .expect("a /24 subnet");
        Node {
            daemon,
            node,
            bridge: bridge.to_string(),
            host,
            upstreams: None,
            stopped: Vec::new(),
        }
    }

    /// Stops the daemon (gracefully) and starts a new one on the same
    /// configuration and state directory.
    pub(crate) fn restart_daemon(&mut self) {
        self.stop_daemon();
        self.start_daemon();
    }

    /// Stops the daemon (gracefully); [`Node::start_daemon`] starts the next.
    pub(crate) fn stop_daemon(&mut self) {
        self.daemon.stop();
    }

    /// Starts a new daemon on the stopped one's configuration and state.
    pub(crate) fn start_daemon(&mut self) {
        let cfg = self.daemon.config.clone();
        let next = Daemon::with(Options {
            sandbox: false,
            config: Box::new(move |c| *c = cfg),
            ..Options::default()
        })
        .expect("daemon restarts");
        let old = std::mem::replace(&mut self.daemon, next);
        self.stopped.push(old);
    }

    /// Starts the fake NetBox (accepting [`TOKEN`]) and Wiki.js (accepting
    /// [`WIKI_KEY`] as the admin key) on the bridge's host address;
    /// [`Node::request`] then points the agents at them.
    pub(crate) async fn with_upstreams(mut self) -> Node {
        let addr = std::net::SocketAddr::from((self.host, 0));
        let netbox = fake_upstreams::NetBox::new()
            .with_token(fake_upstreams::Secret::new(TOKEN))
            .serve(addr)
            .await
            .expect("fake NetBox");
        let wikijs = fake_upstreams::WikiJs::new()
            .with_key(fake_upstreams::Secret::new(WIKI_KEY))
            .serve(addr)
            .await
            .expect("fake Wiki.js");
        self.upstreams = Some(Upstreams { netbox, wikijs });
        self
    }

    /// The fakes (panics when not started).
    fn upstreams(&self) -> &Upstreams {
        self.upstreams.as_ref().expect("upstreams started")
    }

    /// `http://<host>:<port>` with nothing listening: an upstream that is down
    /// (the connection is refused at once).
    fn closed_url(&self) -> String {
        let l = std::net::TcpListener::bind((self.host, 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!("http://{}:{port}", self.host)
    }

    pub(crate) fn client(&self) -> Client {
        self.daemon.client()
    }

    pub(crate) fn pct(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(support::bin_dir().join("pct"))
            .args(args)
            .env("PVE_SANDBOX_ROOT", self.node.path(""))
            .output()
            .expect("pct")
    }

    pub(crate) fn exec(&self, vmid: u32, cmd: &[&str]) -> String {
        let mut a = vec!["exec".to_string(), vmid.to_string(), "--".to_string()];
        a.extend(cmd.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = self.pct(&a);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn vmids(&self) -> Vec<u32> {
        let out = self.pct(&["list"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    pub(crate) fn faults(&self, rules: &[&str]) {
        std::fs::write(self.node.path("etc/faults"), rules.join("\n") + "\n").expect("faults");
        let _ = std::fs::remove_file(self.node.path("run/faults.used"));
    }

    /// A deploy request for `app` named `name`: the upstream is the fake
    /// when started, else a closed port (upstream down).
    pub(crate) fn request(&self, app: &str, name: &str) -> Value {
        let url = |h: fn(&Upstreams) -> &fake_upstreams::Handle| {
            self.upstreams
                .as_ref()
                .map_or_else(|| self.closed_url(), |u| h(u).url())
        };
        let (settings, secrets) = if app == "netbox-agent" {
            (
                json!({"netbox_url": url(|u| &u.netbox)}),
                json!({"netbox_token": TOKEN}),
            )
        } else {
            (
                json!({"wikijs_url": url(|u| &u.wikijs)}),
                json!({"wikijs_api_key": WIKI_KEY}),
            )
        };
        json!({"app": app, "name": name, "settings": settings, "secrets": secrets,
               "overrides": {"bridge": self.bridge, "storage": "local-lvm", "memory": 512}})
    }
}

/// Waits (bounded) for an operation to end.
pub(crate) async fn finish(c: &Client, id: &str, limit: Duration) -> Operation {
    let start = Instant::now();
    loop {
        let op: Operation = c
            .get(&format!("/v1/operations/{id}/wait?timeout=15"))
            .await
            .expect(200)
            .json();
        if op.status.is_final() {
            return op;
        }
        assert!(
            start.elapsed() < limit,
            "operation {id} not done after {limit:?}: {op:?}"
        );
    }
}

pub(crate) async fn log_of(c: &Client, id: &str) -> String {
    let chunk: oneld::api::OpLogChunk = c
        .get(&format!("/v1/operations/{id}/log"))
        .await
        .expect(200)
        .json();
    chunk.lines.join("\n")
}

/// Submits an operation (`method path`, JSON `body` when given), expects
/// 202, waits (at most `limit_secs`) for it to end and asserts it succeeded
/// (with its log when not).
pub(crate) async fn op_ok(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
    limit_secs: u64,
) -> Operation {
    let (headers, bytes): (&[(&str, &str)], Vec<u8>) = match body {
        Some(b) => (
            &[("content-type", "application/json")],
            serde_json::to_vec(b).expect("json"),
        ),
        None => (&[], Vec::new()),
    };
    let op: Operation = c
        .raw(method.clone(), path, headers, bytes)
        .await
        .expect(202)
        .json();
    let op = finish(c, &op.id, Duration::from_secs(limit_secs)).await;
    assert_eq!(
        op.status,
        OpStatus::Succeeded,
        "{method} {path}: {op:?}\n{}",
        log_of(c, &op.id).await
    );
    op
}

pub(crate) async fn deploy(c: &Client, body: &Value) -> (Operation, String) {
    let op: Operation = c.post("/v1/deployments", body).await.expect(202).json();
    let op = finish(c, &op.id, Duration::from_secs(240)).await;
    let log = log_of(c, &op.id).await;
    (op, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_deploy_apply_stop_destroy_netbox_agent() {
    if !root_tier(
        "root_deploy_apply_stop_destroy_netbox_agent",
        "containers need root",
    ) {
        return;
    }
    // Drift checked every second (see below).
    let n = Node::with_drift_every("sbxdep0", "10.213.81.0/24", 1)
        .with_upstreams()
        .await;
    let c = n.client();
    // The fake other node holds 140: the deploy skips it.
    std::fs::write(n.node.path("etc/pve/other-nodes"), "pve2 qemu 140 winvm\n").expect("other");
    let t = Instant::now();
    let (op, log) = deploy(&c, &n.request("netbox-agent", "nb")).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:?}\n{log}");
    eprintln!("deploy netbox-agent: {:.1}s", t.elapsed().as_secs_f32());
    assert!(log.contains("health probe"), "{log}");
    let dep: Deployment = c.get("/v1/deployments/nb").await.expect(200).json();
    assert_eq!(dep.vmid, 141);
    assert_eq!(dep.state, ContainerState::Running);
    // The fake NetBox answered the agent's first cycle: healthy, and the
    // gate recorded that (not the provisional status before the cycle).
    assert_eq!(dep.health.status, HealthStatus::Healthy, "{dep:?}\n{log}");
    assert!(!log.contains("warning: the service is degraded"), "{log}");
    assert!(
        log.contains("deployment 'nb' recorded: CT 141 at ") && log.contains(", Healthy"),
        "{log}"
    );
    assert!(
        n.upstreams()
            .netbox
            .hits()
            .iter()
            .any(|h| h.line.contains("/api/status/")),
        "the agent never asked NetBox"
    );
    n.upstreams().assert_used_cleanly();
    assert_eq!(dep.settings["netbox_token"], json!("***"));
    let ip = dep.ip.clone().expect("ip");
    assert!(ip.starts_with("10.213.81."), "{ip}");
    // In the container: files, owners, modes; no secret in the config.
    let ls = n.exec(
        141,
        &[
            "stat",
            "-c",
            "%a %U %n",
            "/etc/netbox-agent/secrets.toml",
            "/etc/netbox-agent/config.toml",
            "/usr/local/bin/netbox-agent",
        ],
    );
    assert_eq!(ls, "600 netbox-agent /etc/netbox-agent/secrets.toml\n640 root /etc/netbox-agent/config.toml\n755 root /usr/local/bin/netbox-agent\n");
    let cfg = n.exec(141, &["cat", "/etc/netbox-agent/config.toml"]);
    assert!(
        cfg.contains("interval_s = 300") && !cfg.contains(TOKEN),
        "{cfg}"
    );
    let cfgd = n.pct(&["config", "141"]);
    let cfgd = String::from_utf8_lossy(&cfgd.stdout);
    assert!(
        cfgd.contains("tags: 1ld;1ld-netbox-agent;netbox") && cfgd.contains("Managed by 1ld"),
        "{cfgd}"
    );
    // The store holds no secret value.
    let db = std::fs::read(n.daemon.config.state_dir.join("state.db")).expect("db");
    assert!(!String::from_utf8_lossy(&db).contains(TOKEN));

    // Drift: a change behind 1ld's back (`pct set` on the node) is reported
    // on the deployment (recorded vs actual) and as a lifecycle event;
    // undoing it clears both, so the healthy deploy itself shows none.
    let mut events = c.events("/v1/events?type=lifecycle").await;
    let drift_event = |drifted: bool| {
        move |e: &oneld::api::Event| {
            e.payload["action"] == "drift"
                && e.payload["deployment"] == "nb"
                && e.payload["drift"]
                    .as_array()
                    .is_some_and(|a| a.is_empty() != drifted)
        }
    };
    let set_cores = |cores: &str| {
        let out = n.pct(&["set", "141", "--cores", cores]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    set_cores("1");
    let got = events
        .until(Duration::from_secs(30), drift_event(true))
        .await;
    let ev = got.last().expect("the drift event");
    assert_eq!(ev.kind, oneld::api::EventType::Lifecycle);
    assert_eq!(ev.payload["vmid"], json!(141), "{ev:?}");
    assert_eq!(
        ev.payload["drift"],
        json!([{"field": "cores", "expected": "2", "actual": "1"}]),
        "{ev:?}"
    );
    let drifted: Deployment = c.get("/v1/deployments/nb").await.expect(200).json();
    assert_eq!(
        drifted.drift,
        vec![oneld::api::Drift {
            field: "cores".into(),
            expected: "2".into(),
            actual: "1".into(),
        }],
        "{drifted:?}"
    );
    set_cores("2");
    events
        .until(Duration::from_secs(30), drift_event(false))
        .await;
    let undone: Deployment = c.get("/v1/deployments/nb").await.expect(200).json();
    assert!(undone.drift.is_empty(), "{undone:?}");
    drop(events);

    // A second deploy of the same name is refused, listing it.
    let (_, msg) = c
        .post("/v1/deployments", &n.request("netbox-agent", "nb"))
        .await
        .expect(400)
        .error();
    assert!(msg.contains("a deployment called 'nb' exists"), "{msg}");

    // Apply: dry run shows the diff, then a changed setting re-renders and stays healthy.
    let mut spec = n.request("netbox-agent", "nb");
    spec.as_object_mut().map(|o| o.remove("name"));
    spec["settings"]["interval"] = json!("2m");
    spec["overrides"] = json!({"cores": 1});
    spec["dry_run"] = json!(true);
    let p: ApplyPreview = put(&c, "/v1/deployments/nb", &spec)
        .await
        .expect(200)
        .json();
    let fields: Vec<&str> = p.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, vec!["cores", "settings.interval"], "{p:?}");
    spec["overrides"] = json!({"memory": 512});
    spec["dry_run"] = json!(false);
    op_ok(&c, Method::PUT, "/v1/deployments/nb", Some(&spec), 120).await;
    let cfg = n.exec(141, &["cat", "/etc/netbox-agent/config.toml"]);
    assert!(cfg.contains("interval_s = 120"), "{cfg}");
    let dep2: Deployment = c.get("/v1/deployments/nb").await.expect(200).json();
    assert_ne!(dep2.config_hash, dep.config_hash);
    assert_eq!(dep2.health.status, HealthStatus::Healthy, "{dep2:?}");

    // Stop records the intended state; start brings it back.
    op_ok(
        &c,
        Method::POST,
        "/v1/deployments/nb/stop",
        Some(&json!({})),
        60,
    )
    .await;
    let dep3: Deployment = c.get("/v1/deployments/nb").await.expect(200).json();
    assert_eq!(
        (dep3.intended_state, dep3.state),
        (oneld::api::IntendedState::Stopped, ContainerState::Stopped)
    );
    op_ok(
        &c,
        Method::POST,
        "/v1/deployments/nb/start",
        Some(&json!({})),
        60,
    )
    .await;

    // Destroy leaves nothing behind.
    op_ok(
        &c,
        Method::DELETE,
        "/v1/deployments/nb?purge=true",
        None,
        60,
    )
    .await;
    assert!(n.vmids().is_empty(), "{:?}", n.vmids());
    c.get("/v1/deployments/nb").await.expect(404);
    assert!(!n.daemon.config.state_dir.join("secrets/nb").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_wikijs_and_parallel_deploys_get_distinct_vmids() {
    if !root_tier(
        "root_wikijs_and_parallel_deploys_get_distinct_vmids",
        "containers need root",
    ) {
        return;
    }
    let n = Node::up("sbxdep1", "10.213.82.0/24").with_upstreams().await;
    let c = n.client();
    let a: Operation = c
        .post(
            "/v1/deployments",
            &n.request("wikijs-integration", "wiki-a"),
        )
        .await
        .expect(202)
        .json();
    let b: Operation = c
        .post(
            "/v1/deployments",
            &n.request("wikijs-integration", "wiki-b"),
        )
        .await
        .expect(202)
        .json();
    let a = finish(&c, &a.id, Duration::from_secs(240)).await;
    let b = finish(&c, &b.id, Duration::from_secs(240)).await;
    assert_eq!(a.status, OpStatus::Succeeded, "{}", log_of(&c, &a.id).await);
    assert_eq!(b.status, OpStatus::Succeeded, "{}", log_of(&c, &b.id).await);
    let list: Vec<Deployment> = c.get("/v1/deployments").await.expect(200).json();
    let mut vmids: Vec<u32> = list.iter().map(|d| d.vmid).collect();
    vmids.sort();
    assert_eq!(vmids, vec![130, 131]);
    for d in &list {
        let live: Deployment = c
            .get(&format!("/v1/deployments/{}", d.name))
            .await
            .expect(200)
            .json();
        assert_eq!(live.health.status, HealthStatus::Healthy, "{live:?}");
    }
    for op in [&a, &b] {
        let log = log_of(&c, &op.id).await;
        assert!(
            log.contains("Healthy: HTTP 200, status=healthy")
                && !log.contains("warning: the service is degraded"),
            "{log}"
        );
    }
    assert!(
        n.upstreams().wikijs.hits().len() >= 2,
        "the agents never asked Wiki.js"
    );
    n.upstreams().assert_used_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_failures_at_each_step_leave_nothing() {
    if !root_tier(
        "root_failures_at_each_step_leave_nothing",
        "containers need root",
    ) {
        return;
    }
    let n = Node::up("sbxdep2", "10.213.83.0/24");
    let c = n.client();
    // The template first (so later failures are not about it). No upstream
    // here (NetBox is down): the agent reports degraded, which the built-in
    // manifest's `health.accept` allows: the deploy succeeds with a warning
    // and the deployment shows degraded.
    let (op, log) = deploy(&c, &n.request("netbox-agent", "warmup")).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{log}");
    assert!(
        log.contains("warning: the service is degraded") && log.contains("netbox_api"),
        "{log}"
    );
    let dep: Deployment = c.get("/v1/deployments/warmup").await.expect(200).json();
    assert_eq!(dep.health.status, HealthStatus::Degraded, "{dep:?}");
    op_ok(&c, Method::DELETE, "/v1/deployments/warmup", None, 60).await;

    let cases: &[(&str, &[&str], &str)] = &[
        (
            "create",
            &["pct create fail 255 unable to create CT 140 - disk full"],
            "step 'create container' failed",
        ),
        (
            "start",
            &["pct start fail 255 startup for container '140' failed"],
            "step 'start container' failed",
        ),
        (
            "push",
            &["pct push fail 255 failed to push file"],
            "step 'install service' failed",
        ),
        (
            "exec",
            &["pct exec fail 255 lxc-attach: failed to attach"],
            "step 'install service' failed",
        ),
    ];
    for (what, rules, expect) in cases {
        n.faults(rules);
        let (op, log) = deploy(&c, &n.request("netbox-agent", &format!("f-{what}"))).await;
        assert_eq!(op.status, OpStatus::Failed, "{what}: {log}");
        let msg = op.error.map(|e| e.message).unwrap_or_default();
        assert!(msg.contains(expect), "{what}: {msg}");
        assert!(
            n.vmids().is_empty(),
            "{what}: containers left: {:?}\n{log}",
            n.vmids()
        );
        assert!(log.contains("compensation done"), "{what}: {log}");
    }
    n.faults(&[]);
    let apps = n.daemon.config.apps.dir.clone();
    std::fs::create_dir_all(&apps).expect("apps.d");
    let builtin = include_str!("../../src/apps/builtin/netbox-agent.toml");
    // Unit start: the unit points at a config file that does not exist, so
    // the agent exits 78 and `systemctl enable --now` fails.
    let m = builtin
        .replace("name = \"netbox-agent\"", "name = \"nb-badunit\"")
        .replace(
            "--config /etc/netbox-agent/config.toml",
            "--config /etc/netbox-agent/missing.toml",
        );
    std::fs::write(apps.join("nb-badunit.toml"), m).expect("manifest");
    let mut req = n.request("netbox-agent", "f-unit");
    req["app"] = json!("nb-badunit");
    let (op, log) = deploy(&c, &req).await;
    assert_eq!(op.status, OpStatus::Failed, "{log}");
    let msg = op.error.map(|e| e.message).unwrap_or_default();
    assert!(
        msg.contains("step 'start service' failed")
            && msg.contains("systemctl enable --now netbox-agent.service"),
        "{msg}"
    );
    assert!(
        msg.contains("last log lines of netbox-agent.service"),
        "{msg}"
    );
    assert!(n.vmids().is_empty(), "{log}");
    // No lease: the bridge's DHCP server is gone.
    let pid: i32 = std::fs::read_to_string(n.node.path("run/dnsmasq.pid"))
        .expect("dnsmasq pid")
        .trim()
        .parse()
        .expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stop dnsmasq");
    let (op, log) = deploy(&c, &n.request("netbox-agent", "f-lease")).await;
    assert_eq!(op.status, OpStatus::Failed, "{log}");
    let msg = op.error.map(|e| e.message).unwrap_or_default();
    assert!(
        msg.contains("step 'wait for IPv4 lease' failed")
            && msg.contains("no IPv4 lease on bridge 'sbxdep2' within 20s"),
        "{msg}"
    );
    assert!(n.vmids().is_empty(), "{log}");
    n.node.admin("up");
    // Health timeout: the probe's port is never served (an app override).
    let m = builtin
        .replace("name = \"netbox-agent\"", "name = \"nb-sick\"")
        .replace("port = 8080\npath", "port = 8081\npath")
        .replace("timeout_s = 60", "timeout_s = 3");
    std::fs::write(apps.join("nb-sick.toml"), m).expect("manifest");
    let mut req = n.request("netbox-agent", "f-health");
    req["app"] = json!("nb-sick");
    let (op, log) = deploy(&c, &req).await;
    assert_eq!(op.status, OpStatus::Failed, "{log}");
    assert!(
        op.error
            .as_ref()
            .is_some_and(|e| e.message.contains("step 'health gate' failed")),
        "{op:?}"
    );
    assert!(log.contains("health probe 1"), "{log}");
    assert!(n.vmids().is_empty(), "{log}");
    // Every vmid is free again: the next deploy gets 140.
    let plan: Plan = c
        .post("/v1/deployments", &{
            let mut r = n.request("netbox-agent", "again");
            r["dry_run"] = json!(true);
            r
        })
        .await
        .expect(200)
        .json();
    assert_eq!(plan.vmid, 140);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_adopt_a_hand_made_container() {
    if !root_tier("root_adopt_a_hand_made_container", "containers need root") {
        return;
    }
    let n = Node::up("sbxdep3", "10.213.84.0/24");
    let c = n.client();
    // The template, via a deploy dry run's download path: use pveam directly.
    let out = n.pct(&["list"]);
    assert!(out.status.success());
    let pveam = |args: &[&str]| {
        std::process::Command::new(support::bin_dir().join("pveam"))
            .args(args)
            .env("PVE_SANDBOX_ROOT", n.node.path(""))
            .output()
            .expect("pveam")
    };
    pveam(&["update"]);
    pveam(&["download", "local", support::TEMPLATE]);
    // As the original 1-line-deploy script made it: hostname and tags.
    let out = n.pct(&[
        "create",
        "150",
        &format!("local:vztmpl/{}", support::TEMPLATE),
        "--hostname",
        "netbox-agent",
        "--tags",
        "1ld;netbox-agent",
        "--rootfs",
        "local-lvm:2",
        "--unprivileged",
        "1",
        "--net0",
        &format!("name=eth0,bridge={},ip=dhcp", n.bridge),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let un: Vec<UnmanagedContainer> = c.get("/v1/deployments/unmanaged").await.expect(200).json();
    assert_eq!(un.len(), 1);
    assert_eq!(un[0].vmid, 150);
    let (_, msg) = c
        .post(
            "/v1/deployments/adopt",
            &json!({"vmid": 150, "app": "wikijs-integration"}),
        )
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("does not look like wikijs-integration"),
        "{msg}"
    );
    op_ok(
        &c,
        Method::POST,
        "/v1/deployments/adopt",
        Some(&json!({"vmid": 150, "app": "netbox-agent"})),
        30,
    )
    .await;
    let d: Deployment = c
        .get("/v1/deployments/netbox-agent")
        .await
        .expect(200)
        .json();
    assert!(d.adopted);
    assert_eq!(d.vmid, 150);
    assert_eq!(d.resources.disk, 2);
    let un: Vec<UnmanagedContainer> = c.get("/v1/deployments/unmanaged").await.expect(200).json();
    assert!(un.is_empty());
    // Nothing was installed: the container is as it was.
    assert!(n.exec(150, &["ls", "/etc/netbox-agent"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_proxy_nginx_in_front_of_the_agent() {
    if !root_tier(
        "root_proxy_nginx_in_front_of_the_agent",
        "containers need root",
    ) {
        return;
    }
    let n = Node::up("sbxdep4", "10.213.85.0/24").with_upstreams().await;
    let c = n.client();
    let mut req = n.request("netbox-agent", "px");
    req["overrides"]["proxy"] = json!(true);
    let t = Instant::now();
    let (op, log) = deploy(&c, &req).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:?}\n{log}");
    eprintln!(
        "deploy netbox-agent with the proxy (packages fetched on the host): {:.1}s",
        t.elapsed().as_secs_f32()
    );
    // The daemon filled its empty cache on the host, verified, recorded.
    assert!(
        log.contains("fetching nginx-common, nginx on the host with apt-get download"),
        "{log}"
    );
    assert!(log.contains("installed nginx-common 1.22"), "{log}");
    assert!(
        log.contains("nginx.service enabled and started: port 80 → 127.0.0.1:8080"),
        "{log}"
    );
    let sums = std::fs::read_to_string(n.daemon.config.apps.packages_dir.join("SHA256SUMS"))
        .expect("SHA256SUMS");
    assert_eq!(sums.lines().count(), 2, "{sums}");
    // The gate went through port 80.
    let dep: Deployment = c.get("/v1/deployments/px").await.expect(200).json();
    assert_eq!(dep.health.status, HealthStatus::Healthy, "{dep:?}\n{log}");
    // The proxy is chosen at deploy: apply refuses to switch it, naming the field.
    let (code, msg) = put(
        &c,
        "/v1/deployments/px",
        &serde_json::json!({"app": "netbox-agent", "overrides": {"proxy": false}, "dry_run": true}),
    )
    .await
    .expect(400)
    .error();
    assert_eq!(code, "bad_request");
    assert!(msg.contains("overrides.proxy"), "{msg}");
    let ip: std::net::Ipv4Addr = dep.ip.as_deref().expect("ip").parse().expect("ipv4");
    let port80 = std::net::SocketAddr::from((ip, 80));
    assert!(
        log.contains("health probe 1") && log.contains("Healthy: HTTP 200, status=healthy"),
        "{log}"
    );
    // From the host, through nginx: the agent's own health JSON and status.
    let via = oneld::deploy::egress::Via::recorded(&n.bridge);
    let get = |path: &'static str| {
        let via = via.clone();
        async move {
            oneld::deploy::probe::http_get(port80, &via, path, Duration::from_secs(5))
                .await
                .expect("an answer on port 80")
        }
    };
    let (code, body) = get("/health").await;
    assert_eq!(code, 200);
    let health: Value = serde_json::from_slice(&body).expect("health JSON");
    assert_eq!(
        (health["status"].as_str(), health["service"].as_str()),
        (Some("healthy"), Some("netbox-agent")),
        "{health}"
    );
    assert_eq!(health["starting"], json!(false), "{health}");
    assert!(health["checks"]["netbox_api"].is_object(), "{health}");
    let (code, body) = get("/status").await;
    assert_eq!(code, 200);
    let status: Value = serde_json::from_slice(&body).expect("status JSON");
    assert_eq!(status["service"], json!("netbox-agent"), "{status}");
    // Other paths pass through too (the agent's own 404).
    let (code, _) = get("/nope").await;
    assert_eq!(code, 404);
    // Both units enabled and running; the default site is gone.
    assert_eq!(
        n.exec(
            dep.vmid,
            &[
                "systemctl",
                "is-enabled",
                "nginx.service",
                "netbox-agent.service"
            ]
        ),
        "enabled\nenabled\n"
    );
    assert_eq!(
        n.exec(dep.vmid, &["systemctl", "is-active", "nginx.service"]),
        "active\n"
    );
    assert!(n
        .exec(dep.vmid, &["ls", "/etc/nginx/sites-enabled", "/root"])
        .lines()
        .all(|l| !l.contains("default") && !l.contains("1ld-debs")));
    let cfgd = n.pct(&["config", &dep.vmid.to_string()]);
    assert!(
        String::from_utf8_lossy(&cfgd.stdout).contains("1ld-proxy"),
        "the tag records the proxy"
    );

    // Off by default: port 80 is closed, nginx is not installed.
    let (op, log) = deploy(&c, &n.request("netbox-agent", "plain")).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:?}\n{log}");
    let plain: Deployment = c.get("/v1/deployments/plain").await.expect(200).json();
    assert_eq!(plain.health.status, HealthStatus::Healthy, "{plain:?}");
    let pip: std::net::Ipv4Addr = plain.ip.as_deref().expect("ip").parse().expect("ipv4");
    let refused = tokio::net::TcpStream::connect((pip, 80)).await;
    assert!(refused.is_err(), "port 80 answers without the proxy");
    assert!(!log.contains("nginx"), "{log}");
    assert!(n
        .exec(plain.vmid, &["ls", "/usr/sbin"])
        .lines()
        .all(|l| l != "nginx"));
    n.upstreams().assert_used_cleanly();

    // Destroy takes nginx with the container.
    for name in ["px", "plain"] {
        op_ok(
            &c,
            Method::DELETE,
            &format!("/v1/deployments/{name}?purge=true"),
            None,
            60,
        )
        .await;
    }
    assert!(n.vmids().is_empty(), "{:?}", n.vmids());
}

/// `GET /v1/deployments` is tagged: a poller holding the current list gets
/// `304`; a change on the host (within the host cache's second) or in the
/// records gives the new list. `GET /v1/deployments/{name}` reads the same
/// snapshot unless asked `live=true`.
#[tokio::test]
async fn the_list_is_tagged_and_follows_the_host() {
    let (d, _net) = fast_daemon(|c| c.supervise.enabled = false);
    let c = d.client();
    let store =
        oneld::store::Store::open(&oneld::paths::Paths::from_config(&d.config)).expect("store");
    let mut rec = crate::supervise::sample_record("tagged", 150);
    rec.app = "netbox-agent".into();
    store.insert_deployment(&rec).expect("insert");

    let first = c.get("/v1/deployments").await.expect(200);
    let etag = first
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_string();
    assert!(etag.starts_with("\"fnv1a64:"), "{etag}");
    let list: Vec<Deployment> = first.json();
    assert_eq!(list[0].state, ContainerState::Missing, "{list:?}");
    let again = |tag: String| {
        let c = d.client();
        async move {
            c.raw(
                Method::GET,
                "/v1/deployments",
                &[("if-none-match", &tag)],
                vec![],
            )
            .await
        }
    };
    let r = again(etag.clone()).await.expect(304);
    assert!(r.body.is_empty());
    again("\"other\", *".into()).await.expect(304);

    // The container appears (stopped) behind 1ld's back: seen within the
    // host cache's second, with a new tag.
    let conf = d.tools().root.join("etc/pve/lxc/150.conf");
    std::fs::create_dir_all(conf.parent().expect("dir")).expect("lxc dir");
    std::fs::write(
        &conf,
        "arch: amd64\nhostname: tagged\nmemory: 512\nostype: debian\n\
         rootfs: ctdata:subvol-150-disk-0,size=2G\nunprivileged: 1\n",
    )
    .expect("ct config");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = again(etag.clone()).await.expect(200);
    let list: Vec<Deployment> = r.json();
    assert_eq!(list[0].state, ContainerState::Stopped, "{list:?}");
    let etag2 = r.headers["etag"].to_str().expect("etag").to_string();
    assert_ne!(etag2, etag);

    // The single view reads the same snapshot; `live` asks the host now.
    let one: Deployment = c.get("/v1/deployments/tagged").await.expect(200).json();
    assert_eq!(one.state, ContainerState::Stopped);
    let live: Deployment = c
        .get("/v1/deployments/tagged?live=true")
        .await
        .expect(200)
        .json();
    assert_eq!(live.state, ContainerState::Stopped);
    let (_, msg) = c
        .get("/v1/deployments/tagged?live=yes")
        .await
        .expect(400)
        .error();
    assert!(msg.contains("live"), "{msg}");

    // Destroyed through 1ld: the list right after the operation (no wait
    // for the host cache's second) no longer has it.
    let op: Operation = c.delete("/v1/deployments/tagged").await.expect(202).json();
    let op = finish(&c, &op.id, Duration::from_secs(60)).await;
    assert_eq!(
        op.status,
        OpStatus::Succeeded,
        "{}",
        log_of(&c, &op.id).await
    );
    let r = again(etag2).await.expect(200);
    let list: Vec<Deployment> = r.json();
    assert!(list.is_empty(), "{list:?}");
}
