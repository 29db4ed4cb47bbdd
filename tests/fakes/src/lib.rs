//! Fake NetBox, Wiki.js and Home Assistant for 1ld's tests and demo (test
//! tooling, never shipped).
//!
//! NetBox and Wiki.js cannot be installed on the sandbox, so the agents are
//! exercised against fakes that replay request/response pairs recorded on
//! real servers (NetBox 4.6.8, Wiki.js 2.5.314, Home Assistant 2025.4.4),
//! byte for byte: status, the headers the recorder kept, and the body as
//! the server serialized it. A request nothing recorded matches is answered
//! `599` and logged at `ERROR`, and [`Handle::unrecorded`] lists it, so a
//! test notices at once.
//!
//! - [`NetBox`], [`WikiJs`], [`HomeAssistant`]: the fakes, with credential
//!   classes (a valid, refused, revoked or missing token replays what the
//!   real server answered to that kind of token);
//! - [`Replay`]: exact replay of one transcript (the agents' own tests);
//! - [`server`]: the HTTP side, the [`Upstream`] trait the fakes implement,
//!   and the [`Handle`] of a running fake;
//! - [`transcript`]: the recorded format and its byte-faithful rendering;
//! - [`addr`]: the network rule (loopback or a sandbox bridge's host
//!   address only; the fakes never connect anywhere);
//! - [`fixtures`]: the recordings compiled in.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fake_upstreams::Error> {
//! use fake_upstreams::{NetBox, Secret, WikiJs};
//! let netbox = NetBox::spawn("127.0.0.1:0".parse().expect("addr")).await?;
//! let wiki = WikiJs::new()
//!     .with_key(Secret::new("eyJhbGciOi.payload.sig"))
//!     .serve("127.0.0.1:0".parse().expect("addr"))
//!     .await?;
//! println!("{} {}", netbox.url(), wiki.url());
//! assert!(netbox.unrecorded().is_empty());
//! # Ok(()) }
//! ```

pub mod addr;
mod error;
pub mod fixtures;
pub mod gql;
pub mod homeassistant;
mod lookup;
pub mod netbox;
pub mod netbox_model;
pub mod proxmox;
pub mod replay;
pub mod secret;
pub mod server;
pub mod transcript;
pub mod truenas;
pub mod wikijs;
pub mod wikijs_model;

pub use error::Error;
pub use homeassistant::HomeAssistant;
pub use netbox::NetBox;
pub use netbox_model::{NetBoxModel, StatefulNetBox};
pub use proxmox::{ProxmoxFake, RunningProxmox};
pub use replay::Replay;
pub use secret::Secret;
pub use server::{Handle, Hit, Unrecorded, Upstream};
pub use transcript::{Exchange, RecordedRequest, RecordedResponse, Transcript};
pub use truenas::TruenasFake;
pub use wikijs::WikiJs;
pub use wikijs_model::WikiModel;
