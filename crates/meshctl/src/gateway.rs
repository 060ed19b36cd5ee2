//! `meshctl gateway`: a local HTTP API to the mesh for programs that only
//! speak HTTP — the calling half of an HTTP agent (`meshctl serve
//! --forward` is the called half).
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/request` `{peer, capability, body?, timeout_ms?}` | the peer's response body, as received |
//! | `POST /v1/stream` (same) | `text/event-stream`: `chunk` events `{seq, body}`, then `end` `{chunks}` or `error` `{error}` |
//! | `GET /v1/search?capability=&q=&online=&limit=&cursor=` | `{items: [{card, presence}], nextCursor, rejected}` |
//!
//! Every route needs the bearer token. Errors are `{"error": {"code",
//! "message"}}` with a mesh error code (docs/PROTOCOL.md §10) and an HTTP
//! status chosen by [`status_for`]. A stream's failure before its first
//! chunk is an ordinary error response; after it, an `error` event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::{Stream, StreamExt};
use mesh_client::registry::{RegistryClient, SearchQuery};
use mesh_client::{ClientError, MeshClient};
use mesh_core::acl::Policy;
use mesh_core::{AgentId, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cli::GatewayArgs;
use crate::local_http::{self, error_response, BearerToken};
use crate::{close, connection_lost, shutdown_signal, Ctx};

/// Largest request body accepted (a 1 MiB mesh body, JSON-escaped).
pub const MAX_HTTP_BODY: usize = 8 * 1024 * 1024;
/// Longest `timeout_ms` a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// How long open connections may take to finish once we stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Interval of SSE keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the handlers share.
struct Gateway {
    client: MeshClient,
    registry: RegistryClient,
    timeout_ms: u64,
}

/// `meshctl gateway`.
pub async fn run(ctx: &Ctx, args: &GatewayArgs) -> anyhow::Result<()> {
    let addr = local_http::listen_addr(&args.listen)?;
    let (token, printed) = BearerToken::given_or_generated(args.token.as_deref())?;
    let registry = ctx.registry()?;
    let listener = local_http::bind(addr).await?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let client = ctx.connect(ctx.identity()?, Policy::deny_all()).await?;
    let gateway = Arc::new(Gateway {
        client: client.clone(),
        registry,
        timeout_ms: ctx.timeout_ms,
    });
    eprintln!(
        "meshctl gateway: http://{local}/v1/ (request, stream, search) as {} ({})",
        client.agent_id(),
        client.agent_id().short()
    );
    match printed {
        Some(text) => eprintln!("token: {text}"),
        None => eprintln!("token: as given (--token or MESH_GATEWAY_TOKEN)"),
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let stopping = stop.clone();
    let server = axum::serve(listener, app(gateway, token)).with_graceful_shutdown(async move {
        let signal = shutdown_signal().await;
        eprintln!("stopping ({signal})");
        stopping.cancel();
    });
    // An open stream gets SHUTDOWN_GRACE to end, not forever.
    let outcome = tokio::select! {
        served = server => served.context("the HTTP server failed"),
        _ = async {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
        lost = connection_lost(&client) => Err(lost),
    };
    close(&client).await;
    outcome
}

fn app(gateway: Arc<Gateway>, token: BearerToken) -> Router {
    Router::new()
        .route("/v1/request", post(request))
        .route("/v1/stream", post(stream))
        .route("/v1/search", get(search))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gateway)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_HTTP_BODY))
        .layer(axum::middleware::from_fn_with_state(
            token,
            local_http::require_token,
        ))
}

/// The HTTP status for a mesh error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest | ErrorCode::MalformedFrame => StatusCode::BAD_REQUEST,
        ErrorCode::NotAuthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Denied | ErrorCode::Revoked => StatusCode::FORBIDDEN,
        ErrorCode::UnknownCapability => StatusCode::NOT_FOUND,
        ErrorCode::PayloadTooLarge | ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited | ErrorCode::InboxFull => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::GoingAway | ErrorCode::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
        // unreachable, unknown_recipient, handler_failed, cancelled,
        // protocol, and whatever else the peer or relay said.
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn client_error(e: &ClientError) -> Response {
    let code = e.code();
    let status = match e {
        // Our own deadline, not the peer's answer.
        ClientError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        ClientError::Registry { status, .. } if (400..500).contains(status) => {
            StatusCode::BAD_REQUEST
        }
        ClientError::Registry { .. } => StatusCode::BAD_GATEWAY,
        _ => status_for(code),
    };
    let mut response = error_response(status, code.name(), &e.to_string());
    if let ClientError::RateLimited { retry_after_ms } = e {
        let seconds = (u64::from(*retry_after_ms)).div_ceil(1000).max(1);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

fn bad_request(message: impl AsRef<str>) -> Response {
    error_response(StatusCode::BAD_REQUEST, "bad_request", message.as_ref())
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "bad_request",
        "no such endpoint; there are POST /v1/request, POST /v1/stream and GET /v1/search",
    )
}

async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "bad_request",
        "wrong method: POST /v1/request, POST /v1/stream, GET /v1/search",
    )
}

/// A request or stream, as posted.
struct MeshRequest {
    peer: AgentId,
    capability: String,
    body: Bytes,
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestJson {
    peer: String,
    capability: String,
    #[serde(default)]
    body: Value,
    timeout_ms: Option<u64>,
}

/// Why a posted request was refused (sent back as `bad_request`).
struct Refused(String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        bad_request(self.0)
    }
}

/// A body that could not be read (over [`MAX_HTTP_BODY`], or cut off) as
/// the gateway's typed JSON error rather than axum's plain text.
fn body_refused(rejection: BytesRejection) -> Response {
    let status = rejection.status();
    let response = if status == StatusCode::PAYLOAD_TOO_LARGE {
        error_response(
            status,
            ErrorCode::PayloadTooLarge.name(),
            &format!("the request body is larger than {MAX_HTTP_BODY} bytes"),
        )
    } else {
        error_response(
            status,
            ErrorCode::BadRequest.name(),
            &format!(
                "the request body could not be read: {}",
                rejection.body_text()
            ),
        )
    };
    // The rest of the body is left unread.
    local_http::refuse(response)
}

/// The timeout of one request: the posted `timeout_ms` (1 to
/// [`MAX_TIMEOUT_MS`]), else the gateway's own (`--timeout`, whatever the
/// operator chose).
fn choose_timeout(posted: Option<u64>, default_ms: u64) -> Result<u64, Refused> {
    match posted {
        None => Ok(default_ms),
        Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(ms),
        Some(_) => Err(Refused(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
        ))),
    }
}

/// The posted request, or the error response that refuses it.
fn read_request(
    gateway: &Gateway,
    posted: Result<Bytes, BytesRejection>,
) -> Result<MeshRequest, Box<Response>> {
    let posted = posted.map_err(|r| Box::new(body_refused(r)))?;
    parse_request(gateway, &posted).map_err(|r| Box::new(r.into_response()))
}

/// Reads and checks a posted request.
fn parse_request(gateway: &Gateway, posted: &[u8]) -> Result<MeshRequest, Refused> {
    let parsed: RequestJson = serde_json::from_slice(posted).map_err(|e| {
        Refused(format!(
            "invalid request JSON ({e}); expected {{\"peer\": \"did:key:…\", \"capability\": \"…\", \"body\": …, \"timeout_ms\": …}}"
        ))
    })?;
    let peer: AgentId = parsed.peer.trim().parse().map_err(|_| {
        Refused(format!(
            "peer {:?} is not an agent id (did:key:z6Mk…)",
            parsed.peer
        ))
    })?;
    mesh_core::acl::validate_capability(&parsed.capability)
        .map_err(|e| Refused(format!("invalid capability {:?}: {e}", parsed.capability)))?;
    let timeout_ms = choose_timeout(parsed.timeout_ms, gateway.timeout_ms)?;
    Ok(MeshRequest {
        peer,
        capability: parsed.capability,
        body: crate::body::from_json(&parsed.body),
        timeout_ms,
    })
}

/// The content type of an answer: JSON if it parses, text if UTF-8, else
/// bytes.
fn content_type(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        "application/json"
    } else if std::str::from_utf8(body).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

async fn request(
    State(gateway): State<Arc<Gateway>>,
    posted: Result<Bytes, BytesRejection>,
) -> Response {
    let req = match read_request(&gateway, posted) {
        Ok(req) => req,
        Err(refused) => return *refused,
    };
    let answer = gateway
        .client
        .request_with_timeout(req.peer, &req.capability, req.body, req.timeout_ms)
        .await;
    match answer {
        Ok(body) => {
            let kind = content_type(&body);
            ([(header::CONTENT_TYPE, kind)], body).into_response()
        }
        Err(e) => client_error(&e),
    }
}

fn chunk_event(seq: u64, chunk: &[u8]) -> Event {
    let data = match std::str::from_utf8(chunk) {
        Ok(text) => json!({"seq": seq, "body": text}),
        Err(_) => {
            use base64::Engine;
            json!({"seq": seq, "base64": base64::engine::general_purpose::STANDARD.encode(chunk)})
        }
    };
    Event::default().event("chunk").data(data.to_string())
}

fn error_event(e: &ClientError) -> Event {
    Event::default()
        .event("error")
        .data(json!({"error": {"code": e.code().name(), "message": e.to_string()}}).to_string())
}

async fn stream(
    State(gateway): State<Arc<Gateway>>,
    posted: Result<Bytes, BytesRejection>,
) -> Response {
    let req = match read_request(&gateway, posted) {
        Ok(req) => req,
        Err(refused) => return *refused,
    };
    let mut chunks = match gateway.client.request_stream_with_timeout(
        req.peer,
        &req.capability,
        req.body,
        req.timeout_ms,
    ) {
        Ok(chunks) => chunks,
        Err(e) => return client_error(&e),
    };
    // Until the first chunk the answer can still be a plain HTTP error.
    let first = match chunks.next().await {
        Some(Ok(chunk)) => Some(chunk),
        Some(Err(e)) => return client_error(&e),
        None => None,
    };
    // Dropping `events` (the client went away) drops `chunks`, which
    // cancels the request at the peer.
    let events = futures::stream::unfold(
        (Some(chunks), first, 0u64),
        |(chunks, pending, seq)| async move {
            let mut chunks = chunks?;
            if let Some(chunk) = pending {
                let event = chunk_event(seq, &chunk);
                return Some((Ok(event), (Some(chunks), None, seq + 1)));
            }
            match chunks.next().await {
                Some(Ok(chunk)) => {
                    Some((Ok(chunk_event(seq, &chunk)), (Some(chunks), None, seq + 1)))
                }
                Some(Err(e)) => Some((Ok(error_event(&e)), (None, None, seq))),
                None => {
                    let end = Event::default()
                        .event("end")
                        .data(json!({"chunks": seq}).to_string());
                    Some((Ok(end), (None, None, seq)))
                }
            }
        },
    );
    sse(events)
}

fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

#[derive(Deserialize)]
struct SearchParams {
    capability: Option<String>,
    q: Option<String>,
    online: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn search(
    State(gateway): State<Arc<Gateway>>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => return bad_request(format!("invalid query: {e}")),
    };
    let online_only = match params.online.as_deref() {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => return bad_request(format!("online must be true or false, not {other:?}")),
    };
    let limit = match params.limit.as_deref() {
        None | Some("") => None,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => Some(n),
            _ => {
                return bad_request(format!(
                    "limit must be a number from 1 to 100, not {text:?}"
                ))
            }
        },
    };
    let query = SearchQuery {
        capability: params.capability.filter(|c| !c.is_empty()),
        text: params.q.filter(|q| !q.is_empty()),
        online_only,
        limit,
        cursor: params.cursor.filter(|c| !c.is_empty()),
    };
    let page = match tokio::time::timeout(
        Duration::from_millis(gateway.timeout_ms),
        gateway.registry.search(&query),
    )
    .await
    {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => return client_error(&e),
        Err(_) => return client_error(&ClientError::Timeout(gateway.timeout_ms)),
    };
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|e| crate::output::to_serde(&e.to_json()))
        .collect();
    axum::Json(json!({
        "items": items,
        "nextCursor": page.next_cursor,
        "rejected": page.rejected,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_error_codes() {
        assert_eq!(status_for(ErrorCode::BadRequest), StatusCode::BAD_REQUEST);
        assert_eq!(status_for(ErrorCode::Denied), StatusCode::FORBIDDEN);
        assert_eq!(
            status_for(ErrorCode::UnknownCapability),
            StatusCode::NOT_FOUND
        );
        assert_eq!(status_for(ErrorCode::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            status_for(ErrorCode::RateLimited),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status_for(ErrorCode::Unreachable), StatusCode::BAD_GATEWAY);
        assert_eq!(
            status_for(ErrorCode::HandlerFailed),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn a_posted_timeout_is_bounded_and_the_default_is_the_operators() {
        assert_eq!(choose_timeout(None, 900_000).ok(), Some(900_000));
        assert_eq!(choose_timeout(Some(5), 900_000).ok(), Some(5));
        assert!(choose_timeout(Some(0), 30_000).is_err());
        assert!(choose_timeout(Some(MAX_TIMEOUT_MS + 1), 30_000).is_err());
    }

    #[test]
    fn answers_are_typed_by_content() {
        assert_eq!(content_type(b"{\"a\": 1}"), "application/json");
        assert_eq!(content_type(b"hello"), "text/plain; charset=utf-8");
        assert_eq!(content_type(&[0xff]), "application/octet-stream");
    }
}
