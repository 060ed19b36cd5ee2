//! `mesh-bench`: the load generator that measures the agent-mesh relay.
//!
//! Performance targets live here, in figures a person reads, not in timed
//! tests that fail on a busy machine. The relay runs as its own process
//! (the real release binary), so its memory and CPU time are measured
//! apart from the load generator's; the throughput baseline is this
//! binary's `forwarder` subcommand, a WebSocket forwarder with the relay's
//! I/O shape and none of its work.

mod client;
mod forwarder;
mod idle;
mod latency;
mod procfs;
mod rpc;
mod server;
mod throughput;
mod wire;

use clap::{Parser, Subcommand};

/// Load generator for the agent-mesh relay.
///
/// Build both binaries first (the relay is started from next to this one):
///
///     cargo build --release -p mesh-relay -p mesh-bench
///
/// then run, e.g., `target/release/mesh-bench throughput --compare` or
/// `target/release/mesh-bench idle --conns 10000`. Do not run it while the
/// machine is busy compiling: the figures would be the compiler's.
#[derive(Debug, Parser)]
#[command(name = "mesh-bench", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Frames/s, MiB/s and one-way latency (p50/p99/p99.9) through the
    /// relay, through a trivial forwarder (--baseline), or both
    /// (--compare); plus server RSS and CPU.
    Throughput(throughput::Args),
    /// Relay memory (RSS) per authenticated idle connection.
    Idle(idle::Args),
    /// End-to-end encrypted request/response with mesh-client: first
    /// contact, warm latency, requests/s, latency at a fixed offered rate.
    Rpc(rpc::Args),
    /// Serve the trivial forwarder that `throughput --baseline` measures
    /// (started by mesh-bench itself; no auth, storage or acks).
    Forwarder(forwarder::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Throughput(args) => throughput::main(args).await,
        Command::Idle(args) => idle::main(args).await,
        Command::Rpc(args) => rpc::main(args).await,
        Command::Forwarder(args) => forwarder::main(args).await,
    }
}
