//! `mesh-bench throughput`: routed frames per second, payload bandwidth and
//! one-way latency through the real relay, and through the baseline
//! forwarder carrying the same traffic.
//!
//! Traffic: `pairs` sender → receiver pairs, each on its own two
//! connections. A sender keeps up to `window` frames in flight, counted
//! until its receiver has seen them (a semaphore shared by the pair), so
//! the load is closed-loop and never outruns the server into its overflow
//! paths. Each body starts with its send time on a clock shared by the
//! whole process, so latency is sender timestamp → receiver arrival with no
//! clock skew. Through the relay, receivers `Ack` every frame and senders
//! read their `Status` frames: both are part of what routing a frame costs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use mesh_core::frame::DeliveryStatus;
use mesh_core::limits::MAX_SEALED_BODY;
use mesh_core::{AgentId, Frame, Identity};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, WsStream};
use crate::latency::LatencyHistogram;
use crate::procfs;
use crate::server::{self, ServerProcess};
use crate::wire::{self, FromRelay, BASELINE_HEADER_LEN};

/// The throughput target of issue 3: relay frames/s ≥ this share of the
/// baseline's, for 1 KiB frames.
const TARGET_SHARE: f64 = 0.50;

/// Other processes' CPU, as a share of one core, above which a run is
/// flagged as disturbed.
const DISTURBED_SHARE: f64 = 0.15;

/// Messages queued for one client socket's writer.
const WRITER_QUEUE: usize = 1024;

/// How long tasks get to wind down after the measurement.
const WIND_DOWN: Duration = Duration::from_secs(5);

/// `mesh-bench throughput`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sender → receiver pairs; each pair uses two connections.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pairs: u32,
    /// Body bytes per frame; the first 8 carry the send timestamp.
    #[arg(long, default_value_t = 1024, value_parser = parse_size)]
    size: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Seconds of traffic before measuring (connections, caches and
    /// allocators settle).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup: u64,
    /// Frames each sender keeps in flight until its receiver has seen them.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    window: u32,
    /// The relay binary [default: mesh-relay next to this executable, as
    /// built by `cargo build --release -p mesh-relay -p mesh-bench`].
    #[arg(long, value_name = "PATH")]
    relay_bin: Option<PathBuf>,
    /// Measure the baseline forwarder instead of the relay.
    #[arg(long, conflicts_with = "compare")]
    baseline: bool,
    /// Measure the baseline, then the relay, and print relay/baseline.
    #[arg(long)]
    compare: bool,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if !(8..=MAX_SEALED_BODY).contains(&n) {
        return Err(format!(
            "must be 8..={MAX_SEALED_BODY} (8 bytes of timestamp, at most the largest sealed body)"
        ));
    }
    Ok(n)
}

/// Which server carries the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The trivial forwarder (`mesh-bench forwarder`).
    Baseline,
    /// The real `mesh-relay`.
    Relay,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Baseline => "baseline",
            Target::Relay => "relay",
        }
    }
}

/// The traffic shape, shared by every run.
#[derive(Debug, Clone, Copy)]
struct Load {
    pairs: u32,
    size: usize,
    window: u32,
    warmup: Duration,
    measure: Duration,
}

/// Runs the `throughput` subcommand.
pub async fn main(args: Args) -> Result<()> {
    let load = Load {
        pairs: args.pairs,
        size: args.size,
        window: args.window,
        warmup: Duration::from_secs(args.warmup),
        measure: Duration::from_secs(args.seconds),
    };
    let targets: &[Target] = if args.compare {
        &[Target::Baseline, Target::Relay]
    } else if args.baseline {
        &[Target::Baseline]
    } else {
        &[Target::Relay]
    };
    let relay_bin = if targets.contains(&Target::Relay) {
        Some(server::relay_bin(args.relay_bin.as_deref())?)
    } else {
        None
    };
    println!(
        "mesh-bench throughput: {} pairs, {}-byte bodies, window {}, {} s warm-up + {} s measured",
        load.pairs,
        load.size,
        load.window,
        load.warmup.as_secs(),
        load.measure.as_secs()
    );
    let mut results = Vec::new();
    for &target in targets {
        let server = match (target, &relay_bin) {
            (Target::Relay, Some(bin)) => {
                ServerProcess::spawn("relay", server::relay_command(bin, &[])).await?
            }
            (Target::Relay, None) => bail!("no relay binary"),
            (Target::Baseline, _) => {
                ServerProcess::spawn("forwarder", server::forwarder_command()?).await?
            }
        };
        eprintln!("{}: pid {} on {}", target.name(), server.pid(), server.addr);
        let result = run(target, &server, load)
            .await
            .with_context(|| format!("{} run failed", target.name()))?;
        drop(server);
        results.push(result);
    }
    print_report(&results, load);
    Ok(())
}

/// What one run measured.
struct RunResult {
    target: Target,
    /// Frames that arrived during the measured window.
    frames: u64,
    /// Their body bytes.
    bytes: u64,
    /// Length of the measured window.
    measured: Duration,
    /// Wall time over which the CPU times below were taken (≈ `measured`).
    cpu_wall: Duration,
    latency: LatencyHistogram,
    server_rss_kib: u64,
    server_cpu: Duration,
    client_cpu: Duration,
    /// CPU time the rest of the machine used meanwhile (other processes,
    /// interrupts): anything much above zero means disturbed figures.
    others_cpu: Duration,
    /// Frames sent (warm-up and measurement).
    sent: u64,
    statuses: StatusCounts,
    /// Frames the receivers could not account for (wrong sender, no
    /// timestamp, undecodable) and frames of unexpected kinds.
    anomalies: u64,
}

/// Statuses and errors a relay sender saw.
#[derive(Debug, Default, Clone)]
struct StatusCounts {
    forwarded: u64,
    delivered: u64,
    queued: u64,
    refused: u64,
    errors: u64,
    first_problem: Option<String>,
}

impl StatusCounts {
    fn add(&mut self, o: &StatusCounts) {
        self.forwarded += o.forwarded;
        self.delivered += o.delivered;
        self.queued += o.queued;
        self.refused += o.refused;
        self.errors += o.errors;
        if self.first_problem.is_none() {
            self.first_problem.clone_from(&o.first_problem);
        }
    }

    fn note(&mut self, problem: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(problem());
        }
    }
}

/// Nanoseconds on a clock every task of the process shares.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ns(self) -> u64 {
        self.ns_at(Instant::now())
    }

    fn ns_at(self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.0).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The measured window, on [`Clock`].
#[derive(Debug, Clone, Copy)]
struct Window {
    start_ns: u64,
    end_ns: u64,
    /// When every task stops.
    end: tokio::time::Instant,
}

impl Window {
    fn contains(&self, ns: u64) -> bool {
        (self.start_ns..self.end_ns).contains(&ns)
    }
}

/// One end of a pair, connected.
struct Endpoint {
    id: AgentId,
    ws: client::Ws,
}

/// The client read buffer for `size`-byte bodies. tungstenite zero-fills
/// its whole read buffer before every read, so its 128 KiB default would
/// cost the load generator a 128 KiB memset per syscall (7 % of its CPU in
/// a profile); a few frames' worth reads just as many frames per syscall.
fn read_buffer_for(size: usize) -> usize {
    (4 * (size + 64)).clamp(16 * 1024, 256 * 1024)
}

async fn connect(target: Target, url: &str, size: usize) -> Result<Endpoint> {
    let identity = Identity::generate()?;
    let id = identity.agent_id();
    let config = WebSocketConfig::default().read_buffer_size(read_buffer_for(size));
    let ws = match target {
        Target::Relay => client::dial_relay(url, config, identity).await?,
        Target::Baseline => client::dial_forwarder(url, config, &id).await?,
    };
    Ok(Endpoint { id, ws })
}

async fn run(target: Target, server: &ServerProcess, load: Load) -> Result<RunResult> {
    let url = match target {
        Target::Relay => format!("ws://{}/v1/ws", server.addr),
        Target::Baseline => format!("ws://{}/", server.addr),
    };
    // Receivers first: a relay refuses frames for agents it has never seen.
    let mut receivers = Vec::new();
    for _ in 0..load.pairs {
        receivers.push(
            connect(target, &url, load.size)
                .await
                .context("connecting a receiver")?,
        );
    }
    let mut senders = Vec::new();
    for _ in 0..load.pairs {
        senders.push(
            connect(target, &url, load.size)
                .await
                .context("connecting a sender")?,
        );
    }
    if target == Target::Baseline {
        // The forwarder registers an id when it reads the announcement;
        // give it a moment so the first frames find their destination.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let clock = Clock(Instant::now());
    let start = tokio::time::Instant::now() + load.warmup;
    let end = start + load.measure;
    let window = Window {
        start_ns: clock.ns_at(start.into_std()),
        end_ns: clock.ns_at(end.into_std()),
        end,
    };

    let mut receiver_tasks = Vec::new();
    let mut sender_tasks = Vec::new();
    let mut status_tasks = Vec::new();
    let mut writer_tasks = Vec::new();
    for (receiver, sender) in receivers.into_iter().zip(senders) {
        let in_flight = Arc::new(Semaphore::new(load.window as usize));
        let (rx_out, rx_in, rx_writer) = client::spawn_writer(receiver.ws, WRITER_QUEUE);
        let (tx_out, tx_in, tx_writer) = client::spawn_writer(sender.ws, WRITER_QUEUE);
        writer_tasks.extend([rx_writer, tx_writer]);
        receiver_tasks.push(tokio::spawn(receive(
            target,
            rx_in,
            rx_out,
            sender.id,
            in_flight.clone(),
            clock,
            window,
        )));
        status_tasks.push(tokio::spawn(read_statuses(
            tx_in,
            tx_out.clone(),
            in_flight.clone(),
            window.end,
        )));
        sender_tasks.push(tokio::spawn(send(
            target,
            tx_out,
            receiver.id,
            in_flight,
            clock,
            load.size,
            window.end,
        )));
    }

    tokio::time::sleep_until(start).await;
    let server_cpu0 = server.cpu_time()?;
    let client_cpu0 = procfs::cpu_time("self")?;
    let machine0 = procfs::machine_busy()?;
    let cpu_from = Instant::now();
    tokio::time::sleep_until(end).await;
    let cpu_wall = cpu_from.elapsed();
    let server_cpu = server.cpu_time()?.saturating_sub(server_cpu0);
    let client_cpu = procfs::cpu_time("self")?.saturating_sub(client_cpu0);
    let others_cpu = procfs::machine_busy()?
        .saturating_sub(machine0)
        .saturating_sub(server_cpu + client_cpu);
    let server_rss_kib = server.rss_kib()?;

    let mut latency = LatencyHistogram::default();
    let (mut frames, mut bytes, mut anomalies) = (0, 0, 0);
    for r in join_all(receiver_tasks, "receiver").await? {
        let r = r?;
        frames += r.frames;
        bytes += r.bytes;
        anomalies += r.anomalies;
        latency.merge(&r.latency);
    }
    let mut sent = 0;
    for s in join_all(sender_tasks, "sender").await? {
        sent += s?;
    }
    let mut statuses = StatusCounts::default();
    for s in join_all(status_tasks, "status reader").await? {
        statuses.add(&s?);
    }
    for w in writer_tasks {
        w.abort();
    }
    if frames == 0 {
        bail!(
            "no frame arrived during the measurement ({} sent; first problem: {})",
            sent,
            statuses.first_problem.as_deref().unwrap_or("none reported")
        );
    }
    Ok(RunResult {
        target,
        frames,
        bytes,
        measured: Duration::from_nanos(window.end_ns - window.start_ns),
        cpu_wall,
        latency,
        server_rss_kib,
        server_cpu,
        client_cpu,
        others_cpu,
        sent,
        statuses,
        anomalies,
    })
}

/// Waits for tasks that stop at the end of the window on their own; any
/// still running after [`WIND_DOWN`] is a bug worth reporting.
async fn join_all<T>(tasks: Vec<JoinHandle<T>>, what: &str) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        match tokio::time::timeout(WIND_DOWN, task).await {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => return Err(anyhow!("a {what} task failed: {e}")),
            Err(_) => bail!("a {what} task did not stop after the measurement"),
        }
    }
    Ok(out)
}

/// The sending half of a pair: one frame per free slot in the window.
async fn send(
    target: Target,
    out: mpsc::Sender<Message>,
    to: AgentId,
    in_flight: Arc<Semaphore>,
    clock: Clock,
    size: usize,
    end: tokio::time::Instant,
) -> Result<u64> {
    let mut msg_id = 0u64;
    loop {
        match tokio::time::timeout_at(end, in_flight.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(_)) | Err(_) => return Ok(msg_id),
        }
        msg_id += 1;
        let body = wire::timed_body(clock.now_ns(), size);
        let frame = match target {
            Target::Relay => wire::send(to, msg_id, body)?,
            Target::Baseline => wire::baseline(&to, &body),
        };
        match tokio::time::timeout_at(end, out.send(Message::Binary(frame))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => bail!("sender connection closed"),
            Err(_) => return Ok(msg_id),
        }
    }
}

/// What a receiver measured.
struct ReceiverStats {
    frames: u64,
    bytes: u64,
    anomalies: u64,
    latency: LatencyHistogram,
}

/// The receiving half of a pair: timestamps every arrival, frees a window
/// slot, and (through the relay) acknowledges the frame.
async fn receive(
    target: Target,
    mut stream: WsStream,
    out: mpsc::Sender<Message>,
    from: AgentId,
    in_flight: Arc<Semaphore>,
    clock: Clock,
    window: Window,
) -> Result<ReceiverStats> {
    let mut stats = ReceiverStats {
        frames: 0,
        bytes: 0,
        anomalies: 0,
        latency: LatencyHistogram::default(),
    };
    loop {
        let raw = match tokio::time::timeout_at(window.end, stream.next()).await {
            Err(_) => return Ok(stats),
            Ok(Some(Ok(Message::Binary(b)))) => b,
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) => bail!("receiver connection closed"),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e).context("receiver connection failed"),
        };
        let arrived = clock.now_ns();
        let (body, ack) = match target {
            Target::Baseline => (raw.slice(BASELINE_HEADER_LEN.min(raw.len())..), None),
            Target::Relay => match wire::from_relay(raw) {
                Ok(FromRelay::Deliver { peer, msg_id, body }) if peer == *from.as_bytes() => {
                    (body, Some(Frame::Ack { peer: from, msg_id }))
                }
                Ok(FromRelay::Other(Frame::Ping(nonce))) => {
                    let pong = Frame::Pong(nonce).encode()?;
                    let _ = out.send(Message::Binary(pong)).await;
                    continue;
                }
                _ => {
                    stats.anomalies += 1;
                    continue;
                }
            },
        };
        let Some(sent) = wire::sent_ns(&body) else {
            stats.anomalies += 1;
            continue;
        };
        in_flight.add_permits(1);
        if window.contains(arrived) {
            stats.frames += 1;
            stats.bytes += body.len() as u64;
            stats.latency.record(arrived.saturating_sub(sent));
        }
        if let Some(ack) = ack {
            if out.send(Message::Binary(ack.encode()?)).await.is_err() {
                bail!("receiver connection closed");
            }
        }
    }
}

/// Reads what the server sends to a sender: through the relay, a `Status`
/// per state change of every frame (which must be read, or the relay's
/// queue for this connection fills), errors, and pings to answer. A frame
/// the relay refuses never reaches the receiver, so its window slot is
/// given back here.
async fn read_statuses(
    mut stream: WsStream,
    out: mpsc::Sender<Message>,
    in_flight: Arc<Semaphore>,
    end: tokio::time::Instant,
) -> Result<StatusCounts> {
    let mut counts = StatusCounts::default();
    loop {
        let raw = match tokio::time::timeout_at(end, stream.next()).await {
            Err(_) => return Ok(counts),
            Ok(Some(Ok(Message::Binary(b)))) => b,
            Ok(Some(Ok(Message::Close(c)))) => {
                bail!("sender connection closed by the server: {c:?}")
            }
            Ok(None) => bail!("sender connection closed by the server"),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e).context("sender connection failed"),
        };
        match wire::from_relay(raw) {
            Ok(FromRelay::Forwarded) => counts.forwarded += 1,
            Ok(FromRelay::Delivered) => counts.delivered += 1,
            Ok(FromRelay::Other(Frame::Status { status, .. })) => match status {
                DeliveryStatus::Forwarded => counts.forwarded += 1,
                DeliveryStatus::Delivered => counts.delivered += 1,
                DeliveryStatus::Queued => counts.queued += 1,
                DeliveryStatus::Refused(code) => {
                    counts.refused += 1;
                    counts.note(|| format!("frame refused: {code}"));
                    in_flight.add_permits(1);
                }
            },
            Ok(FromRelay::Other(Frame::Ping(nonce))) => {
                let _ = out
                    .send(Message::Binary(Frame::Pong(nonce).encode()?))
                    .await;
            }
            Ok(FromRelay::Other(Frame::Error(e))) => {
                counts.errors += 1;
                counts.note(|| format!("error from the relay: {}: {}", e.code, e.message));
                if e.ref_msg_id != 0 {
                    // A refused frame (e.g. rate_limited) was not routed.
                    in_flight.add_permits(1);
                }
            }
            Ok(other) => {
                counts.errors += 1;
                counts.note(|| format!("unexpected frame for a sender: {other:?}"));
            }
            Err(e) => {
                counts.errors += 1;
                counts.note(|| format!("undecodable frame for a sender: {e}"));
            }
        }
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Formats a latency with a unit that keeps three significant figures.
fn fmt_latency(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d < Duration::from_micros(1) => format!("{} ns", d.as_nanos()),
        Some(d) if d < Duration::from_millis(1) => format!("{:.1} µs", d.as_secs_f64() * 1e6),
        Some(d) if d < Duration::from_secs(1) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
    }
}

fn print_report(results: &[RunResult], load: Load) {
    println!();
    println!(
        "{:<9} {:>11} {:>9} {:>10} {:>10} {:>10} {:>11} {:>9} {:>9} {:>9} {:>10}",
        "target",
        "frames/s",
        "MiB/s",
        "p50",
        "p99",
        "p99.9",
        "server RSS",
        "srv CPU",
        "bench CPU",
        "others",
        "srv µs/fr"
    );
    for r in results {
        let secs = r.cpu_wall.as_secs_f64().max(f64::MIN_POSITIVE);
        println!(
            "{:<9} {:>11.0} {:>9.1} {:>10} {:>10} {:>10} {:>7.1} MiB {:>8.0}% {:>8.0}% {:>8.0}% {:>10.2}",
            r.target.name(),
            per_sec(r.frames, r.measured),
            per_sec(r.bytes, r.measured) / (1024.0 * 1024.0),
            fmt_latency(r.latency.quantile(0.50)),
            fmt_latency(r.latency.quantile(0.99)),
            fmt_latency(r.latency.quantile(0.999)),
            r.server_rss_kib as f64 / 1024.0,
            r.server_cpu.as_secs_f64() / secs * 100.0,
            r.client_cpu.as_secs_f64() / secs * 100.0,
            r.others_cpu.as_secs_f64() / secs * 100.0,
            r.server_cpu.as_secs_f64() * 1e6 / r.frames as f64,
        );
    }
    let disturbed: Vec<&str> = results
        .iter()
        .filter(|r| r.others_cpu.as_secs_f64() > DISTURBED_SHARE * r.cpu_wall.as_secs_f64())
        .map(|r| r.target.name())
        .collect();
    println!();
    println!(
        "frames/s and MiB/s count frames received in the measured window; latency is one-way \
         (send timestamp -> receiver arrival, {} samples max); CPU % is of one core (others: \
         every other process on the machine); srv µs/fr is server CPU time per routed frame; \
         RSS is at the end of the run.",
        results.iter().map(|r| r.latency.len()).max().unwrap_or(0)
    );
    if !disturbed.is_empty() {
        println!(
            "WARNING: other processes used more than {:.0} % of a core during the {} run(s): \
             these figures are disturbed; rerun on a quiet machine.",
            DISTURBED_SHARE * 100.0,
            disturbed.join(" and ")
        );
    }
    for r in results {
        let s = &r.statuses;
        if r.target == Target::Relay {
            println!(
                "relay statuses: {} forwarded, {} delivered, {} queued, {} refused, {} errors ({} frames sent)",
                s.forwarded, s.delivered, s.queued, s.refused, s.errors, r.sent
            );
        }
        if r.anomalies > 0 || s.first_problem.is_some() {
            println!(
                "{}: {} unexpected frames; first problem: {}",
                r.target.name(),
                r.anomalies,
                s.first_problem.as_deref().unwrap_or("-")
            );
        }
    }
    let base = results.iter().find(|r| r.target == Target::Baseline);
    let relay = results.iter().find(|r| r.target == Target::Relay);
    if let (Some(base), Some(relay)) = (base, relay) {
        let share = per_sec(relay.frames, relay.measured) / per_sec(base.frames, base.measured);
        println!();
        println!("relay/baseline = {:.1} %", share * 100.0);
        if load.size == 1024 {
            let verdict = if share >= TARGET_SHARE {
                "met"
            } else {
                "MISSED"
            };
            println!(
                "target (issue 3): relay >= {:.0} % of baseline for 1 KiB frames: {verdict}",
                TARGET_SHARE * 100.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_must_hold_a_timestamp_and_fit_a_frame() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("7").is_err());
        assert!(parse_size(&MAX_SEALED_BODY.to_string()).is_ok());
        assert!(parse_size(&(MAX_SEALED_BODY + 1).to_string()).is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn latencies_read_well() {
        assert_eq!(fmt_latency(None), "-");
        assert_eq!(fmt_latency(Some(Duration::from_nanos(500))), "500 ns");
        assert_eq!(fmt_latency(Some(Duration::from_nanos(81_234))), "81.2 µs");
        assert_eq!(fmt_latency(Some(Duration::from_micros(2_346))), "2.35 ms");
    }
}
