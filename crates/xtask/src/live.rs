//! The live services the runtime suites talk to: a real `mesh-relay` on
//! 127.0.0.1 (an ephemeral port, a fresh SQLite file) and a real native
//! agent, `meshctl serve --echo`, with a fresh identity. Started once, on
//! first use, for every suite of a `cargo xtask test` run, and stopped at
//! its end (or when xtask exits).
//!
//! The suites learn where they are from the environment:
//!
//! | variable | value |
//! |---|---|
//! | `MESH_TEST_RELAY_URL` | `ws://127.0.0.1:PORT/v1/ws` |
//! | `MESH_TEST_HTTP_URL` | `http://127.0.0.1:PORT` |
//! | `MESH_TEST_ECHO_AGENT` | the echo agent's `did:key` |
//! | `MESH_TEST_AGENT_LOG` | the echo agent's log file (it logs each request's outcome) |

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::shell::{cargo, display, output, run, target_dir, Result};

/// How long the relay and the agent may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

static LIVE: Mutex<Option<Live>> = Mutex::new(None);

/// The running relay and agent.
pub struct Live {
    dir: PathBuf,
    relay: Child,
    agent: Child,
    /// `(name, value)` pairs for the suites' environment.
    pub env: Vec<(String, String)>,
}

impl Drop for Live {
    fn drop(&mut self) {
        for child in [&mut self.agent, &mut self.relay] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The environment of the live services, starting them on first use.
pub fn env() -> Result<Vec<(String, String)>> {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if live.is_none() {
        *live = Some(start()?);
    }
    match live.as_mut() {
        Some(l) => {
            l.check_running()?;
            Ok(l.env.clone())
        }
        None => Err("the live services did not start".into()),
    }
}

/// Stops the services if they run (their logs stay in `target/live`).
pub fn stop() {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = live.take() {
        println!(
            "stopping the live relay and agent (logs in {})",
            l.dir.display()
        );
    }
}

impl Live {
    fn check_running(&mut self) -> Result<()> {
        for (name, child) in [("relay", &mut self.relay), ("echo agent", &mut self.agent)] {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the live {name} exited ({status}); see its log in {}",
                    self.dir.display()
                )
                .into());
            }
        }
        Ok(())
    }
}

/// Builds `mesh-relay` and `meshctl` into `target/release` (`release`) or
/// `target/debug`. The debug ones come from `cargo test --workspace
/// --no-run`: cargo builds a package's binaries for its integration tests,
/// with the features the test step resolved for the whole workspace, so
/// after that step nothing is compiled again. (`cargo build -p mesh-relay -p
/// meshctl` resolves features for two packages only and would rebuild some
/// 35 crates, 400 MiB of them.)
pub fn build_binaries(release: bool) -> Result<()> {
    if release {
        run(&mut cargo(&[
            "build",
            "-j2",
            "--release",
            "-p",
            "mesh-relay",
            "-p",
            "meshctl",
        ]))
    } else {
        run(&mut cargo(&[
            "test",
            "--workspace",
            "--no-run",
            "-j2",
            "--quiet",
        ]))
    }
}

fn bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// Waits until `log` contains a line with `marker`; returns that line.
pub fn wait_for_line(log: &Path, marker: &str, child: &mut Child, what: &str) -> Result<String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(marker)) {
            return Ok(line.to_string());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited ({status}) before it was ready:\n{text}").into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} was not ready after {}s (no `{marker}` in {}):\n{text}",
                START_TIMEOUT.as_secs(),
                log.display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(mut cmd: Command, log: &Path) -> Result<Child> {
    let out = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out.try_clone()?;
    println!("{} > {}", display(&cmd), log.display());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", display(&cmd)).into())
}

fn start() -> Result<Live> {
    build_binaries(false)?;
    let dir = target_dir()
        .join("live")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let relay_log = dir.join("relay.log");
    let mut relay_cmd = Command::new(bin("mesh-relay"));
    relay_cmd
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("relay.db"))
        .env("RUST_LOG", "warn");
    let mut relay = spawn(relay_cmd, &relay_log)?;
    let line = wait_for_line(
        &relay_log,
        "mesh-relay is running",
        &mut relay,
        "mesh-relay",
    )?;
    let http = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches('/').to_string())
        .ok_or_else(|| format!("cannot read the relay's address from {line:?}"))?;
    let ws = format!("ws://{}/v1/ws", http.trim_start_matches("http://"));

    let identity = dir.join("echo.identity");
    let mut keygen = Command::new(bin("meshctl"));
    keygen.arg("--identity").arg(&identity).arg("keygen");
    let did = output(&mut keygen)?
        .lines()
        .next()
        .map(str::trim)
        .filter(|l| l.starts_with("did:key:"))
        .map(str::to_string)
        .ok_or("`meshctl keygen` printed no agent id")?;

    let agent_log = dir.join("echo-agent.log");
    let mut agent_cmd = Command::new(bin("meshctl"));
    agent_cmd
        .arg("--relay")
        .arg(&ws)
        .arg("--identity")
        .arg(&identity)
        .args(["serve", "--echo", "--allow", "*", "--publish-card"])
        .env("RUST_LOG", "info");
    let agent = spawn(agent_cmd, &agent_log)?;
    let mut live = Live {
        dir: dir.clone(),
        relay,
        agent,
        env: vec![
            ("MESH_TEST_RELAY_URL".into(), ws),
            ("MESH_TEST_HTTP_URL".into(), http),
            ("MESH_TEST_ECHO_AGENT".into(), did),
            (
                "MESH_TEST_AGENT_LOG".into(),
                agent_log.display().to_string(),
            ),
        ],
    };
    wait_for_line(
        &agent_log,
        "serving ",
        &mut live.agent,
        "meshctl serve --echo",
    )?;
    for (k, v) in &live.env {
        println!("{k}={v}");
    }
    Ok(live)
}
