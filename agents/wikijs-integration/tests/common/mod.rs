//! Shared test helpers: real Git repositories made with the `git` CLI (the
//! host has it; the agent itself never runs it), and the stateful fake
//! Wiki.js served over real HTTP on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test helpers

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime::http_client::BaseUrl;
use agent_runtime::Secret;
use fake_upstreams::{Handle, WikiJs, WikiModel};
use wikijs_integration::client::GraphqlWiki;
use wikijs_integration::config::OnDelete;
use wikijs_integration::git::{Location, Source};
use wikijs_integration::store::Store;
use wikijs_integration::sync::{Engine, Settings};

/// The admin key the fake accepts.
pub const KEY: &str = "eyJhbGciOiJSUzI1NiJ9.test-admin.key";

/// A repository in a temp dir.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let r = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Test",
                "-c",
                "user.email=test@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.path())
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A 70-byte PNG (the one in the recordings).
pub fn png() -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        .unwrap()
}

/// The stateful fake on a free loopback port.
pub async fn wiki() -> (Arc<WikiModel>, Handle) {
    let model = Arc::new(WikiModel::new());
    let handle = WikiJs::new()
        .with_key(fake_upstreams::Secret::new(KEY))
        .with_model(Arc::clone(&model))
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (model, handle)
}

/// An engine over `repo`'s `docs` folder, state in `state`.
pub fn engine(repo: &Path, state: &Path, url: &str, on_delete: OnDelete) -> Engine<GraphqlWiki> {
    let store = Store::open(state).unwrap();
    store.migrate().unwrap();
    let mut client = GraphqlWiki::new(
        BaseUrl::parse(url).unwrap(),
        Secret::new(KEY),
        Duration::from_secs(5),
    );
    client.backoff = vec![Duration::from_millis(10), Duration::from_millis(20)];
    Engine {
        wiki: client,
        source: Arc::new(Source::new(
            Location::Local(PathBuf::from(repo)),
            "main",
            "docs",
            state,
            "x-access-token",
            None,
        )),
        store: Arc::new(store),
        settings: Settings {
            prefix: "docs".into(),
            locale: "en".into(),
            asset_root: "docs".into(),
            on_delete,
        },
    }
}
