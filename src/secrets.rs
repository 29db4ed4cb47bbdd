//! Deploy-time secrets: where they are stored, and the [`Redactor`] that keeps
//! them out of everything else.
//!
//! What it owns: `<state_dir>/secrets/<deployment>/<key>`, one file per
//! secret value.
//!
//! Invariants:
//! - secret values exist on disk only there: the directories are 0700, the
//!   files 0600, owned by the daemon's user (root in production); files are
//!   written temp → fsync → rename → fsync(dir), created with their final mode
//!   (never readable by others, not even for an instant);
//! - deployment and key names are plain file names (`[A-Za-z0-9._-]`, no
//!   leading `.`, at most 128 bytes), so no name can escape the directory;
//! - the [`Redactor`] knows every value currently stored (loaded at open,
//!   updated on [`Secrets::put`]) and everything that leaves the daemon as
//!   text goes through it: operation log lines, event payloads, error
//!   messages, the daemon's own log. Values are replaced by `***`.
//!
//! Caveat: every non-empty value is redacted, however short, but a value of
//! one to three characters (`"1"`, `"yes"`) also occurs in unrelated text,
//! which then gets `***` in odd places; and a short value's occurrences
//! cannot be told apart from ordinary text, so its redaction does not make
//! it secret. Deploy flows should demand secrets of reasonable length.
//! Multi-line values are also redacted line by line, because logs are
//! handled one line at a time.

use std::borrow::Cow;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::Error;
use crate::paths::Paths;

/// The reserved directory of notification targets' secrets
/// (`secrets/_notify/<target>`): `_` is not allowed in a deployment name (a
/// DNS label), so no deployment can clash with it.
pub const NOTIFY_NAMESPACE: &str = "_notify";

/// What redacted text shows instead of a secret.
pub const MASK: &str = "***";
/// Longest deployment or key name.
const MAX_NAME: usize = 128;

/// Replaces every known secret value with [`MASK`]. Cheap to clone; clones
/// share the set of values.
#[derive(Clone, Default)]
pub struct Redactor {
    // Longest first, so a secret containing another is masked whole.
    values: Arc<RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the values themselves.
        f.debug_struct("Redactor")
            .field("values", &self.read().len())
            .finish()
    }
}

impl Redactor {
    /// A redactor that knows no secret yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<String>> {
        self.values.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns `value` (and, for a multi-line value, each of its lines).
    pub fn add(&self, value: &str) {
        let mut new: Vec<&str> = vec![value];
        if value.contains('\n') {
            new.extend(value.lines().map(|l| l.trim_end_matches('\r')));
        }
        let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
        for v in new {
            if !v.is_empty() && !values.iter().any(|known| known == v) {
                values.push(v.to_string());
            }
        }
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// How many values it knows.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// `text` with every known value replaced by [`MASK`]; borrowed when
    /// nothing had to change.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let values = self.read();
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }

    /// [`Redactor::redact`] into an owned string.
    pub fn redact_string(&self, text: &str) -> String {
        self.redact(text).into_owned()
    }

    /// `value` with every string in it (object keys too) redacted.
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.redact_string(s)),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.redact_json(v)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (self.redact_string(k), self.redact_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// `error` with its message and detail redacted.
    pub fn redact_error(&self, mut error: Error) -> Error {
        error.message = self.redact_string(&error.message);
        error.detail = error.detail.map(|d| self.redact_string(&d));
        error
    }
}

/// The secret store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Secrets {
    dir: PathBuf,
    redactor: Redactor,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::internal(format!("secrets: {what} {}: {e}", path.display()))
}

/// Checks a deployment or key name; `field` names it in the 400.
pub fn check_name(field: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            field,
            format!(
                "'{name}' is not a valid {field}: use 1 to {MAX_NAME} of A-Z a-z 0-9 . _ - and do not start with '.'"
            ),
        ))
    }
}

fn mkdir_private(dir: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("cannot create", dir, e))?;
    let meta = fs::metadata(dir).map_err(|e| io_err("cannot stat", dir, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), "secrets directory was accessible to group/others; setting it to 0700");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("cannot chmod", dir, e))?;
    }
    Ok(())
}

impl Secrets {
    /// Opens `paths.secrets_dir` (creating it 0700) and loads every stored
    /// value into a new [`Redactor`].
    pub fn open(paths: &Paths) -> Result<Secrets, Error> {
        let s = Secrets {
            dir: paths.secrets_dir.clone(),
            redactor: Redactor::new(),
        };
        mkdir_private(&s.dir)?;
        let me = nix::unistd::geteuid().as_raw();
        for dep in fs::read_dir(&s.dir).map_err(|e| io_err("cannot list", &s.dir, e))? {
            let dep = dep.map_err(|e| io_err("cannot list", &s.dir, e))?;
            let dep_path = dep.path();
            if !dep_path.is_dir() {
                continue;
            }
            for f in fs::read_dir(&dep_path).map_err(|e| io_err("cannot list", &dep_path, e))? {
                let f = f.map_err(|e| io_err("cannot list", &dep_path, e))?;
                let path = f.path();
                let name = f.file_name();
                // Leftover temp files of an interrupted put hold a value too.
                let meta =
                    fs::symlink_metadata(&path).map_err(|e| io_err("cannot stat", &path, e))?;
                if !meta.is_file() {
                    continue;
                }
                if meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(file = %path.display(), "secret file is not private to the daemon (owner/mode); fixing its mode");
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                        .map_err(|e| io_err("cannot chmod", &path, e))?;
                }
                let value =
                    fs::read_to_string(&path).map_err(|e| io_err("cannot read", &path, e))?;
                s.redactor.add(&value);
                if name.to_string_lossy().starts_with(".tmp.") {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(s)
    }

    /// The redactor that knows every stored value.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn file(&self, deployment: &str, key: &str) -> Result<PathBuf, Error> {
        check_name("deployment", deployment)?;
        check_name("key", key)?;
        Ok(self.dir.join(deployment).join(key))
    }

    /// Stores `value` under (`deployment`, `key`), replacing any old value
    /// atomically. The redactor learns it before it is written, so nothing
    /// can log it unredacted.
    pub fn put(&self, deployment: &str, key: &str, value: &str) -> Result<(), Error> {
        let path = self.file(deployment, key)?;
        self.redactor.add(value);
        let dir = self.dir.join(deployment);
        mkdir_private(&dir)?;
        let tmp = dir.join(format!(".tmp.{key}.{}", rand::random::<u64>()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(value.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("cannot write", &path, e)
        })
    }

    /// The value under (`deployment`, `key`), if stored.
    pub fn get(&self, deployment: &str, key: &str) -> Result<Option<String>, Error> {
        let path = self.file(deployment, key)?;
        match fs::read_to_string(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot read", &path, e)),
        }
    }

    /// The keys stored for `deployment`, sorted.
    pub fn keys(&self, deployment: &str) -> Result<Vec<String>, Error> {
        check_name("deployment", deployment)?;
        let dir = self.dir.join(deployment);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot list", &dir, e)),
        };
        let mut keys = Vec::new();
        for e in entries {
            let e = e.map_err(|e| io_err("cannot list", &dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                keys.push(name);
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Deletes one value; `false` when there was none. Its value stays known
    /// to the redactor until restart.
    pub fn remove(&self, deployment: &str, key: &str) -> Result<bool, Error> {
        let path = self.file(deployment, key)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                let dir = self.dir.join(deployment);
                fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io_err("cannot sync", &dir, e))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("cannot remove", &path, e)),
        }
    }

    /// Deletes every secret of `deployment`. Their values stay known to the
    /// redactor until restart: text logged earlier may still quote them.
    pub fn remove_deployment(&self, deployment: &str) -> Result<(), Error> {
        check_name("deployment", deployment)?;
        let dir = self.dir.join(deployment);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("cannot remove", &dir, e)),
        }
    }
}

/// A [`MakeWriter`](tracing_subscriber::fmt::MakeWriter) that redacts the
/// daemon's own log lines: each event is buffered whole and written through
/// [`Redactor::redact`] when the writer is flushed or dropped (the fmt layer
/// makes one writer per event). Use it around stderr; other sinks (journald)
/// need their own redaction.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    redactor: Redactor,
}

impl<M> RedactingMakeWriter<M> {
    /// Wraps `inner` (e.g. `std::io::stderr`).
    pub fn new(inner: M, redactor: Redactor) -> Self {
        Self { inner, redactor }
    }
}

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for RedactingMakeWriter<M>
{
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            redactor: self.redactor.clone(),
            buf: Vec::new(),
        }
    }
}

/// One event's writer of [`RedactingMakeWriter`].
#[derive(Debug)]
pub struct RedactingWriter<W: Write> {
    inner: W,
    redactor: Redactor,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    fn emit(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let out = self.redactor.redact(&text).into_owned();
        self.buf.clear();
        self.inner.write_all(out.as_bytes())?;
        self.inner.flush()
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.emit()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write.
        let _ = self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let r = Redactor::new();
        assert_eq!(r.redact("nothing"), "nothing");
        assert!(matches!(r.redact("x"), Cow::Borrowed(_)));
        r.add("hunter2");
        r.add("hunter2-extended");
        r.add("");
        assert_eq!(r.len(), 2, "the empty value is ignored");
        assert_eq!(
            r.redact("a hunter2 b hunter2-extended c hunter2"),
            "a *** b *** c ***"
        );
        let clone = r.clone();
        r.add("later");
        assert_eq!(clone.redact("later"), "***", "clones share values");
    }

    #[test]
    fn short_and_multiline_values() {
        let r = Redactor::new();
        r.add("ab");
        assert_eq!(
            r.redact("tab stop"),
            "t*** stop",
            "short values are redacted too (caveat)"
        );
        r.add("-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34\n-----END KEY-----\n");
        assert_eq!(r.redact("line: MIIBOgIBAAJBAKj34"), "line: ***");
    }

    #[test]
    fn json_and_errors() {
        let r = Redactor::new();
        r.add("s3cr3t");
        let v = serde_json::json!({"a": ["x s3cr3t", 1], "s3cr3t": {"b": "s3cr3t"}});
        assert_eq!(
            r.redact_json(&v),
            serde_json::json!({"a": ["x ***", 1], "***": {"b": "***"}})
        );
        let e = r.redact_error(Error::internal("token s3cr3t rejected"));
        assert_eq!(e.detail.as_deref(), Some("token *** rejected"));
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    #[test]
    fn store_put_get_reload_modes() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = Paths::under(t.path());
        let s = Secrets::open(&p).expect("open");
        s.put("nextcloud", "db_password", "pw-one").expect("put");
        s.put("nextcloud", "db_password", "pw-two")
            .expect("replace");
        s.put("nextcloud", "admin.token", "tok").expect("put");
        assert_eq!(
            s.get("nextcloud", "db_password").expect("get").as_deref(),
            Some("pw-two")
        );
        assert_eq!(s.get("nextcloud", "nope").expect("get"), None);
        assert_eq!(
            s.keys("nextcloud").expect("keys"),
            ["admin.token", "db_password"]
        );
        let mode = |path: &Path| fs::metadata(path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&p.secrets_dir), 0o700);
        assert_eq!(mode(&p.secrets_dir.join("nextcloud")), 0o700);
        assert_eq!(mode(&p.secrets_dir.join("nextcloud/db_password")), 0o600);

        // A new process learns every stored value at open.
        let again = Secrets::open(&p).expect("reopen");
        assert_eq!(again.redactor().redact("pw-two tok"), "*** ***");
        assert!(again
            .remove("nextcloud", "admin.token")
            .expect("remove one"));
        assert!(!again.remove("nextcloud", "admin.token").expect("gone"));
        assert_eq!(again.keys("nextcloud").expect("keys"), ["db_password"]);
        again.remove_deployment("nextcloud").expect("remove");
        assert!(again.keys("nextcloud").expect("keys").is_empty());
    }

    #[test]
    fn names_cannot_escape() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Secrets::open(&Paths::under(t.path())).expect("open");
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "sp ace",
            &"x".repeat(129),
        ] {
            let e = s.put("dep", bad, "v").expect_err(bad);
            assert_eq!(
                e.kind,
                crate::error::ErrorKind::BadRequest {
                    field: Some("key".into())
                }
            );
            assert!(s.put(bad, "k", "v").is_err(), "{bad}");
        }
    }

    #[test]
    fn tracing_writer_redacts_whole_events() {
        use tracing_subscriber::fmt::MakeWriter;
        #[derive(Clone, Default)]
        struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("sink").extend_from_slice(d);
                Ok(d.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let r = Redactor::new();
        r.add("topsecret");
        let s2 = sink.clone();
        let mw = RedactingMakeWriter::new(move || s2.clone(), r);
        {
            let mut w = mw.make_writer();
            // A value split across writes is still caught.
            w.write_all(b"INFO token=top").expect("write");
            w.write_all(b"secret done\n").expect("write");
        }
        let out = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
        assert_eq!(out, "INFO token=*** done\n");
    }
}
