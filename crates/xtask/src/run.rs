//! `cargo xtask run`: the main job, from nothing — installs what the build
//! needs, builds the PWA and the release binaries, starts `mesh-relay`
//! (relay + registry + the PWA, SQLite in `.mesh-run/`) and a demo agent to
//! talk to, and prints the URL to open. Ctrl-C stops everything.

use std::process::{Child, Command, Stdio};

use crate::live::{build_binaries, wait_for_line};
use crate::setup::{ensure_npm_deps, ensure_rust_toolchain, ensure_wasm_bindgen};
use crate::shell::{display, output, target_dir, workspace_root, Result};
use crate::{pkg, web};

/// Where `run` keeps its database, the relay key and the demo identities.
pub const STATE_DIR: &str = ".mesh-run";
/// The default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn release_bin(name: &str) -> std::path::PathBuf {
    target_dir().join("release").join(name)
}

/// `cargo xtask run [--listen ADDR]`.
pub fn run_demo(listen: &str) -> Result<()> {
    ensure_rust_toolchain()?;
    ensure_wasm_bindgen()?;
    ensure_npm_deps(&workspace_root().join(pkg::PKG_DIR))?;
    let dist = web::build()?;
    build_binaries(true)?;

    let state = workspace_root().join(STATE_DIR);
    std::fs::create_dir_all(&state)?;
    let mut children = Children(Vec::new());

    let relay_log = state.join("relay.log");
    let mut relay = Command::new(release_bin("mesh-relay"));
    relay
        .args(["--listen", listen, "--db"])
        .arg(state.join("mesh-relay.db"))
        .arg("--web-root")
        .arg(&dist)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&relay_log)?))
        .stderr(Stdio::inherit());
    println!("{} > {}", display(&relay), relay_log.display());
    children.0.push(
        relay
            .spawn()
            .map_err(|e| format!("cannot start mesh-relay: {e}"))?,
    );
    let line = wait_for_line(
        &relay_log,
        "mesh-relay is running",
        &mut children.0[0],
        "mesh-relay",
    )?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_string)
        .ok_or_else(|| format!("cannot read the relay's URL from {line:?}"))?;
    let ws = format!(
        "ws://{}/v1/ws",
        url.trim_start_matches("http://").trim_end_matches('/')
    );

    // The demo agent: `echo` and the streaming `echo.stream`, open to anyone.
    let identity = state.join("echo-bot.identity");
    if !identity.exists() {
        let mut keygen = Command::new(release_bin("meshctl"));
        keygen.arg("--identity").arg(&identity).arg("keygen");
        output(&mut keygen)?;
    }
    let agent_log = state.join("echo-bot.log");
    let mut agent = Command::new(release_bin("meshctl"));
    agent
        .arg("--relay")
        .arg(&ws)
        .arg("--identity")
        .arg(&identity)
        .args([
            "serve",
            "--echo",
            "--allow",
            "*",
            "--publish-card",
            "--name",
            "Echo bot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&agent_log)?));
    println!("{} 2> {}", display(&agent), agent_log.display());
    children.0.push(
        agent
            .spawn()
            .map_err(|e| format!("cannot start the demo agent: {e}"))?,
    );
    wait_for_line(&agent_log, "serving ", &mut children.0[1], "the demo agent")?;

    println!();
    println!("agent-mesh is running: open {url}");
    println!("  relay + registry + PWA: {url} (WebSocket {ws}; SQLite {STATE_DIR}/mesh-relay.db)");
    println!(
        "  demo agent \"Echo bot\": capabilities echo, echo.stream (log {STATE_DIR}/echo-bot.log)"
    );
    println!("  Ctrl-C stops everything.");

    // Ctrl-C reaches every process of the terminal's group; wait for the
    // relay to end, then stop the rest.
    let status = children.0[0].wait()?;
    if !status.success() {
        return Err(format!("mesh-relay exited ({status}); see {}", relay_log.display()).into());
    }
    Ok(())
}
