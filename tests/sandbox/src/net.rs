//! Node bring-up and tear-down (in progress).

use crate::error::{PveError, Result};
use crate::node::Node;

/// `pve-sandbox up`.
pub fn up(_node: &Node) -> Result<()> {
    Err(PveError::die("not yet implemented"))
}
/// `pve-sandbox down`.
pub fn down(_node: &Node) -> Result<()> {
    Err(PveError::die("not yet implemented"))
}
/// `pve-sandbox status`.
pub fn status(_node: &Node) -> Result<()> {
    Err(PveError::die("not yet implemented"))
}
