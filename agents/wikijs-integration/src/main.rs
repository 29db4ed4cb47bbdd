//! `wikijs-integration`: the 1ld agent that will publish Markdown docs from a
//! Git repository into Wiki.js (issue 10). This version is the runtime
//! skeleton: it serves `/health` and `/wiki-agent/status` on port 3001, keeps
//! its state in SQLite (`wiki-agent.db`, schema created, integrity checked at
//! start), and its work cycle checks that Wiki.js answers and that the API key
//! is really accepted (an invalid key silently becomes Guest).

mod agent;
mod config;
mod store;
mod wikijs;

fn main() -> std::process::ExitCode {
    agent_runtime::run::main::<agent::WikiAgent>()
}
