//! `mesh-relay` binary: parse the configuration, start logging, serve until
//! SIGTERM or Ctrl-C, then shut down gracefully.

use anyhow::Context;
use clap::Parser;
use mesh_relay::config::{Cli, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_cli(Cli::parse()).context("invalid configuration")?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log).context("invalid --log filter")?,
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    mesh_relay::server::run(config, mesh_relay::server::shutdown_signal())
        .await
        .context("relay failed")
}
