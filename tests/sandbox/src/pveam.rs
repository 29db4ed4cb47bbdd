//! Placeholder for `pveam` (owned by the storage engineer, who replaces this file).

use crate::error::{PveError, Result};
use crate::node::Node;

/// Entry point: not implemented yet, so nothing silently succeeds.
pub fn main(_node: &Node, _args: &[String]) -> Result<()> {
    Err(PveError::Exit {
        code: 255,
        msg: "pveam: not yet implemented".into(),
    })
}
