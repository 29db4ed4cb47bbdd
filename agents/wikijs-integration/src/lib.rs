//! `wikijs-integration`: the 1ld agent that publishes Markdown docs from a
//! Git repository into Wiki.js 2.5 (issue 10).
//!
//! - [`git`]: the repository, in-process (gitoxide), read-only; change sets
//!   with rename detection restricted to the docs subfolder;
//! - [`convert`]: front matter, titles, wiki paths, link and image rewriting;
//! - [`client`]: the Wiki.js client behind the [`client::Wiki`] trait;
//! - [`sync`]: one sync run (plan, serialized writes, state per document);
//! - [`store`]: the SQLite state (`wiki-agent.db`);
//! - [`webhook`]: push webhook verification (GitHub, Gitea, Forgejo, GitLab);
//! - [`agent`]: the runtime glue: cycle, `/webhook`, `/wiki-agent/sync`,
//!   `/metrics`, `/wiki-agent/status`;
//! - [`wikijs`]: the privileged health check of the Wiki.js API key.

pub mod agent;
pub mod client;
pub mod config;
pub mod convert;
pub mod git;
pub mod store;
pub mod sync;
pub mod webhook;
pub mod wikijs;
