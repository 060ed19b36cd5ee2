//! End-to-end encrypted request/response through the relay, as a
//! `mesh-client` user sees it: first contact (Noise handshake + first
//! request), warm sequential latency, requests/s with many in flight, and
//! latency at a fixed offered rate (open loop: requests start on a clock,
//! not when the previous one ends, so a slow answer cannot hide queueing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mesh_client::{ClientOptions, MeshClient};
use mesh_core::acl::Policy;
use mesh_core::Identity;

use crate::latency::LatencyHistogram;
use crate::server::{relay_bin, relay_command, ServerProcess};

/// `mesh-bench rpc` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sequential warm requests to time.
    #[arg(long, default_value_t = 5000)]
    samples: u64,
    /// First contacts to time (each with a fresh identity).
    #[arg(long, default_value_t = 50)]
    first_contacts: u64,
    /// Requests in flight for the closed-loop throughput run.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Offered rate for the open-loop run, requests/s.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Duration of each timed run, seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Request body size, bytes (echoed back).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The relay binary (default: next to mesh-bench).
    #[arg(long)]
    relay_bin: Option<std::path::PathBuf>,
}

fn options() -> ClientOptions {
    ClientOptions {
        acl: Policy::allow_all(),
        request_timeout_ms: 10_000,
        ..ClientOptions::default()
    }
}

fn us(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0} µs", d.as_secs_f64() * 1e6))
}

fn row(name: &str, h: &LatencyHistogram, extra: &str) {
    println!(
        "{name:<28} n={:<8} p50 {:>10}  p99 {:>10}  p99.9 {:>10}  {extra}",
        h.len(),
        us(h.quantile(0.50)),
        us(h.quantile(0.99)),
        us(h.quantile(0.999)),
    );
}

/// How an open-loop run releases its requests.
#[derive(Debug, Clone, Copy)]
enum Pacing {
    /// One request every `1 s / rate`, released by a thread of its own that
    /// sleeps until each one is due (Linux sleeps are precise to tens of
    /// µs; tokio's timer only to 1 ms).
    Uniform,
    /// `rate / 1000` requests at once on every 1 ms tick of tokio's timer: a
    /// harsher, bursty arrival pattern.
    Bursts,
}

/// Offers `rate` requests/s for `seconds` and prints their latency. Each
/// request is timed from the moment it was *due*, and the generator never
/// waits for an answer before releasing the next, so queueing anywhere
/// (including a late generator) is counted: no coordinated omission.
async fn open_loop(
    client: &MeshClient,
    peer: mesh_core::AgentId,
    body: &bytes::Bytes,
    rate: u64,
    seconds: u64,
    pacing: Pacing,
) {
    let hist = Arc::new(Mutex::new(LatencyHistogram::default()));
    let failed = Arc::new(AtomicU64::new(0));
    let total = rate * seconds;
    let fire = {
        let (client, body, hist, failed) =
            (client.clone(), body.clone(), hist.clone(), failed.clone());
        move |handle: &tokio::runtime::Handle, due: Instant| {
            let (client, body, hist, failed) =
                (client.clone(), body.clone(), hist.clone(), failed.clone());
            handle.spawn(async move {
                match client.request(peer, "echo", body).await {
                    Ok(_) => {
                        if let Ok(mut h) = hist.lock() {
                            h.record(due.elapsed().as_nanos() as u64);
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        }
    };
    let handle = tokio::runtime::Handle::current();
    let t0 = Instant::now();
    let handles = match pacing {
        Pacing::Uniform => {
            let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
            let generator = std::thread::spawn(move || {
                let mut handles = Vec::with_capacity(total as usize);
                for i in 0..total {
                    let due = t0 + interval * u32::try_from(i).unwrap_or(u32::MAX);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    handles.push(fire(&handle, due));
                }
                handles
            });
            match tokio::task::spawn_blocking(move || generator.join()).await {
                Ok(Ok(handles)) => handles,
                _ => Vec::new(),
            }
        }
        Pacing::Bursts => {
            let per_tick = (rate / 1000).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut handles = Vec::with_capacity(total as usize);
            for _ in 0..total / per_tick {
                let due = tick.tick().await.into_std();
                for _ in 0..per_tick {
                    handles.push(fire(&handle, due));
                }
            }
            handles
        }
    };
    let released = handles.len();
    for h in handles {
        let _ = h.await;
    }
    let achieved = released as f64 / t0.elapsed().as_secs_f64();
    let name = match pacing {
        Pacing::Uniform => format!("open loop {rate}/s, paced"),
        Pacing::Bursts => format!("open loop {rate}/s, 1ms bursts"),
    };
    let extra = format!(
        "achieved {achieved:.0} req/s, {} failed",
        failed.load(Ordering::Relaxed)
    );
    match hist.lock() {
        Ok(h) => row(&name, &h, &extra),
        Err(_) => println!("{name}: the histogram was poisoned"),
    };
}

/// Runs the benchmark.
pub async fn main(args: Args) -> Result<()> {
    let relay = ServerProcess::spawn(
        "relay",
        relay_command(&relay_bin(args.relay_bin.as_deref())?, &[]),
    )
    .await?;
    let url = format!("ws://{}/v1/ws", relay.addr);
    let server = MeshClient::connect(&url, Identity::generate()?, options())
        .await
        .context("connecting the echo agent")?;
    server.handle("echo", |req| async move { Ok(req.body) });
    let peer = server.agent_id();
    let body = bytes::Bytes::from(vec![0x5au8; args.size]);

    println!(
        "relay {} · body {} B · loopback, 2 cores shared by relay and clients",
        relay.addr, args.size
    );

    // First contact: a new identity each time, so every request pays the
    // connection, the relay auth and the Noise handshake.
    let mut first = LatencyHistogram::default();
    for _ in 0..args.first_contacts {
        let c = MeshClient::connect(&url, Identity::generate()?, options()).await?;
        let t = Instant::now();
        c.request(peer, "echo", body.clone())
            .await
            .context("first-contact request")?;
        first.record(t.elapsed().as_nanos() as u64);
        c.close().await;
    }
    row("first contact (handshake+req)", &first, "");

    let client = MeshClient::connect(&url, Identity::generate()?, options()).await?;
    client.request(peer, "echo", body.clone()).await?;
    let mut warm = LatencyHistogram::default();
    let started = Instant::now();
    for _ in 0..args.samples {
        let t = Instant::now();
        client.request(peer, "echo", body.clone()).await?;
        warm.record(t.elapsed().as_nanos() as u64);
    }
    let rate = args.samples as f64 / started.elapsed().as_secs_f64();
    row("warm, one at a time", &warm, &format!("{rate:.0} req/s"));

    // Closed loop: `concurrency` requests always in flight.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(LatencyHistogram::default()));
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for _ in 0..args.concurrency {
        let (client, body, done, stop, hist) = (
            client.clone(),
            body.clone(),
            done.clone(),
            stop.clone(),
            hist.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = LatencyHistogram::default();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if client.request(peer, "echo", body.clone()).await.is_ok() {
                    local.record(t.elapsed().as_nanos() as u64);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Ok(mut h) = hist.lock() {
                h.merge(&local);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let closed_rate = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    if let Ok(h) = hist.lock() {
        row(
            &format!("closed loop, {} in flight", args.concurrency),
            &h,
            &format!("{closed_rate:.0} req/s"),
        );
    }

    // Open loop at a fixed offered rate, paced two ways (see `open_loop`).
    for pacing in [Pacing::Uniform, Pacing::Bursts] {
        open_loop(&client, peer, &body, args.rate, args.seconds, pacing).await;
    }
    println!(
        "relay RSS {} KiB, relay CPU {:?}",
        relay.rss_kib()?,
        relay.cpu_time()?
    );
    client.close().await;
    server.close().await;
    Ok(())
}
