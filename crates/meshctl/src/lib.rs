//! `meshctl`, the agent-mesh command line, as a library: [`run`] executes a
//! parsed [`cli::Cli`]; `main.rs` only parses, runs and reports.
//!
//! Each subcommand lives in [`commands`], grouped by what it talks to: our
//! key ([`commands::identity`]), the registry ([`commands::cards`]), other
//! agents ([`commands::talk`]), serving ([`commands::serve`]) and the relay
//! itself ([`commands::relay`]). What they share — the identity file, the
//! connection, timeouts, the spinner — is [`Ctx`].
//!
//! Two long-running bridges let software that does not speak the mesh use
//! it: [`mcp`] (`meshctl mcp`, an MCP server for AI assistants) and
//! [`gateway`] (`meshctl gateway`, a local HTTP API); [`local_http`] is what
//! their HTTP sides share, [`body`] how JSON becomes a mesh body.

#![warn(missing_docs)]

pub mod body;
pub mod card_file;
pub mod chat;
pub mod cli;
pub mod commands;
pub mod gateway;
pub mod identity_file;
pub mod local_http;
pub mod mcp;
pub mod output;
pub mod progress;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use mesh_client::registry::RegistryClient;
use mesh_client::{ClientError, ClientOptions, MeshClient};
use mesh_core::acl::Policy;
use mesh_core::Identity;

use crate::cli::{Cli, Command, GlobalArgs};

/// An error that ends `meshctl` with a given exit status and no further
/// message (whatever needed saying was said already), e.g. 130 after
/// Ctrl-C.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// What every subcommand shares: the global options and the helpers built
/// on them.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The relay's WebSocket URL.
    pub relay: String,
    /// `--identity`, if given.
    identity: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// `--timeout`, in ms.
    pub timeout_ms: u64,
}

impl Ctx {
    /// The context for these global options.
    pub fn new(global: &GlobalArgs) -> anyhow::Result<Ctx> {
        let relay = global.relay.trim().to_string();
        if !(relay.starts_with("ws://") || relay.starts_with("wss://")) {
            bail!("invalid --relay {relay:?}: expected a ws:// or wss:// URL such as ws://127.0.0.1:8080/v1/ws");
        }
        if global.timeout == 0 {
            bail!("invalid --timeout 0: give a number of milliseconds above zero");
        }
        Ok(Ctx {
            relay,
            identity: global.identity.clone(),
            json: global.json,
            timeout_ms: global.timeout,
        })
    }

    /// The identity file in use.
    pub fn identity_path(&self) -> anyhow::Result<PathBuf> {
        identity_file::resolve(self.identity.as_deref())
    }

    /// Our identity, read from the identity file.
    pub fn identity(&self) -> anyhow::Result<Identity> {
        identity_file::load(&self.identity_path()?)
    }

    /// `--timeout` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Connects to the relay as `identity` with `acl` as our policy.
    pub async fn connect(&self, identity: Identity, acl: Policy) -> anyhow::Result<MeshClient> {
        let options = ClientOptions {
            acl,
            request_timeout_ms: self.timeout_ms,
            connect_timeout_ms: self.timeout_ms,
            ..ClientOptions::default()
        };
        let connecting = MeshClient::connect(&self.relay, identity, options);
        let connected = progress::spin(
            format!("connecting to {}", self.relay),
            tokio::time::timeout(self.timeout(), connecting),
        )
        .await;
        match connected {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(e).context("cannot connect to the relay"),
            Err(_) => Err(ClientError::Timeout(self.timeout_ms))
                .with_context(|| format!("cannot connect to {}", self.relay)),
        }
    }

    /// The registry of our relay.
    pub fn registry(&self) -> anyhow::Result<RegistryClient> {
        RegistryClient::for_relay(&self.relay)
            .with_context(|| format!("invalid --relay {}", self.relay))
    }

    /// Runs a registry (or other) call with the spinner and `--timeout`.
    pub async fn bounded<T>(
        &self,
        label: &str,
        fut: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match progress::spin(label, tokio::time::timeout(self.timeout(), fut)).await {
            Ok(out) => out,
            Err(_) => Err(ClientError::Timeout(self.timeout_ms)),
        }
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx::new(&cli.global)?;
    match cli.command {
        Command::Keygen(args) => commands::identity::keygen(&ctx, &args),
        Command::Id => commands::identity::id(&ctx),
        Command::Fingerprint { peer } => commands::identity::fingerprint(&ctx, &peer),
        Command::Revoke(args) => commands::identity::revoke(&ctx, &args).await,
        Command::Publish(args) => commands::cards::publish(&ctx, &args).await,
        Command::Unpublish => commands::cards::unpublish(&ctx).await,
        Command::Search(args) => commands::cards::search(&ctx, &args).await,
        Command::Request(args) => commands::talk::request(&ctx, &args).await,
        Command::Stream(args) => commands::talk::stream(&ctx, &args).await,
        Command::Send { peer, text } => commands::talk::send(&ctx, peer, &text).await,
        Command::Listen(args) => commands::talk::listen(&ctx, &args).await,
        Command::Serve(args) => commands::serve::serve(&ctx, &args).await,
        Command::Status => commands::relay::status(&ctx).await,
        Command::Mcp(args) => mcp::run(&ctx, &args).await,
        Command::Gateway(args) => gateway::run(&ctx, &args).await,
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM; returns the signal's name.
pub async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                "SIGTERM"
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<&'static str>();
    tokio::select! {
        s = ctrl_c => s,
        s = term => s,
    }
}

/// Resolves when `client` can no longer serve: our key was revoked, or the
/// connection closed for good (e.g. another process connected with the same
/// identity and replaced it). Bridges that run until stopped race their
/// work against this, so they end with the reason instead of failing every
/// call.
pub async fn connection_lost(client: &MeshClient) -> anyhow::Error {
    use futures::StreamExt;
    let mut states = client.state_changes();
    while let Some(state) = states.next().await {
        match state {
            mesh_client::ConnectionState::Revoked => {
                return anyhow::anyhow!("our key has been revoked")
            }
            mesh_client::ConnectionState::Closed(reason) => {
                return anyhow::anyhow!(
                    "the mesh connection closed: {reason} (a second process connecting with \
                     the same identity replaces the first: give each its own --identity)"
                )
            }
            _ => {}
        }
    }
    anyhow::anyhow!("the mesh connection closed")
}

/// Closes `client`, waiting at most a second: the process is ending anyway.
pub async fn close(client: &MeshClient) {
    let _ = tokio::time::timeout(Duration::from_secs(1), client.close()).await;
}
