//! `meshctl serve`: run as an agent answering requests, either by echoing
//! them or by forwarding each to a local HTTP service.
//!
//! Access is default-deny like everywhere in agent-mesh: `serve` refuses to
//! start until the operator says who may call (`--allow`, or a policy file
//! with `--acl`), rather than quietly serving everyone.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use mesh_client::{acl_file, ConnectionState, HandlerError, IncomingRequest, MeshClient};
use mesh_core::acl::{validate_capability, CapabilityPattern, Policy, Rule, Source};
use mesh_core::card::{is_valid_skill_id, AgentCard, Skill};
use mesh_core::limits::MAX_APP_BODY;
use mesh_core::limits::MAX_SKILL_TAG_LEN;
use mesh_core::AgentId;
use serde_json::{json, Value};

use crate::cli::ServeArgs;
use crate::commands::cards::sign_and_publish;
use crate::{close, shutdown_signal, Ctx};

/// The streaming capability `--echo` serves besides its unary ones.
pub const ECHO_STREAM: &str = "echo.stream";
/// Pause between the words `echo.stream` sends, so it visibly streams.
const WORD_INTERVAL: Duration = Duration::from_millis(50);
/// How often the `--acl` file is checked for changes.
const ACL_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How much of a failing backend's body goes into the error message.
const BACKEND_ERROR_CHARS: usize = 200;

/// `meshctl serve`.
pub async fn serve(ctx: &Ctx, args: &ServeArgs) -> anyhow::Result<()> {
    init_logs();
    let capabilities = served_capabilities(args)?;
    let (policy, allowed) = initial_policy(args, &capabilities)?;
    let backend = match &args.forward {
        Some(url) => Some(Backend::new(url, ctx.timeout())?),
        None => None,
    };
    let client = ctx.connect(ctx.identity()?, policy).await?;
    if let Some(path) = &args.acl {
        acl_file::watch(&client, path, ACL_RELOAD_INTERVAL)?;
    }
    register(&client, args, &capabilities, backend);
    if args.publish_card {
        let seq = publish_card(ctx, &client, args, &capabilities).await;
        match seq {
            Ok(seq) => eprintln!("published our card (seq {seq})"),
            Err(e) => {
                close(&client).await;
                return Err(e);
            }
        }
    }
    eprintln!(
        "serving {} as {} ({}) via {}; allowed: {allowed}; Ctrl-C to stop",
        capabilities.join(", "),
        client.agent_id(),
        client.agent_id().short(),
        ctx.relay,
    );
    let outcome = run_until_stopped(&client).await;
    close(&client).await;
    outcome
}

/// Logs go to stderr; by default only ACL reloads and warnings
/// (`RUST_LOG` overrides).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,mesh_client::acl_file=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The capabilities to register, checked and without duplicates.
fn served_capabilities(args: &ServeArgs) -> anyhow::Result<Vec<String>> {
    let mut caps: Vec<String> = Vec::new();
    for c in &args.capabilities {
        if c == "*" {
            bail!(
                "--capability '*' cannot be served: handlers are registered per capability \
                 name, so list each one (e.g. --capability summarize --capability translate)"
            );
        }
        validate_capability(c).with_context(|| format!("invalid --capability {c:?}"))?;
        if !caps.contains(c) {
            caps.push(c.clone());
        }
    }
    if args.forward.is_some() && caps.is_empty() {
        bail!(
            "--forward needs at least one --capability NAME: handlers are registered per \
             capability name, so list each capability to forward (e.g. --capability summarize)"
        );
    }
    if args.echo {
        if caps.is_empty() {
            caps.push("echo".into());
        }
        if !caps.iter().any(|c| c == ECHO_STREAM) {
            caps.push(ECHO_STREAM.into());
        }
    }
    Ok(caps)
}

/// The policy to start with, and how to describe it in the banner.
fn initial_policy(args: &ServeArgs, capabilities: &[String]) -> anyhow::Result<(Policy, String)> {
    if let Some(path) = &args.acl {
        let policy = acl_file::load(path)?;
        let text = format!(
            "per {} ({} rules, reloaded on change)",
            path.display(),
            policy.rules.len()
        );
        return Ok((policy, text));
    }
    if args.allow.is_empty() {
        bail!(
            "no access rules: requests are denied by default, so serving now would answer no \
             one. Allow callers with --allow DID (repeatable) or --allow '*' for anyone, or \
             give an ACL policy file with --acl FILE"
        );
    }
    Ok((
        allow_policy(&args.allow, capabilities),
        describe_sources(&args.allow),
    ))
}

/// A policy letting each of `sources` call each of `capabilities`.
pub fn allow_policy(sources: &[Source], capabilities: &[String]) -> Policy {
    let patterns: Vec<CapabilityPattern> = capabilities
        .iter()
        .map(|c| CapabilityPattern::Exact(c.clone()))
        .collect();
    Policy {
        rules: sources
            .iter()
            .map(|s| Rule::allow(*s, patterns.clone()))
            .collect(),
    }
}

fn describe_sources(sources: &[Source]) -> String {
    sources
        .iter()
        .map(|s| match s {
            Source::Any => "anyone".to_string(),
            Source::Agent(a) => a.short(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serves until a signal, or until the client can no longer serve.
async fn run_until_stopped(client: &MeshClient) -> anyhow::Result<()> {
    let mut states = client.state_changes();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut was_offline = false;
    loop {
        let state = tokio::select! {
            signal = &mut stop => {
                eprintln!("stopping ({signal})");
                return Ok(());
            }
            state = states.next() => state,
        };
        match state {
            Some(ConnectionState::Offline) if !was_offline => {
                was_offline = true;
                eprintln!("lost the relay; reconnecting…");
            }
            Some(ConnectionState::Online) if was_offline => {
                was_offline = false;
                eprintln!("back online");
            }
            Some(ConnectionState::Revoked) => bail!("our key has been revoked"),
            Some(ConnectionState::Closed(reason)) => bail!("connection closed: {reason}"),
            None => bail!("connection closed"),
            Some(_) => {}
        }
    }
}

fn register(
    client: &MeshClient,
    args: &ServeArgs,
    capabilities: &[String],
    backend: Option<Backend>,
) {
    match backend {
        Some(backend) => {
            for cap in capabilities {
                let backend = backend.clone();
                serve_logged(client, cap, move |req| {
                    let backend = backend.clone();
                    async move { backend.forward(&req).await }
                });
            }
        }
        None => {
            for cap in capabilities.iter().filter(|c| *c != ECHO_STREAM) {
                serve_logged(client, cap, |req| async move { Ok(req.body) });
            }
            if args.echo {
                client.handle_stream(ECHO_STREAM, |req, mut sink| async move {
                    let started = Instant::now();
                    let text = String::from_utf8_lossy(&req.body).into_owned();
                    let mut outcome = Ok(());
                    for (i, word) in text.split_whitespace().enumerate() {
                        if i > 0 {
                            tokio::select! {
                                _ = req.cancelled() => { outcome = Err("cancelled"); break; }
                                _ = tokio::time::sleep(WORD_INTERVAL) => {}
                            }
                        }
                        if sink.send(word.to_owned()).await.is_err() {
                            outcome = Err("cancelled");
                            break;
                        }
                    }
                    let result = match outcome {
                        Ok(()) => format!("ok, {} chunks", sink.sent()),
                        Err(why) => format!("{why} after {} chunks", sink.sent()),
                    };
                    log_request(req.from, &req.capability, req.body.len(), started, &result);
                    Ok(())
                });
            }
        }
    }
}

/// Registers `handler` for `capability`, logging every request it answers.
fn serve_logged<F, Fut>(client: &MeshClient, capability: &str, handler: F)
where
    F: Fn(IncomingRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
{
    client.handle(capability, move |req| {
        let started = Instant::now();
        let (from, capability, size) = (req.from, req.capability.clone(), req.body.len());
        let cancel_watch = req.clone();
        let answer = handler(req);
        async move {
            let out = tokio::select! {
                out = answer => out,
                _ = cancel_watch.cancelled() => Err(HandlerError::failed("cancelled")),
            };
            let result = match &out {
                Ok(body) => format!("ok, {} B", body.len()),
                Err(e) => format!("error: {}", e.message),
            };
            log_request(from, &capability, size, started, &result);
            out
        }
    });
}

fn log_request(from: AgentId, capability: &str, size: usize, started: Instant, result: &str) {
    eprintln!(
        "{} {capability} {size} B -> {result} ({} ms)",
        from.short(),
        started.elapsed().as_millis()
    );
}

async fn publish_card(
    ctx: &Ctx,
    client: &MeshClient,
    args: &ServeArgs,
    capabilities: &[String],
) -> anyhow::Result<u64> {
    let (default_name, description) = if args.echo {
        ("meshctl echo", "Answers every request with its own body.")
    } else {
        ("meshctl forward", "Forwards requests to an HTTP service.")
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name.to_string());
    let mut builder = AgentCard::builder(client.agent_id(), &ctx.relay, name)
        .description(description)
        .streaming(args.echo);
    for cap in capabilities {
        // Capability names may hold ':' and '/' and run to 128 bytes; skill
        // ids may not. Such a capability is still served, just not listed.
        if is_valid_skill_id(cap) {
            builder = builder.skill(Skill::new(cap.clone(), cap.clone(), ""));
        } else {
            eprintln!(
                "warning: {cap} is not a valid skill id (at most {MAX_SKILL_TAG_LEN} of A-Z a-z 0-9 . _ -); served, but left off the card"
            );
        }
    }
    sign_and_publish(ctx, client.identity(), builder).await
}

/// The HTTP service `--forward` sends requests to.
#[derive(Clone)]
struct Backend {
    url: reqwest::Url,
    http: reqwest::Client,
}

impl Backend {
    fn new(url: &str, timeout: Duration) -> anyhow::Result<Backend> {
        let parsed =
            reqwest::Url::parse(url).with_context(|| format!("invalid --forward URL {url:?}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("invalid --forward URL {url:?}: expected http:// or https://");
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Backend { url: parsed, http })
    }

    /// POSTs the request as JSON and returns the response body verbatim.
    async fn forward(&self, req: &IncomingRequest) -> Result<Bytes, HandlerError> {
        let body = serde_json::from_slice::<Value>(&req.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
        let payload = json!({
            "from": req.from.to_did(),
            "capability": req.capability,
            "body": body,
        });
        let mut resp = self
            .http
            .post(self.url.clone())
            .header("content-type", "application/json")
            .body(payload.to_string())
            .send()
            .await
            .map_err(|e| backend_error(&e))?;
        let status = resp.status();
        let mut answer = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| backend_error(&e))? {
            if answer.len() + chunk.len() > MAX_APP_BODY {
                if status.as_u16() >= 400 {
                    break;
                }
                return Err(HandlerError::failed(format!(
                    "backend response is larger than the {MAX_APP_BODY}-byte limit"
                )));
            }
            answer.extend_from_slice(&chunk);
        }
        if status.as_u16() >= 400 {
            let text: String = String::from_utf8_lossy(&answer)
                .chars()
                .take(BACKEND_ERROR_CHARS)
                .collect();
            return Err(HandlerError::failed(format!(
                "backend returned HTTP {}: {text}",
                status.as_u16()
            )));
        }
        Ok(answer.freeze())
    }
}

fn backend_error(e: &reqwest::Error) -> HandlerError {
    if e.is_connect() {
        HandlerError::failed("backend unreachable")
    } else if e.is_timeout() {
        HandlerError::failed("backend timed out")
    } else {
        HandlerError::failed(format!("backend request failed: {e}"))
    }
}
