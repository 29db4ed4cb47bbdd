//! The Git source, in-process with gitoxide (the Debian template has no
//! `git` binary). Read-only towards the source: a local path is opened in
//! place and only read; a remote (`http://`/`https://`, rustls) is fetched
//! into a private bare mirror in the state directory
//! (`<state_dir>/mirror.git`, refspec `+refs/heads/<branch>:refs/remotes/origin/<branch>`).
//! Nothing is ever pushed.
//!
//! Change sets are computed locally from two commits' trees, restricted to
//! the docs subfolder; renames are detected by identical blob ids and, for
//! edited renames, by line similarity (≥ 50 %, like `git diff -M`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use agent_runtime::Secret;

/// A Git problem, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct GitError {
    /// What was being done.
    pub what: String,
    /// Why it failed.
    pub detail: String,
}

/// An error with its chain of causes, one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

fn err(what: impl Into<String>) -> impl FnOnce(String) -> GitError {
    let what = what.into();
    move |detail| GitError { what, detail }
}

/// Where the repository is.
#[derive(Debug, Clone)]
pub enum Location {
    /// A local repository, read in place.
    Local(PathBuf),
    /// A clone URL; fetched into a mirror.
    Remote(String),
}

impl Location {
    /// Parses the `source.repository` setting.
    pub fn parse(s: &str) -> Location {
        if s.starts_with("http://") || s.starts_with("https://") {
            Location::Remote(s.to_string())
        } else {
            Location::Local(PathBuf::from(s.strip_prefix("file://").unwrap_or(s)))
        }
    }
}

/// One file in a snapshot: blob id (hex).
pub type Snapshot = BTreeMap<String, String>;

/// A change between two snapshots (paths relative to the subfolder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New file.
    Added(String),
    /// Content changed.
    Modified(String),
    /// File removed.
    Deleted(String),
    /// Renamed (maybe edited too).
    Renamed {
        /// Old path.
        from: String,
        /// New path.
        to: String,
    },
}

/// The repository source.
pub struct Source {
    location: Location,
    branch: String,
    subfolder: String,
    mirror: PathBuf,
    username: String,
    token: Option<Secret>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("location", &self.location)
            .field("branch", &self.branch)
            .field("subfolder", &self.subfolder)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// A source; `state_dir` holds the mirror of a remote.
    pub fn new(
        location: Location,
        branch: &str,
        subfolder: &str,
        state_dir: &Path,
        username: &str,
        token: Option<Secret>,
    ) -> Self {
        Self {
            location,
            branch: branch.to_string(),
            subfolder: subfolder.trim_matches('/').to_string(),
            mirror: state_dir.join("mirror.git"),
            username: username.to_string(),
            token,
        }
    }

    /// What the source is, for messages (never the token).
    pub fn describe(&self) -> String {
        match &self.location {
            Location::Local(p) => format!("{} (branch {})", p.display(), self.branch),
            Location::Remote(u) => format!("{} (branch {})", redact_url(u), self.branch),
        }
    }

    fn open(&self) -> Result<gix::Repository, GitError> {
        let path = match &self.location {
            Location::Local(p) => p.clone(),
            Location::Remote(_) => self.mirror.clone(),
        };
        // Isolated: only the repository's own config; no global or system
        // git config, no environment (deterministic under systemd's
        // ProtectHome and for a service user without a home).
        gix::open_opts(&path, gix::open::Options::isolated())
            .map_err(|e| e.to_string())
            .map_err(err(format!(
                "cannot open the repository at {}",
                path.display()
            )))
    }

    /// Brings the branch up to date (fetch for a remote) and returns its
    /// head commit id (hex). Blocking: call from `spawn_blocking`.
    pub fn update(&self) -> Result<String, GitError> {
        if let Location::Remote(url) = &self.location {
            self.fetch(url)?;
        }
        self.head()
    }

    fn tracking_ref(&self) -> String {
        match self.location {
            Location::Local(_) => format!("refs/heads/{}", self.branch),
            Location::Remote(_) => format!("refs/remotes/origin/{}", self.branch),
        }
    }

    /// The branch's commit id (hex) without fetching.
    pub fn head(&self) -> Result<String, GitError> {
        let repo = self.open()?;
        let name = self.tracking_ref();
        let mut reference = repo
            .find_reference(name.as_str())
            .map_err(|e| e.to_string())
            .map_err(err(format!(
                "branch \"{}\" not found in {} (check source.branch)",
                self.branch,
                self.describe()
            )))?;
        let id = reference
            .peel_to_id()
            .map_err(|e| e.to_string())
            .map_err(err(format!("cannot resolve {name}")))?;
        Ok(id.to_string())
    }

    fn fetch(&self, url: &str) -> Result<(), GitError> {
        let what = format!("cannot fetch {}", self.describe());
        if self.token.is_some() && url.starts_with("http://") {
            return Err(GitError {
                what,
                detail: "git_token would be sent in clear text over http://; use the https:// clone URL in source.repository, or remove git_token for an anonymous http:// fetch".into(),
            });
        }
        if !self.mirror.join("HEAD").exists() {
            gix::init_bare(&self.mirror)
                .map_err(|e| e.to_string())
                .map_err(err(format!(
                    "cannot create the mirror {}",
                    self.mirror.display()
                )))?;
        }
        let repo = self.open()?;
        let spec = format!("+refs/heads/{b}:refs/remotes/origin/{b}", b = self.branch);
        let remote = repo
            .remote_at(url)
            .map_err(|e| e.to_string())
            .map_err(err(what.clone()))?
            .with_refspecs([spec.as_str()], gix::remote::Direction::Fetch)
            .map_err(|e| e.to_string())
            .map_err(err(what.clone()))?;
        let conn = remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| e.to_string())
            .map_err(err(what.clone()))?;
        let token = self.token.as_ref().map(|t| t.expose().to_string());
        let username = self.username.clone();
        let conn = conn.with_credentials(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => match &token {
                Some(t) => Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: username.clone(),
                        password: t.clone(),
                        oauth_refresh_token: None,
                    },
                    next: ctx.into(),
                })),
                None => Ok(None),
            },
            _ => Ok(None),
        });
        let interrupt = AtomicBool::new(false);
        conn.prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| redact(&chain(&e)))
            .map_err(err(what.clone()))?
            .receive(gix::progress::Discard, &interrupt)
            .map_err(|e| redact(&chain(&e)))
            .map_err(err(what))?;
        Ok(())
    }

    /// Whether `commit` (hex) is known locally.
    pub fn has_commit(&self, commit: &str) -> bool {
        let Ok(repo) = self.open() else { return false };
        let Ok(id) = gix::ObjectId::from_hex(commit.as_bytes()) else {
            return false;
        };
        repo.has_object(id) && repo.find_commit(id).is_ok()
    }

    /// Every file under the subfolder at `commit`: path (relative to the
    /// subfolder) → blob id.
    pub fn snapshot(&self, commit: &str) -> Result<Snapshot, GitError> {
        let repo = self.open()?;
        let id = gix::ObjectId::from_hex(commit.as_bytes())
            .map_err(|e| e.to_string())
            .map_err(err(format!("bad commit id {commit}")))?;
        let what = format!("cannot read commit {commit}");
        let commit = repo
            .find_commit(id)
            .map_err(|e| e.to_string())
            .map_err(err(what.clone()))?;
        let mut tree_id = commit
            .tree_id()
            .map_err(|e| e.to_string())
            .map_err(err(what.clone()))?
            .detach();
        for seg in self.subfolder.split('/').filter(|s| !s.is_empty()) {
            let tree = repo
                .find_tree(tree_id)
                .map_err(|e| e.to_string())
                .map_err(err(what.clone()))?;
            let mut next = None;
            for entry in tree.iter() {
                let entry = entry
                    .map_err(|e| e.to_string())
                    .map_err(err(what.clone()))?;
                if entry.filename() == seg && entry.mode().is_tree() {
                    next = Some(entry.object_id());
                }
            }
            match next {
                Some(t) => tree_id = t,
                // No docs folder (yet): an empty snapshot.
                None => return Ok(Snapshot::new()),
            }
        }
        let mut out = Snapshot::new();
        let mut stack = vec![(String::new(), tree_id)];
        while let Some((prefix, tid)) = stack.pop() {
            let tree = repo
                .find_tree(tid)
                .map_err(|e| e.to_string())
                .map_err(err(what.clone()))?;
            for entry in tree.iter() {
                let entry = entry
                    .map_err(|e| e.to_string())
                    .map_err(err(what.clone()))?;
                let name = entry.filename().to_string();
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let mode = entry.mode();
                if mode.is_tree() {
                    stack.push((path, entry.object_id()));
                } else if mode.is_blob() {
                    out.insert(path, entry.object_id().to_string());
                }
                // Symlinks and submodules are not documents.
            }
        }
        Ok(out)
    }

    /// A blob's bytes.
    pub fn read(&self, blob: &str) -> Result<Vec<u8>, GitError> {
        let repo = self.open()?;
        let id = gix::ObjectId::from_hex(blob.as_bytes())
            .map_err(|e| e.to_string())
            .map_err(err(format!("bad blob id {blob}")))?;
        let b = repo
            .find_blob(id)
            .map_err(|e| e.to_string())
            .map_err(err(format!("cannot read blob {blob}")))?;
        Ok(b.data.clone())
    }

    /// Changes from `before` to `after` inside the subfolder.
    pub fn diff(&self, before: &str, after: &str) -> Result<Vec<Change>, GitError> {
        let old = self.snapshot(before)?;
        let new = self.snapshot(after)?;
        Ok(diff_snapshots(&old, &new, |blob| self.read(blob).ok()))
    }
}

/// Diffs two snapshots with rename detection: exact (same blob) first, then
/// by similarity of the contents `read` returns (≥ 50 % of lines shared).
pub fn diff_snapshots(
    old: &Snapshot,
    new: &Snapshot,
    read: impl Fn(&str) -> Option<Vec<u8>>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut deleted: Vec<(&String, &String)> =
        old.iter().filter(|(p, _)| !new.contains_key(*p)).collect();
    let mut added: Vec<(&String, &String)> =
        new.iter().filter(|(p, _)| !old.contains_key(*p)).collect();
    for (p, blob) in new {
        if let Some(b) = old.get(p) {
            if b != blob {
                changes.push(Change::Modified(p.clone()));
            }
        }
    }
    // Exact renames.
    let mut i = 0;
    while i < added.len() {
        let (to, blob) = added[i];
        if let Some(j) = deleted.iter().position(|(_, b)| *b == blob) {
            let (from, _) = deleted.remove(j);
            changes.push(Change::Renamed {
                from: from.clone(),
                to: to.clone(),
            });
            added.remove(i);
        } else {
            i += 1;
        }
    }
    // Similar renames (same kind of file).
    if !added.is_empty() && !deleted.is_empty() && added.len() * deleted.len() <= 10_000 {
        let lines = |blob: &str| -> Vec<String> {
            read(blob)
                .map(|d| {
                    String::from_utf8_lossy(&d)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut i = 0;
        while i < added.len() {
            let (to, blob) = added[i];
            let new_lines = lines(blob);
            let mut best: Option<(usize, f64)> = None;
            for (j, (from, ob)) in deleted.iter().enumerate() {
                if ext(from) != ext(to) {
                    continue;
                }
                let s = similarity(&lines(ob), &new_lines);
                if s >= 0.5 && best.is_none_or(|(_, b)| s > b) {
                    best = Some((j, s));
                }
            }
            if let Some((j, _)) = best {
                let (from, _) = deleted.remove(j);
                changes.push(Change::Renamed {
                    from: from.clone(),
                    to: to.clone(),
                });
                added.remove(i);
            } else {
                i += 1;
            }
        }
    }
    changes.extend(added.into_iter().map(|(p, _)| Change::Added(p.clone())));
    changes.extend(deleted.into_iter().map(|(p, _)| Change::Deleted(p.clone())));
    changes
}

fn ext(p: &str) -> &str {
    p.rsplit('/')
        .next()
        .and_then(|f| f.rsplit_once('.'))
        .map_or("", |(_, e)| e)
}

/// Shared lines over the larger line count.
fn similarity(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut counts: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for l in a {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let mut shared = 0usize;
    for l in b {
        if let Some(c) = counts.get_mut(l.as_str()) {
            if *c > 0 {
                *c -= 1;
                shared += 1;
            }
        }
    }
    shared as f64 / a.len().max(b.len()) as f64
}

/// A URL without its user info.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn redact(msg: &str) -> String {
    msg.split(' ').map(redact_url).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(items: &[(&str, &str)]) -> Snapshot {
        items
            .iter()
            .map(|(p, b)| (p.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn diff_detects_renames() {
        let old = snap(&[("a.md", "1"), ("b.md", "2"), ("c.md", "3"), ("d.md", "4")]);
        let new = snap(&[
            ("a2.md", "1"),
            ("b.md", "22"),
            ("c3.md", "33"),
            ("e.md", "5"),
        ]);
        let contents = |b: &str| -> Option<Vec<u8>> {
            Some(match b {
                "3" => b"one\ntwo\nthree\nfour\n".to_vec(),
                "33" => b"one\ntwo\nthree\nfive\n".to_vec(),
                "4" => b"x\n".to_vec(),
                "5" => b"y\n".to_vec(),
                _ => b"z\n".to_vec(),
            })
        };
        let mut changes = diff_snapshots(&old, &new, contents);
        changes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            changes,
            vec![
                Change::Added("e.md".into()),
                Change::Deleted("d.md".into()),
                Change::Modified("b.md".into()),
                Change::Renamed {
                    from: "a.md".into(),
                    to: "a2.md".into()
                },
                Change::Renamed {
                    from: "c.md".into(),
                    to: "c3.md".into()
                },
            ]
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("https://u:tok@h/x.git"), "https://h/x.git");
        assert_eq!(redact_url("/local/path"), "/local/path");
    }
}
