//! `pveversion` (in progress).

use crate::error::{PveError, Result};
use crate::node::Node;

/// Entry point.
pub fn main(_node: &Node, _args: &[String]) -> Result<()> {
    Err(PveError::Exit {
        code: 255,
        msg: "pveversion: not yet implemented".into(),
    })
}
