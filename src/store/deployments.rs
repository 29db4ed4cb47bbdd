//! The `deployments` and `vmid_reservations` tables.
//!
//! Invariants: a deployment's name and vmid are unique; secret values are
//! never stored here (only their keys, in `spec`); a vmid is reserved by at
//! most one operation, and [`Store::reserve_vmid`] picks and reserves in one
//! transaction on the writer connection, so concurrent deploys never get the
//! same id. A reservation ends when its deploy records the deployment or is
//! compensated ([`Store::release_vmids`]).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::api::{Drift, HealthStatus, HealthSummary, IntendedState, Resources};

/// What a deployment was asked to be (stored as JSON in `spec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSpec {
    /// Container resources.
    pub resources: Resources,
    /// Tags the container must carry.
    pub tags: Vec<String>,
    /// Non-secret settings.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Keys of the secret settings (values are in the secrets directory).
    #[serde(default)]
    pub secret_keys: Vec<String>,
    /// Probe timing and thresholds chosen for this deployment.
    #[serde(
        default,
        skip_serializing_if = "crate::api::SuperviseOverrides::is_empty"
    )]
    pub supervise: crate::api::SuperviseOverrides,
    /// Backup policy chosen for this deployment (unset fields: `[backup]`).
    #[serde(default, skip_serializing_if = "crate::api::BackupPolicy::is_empty")]
    pub backup: crate::api::BackupPolicy,
}

/// One deployment row.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord {
    /// Unique name (the container's hostname).
    pub name: String,
    /// The app.
    pub app: String,
    /// The app version installed.
    pub app_version: String,
    /// Unique container id.
    pub vmid: u32,
    /// The node.
    pub node: String,
    /// Running or stopped on purpose.
    pub intended_state: IntendedState,
    /// The recorded spec.
    pub spec: StoredSpec,
    /// Fingerprint of the rendered configuration.
    pub config_hash: String,
    /// Last known IPv4 address.
    pub ip: Option<String>,
    /// Last health probe.
    pub health: HealthSummary,
    /// Last drift check's findings.
    pub drift: Vec<Drift>,
    /// Recorded by adoption.
    pub adopted: bool,
    /// Created (unix ms).
    pub created_ms: i64,
    /// Last changed (unix ms).
    pub updated_ms: i64,
    /// Last backup (unix ms).
    pub last_backup_ms: Option<i64>,
}

fn state_str(s: IntendedState) -> &'static str {
    match s {
        IntendedState::Running => "running",
        IntendedState::Stopped => "stopped",
    }
}

const COLUMNS: &str = "name, app, app_version, vmid, node, intended_state, spec, config_hash, ip, \
                       health, drift, adopted, created_ms, updated_ms, last_backup_ms";

type RawRow = (
    String,
    String,
    String,
    u32,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    bool,
    i64,
    i64,
    Option<i64>,
);

fn raw(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
    ))
}

fn unknown_health() -> HealthSummary {
    HealthSummary {
        status: HealthStatus::Unknown,
        checked_at: None,
        detail: None,
    }
}

impl Store {
    fn decode_deployment(&self, r: RawRow) -> Result<DeploymentRecord, StoreError> {
        let intended_state = match r.5.as_str() {
            "running" => IntendedState::Running,
            "stopped" => IntendedState::Stopped,
            other => return Err(self.decode("deployments.intended_state", other)),
        };
        let health: HealthSummary = if r.9 == "{}" {
            unknown_health()
        } else {
            serde_json::from_str(&r.9).map_err(|e| self.decode("deployments.health", e))?
        };
        Ok(DeploymentRecord {
            name: r.0,
            app: r.1,
            app_version: r.2,
            vmid: r.3,
            node: r.4,
            intended_state,
            spec: serde_json::from_str(&r.6).map_err(|e| self.decode("deployments.spec", e))?,
            config_hash: r.7,
            ip: r.8,
            health,
            drift: serde_json::from_str(&r.10).map_err(|e| self.decode("deployments.drift", e))?,
            adopted: r.11,
            created_ms: r.12,
            updated_ms: r.13,
            last_backup_ms: r.14,
        })
    }

    /// Inserts a new deployment; a taken name or vmid is a SQLite
    /// constraint error (callers check first, under their locks).
    pub fn insert_deployment(&self, d: &DeploymentRecord) -> Result<(), StoreError> {
        let spec = serde_json::to_string(&d.spec).map_err(|e| self.decode("spec", e))?;
        let health = serde_json::to_string(&d.health).map_err(|e| self.decode("health", e))?;
        let drift = serde_json::to_string(&d.drift).map_err(|e| self.decode("drift", e))?;
        self.write(|c| {
            c.execute(
                &format!("INSERT INTO deployments ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
                params![
                    d.name, d.app, d.app_version, d.vmid, d.node, state_str(d.intended_state), spec,
                    d.config_hash, d.ip, health, drift, d.adopted, d.created_ms, d.updated_ms, d.last_backup_ms
                ],
            )
        })?;
        Ok(())
    }

    /// Replaces a deployment's row (matched by name); false if it is gone.
    pub fn update_deployment(&self, d: &DeploymentRecord) -> Result<bool, StoreError> {
        let spec = serde_json::to_string(&d.spec).map_err(|e| self.decode("spec", e))?;
        let health = serde_json::to_string(&d.health).map_err(|e| self.decode("health", e))?;
        let drift = serde_json::to_string(&d.drift).map_err(|e| self.decode("drift", e))?;
        let n = self.write(|c| {
            c.execute(
                "UPDATE deployments SET app = ?2, app_version = ?3, vmid = ?4, node = ?5, intended_state = ?6, \
                 spec = ?7, config_hash = ?8, ip = ?9, health = ?10, drift = ?11, adopted = ?12, \
                 updated_ms = ?13, last_backup_ms = ?14 WHERE name = ?1",
                params![
                    d.name, d.app, d.app_version, d.vmid, d.node, state_str(d.intended_state), spec,
                    d.config_hash, d.ip, health, drift, d.adopted, d.updated_ms, d.last_backup_ms
                ],
            )
        })?;
        Ok(n == 1)
    }

    /// The deployment called `name`.
    pub fn get_deployment(&self, name: &str) -> Result<Option<DeploymentRecord>, StoreError> {
        let row = self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM deployments WHERE name = ?1"),
                [name],
                raw,
            )
            .optional()
        })?;
        row.map(|r| self.decode_deployment(r)).transpose()
    }

    /// The deployment on container `vmid`.
    pub fn deployment_by_vmid(&self, vmid: u32) -> Result<Option<DeploymentRecord>, StoreError> {
        let row = self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM deployments WHERE vmid = ?1"),
                [vmid],
                raw,
            )
            .optional()
        })?;
        row.map(|r| self.decode_deployment(r)).transpose()
    }

    /// Every deployment, by name.
    pub fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        let rows = self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deployments ORDER BY name LIMIT 10000"
            ))?;
            let rows = st.query_map([], raw)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|r| self.decode_deployment(r))
            .collect()
    }

    /// Deletes the deployment `name`; false if there was none.
    pub fn delete_deployment(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.write(|c| c.execute("DELETE FROM deployments WHERE name = ?1", [name]))? == 1)
    }

    /// Reserves the lowest id in `lo..=hi` that is not in `taken` (the
    /// cluster's guests), not a deployment's and not reserved, for `op_id`.
    /// `None` when the range is full.
    pub fn reserve_vmid(
        &self,
        lo: u32,
        hi: u32,
        taken: &BTreeSet<u32>,
        op_id: &str,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        self.write(|c| {
            let tx = c.transaction()?;
            let mut busy: BTreeSet<u32> = taken.clone();
            {
                let mut st = tx.prepare_cached(
                    "SELECT vmid FROM vmid_reservations UNION SELECT vmid FROM deployments",
                )?;
                let rows = st.query_map([], |r| r.get::<_, u32>(0))?;
                for v in rows {
                    busy.insert(v?);
                }
            }
            let pick = (lo..=hi).find(|v| !busy.contains(v));
            if let Some(v) = pick {
                tx.execute(
                    "INSERT INTO vmid_reservations (vmid, op_id, created_ms) VALUES (?1, ?2, ?3)",
                    params![v, op_id, now_ms],
                )?;
            }
            tx.commit()?;
            Ok(pick)
        })
    }

    /// Reserves exactly `vmid` for `op_id`; false when it is reserved or a
    /// deployment's.
    pub fn reserve_exact_vmid(
        &self,
        vmid: u32,
        op_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(|c| {
            let tx = c.transaction()?;
            let busy: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM vmid_reservations WHERE vmid = ?1) \
                 OR EXISTS (SELECT 1 FROM deployments WHERE vmid = ?1)",
                [vmid],
                |r| r.get(0),
            )?;
            if !busy {
                tx.execute(
                    "INSERT INTO vmid_reservations (vmid, op_id, created_ms) VALUES (?1, ?2, ?3)",
                    params![vmid, op_id, now_ms],
                )?;
            }
            tx.commit()?;
            Ok(!busy)
        })
    }

    /// Releases one reservation of `op_id`.
    pub fn release_vmid(&self, vmid: u32, op_id: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM vmid_reservations WHERE vmid = ?1 AND op_id = ?2",
                params![vmid, op_id],
            )
        })?;
        Ok(())
    }

    /// Releases every reservation of `op_id`; returns how many.
    pub fn release_vmids(&self, op_id: &str) -> Result<usize, StoreError> {
        self.write(|c| c.execute("DELETE FROM vmid_reservations WHERE op_id = ?1", [op_id]))
    }

    /// Drops every reservation (at startup, after recovery: no deploy runs).
    pub fn clear_vmid_reservations(&self) -> Result<usize, StoreError> {
        self.write(|c| c.execute("DELETE FROM vmid_reservations", []))
    }

    /// Every reserved vmid with its operation.
    pub fn vmid_reservations(&self) -> Result<Vec<(u32, String)>, StoreError> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT vmid, op_id FROM vmid_reservations ORDER BY vmid")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;

    fn rec(name: &str, vmid: u32) -> DeploymentRecord {
        DeploymentRecord {
            name: name.into(),
            app: "netbox-agent".into(),
            app_version: "0.1.0".into(),
            vmid,
            node: "pve".into(),
            intended_state: IntendedState::Running,
            spec: StoredSpec {
                resources: Resources {
                    cores: 2,
                    memory: 2048,
                    swap: 512,
                    disk: 8,
                    storage: "local-lvm".into(),
                    bridge: "vmbr0".into(),
                    ip: "dhcp".into(),
                    gw: None,
                    ip6: "auto".into(),
                    onboot: true,
                },
                tags: vec!["1ld".into()],
                settings: BTreeMap::new(),
                secret_keys: vec!["netbox_token".into()],
                supervise: Default::default(),
                backup: Default::default(),
            },
            config_hash: "fnv1a64:0".into(),
            ip: None,
            health: unknown_health(),
            drift: vec![],
            adopted: false,
            created_ms: 1,
            updated_ms: 1,
            last_backup_ms: None,
        }
    }

    #[test]
    fn deployments_round_trip_and_reservations_serialise() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&Paths::under(d.path())).unwrap();
        s.insert_deployment(&rec("a", 140)).unwrap();
        assert!(s.insert_deployment(&rec("a", 141)).is_err(), "name unique");
        assert!(s.insert_deployment(&rec("b", 140)).is_err(), "vmid unique");
        let mut a = s.get_deployment("a").unwrap().unwrap();
        assert_eq!(a, rec("a", 140));
        a.intended_state = IntendedState::Stopped;
        a.ip = Some("10.0.0.5".into());
        assert!(s.update_deployment(&a).unwrap());
        assert_eq!(s.deployment_by_vmid(140).unwrap().unwrap(), a);
        let taken = BTreeSet::from([141]);
        assert_eq!(
            s.reserve_vmid(140, 145, &taken, "op1", 0).unwrap(),
            Some(142)
        );
        assert_eq!(
            s.reserve_vmid(140, 145, &taken, "op2", 0).unwrap(),
            Some(143)
        );
        assert!(!s.reserve_exact_vmid(143, "op3", 0).unwrap());
        assert!(!s.reserve_exact_vmid(140, "op3", 0).unwrap());
        assert_eq!(s.release_vmids("op1").unwrap(), 1);
        assert_eq!(
            s.reserve_vmid(140, 145, &taken, "op3", 0).unwrap(),
            Some(142)
        );
        assert_eq!(s.reserve_vmid(140, 140, &taken, "op4", 0).unwrap(), None);
        assert!(s.delete_deployment("a").unwrap());
        assert!(s.list_deployments().unwrap().is_empty());
    }
}
