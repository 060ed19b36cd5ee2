//! Binding, routes, housekeeping and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mesh_core::Identity;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::{conn, defaults, registry, AppState, Relay, RelayError};

/// The complete HTTP application: relay, registry, operations, PWA.
pub fn app(state: AppState) -> Router {
    let router = Router::new()
        .route("/v1/ws", get(ws_upgrade))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(
            registry::routes::<AppState>()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    limit_registry_writes,
                ))
                // Outermost, so that preflights are answered before the
                // write limiter counts them.
                .layer(registry_cors()),
        );
    let router = match state.config.web_root.clone() {
        Some(root) => {
            let index = root.join("index.html");
            router.fallback_service(
                tower_http::services::ServeDir::new(root)
                    .fallback(tower_http::services::ServeFile::new(index)),
            )
        }
        None => router.fallback(landing),
    };
    router.with_state(state)
}

/// The registry may be used from any web origin (a page that embeds the npm
/// package, a PWA served elsewhere): every write is authorised by an Ed25519
/// signature in the request, never by cookies or other ambient credentials,
/// so allowing every origin gives a foreign page nothing it could not do
/// with its own HTTP client.
fn registry_cors() -> tower_http::cors::CorsLayer {
    use axum::http::{header, Method};
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::PUT, Method::POST, Method::DELETE])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
        .max_age(std::time::Duration::from_secs(600))
}

/// Bounds registry writes per client address (reads are not limited).
async fn limit_registry_writes(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD {
        if let Err(not_until) = state.http_write_limiter.check_key(&peer.ip()) {
            use governor::clock::{Clock, DefaultClock};
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            state
                .metrics
                .rate_limited
                .get_or_create(&crate::metrics::reason("registry_writes"))
                .inc();
            let mut response = registry::ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many registry writes from this address; retry in {} ms",
                    wait.as_millis()
                ),
            )
            .into_response();
            let secs = wait.as_secs() + 1;
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
    }
    next.run(request).await
}

async fn ws_upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.read_buffer_size(defaults::WS_READ_BUFFER)
        .write_buffer_size(defaults::WS_WRITE_BUFFER)
        // Slightly above the protocol maximum, so a frame a little too large
        // gets a typed `frame_too_large` error instead of a dropped socket.
        .max_message_size(mesh_core::limits::MAX_FRAME_LEN + 4096)
        .max_frame_size(mesh_core::limits::MAX_FRAME_LEN + 4096)
        .on_upgrade(move |socket| conn::serve(state, socket, peer))
}

async fn status(State(state): State<AppState>) -> Response {
    let totals = state.store.call(|s| s.inbox_totals()).await;
    let (frames, bytes) = totals.unwrap_or((0, 0));
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "relayId": state.relay_id.to_did(),
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "connections": state.open_sockets.load(Ordering::Relaxed),
        "agentsOnline": state.hub.len(),
        "inbox": { "frames": frames, "bytes": bytes },
        "limits": {
            "maxFrameLen": mesh_core::limits::MAX_FRAME_LEN,
            "heartbeatIntervalMs": state.config.heartbeat_interval_ms,
            "rateFramesPerSec": state.config.rate_frames_per_sec,
            "rateBytesPerSec": state.config.rate_bytes_per_sec,
            "inboxMaxFrames": state.config.inbox_max_frames,
            "inboxMaxBytes": state.config.inbox_max_bytes,
        },
    }))
    .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok((frames, bytes)) = state.store.call(|s| s.inbox_totals()).await {
        state
            .metrics
            .inbox_frames
            .set(i64::try_from(frames).unwrap_or(i64::MAX));
        state
            .metrics
            .inbox_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.call(|s| s.inbox_totals()).await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("storage: {e}\n")).into_response(),
    }
}

async fn landing(State(state): State<AppState>) -> Response {
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>agent-mesh relay</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1b1f24}}code{{background:#eef1f4;padding:.1em .3em;border-radius:4px}}</style>\
         <h1>agent-mesh relay</h1><p>This relay routes end-to-end encrypted traffic between agents and hosts their Agent Cards.</p>\
         <p>Relay id: <code>{}</code></p>\
         <ul><li>WebSocket: <code>/v1/ws</code></li><li>Registry: <a href=/v1/agents>/v1/agents</a></li>\
         <li><a href=/status>/status</a> · <a href=/metrics>/metrics</a> · <a href=/healthz>/healthz</a></li></ul>\
         <p>The web app is not built on this server (no <code>--web-root</code>).</p>",
        state.relay_id
    );
    (StatusCode::OK, Html(page)).into_response()
}

/// Loads the relay key from `path`, creating it (mode 0600) if missing.
pub fn load_or_create_key(path: &Path) -> Result<Identity, RelayError> {
    let err = |message: String| RelayError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Identity::from_secret_text(&text).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity::generate().map_err(|e| err(e.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
            std::io::Write::write_all(
                &mut file,
                format!("{}\n", identity.to_secret_text().as_str()).as_bytes(),
            )
            .map_err(|e| err(e.to_string()))?;
            Ok(identity)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Builds the shared state: opens the store, loads the key.
pub async fn build_state(config: Config) -> Result<AppState, RelayError> {
    config.validate()?;
    let identity = match &config.key_file {
        Some(path) => load_or_create_key(path)?,
        None => Identity::generate().map_err(|e| RelayError::KeyFile {
            path: "<ephemeral>".into(),
            message: e.to_string(),
        })?,
    };
    let db = config.db.clone();
    let store = tokio::task::spawn_blocking(move || crate::store::Store::open(&db))
        .await
        .map_err(|e| RelayError::Io(std::io::Error::other(e)))??;
    let relay = Relay::new(config, store, identity)?;
    let now = relay.wall_ms();
    relay.store.call(move |s| s.presence_reset_all(now)).await?;
    Ok(AppState(Arc::new(relay)))
}

async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(defaults::HOUSEKEEPING_INTERVAL_MS));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = state.wall_ms();
        let max_age = state.config.inbox_max_age_ms;
        let expired = state
            .store
            .call(move |s| {
                let n = s.inbox_expire(now, max_age)?;
                s.nonce_expire(now)?;
                Ok(n)
            })
            .await;
        if let Ok(n) = expired {
            if n > 0 {
                tracing::info!(frames = n, "expired undelivered inbox frames");
            }
        }
        state.lock_tokens().purge_expired(state.mono_ms());
        state.frame_limiter.retain_recent();
        state.byte_limiter.retain_recent();
        state.conn_limiter.retain_recent();
        state.http_write_limiter.retain_recent();
    }
}

/// A relay running in this process (tests, benchmarks, embedding).
pub struct RunningRelay {
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared state (metrics, hub, store) for inspection.
    pub state: AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<Result<(), RelayError>>,
}

impl RunningRelay {
    /// `ws://ADDR/v1/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// `http://ADDR`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts down gracefully and waits for it.
    pub async fn shutdown(self) -> Result<(), RelayError> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| RelayError::Io(std::io::Error::other(e)))?
    }
}

/// Binds `addr` with a deep accept queue ([`defaults::LISTEN_BACKLOG`]).
fn bind(addr: SocketAddr) -> Result<TcpListener, RelayError> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(defaults::LISTEN_BACKLOG)?)
}

/// Binds `config.listen` and serves in a background task.
pub async fn start(config: Config) -> Result<RunningRelay, RelayError> {
    let listener = bind(config.listen)?;
    let addr = listener.local_addr()?;
    let state = build_state(config).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(RunningRelay {
        addr,
        state,
        stop,
        task,
    })
}

/// Binds, serves until `shutdown` resolves, then drains (used by `main`).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    let listener = bind(config.listen)?;
    let addr = listener.local_addr()?;
    let state = build_state(config).await?;
    tracing::info!(
        relay_id = %state.relay_id,
        db = %state.config.db,
        web_root = ?state.config.web_root,
        "mesh-relay listening on http://{addr}/ (WebSocket ws://{addr}/v1/ws)"
    );
    println!("mesh-relay is running: open http://{addr}/");
    serve(listener, state, shutdown).await
}

async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    use axum::serve::ListenerExt;
    // Nagle + delayed ACK would stall every small frame; see ARCHITECTURE.md.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let keeper = tokio::spawn(housekeeping(state.clone()));
    let signal_state = state.clone();
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down: closing connections");
        signal_state.shutdown.send_replace(true);
    };
    let result = axum::serve(
        listener,
        app(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(graceful)
    .await;
    // Upgraded WebSockets outlive the HTTP server: wait for them to close
    // (each persists what it holds), up to the drain timeout.
    state.shutdown.send_replace(true);
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(state.config.drain_timeout_ms);
    while state.open_sockets.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    keeper.abort();
    if let Err(e) = state.store.call(|s| s.checkpoint()).await {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
    tracing::info!("relay stopped");
    result.map_err(RelayError::Io)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
