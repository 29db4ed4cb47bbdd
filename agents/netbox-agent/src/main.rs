//! `netbox-agent`: the 1ld agent that discovers the homelab (inventory
//! files, Proxmox VE, a network scan) and keeps NetBox true. See the
//! crate's `README.md`.

fn main() -> std::process::ExitCode {
    agent_runtime::run::main::<netbox_agent::agent::NetboxAgent>()
}
