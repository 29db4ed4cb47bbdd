//! Per-target mutual exclusion: one mutating operation per target
//! (`ct/140`, `template/local/<file>`) at a time.
//!
//! Invariants: a lock is held by exactly one operation, from submit until its
//! final state is persisted; the [`LockGuard`] releases it on drop, so a
//! panicking or aborted task cannot leak it. Locks live in memory only: after
//! a restart no operation runs, so none is held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, ErrorKind};

#[derive(Debug, Clone)]
struct Holder {
    op_id: String,
    kind: String,
}

/// The table of held targets. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Locks {
    held: Arc<Mutex<HashMap<String, Holder>>>,
}

/// Holds a target until dropped.
#[derive(Debug)]
pub struct LockGuard {
    held: Arc<Mutex<HashMap<String, Holder>>>,
    key: String,
    op_id: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Locks {
    /// Takes `key` for operation `op_id` of `kind`, or fails with
    /// [`ErrorKind::Locked`] naming the holder.
    pub fn acquire(&self, key: &str, op_id: &str, kind: &str) -> Result<LockGuard, Error> {
        let mut held = lock(&self.held);
        if let Some(h) = held.get(key) {
            return Err(Error::new(
                ErrorKind::Locked {
                    holder_op: h.op_id.clone(),
                },
                format!(
                    "'{key}' is busy: operation {} ({}) is working on it; wait for it \
                     (GET /v1/operations/{}/wait) or cancel it, then retry",
                    h.op_id, h.kind, h.op_id
                ),
            ));
        }
        held.insert(
            key.to_string(),
            Holder {
                op_id: op_id.to_string(),
                kind: kind.to_string(),
            },
        );
        Ok(LockGuard {
            held: self.held.clone(),
            key: key.to_string(),
            op_id: op_id.to_string(),
        })
    }

    /// The operation holding `key`, if any.
    pub fn holder(&self, key: &str) -> Option<String> {
        lock(&self.held).get(key).map(|h| h.op_id.clone())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut held = lock(&self.held);
        // Only release what this guard took.
        if held.get(&self.key).is_some_and(|h| h.op_id == self.op_id) {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_names_the_holder_and_drop_releases() {
        let locks = Locks::default();
        let g = locks.acquire("ct/140", "op1", "deploy").expect("free");
        let e = locks.acquire("ct/140", "op2", "deploy").expect_err("held");
        assert_eq!(
            e.kind,
            ErrorKind::Locked {
                holder_op: "op1".into()
            }
        );
        assert!(
            e.message.contains("op1") && e.message.contains("deploy"),
            "{}",
            e.message
        );
        let _other = locks
            .acquire("ct/141", "op3", "deploy")
            .expect("other target");
        drop(g);
        assert_eq!(locks.holder("ct/140"), None);
        locks.acquire("ct/140", "op2", "deploy").expect("released");
    }
}
