//! The agents end to end on the sandbox node (root tier).
//!
//! netbox-agent (issue 9): deployed by 1ld with its network scan pointed at
//! the sandbox bridge's own subnet and the stateful NetBox fake on the
//! bridge's host address. The containers on the subnet appear in NetBox;
//! the next syncs make zero writes; destroying a container orphans, then
//! prunes, its objects. Nothing outside the subnet the test created is
//! probed.

use std::time::{Duration, Instant};

use oneld::api::{OpStatus, Operation};
use serde_json::{json, Value};

use crate::daemon::root_tier;
use crate::deployments::{deploy, finish, Node, TOKEN};

/// `GET http://<ip>:<port><path>` from the host (the bridge), as JSON.
async fn get_json(ip: &str, port: u16, path: &str) -> Option<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await
    .ok()?
    .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

async fn wait_until<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ip_objects(nb: &fake_upstreams::StatefulNetBox) -> Vec<Value> {
    nb.model.objects("ipam/ip-addresses")
}

fn ip_of(objs: &[Value], ip: &str) -> Option<Value> {
    objs.iter()
        .find(|o| {
            o["address"]
                .as_str()
                .is_some_and(|a| a.split('/').next() == Some(ip))
        })
        .cloned()
}

fn tags_of(o: &Value) -> Vec<String> {
    o["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["slug"].as_str().or(t["name"].as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_netbox_agent_scans_the_sandbox_into_netbox() {
    if !root_tier(
        "root_netbox_agent_scans_the_sandbox_into_netbox",
        "containers need root",
    ) {
        return;
    }
    let n = Node::with_config("sbxnb0", "10.213.91.0/24", 0, |_, _| {});
    let nb = fake_upstreams::NetBoxModel::new(Some(fake_upstreams::Secret::new(TOKEN)))
        .expect("model")
        .serve(std::net::SocketAddr::from(([10, 213, 91, 1], 0)))
        .await
        .expect("stateful NetBox");
    let c = n.client();
    // A plain container on the subnet for the scan to find (its own agent
    // syncs nothing: every source is off by default).
    let mut other = n.request("netbox-agent", "other");
    other["settings"]["netbox_url"] = json!(nb.url());
    let (op, log) = deploy(&c, &other).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{log}");
    let mut req = n.request("netbox-agent", "nb");
    req["settings"] = json!({
        "netbox_url": nb.url(),
        "interval": "5s",
        "full_sync_interval": "10s",
        "scan_enabled": true,
        "scan_cidrs": ["10.213.91.0/24"],
        "scan_interval": "5s",
        // PTR lookups would go to the container's resolvers (copied from
        // the host): never outside the sandbox.
        "scan_reverse_dns": false,
        "prune_after_days": 0,
    });
    let (op, log) = deploy(&c, &req).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{log}");
    let ip = |name: &'static str| {
        let c = n.client();
        async move {
            let d: Value = c
                .get(&format!("/v1/deployments/{name}"))
                .await
                .expect(200)
                .json();
            (
                d["ip"].as_str().expect("ip").to_string(),
                d["vmid"].as_u64().expect("vmid"),
            )
        }
    };
    let (nb_ip, _) = ip("nb").await;
    let (other_ip, other_vmid) = ip("other").await;

    // Both containers appear in NetBox, owned by the agent.
    let objs = wait_until("both containers' IPs in NetBox", 120, || async {
        let objs = ip_objects(&nb);
        (ip_of(&objs, &nb_ip).is_some() && ip_of(&objs, &other_ip).is_some()).then_some(objs)
    })
    .await;
    let o = ip_of(&objs, &other_ip).expect("other's IP");
    let tags = tags_of(&o);
    assert!(
        tags.iter().any(|t| t == "netbox-agent"),
        "owned by the agent: {o}"
    );
    assert!(
        objs.iter().all(|o| o["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.213.91."))),
        "nothing outside the sandbox subnet: {objs:?}"
    );

    // The next two syncs change nothing: zero writes.
    let status = |ip: String| async move { get_json(&ip, 8080, "/status").await };
    let syncs = |v: &Value| v["agent"]["syncs"].as_u64().unwrap_or(0);
    let s0 = wait_until("the agent's /status", 60, || status(nb_ip.clone())).await;
    // Let the sync that created them finish first.
    let base = syncs(&s0) + 1;
    wait_until("a sync after the creates", 120, || {
        let ip = nb_ip.clone();
        async move { status(ip).await.filter(|v| syncs(v) >= base) }
    })
    .await;
    let before = nb.model.stats();
    let target = base + 2;
    let s = wait_until("two more syncs", 90, || {
        let ip = nb_ip.clone();
        async move { status(ip).await.filter(|v| syncs(v) >= target) }
    })
    .await;
    let after = nb.model.stats();
    assert_eq!(
        after.write_requests, before.write_requests,
        "a sync with nothing new wrote to NetBox: {s}"
    );
    assert_eq!(after.changes, before.changes, "{s}");

    // Destroy the other container: its IP is orphaned, then pruned.
    let del: Operation = c
        .delete("/v1/deployments/other?purge=true")
        .await
        .expect(202)
        .json();
    let del = finish(&c, &del.id, Duration::from_secs(90)).await;
    assert_eq!(del.status, OpStatus::Succeeded);
    assert!(!String::from_utf8_lossy(&n.pct(&["list"]).stdout).contains(&other_vmid.to_string()));
    let mut orphaned = false;
    wait_until("the gone container's IP orphaned, then pruned", 180, || {
        let objs = ip_objects(&nb);
        let found = ip_of(&objs, &other_ip);
        if let Some(o) = &found {
            if tags_of(o).iter().any(|t| t.contains("orphan")) {
                orphaned = true;
            }
        }
        let done = orphaned && found.is_none();
        async move { done.then_some(()) }
    })
    .await;
    // The agent's own container is still there, not orphaned.
    let objs = ip_objects(&nb);
    let me = ip_of(&objs, &nb_ip).expect("nb's IP stays");
    assert!(!tags_of(&me).iter().any(|t| t.contains("orphan")), "{me}");
    let del: Operation = c
        .delete("/v1/deployments/nb?purge=true")
        .await
        .expect(202)
        .json();
    finish(&c, &del.id, Duration::from_secs(90)).await;
}

// --- wikijs-integration (issue 10) -------------------------------------------

/// `git` with `args` in `dir`; its stdout.
fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// lighttpd + `git http-backend` (Debian's packages) serving `repos` on
/// `addr` over plain HTTP, anonymous read only; killed on drop.
struct GitServer(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git_server(repos: &std::path::Path, ip: &str, port: u16) -> GitServer {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("www")).expect("www");
    let conf = dir.path().join("lighttpd.conf");
    std::fs::write(
        &conf,
        format!(
            r#"server.modules = ("mod_alias", "mod_setenv", "mod_cgi")
server.bind = "{ip}"
server.port = {port}
server.document-root = "{www}"
server.errorlog = "{log}"
alias.url = ("/git" => "/usr/lib/git-core/git-http-backend")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{repos}", "GIT_HTTP_EXPORT_ALL" => "1")
}}
"#,
            www = dir.path().join("www").display(),
            log = dir.path().join("error.log").display(),
            repos = repos.display(),
        ),
    )
    .expect("conf");
    let child = std::process::Command::new("/usr/sbin/lighttpd")
        .args(["-D", "-f"])
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("lighttpd (apt install lighttpd: scripts/install-deps.sh)");
    GitServer(child, dir)
}

/// POSTs a GitHub push webhook signed with `secret`; the status code.
async fn push_webhook(ip: &str, secret: &str, before: &str, after: &str, delivery: &str) -> u16 {
    use hmac::Mac;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"ref": "refs/heads/main", "before": before, "after": after,
                      "repository": {"full_name": "homelab/docs"}, "commits": []})
    .to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac");
    mac.update(body.as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut s = tokio::net::TcpStream::connect((ip, 3001))
        .await
        .expect("connect");
    let req = format!(
        "POST /webhook HTTP/1.1\r\nHost: {ip}\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n\
         X-Hub-Signature-256: sha256={sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn page<'a>(
    pages: &'a [fake_upstreams::wikijs_model::Page],
    path: &str,
) -> Option<&'a fake_upstreams::wikijs_model::Page> {
    pages.iter().find(|p| p.path == path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_wikijs_integration_publishes_pushes_into_the_wiki() {
    if !root_tier(
        "root_wikijs_integration_publishes_pushes_into_the_wiki",
        "containers need root",
    ) {
        return;
    }
    const SECRET: &str = "whsec-e2e-7f3a";
    let n = Node::with_config("sbxwk0", "10.213.92.0/24", 0, |_, _| {});
    let model = std::sync::Arc::new(fake_upstreams::WikiModel::new());
    let wiki = fake_upstreams::WikiJs::new()
        .with_key(fake_upstreams::Secret::new(crate::deployments::WIKI_KEY))
        .with_model(model.clone())
        .serve(std::net::SocketAddr::from(([10, 213, 92, 1], 0)))
        .await
        .expect("fake Wiki.js");

    // The repository: docs/ in a code repository, served by a real Git
    // server on the bridge.
    let work = tempfile::tempdir().expect("tmp");
    let repo = work.path().join("project");
    let repos = work.path().join("repos");
    std::fs::create_dir_all(repo.join("docs/img")).expect("mkdir");
    std::fs::create_dir_all(&repos).expect("mkdir");
    std::fs::write(repo.join("src.rs"), "fn main() {}\n").expect("write");
    std::fs::write(
        repo.join("docs/README.md"),
        "# Homelab\n\nStart with the [guide](guide.md).\n",
    )
    .expect("write");
    std::fs::write(
        repo.join("docs/guide.md"),
        "---\ntitle: The guide\ntags: [Setup, Homelab]\n---\nSee [setup](setup.md).\n\n![logo](img/logo.png)\n",
    )
    .expect("write");
    std::fs::write(repo.join("docs/setup.md"), "# Setup\n\nStep one.\n").expect("write");
    std::fs::write(repo.join("docs/old.md"), "# Old\n\nTo be removed.\n").expect("write");
    std::fs::write(repo.join("docs/img/logo.png"), b"\x89PNG\r\n\x1a\nfirst").expect("write");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "docs"]);
    git(
        work.path(),
        &["clone", "-q", "--bare", "project", "repos/project.git"],
    );
    git(
        &repo,
        &[
            "remote",
            "add",
            "origin",
            repos.join("project.git").to_str().expect("utf8"),
        ],
    );
    let port = {
        let l = std::net::TcpListener::bind("10.213.92.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let _server = git_server(&repos, "10.213.92.1", port);

    let c = n.client();
    let mut req = n.request("wikijs-integration", "wiki");
    req["settings"] = json!({
        "wikijs_url": wiki.url(),
        "repository": format!("http://10.213.92.1:{port}/git/project.git"),
        "branch": "main",
        "subfolder": "docs",
        "prefix": "docs",
        "interval": "1h",
    });
    req["secrets"] =
        json!({"wikijs_api_key": crate::deployments::WIKI_KEY, "webhook_secret": SECRET});
    let (op, log) = deploy(&c, &req).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{log}");
    let d: Value = c.get("/v1/deployments/wiki").await.expect(200).json();
    let ip = d["ip"].as_str().expect("ip").to_string();
    let vmid = d["vmid"].as_u64().expect("vmid").to_string();

    // The first run publishes the docs folder (the code is not a doc).
    let pages = wait_until("the initial sync", 120, || async {
        let p = model.pages();
        (p.len() >= 4).then_some(p)
    })
    .await;
    let paths: Vec<&str> = pages.iter().map(|p| p.path.as_str()).collect();
    for want in ["docs", "docs/guide", "docs/setup", "docs/old"] {
        assert!(paths.contains(&want), "{want} not in {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.contains("src")), "{paths:?}");
    let guide = page(&pages, "docs/guide").expect("guide");
    assert_eq!(guide.title, "The guide");
    assert!(
        guide.content.contains("/docs/setup"),
        "link rewritten: {}",
        guide.content
    );
    let setup_id = page(&pages, "docs/setup").expect("setup").id;
    let assets = model.assets();
    let logo = assets
        .iter()
        .find(|(path, _)| path.ends_with("logo.png"))
        .expect("the image uploaded as an asset")
        .clone();
    assert!(
        guide.content.contains(&logo.0) || guide.content.contains("logo.png"),
        "{}",
        guide.content
    );

    // A push: rename setup → install (and the link to it), delete old, a new
    // image; the signed webhook makes it visible.
    let before = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["mv", "docs/setup.md", "docs/install.md"]);
    git(&repo, &["rm", "-q", "docs/old.md"]);
    std::fs::write(
        repo.join("docs/guide.md"),
        "---\ntitle: The guide\ntags: [Setup, Homelab]\n---\nSee [install](install.md).\n\n![logo](img/logo.png)\n",
    )
    .expect("write");
    std::fs::write(repo.join("docs/img/logo.png"), b"\x89PNG\r\n\x1a\nsecond").expect("write");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "rename, delete, new logo"]);
    git(&repo, &["push", "-q", "origin", "main"]);
    let after = git(&repo, &["rev-parse", "HEAD"]);
    // A bad signature is refused and changes nothing.
    assert_eq!(
        push_webhook(&ip, "wrong-secret", &before, &after, "d-0").await,
        401
    );
    assert_eq!(push_webhook(&ip, SECRET, &before, &after, "d-1").await, 202);
    let pages = wait_until("the pushed change", 60, || async {
        let p = model.pages();
        let done = page(&p, "docs/install").is_some()
            && page(&p, "docs/setup").is_none()
            && page(&p, "docs/old").is_none();
        done.then_some(p)
    })
    .await;
    assert_eq!(
        page(&pages, "docs/install").expect("install").id,
        setup_id,
        "a rename is a move of the same page (history kept)"
    );
    let guide = page(&pages, "docs/guide").expect("guide");
    assert!(guide.content.contains("/docs/install"), "{}", guide.content);
    let new_logo = model
        .assets()
        .into_iter()
        .find(|(path, _)| path.ends_with("logo.png"))
        .expect("logo");
    assert_ne!(
        format!("{:?}", new_logo.1),
        format!("{:?}", logo.1),
        "the changed image was uploaded again"
    );
    // A replayed delivery is dropped.
    assert_eq!(push_webhook(&ip, SECRET, &before, &after, "d-1").await, 200);

    // Kill the service in the middle of a big sync: it converges, no page
    // twice.
    for i in 0..40 {
        std::fs::write(
            repo.join(format!("docs/note-{i:02}.md")),
            format!("# Note {i}\n\nText {i}.\n"),
        )
        .expect("write");
    }
    let before = after;
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "forty notes"]);
    git(&repo, &["push", "-q", "origin", "main"]);
    let after = git(&repo, &["rev-parse", "HEAD"]);
    // Wiki.js goes down (503) after a few writes: the sync is stuck in its
    // retries, half done, when the service is killed.
    model.fail_after(12);
    assert_eq!(push_webhook(&ip, SECRET, &before, &after, "d-2").await, 202);
    let notes = |p: &[fake_upstreams::wikijs_model::Page]| {
        p.iter()
            .filter(|p| p.path.starts_with("docs/note-"))
            .count()
    };
    wait_until("the sync under way", 30, || async {
        (notes(&model.pages()) > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_kill = notes(&model.pages());
    assert!(
        at_kill > 0 && at_kill < 40,
        "the kill must land mid-sync: {at_kill} of 40 notes written"
    );
    let out = n.pct(&[
        "exec",
        &vmid,
        "--",
        "systemctl",
        "kill",
        "-s",
        "SIGKILL",
        "wikijs-integration",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    model.recover();
    let pages = wait_until("convergence after the kill", 120, || async {
        let p = model.pages();
        (notes(&p) >= 40).then_some(p)
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for p in &pages {
        assert!(
            seen.insert(p.path.clone()),
            "page {} twice: {:?}",
            p.path,
            pages.iter().map(|p| &p.path).collect::<Vec<_>>()
        );
    }
    let del: Operation = c
        .delete("/v1/deployments/wiki?purge=true")
        .await
        .expect(202)
        .json();
    finish(&c, &del.id, Duration::from_secs(90)).await;
}
