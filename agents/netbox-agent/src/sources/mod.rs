//! Discovery sources. Each returns hosts in the source-neutral model
//! ([`crate::model::Host`]); none talks to NetBox.

pub mod homeassistant;
pub mod inventory;
pub mod proxmox;
pub mod scan;
pub mod truenas;
