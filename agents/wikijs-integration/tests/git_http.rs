//! The HTTP(S) source path against a real Git server: `git http-backend`
//! (CGI) behind lighttpd, both from Debian packages (`git`, `lighttpd`),
//! started on 127.0.0.1 by the test. The agent's gix client (smart HTTP,
//! rustls) fetches into its mirror:
//! - over `https://` with basic auth, the token as the password, and a test
//!   CA made with rcgen, trusted through `SSL_CERT_FILE` (the system trust
//!   store's override, as a private CA would be installed in a container);
//! - anonymously over plain `http://`, where a configured token is refused
//!   rather than sent in clear text.
//!
//! Without lighttpd the test is skipped with a message, unless
//! `ONELD_REQUIRE_TOOLS=1`, where a missing tool fails it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use agent_runtime::http_client::BaseUrl;
use agent_runtime::testing::{free_port, wait_for};
use agent_runtime::Secret;
use common::{wiki, Repo, KEY};
use wikijs_integration::client::GraphqlWiki;
use wikijs_integration::config::OnDelete;
use wikijs_integration::git::{Location, Source};
use wikijs_integration::store::Store;
use wikijs_integration::sync::{Engine, Settings};

const TOKEN: &str = "read-token-s3cr3t";

fn tool(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!p.is_empty()).then(|| PathBuf::from(p))
        })
}

fn required<T>(what: &str) -> Option<T> {
    if std::env::var("ONELD_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{what} is missing and ONELD_REQUIRE_TOOLS=1: install the Debian packages git and lighttpd (scripts/install-deps.sh)");
    }
    eprintln!("SKIPPED git_http: {what} is missing; install the Debian packages git and lighttpd to run this test");
    None
}

struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    bare: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TLS material: `(ca.pem, server cert, server key)`.
fn tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "wikijs-integration test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let (ca_pem, crt, k) = (
        dir.join("ca.pem"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (ca_pem, crt, k)
}

fn start_server(bare_from: &Path) -> Option<Server> {
    start(bare_from, false)
}

fn start(bare_from: &Path, https: bool) -> Option<Server> {
    let lighttpd = tool("lighttpd", &["/usr/sbin/lighttpd"]).or_else(|| required("lighttpd"))?;
    let backend = tool("git-http-backend", &["/usr/lib/git-core/git-http-backend"])
        .or_else(|| required("git-http-backend"))?;
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    let bare = repos.join("project.git");
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(bare_from)
        .arg(&bare)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let conf = dir.path().join("lighttpd.conf");
    let extra = if https {
        let (_, crt, key) = tls(dir.path());
        std::fs::write(
            dir.path().join("users"),
            format!("x-access-token:{TOKEN}\n"),
        )
        .unwrap();
        format!(
            r#"ssl.engine = "enable"
ssl.pemfile = "{crt}"
ssl.privkey = "{key}"
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
$HTTP["url"] =~ "^/git" {{
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
}}
"#,
            crt = crt.display(),
            key = key.display(),
            users = dir.path().join("users").display()
        )
    } else {
        String::new()
    };
    std::fs::write(
        &conf,
        format!(
            r#"server.modules = ("mod_alias", "mod_setenv", "mod_auth", "mod_authn_file", "mod_openssl", "mod_cgi")
server.bind = "127.0.0.1"
server.port = {port}
server.document-root = "{www}"
server.errorlog = "{log}"
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{repos}", "GIT_HTTP_EXPORT_ALL" => "1")
}}
{extra}"#,
            www = dir.path().join("www").display(),
            log = dir.path().join("error.log").display(),
            backend = backend.display(),
            repos = repos.display(),
        ),
    )
    .unwrap();
    let child = Command::new(lighttpd)
        .args(["-D", "-f"])
        .arg(&conf)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    Some(Server {
        child,
        port,
        dir,
        bare,
    })
}

fn engine(url: &str, state: &Path, wiki_url: &str, token: Option<&str>) -> Engine<GraphqlWiki> {
    let store = Store::open(state).unwrap();
    store.migrate().unwrap();
    Engine {
        wiki: GraphqlWiki::new(
            BaseUrl::parse(wiki_url).unwrap(),
            Secret::new(KEY),
            Duration::from_secs(5),
        ),
        source: Arc::new(Source::new(
            Location::parse(url),
            "main",
            "docs",
            state,
            "x-access-token",
            token.map(Secret::new),
        )),
        store: Arc::new(store),
        settings: Settings {
            prefix: "docs".into(),
            locale: "en".into(),
            asset_root: "docs".into(),
            on_delete: OnDelete::Delete,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_over_http_from_git_http_backend() {
    let repo = Repo::new();
    repo.write("docs/README.md", "# Over HTTP\n\nFetched by gix.\n");
    repo.write("docs/a.md", "# A\n");
    repo.commit("one");
    let Some(server) = start_server(repo.path()) else {
        return;
    };
    let port = server.port;
    wait_for(
        "lighttpd listening",
        Duration::from_secs(10),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/git/project.git");
    let (model, fake) = wiki().await;

    // A token over plain http is never sent, and never shown.
    let state_bad = tempfile::tempdir().unwrap();
    let bad = engine(&url, state_bad.path(), &fake.url(), Some(TOKEN));
    let err = bad
        .run(false, false, || false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("clear text"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    assert!(model.pages().is_empty());

    let state = tempfile::tempdir().unwrap();
    let e = engine(&url, state.path(), &fake.url(), None);
    let r = e.run(false, false, || false).await.unwrap();
    assert_eq!(r.created, 2, "{r:?}");
    assert!(model.pages_at("docs")[0].content.contains("Fetched by gix"));
    assert!(state.path().join("mirror.git").exists());

    // Push a change to the server; the next run fetches it incrementally.
    repo.write("docs/a.md", "# A\n\nSecond version.\n");
    repo.commit("two");
    repo.git(&["push", "-q", server.bare.to_str().unwrap(), "main"]);
    let r = e.run(false, false, || false).await.unwrap();
    assert!(!r.full);
    assert_eq!(r.updated, 1, "{r:?}");
    assert!(model.pages_at("docs/a")[0]
        .content
        .contains("Second version"));
    // The source repository was never written by the agent: only the push
    // above changed it.
    assert_eq!(e.run(false, false, || false).await.unwrap().writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_over_https_with_a_token() {
    let repo = Repo::new();
    repo.write("docs/README.md", "# Over HTTPS\n\nFetched with a token.\n");
    repo.commit("one");
    let Some(server) = start(repo.path(), true) else {
        return;
    };
    let port = server.port;
    wait_for(
        "lighttpd listening",
        Duration::from_secs(10),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    // The test CA, as if installed in the container's trust store. This
    // test binary's only other test does not use TLS.
    std::env::set_var("SSL_CERT_FILE", server.dir.path().join("ca.pem"));
    let url = format!("https://127.0.0.1:{port}/git/project.git");
    let (model, fake) = wiki().await;

    let state_bad = tempfile::tempdir().unwrap();
    let bad = engine(&url, state_bad.path(), &fake.url(), Some("wrong-token"));
    let err = bad
        .run(false, false, || false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("wrong-token") && !err.contains(TOKEN),
        "{err}"
    );
    assert!(err.contains("401") && err.contains("not accepted"), "{err}");
    assert!(model.pages().is_empty());

    let state = tempfile::tempdir().unwrap();
    let e = engine(&url, state.path(), &fake.url(), Some(TOKEN));
    let r = e.run(false, false, || false).await.unwrap();
    assert_eq!(r.created, 1, "{r:?}");
    assert!(model.pages_at("docs")[0]
        .content
        .contains("Fetched with a token"));
}
