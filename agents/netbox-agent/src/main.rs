//! `netbox-agent`: the 1ld agent that will discover the homelab and keep
//! NetBox true (issue 9). This version is the runtime skeleton: it serves
//! `/health` and `/status` on port 8080 and its work cycle checks that the
//! configured NetBox answers and accepts the token. Every discovery source is
//! configured but disabled, and enabling one is refused until it exists.

mod agent;
mod config;
mod netbox;

fn main() -> std::process::ExitCode {
    agent_runtime::run::main::<agent::NetboxAgent>()
}
