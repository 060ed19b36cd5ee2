//! The async agent-mesh client.
//!
//! [`MeshClient`] is one authenticated connection to a relay with
//! end-to-end encrypted Noise sessions to every peer on top: requests and
//! streamed responses (with cancellation that reaches the remote handler),
//! capability handlers guarded by an ACL (default deny), chat messages with
//! receipts, and automatic reconnect/resume that loses nothing.
//!
//! It is the only place in agent-mesh that owns a socket. Its connection
//! driver is written once on top of `mesh-core`'s sans-IO state machines and
//! runs on two transports chosen at compile time: tokio-tungstenite natively,
//! `web-sys::WebSocket` in browsers and Workers (wasm32). [`registry`] talks
//! to the relay's Agent Card registry on both.

#![warn(missing_docs)]

mod client;
mod driver;
pub mod error;
pub mod registry;
pub mod rt;
pub mod transport;

#[cfg(not(target_arch = "wasm32"))]
pub mod acl_file;

#[cfg(target_arch = "wasm32")]
pub mod idb;

pub use client::{
    ClientOptions, ConnectionState, IncomingRequest, MeshClient, MessageEvent, ResponseStream,
    StreamSink,
};
pub use error::{ClientError, HandlerError};

/// The client's own buffer bounds (see each constant).
pub mod client_limits {
    pub use crate::client::{
        MAX_SERVING, MAX_UNREAD_CHUNKS, MESSAGE_BUFFER, STATE_BUFFER, STREAM_WINDOW,
    };
    pub use crate::transport::RECEIVE_BUFFER;
}
pub use mesh_core;
