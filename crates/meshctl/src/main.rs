//! `meshctl` binary: parse the command line, run it, and report a failure
//! as one line on stderr (`error: <what>: <cause>`) with a non-zero exit.

use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use meshctl::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // reqwest is built without a default TLS provider; choose ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    let outcome = runtime.block_on(meshctl::run(cli));
    runtime.shutdown_timeout(Duration::from_millis(500));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

fn report(e: anyhow::Error) -> ExitCode {
    if let Some(meshctl::Exit(code)) = e.downcast_ref::<meshctl::Exit>() {
        return ExitCode::from(*code);
    }
    // A reader that went away (`meshctl listen | head -1`) is not a failure.
    let broken_pipe = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let text = format!("{e:#}").replace(['\r', '\n'], " ");
    eprintln!("error: {text}");
    ExitCode::FAILURE
}

/// Help and version go out as clap prints them; a usage mistake becomes
/// one `error:` line (clap's explanation without its usage block), like
/// every other failure.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let rendered = e.render().to_string();
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    eprintln!("error: {} (see --help)", parts.join(" "));
    ExitCode::from(2)
}
