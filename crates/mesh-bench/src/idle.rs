//! `mesh-bench idle`: relay memory per authenticated idle connection.
//!
//! Starts the relay, reads its resident memory with no connection, opens
//! `conns` authenticated connections in concurrent batches, keeps each one
//! alive (answering the relay's heartbeat pings), lets the relay settle and
//! reads its memory again. Every connection is a distinct agent, as it
//! would be in production.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use mesh_core::{Frame, Identity};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws};
use crate::procfs;
use crate::server::{self, ServerProcess};

/// The memory target of issue 3: relay RSS per idle connection, in KiB.
const TARGET_KIB_PER_CONN: f64 = 20.0;

/// File descriptors needed beyond one per connection (listeners, the
/// database, stdio, the runtime).
const SPARE_FDS: u64 = 256;

/// `mesh-bench idle`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Idle connections to open. Both this process and the relay need an
    /// open-file limit above this (`ulimit -n`).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    conns: u64,
    /// Connections opened concurrently.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
    /// Seconds to wait after the last connection before measuring.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    settle: u64,
    /// The relay binary [default: mesh-relay next to this executable, as
    /// built by `cargo build --release -p mesh-relay -p mesh-bench`].
    #[arg(long, value_name = "PATH")]
    relay_bin: Option<PathBuf>,
}

fn check_open_files(who: &str, what: &str, needed: u64) -> Result<()> {
    match procfs::open_files_limit(who)? {
        Some(limit) if limit < needed => bail!(
            "{what} may open only {limit} files but needs about {needed}: \
             raise the limit first, e.g. `ulimit -n {needed}` (the relay inherits it)"
        ),
        _ => Ok(()),
    }
}

/// Runs the `idle` subcommand.
pub async fn main(args: Args) -> Result<()> {
    let needed = args.conns + SPARE_FDS;
    check_open_files("self", "mesh-bench", needed)?;
    let bin = server::relay_bin(args.relay_bin.as_deref())?;
    let max_conns = needed.max(mesh_relay::defaults::MAX_CONNECTIONS as u64);
    let relay = ServerProcess::spawn(
        "relay",
        server::relay_command(&bin, &["--max-connections".into(), max_conns.to_string()]),
    )
    .await?;
    check_open_files(relay.pid(), "the relay", needed)?;
    let url = format!("ws://{}/v1/ws", relay.addr);
    println!(
        "mesh-bench idle: {} authenticated idle connections",
        args.conns
    );
    eprintln!("relay: pid {} on {}", relay.pid(), relay.addr);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = relay.rss_kib()?;

    let alive = Arc::new(AtomicU64::new(0));
    let mut keepers = JoinSet::new();
    let relay_cpu0 = relay.cpu_time()?;
    let bench_cpu0 = procfs::cpu_time("self")?;
    let opening = Instant::now();
    let mut opened = 0u64;
    while opened < args.conns {
        let n = args.batch.min(args.conns - opened);
        let mut batch = JoinSet::new();
        for _ in 0..n {
            let url = url.clone();
            batch.spawn(async move {
                let identity = Identity::generate()?;
                client::dial_relay(&url, idle_config(), identity).await
            });
        }
        while let Some(done) = batch.join_next().await {
            let ws = done
                .context("connection task")?
                .context("opening an idle connection")?;
            alive.fetch_add(1, Ordering::Relaxed);
            keepers.spawn(keep_alive(ws, alive.clone()));
        }
        opened += n;
        if opened % 1000 < n || opened == args.conns {
            eprintln!("  {opened} connections open");
        }
    }
    let open_time = opening.elapsed();
    let relay_cpu = relay.cpu_time()?.saturating_sub(relay_cpu0);
    let bench_cpu = procfs::cpu_time("self")?.saturating_sub(bench_cpu0);

    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let after = relay.rss_kib()?;
    let still_alive = alive.load(Ordering::Relaxed);
    if still_alive < args.conns {
        bail!(
            "only {still_alive} of {} connections are still open: the measurement would be wrong",
            args.conns
        );
    }
    let per_conn = after.saturating_sub(before) as f64 / args.conns as f64;
    println!();
    println!(
        "{:<34} {:>12}",
        "connections (authenticated, idle)", args.conns
    );
    println!(
        "{:<34} {:>9.1} s  ({:.0} conn/s)",
        "time to open",
        open_time.as_secs_f64(),
        args.conns as f64 / open_time.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    let per_open = |cpu: Duration| cpu.as_secs_f64() * 1e6 / args.conns as f64;
    println!(
        "{:<34} {:>9.0} µs (bench: {:.0} µs)",
        "relay CPU per connection opened",
        per_open(relay_cpu),
        per_open(bench_cpu)
    );
    println!(
        "{:<34} {:>8} KiB",
        "relay RSS before (0 connections)", before
    );
    println!("{:<34} {:>8} KiB", "relay RSS after", after);
    println!("{:<34} {:>8.1} KiB", "relay RSS per connection", per_conn);
    let verdict = if per_conn <= TARGET_KIB_PER_CONN {
        "met"
    } else {
        "MISSED"
    };
    println!();
    println!(
        "target (issue 3): {} idle connections at <= {TARGET_KIB_PER_CONN:.0} KiB relay RSS each: {verdict}",
        args.conns
    );
    keepers.abort_all();
    drop(relay);
    Ok(())
}

/// Small buffers: ten thousand default 128 KiB read buffers would cost the
/// bench more than a gigabyte.
fn idle_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Holds one connection open, answering the relay's pings, until it ends.
async fn keep_alive(mut ws: Ws, alive: Arc<AtomicU64>) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Binary(raw) = msg else {
            continue;
        };
        if let Ok(Frame::Ping(nonce)) = Frame::decode(raw) {
            let Ok(pong) = Frame::Pong(nonce).encode() else {
                break;
            };
            if ws.send(Message::Binary(pong)).await.is_err() {
                break;
            }
        }
    }
    alive.fetch_sub(1, Ordering::Relaxed);
}
