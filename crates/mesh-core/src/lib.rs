//! The sans-IO protocol core of agent-mesh.
//!
//! A deterministic implementation of the agent-mesh protocol logic: identity,
//! domain-separated signatures, end-to-end Noise sessions, the client↔relay
//! wire codecs and auth state machines, Agent Cards, ACL policies and
//! revocation. It contains no networking code, spawns no tasks and reads no
//! clock: time is always a parameter (`now_ms`, milliseconds on a monotonic
//! clock of the caller's choosing), and the only randomness comes from
//! `getrandom`, which works natively, in browsers and in Workers.
//!
//! That is what lets the very same code run under tokio, in a browser event
//! loop and in a Cloudflare Worker, and what makes every protocol path a
//! plain unit test. Most users want `mesh-client`, the async client built on
//! top; the relay (`mesh-relay`) uses the relay-side halves.
//!
//! The state machines follow one shape: feed in what arrived (`handle_*`),
//! ask what to send (`poll_transmit`), when to wake (`poll_timeout`) and what
//! happened (`poll_event`).
//!
//! # Example: two agents, no network
//!
//! ```
//! use mesh_core::noise::NoiseKeypair;
//! use mesh_core::{AppMessage, Identity, SessionConfig, SessionEvent, SessionTable};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let alice = Identity::generate()?;
//! let bob = Identity::generate()?;
//! let (a_id, b_id) = (alice.agent_id(), bob.agent_id());
//! let mut a = SessionTable::new(alice, NoiseKeypair::generate()?, SessionConfig::default());
//! let mut b = SessionTable::new(bob, NoiseKeypair::generate()?, SessionConfig::default());
//!
//! let request = AppMessage::Request {
//!     req_id: 1,
//!     capability: "echo".into(),
//!     stream: false,
//!     body: "hello".into(),
//! };
//! a.send(b_id, request.clone(), 0)?; // queued; starts the Noise handshake
//!
//! // Play the relay: carry every envelope to its destination.
//! loop {
//!     let mut moved = false;
//!     while let Some(t) = a.poll_transmit() {
//!         let _ = b.handle_incoming(a_id, t.body, 0);
//!         moved = true;
//!     }
//!     while let Some(t) = b.poll_transmit() {
//!         let _ = a.handle_incoming(b_id, t.body, 0);
//!         moved = true;
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! let got = std::iter::from_fn(|| b.poll_event()).find_map(|e| match e {
//!     SessionEvent::Message { from, message } => Some((from, message)),
//!     _ => None,
//! });
//! assert_eq!(got, Some((a_id, request)));
//! # Ok(())
//! # }
//! ```
//!
//! The byte-level specification lives in `docs/PROTOCOL.md`, with test
//! vectors in `docs/test-vectors.json` that this crate's tests check.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod acl;
pub mod app;
pub mod auth;
pub mod card;
pub mod code;
mod codec;
pub mod frame;
pub mod identity;
pub mod json;
pub mod limits;
pub mod noise;
pub mod registry;
pub mod replay;
pub mod revocation;
pub mod session;
pub mod sign;
#[cfg(test)]
mod vectors;

pub use acl::{Decision, Policy, CHAT_CAPABILITY};
pub use app::AppMessage;
pub use card::{AgentCard, SignedCard, Skill};
pub use code::ErrorCode;
pub use frame::Frame;
pub use identity::{AgentId, Identity, IdentityError, SafetyNumber, Signature, SignatureError};
pub use registry::RegistryRequest;
pub use revocation::Revocation;
pub use session::{SessionConfig, SessionEvent, SessionTable, Transmit};
pub use sign::SignatureContext;
