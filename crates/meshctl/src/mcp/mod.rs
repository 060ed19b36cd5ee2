//! `meshctl mcp`: an MCP server (Model Context Protocol, through the
//! official Rust SDK, `rmcp`) that puts mesh agents in front of an AI
//! assistant as tools, and, with `--receive`, lets other agents ask the
//! assistant something.
//!
//! One mesh connection serves every MCP session: over stdio there is one,
//! over streamable HTTP there may be several. The pieces:
//!
//! - [`catalog`]: which agents and skills, read from the registry; refreshed
//!   every [`REFRESH_INTERVAL`] and published on a `watch` channel, so that
//!   each session is told when its tool list changed;
//! - [`naming`]: how a skill becomes a tool name;
//! - [`server`]: the `rmcp` handler — `tools/list`, `tools/call` and the
//!   built-in `mesh__*` tools;
//! - [`inbox`]: inbound requests waiting for the assistant.

pub mod catalog;
pub mod inbox;
pub mod naming;
pub mod server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::Router;
use futures::StreamExt;
use mesh_client::registry::RegistryClient;
use mesh_client::{MeshClient, MessageEvent};
use mesh_core::acl::{validate_capability, CapabilityPattern, Policy, Rule, CHAT_CAPABILITY};
use rmcp::service::RoleServer;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{Peer, ServiceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::McpArgs;
use crate::local_http::{self, BearerToken};
use crate::{close, connection_lost, shutdown_signal, Ctx};
use catalog::{Catalog, Selection};
use inbox::Inbox;

/// How often the registry is read again for cards and presence.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// The capability `--receive` accepts when no `--serve` is given.
pub const DEFAULT_SERVED: &str = "ask";
/// How long open HTTP connections may take to finish once we stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The path of the MCP endpoint under `--listen`.
pub const MCP_PATH: &str = "/mcp";

/// What every MCP session shares: the mesh connection, the catalog, the
/// inbox.
pub struct Bridge {
    /// Our mesh connection.
    pub client: MeshClient,
    /// The relay's registry.
    pub registry: RegistryClient,
    /// Which agents and skills to offer.
    pub selection: Selection,
    /// Default timeout of a request, and bound of every registry call (ms).
    pub timeout_ms: u64,
    /// The current catalog; receivers learn of every change.
    pub catalog: watch::Sender<Arc<Catalog>>,
    /// With `--receive`: requests waiting for the assistant.
    pub inbox: Option<Arc<Inbox>>,
    /// Sessions that began with `initialize` (protocol ≤ 2025-11-25): they
    /// are told of tool changes directly. Newer sessions subscribe with
    /// `subscriptions/listen` instead.
    pub sessions: Mutex<Vec<Peer<RoleServer>>>,
}

impl Bridge {
    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// `--timeout` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Reads the registry once and publishes the catalog if what clients
    /// see of it changed.
    pub async fn refresh(&self) -> anyhow::Result<bool> {
        let entries = catalog::fetch(&self.registry, &self.selection, self.timeout()).await?;
        let fresh = catalog::build(&entries, &self.selection);
        if fresh.dropped > 0 && fresh.dropped != self.catalog.borrow().dropped {
            eprintln!(
                "warning: {} skills found, listing the first {}; narrow the list with \
                 --capability, --agent or --contacts",
                fresh.dropped + catalog::MAX_TOOLS,
                catalog::MAX_TOOLS
            );
        }
        let changed = self.catalog.send_if_modified(|current| {
            let visible = current.fingerprint() != fresh.fingerprint();
            *current = Arc::new(fresh);
            visible
        });
        Ok(changed)
    }

    /// Tells every `initialize`d session that the tool list changed, and
    /// forgets the closed ones.
    fn notify_sessions(&self, changed: bool) {
        let peers: Vec<Peer<RoleServer>> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.retain(|p| !p.is_transport_closed());
            sessions.clone()
        };
        if !changed {
            return;
        }
        for peer in peers {
            let timeout = self.timeout();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, peer.notify_tool_list_changed()).await;
            });
        }
    }
}

/// `meshctl mcp`.
pub async fn run(ctx: &Ctx, args: &McpArgs) -> anyhow::Result<()> {
    init_logs();
    let listen = match &args.listen {
        Some(text) => Some(local_http::listen_addr(text)?),
        None => None,
    };
    let token = match listen {
        Some(_) => Some(BearerToken::given_or_generated(args.token.as_deref())?),
        None => None,
    };
    for c in &args.capabilities {
        validate_capability(c).with_context(|| format!("invalid --capability {c:?}"))?;
    }
    if let Some(path) = &args.contacts {
        catalog::read_contacts(path)?;
    }
    let (policy, served) = receive_policy(args)?;
    let identity = ctx.identity()?;
    let me = identity.agent_id();
    let registry = ctx.registry()?;
    let client = ctx.connect(identity, policy).await?;
    let inbox = args
        .receive
        .then(|| Inbox::new(Duration::from_millis(args.reply_timeout)));
    if let Some(inbox) = &inbox {
        for capability in &served {
            let inbox = inbox.clone();
            client.handle(capability, move |req| inbox.clone().serve(req));
        }
        collect_chat(&client, inbox.clone());
    }
    let bridge = Arc::new(Bridge {
        client: client.clone(),
        registry,
        selection: Selection {
            capabilities: args.capabilities.clone(),
            agents: args.agents.clone(),
            contacts: args.contacts.clone(),
            me,
        },
        timeout_ms: ctx.timeout_ms,
        catalog: watch::channel(Arc::new(Catalog::default())).0,
        inbox,
        sessions: Mutex::new(Vec::new()),
    });
    if let Err(e) = bridge.refresh().await {
        eprintln!(
            "warning: {e:#}; starting with no agent tools, retrying every {} s",
            REFRESH_INTERVAL.as_secs()
        );
    }
    let stop = CancellationToken::new();
    let refresher = tokio::spawn(refresh_loop(bridge.clone(), stop.clone()));
    let listed = bridge.catalog().listed().count();
    let receiving = if args.receive {
        format!(
            "; receiving {} from {}",
            served.join(", "),
            args.allow
                .iter()
                .map(describe_source)
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        String::new()
    };
    let me = format!("{} ({})", client.agent_id(), client.agent_id().short());
    let serving = async {
        match (listen, token) {
            (Some(addr), Some(token)) => {
                let banner =
                    format!("serving {listed} agent tool(s) at {{url}} as {me}{receiving}");
                serve_http(bridge.clone(), addr, token, &banner, stop.clone()).await
            }
            _ => {
                eprintln!(
                    "meshctl mcp: serving {listed} agent tool(s) over stdio as {me}{receiving}"
                );
                serve_stdio(bridge.clone()).await
            }
        }
    };
    let outcome = tokio::select! {
        outcome = serving => outcome,
        lost = connection_lost(&client) => Err(lost),
    };
    stop.cancel();
    let _ = refresher.await;
    close(&client).await;
    outcome
}

/// Logs go to stderr (stdout is the MCP channel under stdio): warnings by
/// default, `RUST_LOG` overrides.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rmcp=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// The ACL for `--receive` (default deny, like `serve`) and the served
/// capability names.
fn receive_policy(args: &McpArgs) -> anyhow::Result<(Policy, Vec<String>)> {
    if !args.receive {
        return Ok((Policy::deny_all(), Vec::new()));
    }
    if args.allow.is_empty() {
        bail!(
            "--receive needs --allow DID (repeatable) or --allow '*': requests are denied by \
             default, so the inbox would stay empty"
        );
    }
    if args.reply_timeout == 0 {
        bail!("invalid --reply-timeout 0: give a number of milliseconds above zero");
    }
    let mut served: Vec<String> = Vec::new();
    for name in &args.serve {
        validate_capability(name).with_context(|| format!("invalid --serve {name:?}"))?;
        if name == CHAT_CAPABILITY {
            bail!("--serve {CHAT_CAPABILITY} is chat, which --receive already accepts");
        }
        if !served.contains(name) {
            served.push(name.clone());
        }
    }
    if served.is_empty() {
        served.push(DEFAULT_SERVED.to_string());
    }
    let mut patterns: Vec<CapabilityPattern> = served
        .iter()
        .map(|c| CapabilityPattern::Exact(c.clone()))
        .collect();
    patterns.push(CapabilityPattern::Exact(CHAT_CAPABILITY.to_string()));
    let rules = args
        .allow
        .iter()
        .map(|s| Rule::allow(*s, patterns.clone()))
        .collect();
    Ok((Policy { rules }, served))
}

fn describe_source(source: &mesh_core::acl::Source) -> String {
    match source {
        mesh_core::acl::Source::Any => "anyone".to_string(),
        mesh_core::acl::Source::Agent(a) => a.short(),
    }
}

/// Puts allowed chat messages in the inbox.
fn collect_chat(client: &MeshClient, inbox: Arc<Inbox>) {
    let mut events = client.messages();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let MessageEvent::Chat {
                from,
                sent_at_ms,
                text,
                allowed: true,
                ..
            } = event
            {
                inbox.push_message(from, text, sent_at_ms);
            }
        }
    });
}

async fn refresh_loop(bridge: Arc<Bridge>, stop: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
        }
        match bridge.refresh().await {
            Ok(changed) => {
                if failing {
                    eprintln!("the registry answers again");
                    failing = false;
                }
                bridge.notify_sessions(changed);
            }
            Err(e) => {
                if !failing {
                    eprintln!("warning: cannot refresh the tool list: {e:#}; keeping the last one");
                    failing = true;
                }
                bridge.notify_sessions(false);
            }
        }
    }
}

async fn serve_stdio(bridge: Arc<Bridge>) -> anyhow::Result<()> {
    let handler = server::MeshTools::new(bridge);
    let running = handler
        .serve(rmcp::transport::io::stdio())
        .await
        .context("the MCP client did not initialize the session")?;
    let cancel = running.cancellation_token();
    tokio::select! {
        quit = running.waiting() => {
            quit.context("the MCP session failed")?;
        }
        signal = shutdown_signal() => {
            eprintln!("stopping ({signal})");
            cancel.cancel();
        }
    }
    Ok(())
}

/// rmcp answers a session's `DELETE` with 202 Accepted; the official MCP
/// SDKs' own servers answer 200, and their clients warn about anything but
/// 200/204 ("Session termination failed: 202"). The session is gone either
/// way, so say so plainly.
async fn session_ended_ok(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let delete = request.method() == axum::http::Method::DELETE;
    let mut response = next.run(request).await;
    if delete && response.status() == axum::http::StatusCode::ACCEPTED {
        *response.status_mut() = axum::http::StatusCode::OK;
    }
    response
}

/// Serves streamable HTTP at `addr` behind the token; `banner` is printed
/// with `{url}` replaced by the endpoint.
async fn serve_http(
    bridge: Arc<Bridge>,
    addr: std::net::SocketAddr,
    (token, printed): (BearerToken, Option<String>),
    banner: &str,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = local_http::bind(addr).await?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(stop.child_token())
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1", &local.to_string()]);
    let factory_bridge = bridge.clone();
    let service = StreamableHttpService::new(
        move || Ok(server::MeshTools::new(factory_bridge.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = Router::new()
        .nest_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn(session_ended_ok))
        .layer(axum::middleware::from_fn_with_state(
            token,
            local_http::require_token,
        ));
    let url = format!("http://{local}{MCP_PATH}");
    eprintln!("meshctl mcp: {}", banner.replace("{url}", &url));
    match printed {
        Some(text) => eprintln!("token: {text}"),
        None => eprintln!("token: as given (--token or MESH_MCP_TOKEN)"),
    }
    let stopping = stop.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let signal = shutdown_signal().await;
        eprintln!("stopping ({signal})");
        stopping.cancel();
    });
    // Sessions end with the token; a client that still holds a connection
    // open gets SHUTDOWN_GRACE, not forever.
    tokio::select! {
        served = server => served.context("the HTTP server failed"),
        _ = async {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    }
}
