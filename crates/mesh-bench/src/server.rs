//! The server under measurement, run as a child process so that its memory
//! and CPU time are its own: the real `mesh-relay` binary, or this binary's
//! `forwarder` subcommand. Both announce their address on the first line of
//! stdout (`… http://ADDR/`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::procfs;

/// How long a server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Relay flags that lift every rate limit out of the way: the bench
/// measures routing cost, not the limiter's policy.
const UNTHROTTLED: [&str; 12] = [
    "--rate-frames-per-sec",
    "10000000",
    "--rate-frames-burst",
    "10000000",
    "--rate-bytes-per-sec",
    "4000000000",
    "--rate-bytes-burst",
    "4000000000",
    "--conn-per-ip-per-sec",
    "100000",
    "--conn-per-ip-burst",
    "100000",
];

/// Where the relay binary is unless `--relay-bin` says otherwise:
/// `cargo build --release -p mesh-relay -p mesh-bench` puts it next to us.
pub fn relay_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    let bin = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating the mesh-bench executable")?
            .with_file_name("mesh-relay"),
    };
    if !bin.is_file() {
        bail!(
            "relay binary {} not found: build it with `cargo build --release -p mesh-relay -p mesh-bench` \
             or pass --relay-bin PATH",
            bin.display()
        );
    }
    Ok(bin)
}

/// The relay on a free loopback port with in-memory storage, quiet logs,
/// no rate limits, and `extra` flags.
pub fn relay_command(bin: &Path, extra: &[String]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--db",
        ":memory:",
        "--log",
        "warn",
    ])
    .args(UNTHROTTLED)
    .args(extra);
    cmd
}

/// This executable's `forwarder` subcommand on a free loopback port.
pub fn forwarder_command() -> Result<Command> {
    let exe = std::env::current_exe().context("locating the mesh-bench executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["forwarder", "--listen", "127.0.0.1:0"]);
    Ok(cmd)
}

/// A running server process; killed when dropped.
pub struct ServerProcess {
    name: &'static str,
    child: Child,
    pid: String,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `cmd` and waits for its address line. Later stdout lines are
    /// copied to our stderr, prefixed with `name`, so the pipe never fills.
    pub async fn spawn(name: &'static str, mut cmd: Command) -> Result<ServerProcess> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = first_tx.send(first);
            }
            for line in lines.map_while(Result::ok) {
                eprintln!("[{name}] {line}");
            }
        });
        let pid = child.id().to_string();
        // Build the guard first so that every early return kills the child.
        let mut server = ServerProcess {
            name,
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let first = match tokio::time::timeout(STARTUP_TIMEOUT, first_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => {
                let status = server.child.try_wait().ok().flatten();
                bail!("{name} exited before announcing its address (status: {status:?})");
            }
            Err(_) => bail!("{name} did not announce its address within {STARTUP_TIMEOUT:?}"),
        };
        server.addr = parse_announced_addr(&first)
            .ok_or_else(|| anyhow!("{name} printed {first:?}, expected '… http://ADDR/'"))?;
        Ok(server)
    }

    /// The process id, as `/proc` names it.
    pub fn pid(&self) -> &str {
        &self.pid
    }

    /// Its resident memory in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        procfs::rss_kib(&self.pid).with_context(|| format!("{} memory", self.name))
    }

    /// CPU time it has used so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        procfs::cpu_time(&self.pid).with_context(|| format!("{} CPU time", self.name))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `ADDR` out of `… http://ADDR/`.
fn parse_announced_addr(line: &str) -> Option<SocketAddr> {
    let after = &line[line.find("http://")? + "http://".len()..];
    after.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_from_the_first_line() {
        assert_eq!(
            parse_announced_addr("mesh-relay is running: open http://127.0.0.1:40123/"),
            Some(SocketAddr::from(([127, 0, 0, 1], 40123)))
        );
        assert_eq!(
            parse_announced_addr("mesh-bench forwarder is running: open http://[::1]:9/"),
            "[::1]:9".parse().ok()
        );
        assert_eq!(parse_announced_addr("listening"), None);
        assert_eq!(parse_announced_addr("open http://nonsense/"), None);
    }
}
