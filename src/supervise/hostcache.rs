//! One host snapshot shared by the API's read requests.
//!
//! `GET /v1/deployments` and `GET /v1/deployments/{name}` show each
//! container's state. Reading it costs a scan of every container config
//! (`files`) or one `pct list` (a Perl interpreter on a real node); with
//! dashboards and scripts polling, that must not happen per request.
//!
//! What this module owns: [`HostCache`], the last [`HostSnapshot`] with
//! when it was read and a version that changes only when the snapshot does.
//!
//! Invariants:
//! - a snapshot is served while it is younger than [`MAX_AGE`] and nothing
//!   was written to the store since it was read (every operation step
//!   writes, so a container changed by 1ld is seen at once; one changed
//!   behind 1ld's back within [`MAX_AGE`]);
//! - at most one read runs at a time: concurrent requests wait for it and
//!   share its result (single flight);
//! - a failed read is not kept: the next request tries again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::hoststate::{HostReader, HostSnapshot};
use crate::pve::Pve;

/// How long a snapshot is served without a write to the store.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// A snapshot and its version (see [`HostCache::get`]).
pub type Versioned = (u64, Arc<HostSnapshot>);

#[derive(Debug)]
struct Entry {
    read_at: Instant,
    store_generation: u64,
    reader: HostReader,
    version: u64,
    snap: Arc<HostSnapshot>,
}

/// The last host snapshot (see the module docs).
#[derive(Debug, Default)]
pub struct HostCache {
    slot: Mutex<Option<Entry>>,
    refresh: tokio::sync::Mutex<()>,
    reads: std::sync::atomic::AtomicU64,
}

impl HostCache {
    /// A snapshot read by `reader` no longer than [`MAX_AGE`] ago and after
    /// the store's write `store_generation` (read it before calling), with
    /// its version: equal versions mean equal snapshots.
    pub async fn get(
        &self,
        reader: &HostReader,
        pve: Option<&Pve>,
        store_generation: u64,
    ) -> Result<Versioned, String> {
        if let Some(hit) = self.fresh(reader, store_generation) {
            return Ok(hit);
        }
        let _one = self.refresh.lock().await;
        // Another request may have read it while this one waited.
        if let Some(hit) = self.fresh(reader, store_generation) {
            return Ok(hit);
        }
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snap = reader.read(pve).await?;
        let mut slot = self.slot.lock().map_err(|_| "host cache poisoned")?;
        let (version, snap) = match slot.as_ref() {
            Some(e) if *e.snap == snap => (e.version, e.snap.clone()),
            Some(e) => (e.version + 1, Arc::new(snap)),
            None => (1, Arc::new(snap)),
        };
        *slot = Some(Entry {
            read_at: Instant::now(),
            store_generation,
            reader: reader.clone(),
            version,
            snap: snap.clone(),
        });
        Ok((version, snap))
    }

    /// How many times the host was read (failed reads included).
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fresh(&self, reader: &HostReader, store_generation: u64) -> Option<Versioned> {
        let slot = self.slot.lock().ok()?;
        let e = slot.as_ref()?;
        (e.store_generation == store_generation
            && e.read_at.elapsed() < MAX_AGE
            && e.reader == *reader)
            .then(|| (e.version, e.snap.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostStateSource, SuperviseConfig};

    /// A `files` reader on a temp dir, with `/proc/net/unix` from a file.
    fn reader(dir: &std::path::Path) -> HostReader {
        let cfg = SuperviseConfig {
            host_state: HostStateSource::Files,
            ct_config_dir: dir.join("conf"),
            lxc_path: "/var/lib/lxc".into(),
            ..SuperviseConfig::default()
        };
        HostReader::new(&cfg).with_proc_net_unix(dir.join("unix"))
    }

    fn running(dir: &std::path::Path, vmids: &[u32]) {
        let mut text = String::from("Num       RefCount Protocol Flags    Type St Inode Path\n");
        for v in vmids {
            text.push_str(&format!(
                "0000000000000000: 00000002 00000000 00010000 0001 01 1 @/var/lib/lxc/{v}/command\n"
            ));
        }
        std::fs::write(dir.join("unix"), text).unwrap();
    }

    #[tokio::test]
    async fn served_while_young_and_unwritten_and_versioned_by_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::write(dir.path().join("conf/140.conf"), "arch: amd64\n").unwrap();
        running(dir.path(), &[140]);
        let r = reader(dir.path());
        let c = HostCache::default();
        let (v1, s1) = c.get(&r, None, 7).await.unwrap();
        assert!(s1.cts[&140].running);

        // Changed on the host, same store generation, young: the cached one.
        running(dir.path(), &[]);
        let (v, s) = c.get(&r, None, 7).await.unwrap();
        assert_eq!((v, s.cts[&140].running), (v1, true));

        // A store write: read again, and the version moves with the content.
        let (v2, s2) = c.get(&r, None, 8).await.unwrap();
        assert!(!s2.cts[&140].running);
        assert!(v2 > v1);

        // Read again with nothing changed: the same version.
        let (v3, _) = c.get(&r, None, 9).await.unwrap();
        assert_eq!(v3, v2);

        // Older than MAX_AGE: read again without a store write.
        running(dir.path(), &[140]);
        tokio::time::sleep(MAX_AGE + Duration::from_millis(50)).await;
        let (v4, s4) = c.get(&r, None, 9).await.unwrap();
        assert!(s4.cts[&140].running && v4 > v3);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept_and_another_reader_reads_again() {
        let dir = tempfile::tempdir().unwrap();
        running(dir.path(), &[]);
        let r = reader(dir.path());
        let c = HostCache::default();
        assert!(c.get(&r, None, 1).await.is_err(), "no config dir yet");
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::write(dir.path().join("conf/150.conf"), "arch: amd64\n").unwrap();
        let (_, s) = c.get(&r, None, 1).await.unwrap();
        assert_eq!(s.cts.len(), 1);
        // A reader on other paths (a reloaded config) does not get this one.
        let other = HostReader::new(&SuperviseConfig {
            host_state: HostStateSource::Files,
            ct_config_dir: dir.path().join("elsewhere"),
            ..SuperviseConfig::default()
        });
        assert!(c.get(&other, None, 1).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        for v in 100..300 {
            std::fs::write(dir.path().join(format!("conf/{v}.conf")), "arch: amd64\n").unwrap();
        }
        running(dir.path(), &[]);
        let r = reader(dir.path());
        let c = Arc::new(HostCache::default());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (c, r) = (c.clone(), r.clone());
                tokio::spawn(async move { c.get(&r, None, 3).await.unwrap() })
            })
            .collect();
        let mut snaps = Vec::new();
        for t in tasks {
            snaps.push(t.await.unwrap());
        }
        // One read: every request holds the very same snapshot.
        assert_eq!(c.reads(), 1);
        assert!(snaps
            .iter()
            .all(|(v, s)| *v == 1 && Arc::ptr_eq(s, &snaps[0].1)));
        // Young and nothing written: served without reading.
        c.get(&r, None, 3).await.unwrap();
        assert_eq!(c.reads(), 1);
    }
}
