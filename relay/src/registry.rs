//! The registry's HTTP API: publish, read, search and withdraw signed Agent
//! Cards, and accept revocations.
//!
//! | route | does | success |
//! |---|---|---|
//! | `PUT /v1/agents/{id}` | publish a signed card (body: card JSON) | 201 new, 200 replaced: `{agentId, seq}` |
//! | `GET /v1/agents/{id}` | one card with presence | 200 `{card, presence}` |
//! | `GET /v1/agents?capability=&q=&online=&limit=&cursor=` | search | 200 `{items: [{card, presence}], nextCursor}` |
//! | `DELETE /v1/agents/{id}` | withdraw, signed `Authorization: AgentMesh v1.…` | 204 |
//! | `POST /v1/revocations` | revoke a key (body: revocation JSON) | 200 `{agentId, revoked: true}` |
//!
//! The registry never needs an account: a card carries its own signature,
//! and so does a revocation; only a delete, which has no body to sign, uses
//! a signed request header (docs/PROTOCOL.md §9). `card` in a response is
//! the stored canonical (RFC 8785) JSON, byte for byte as it was verified,
//! so clients can verify it again. `presence.online` is live (from the
//! relay's connections), `presence.lastSeen` is Unix ms or `null`.
//!
//! Every error is JSON `{"error": {"code", "message"}}`:
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `bad_agent_id` | `{id}` is not an Ed25519 `did:key` |
//! | 400 | `bad_json` | the body is not JSON at all |
//! | 400 | `invalid_card` / `invalid_revocation` | JSON of the wrong shape (unknown or missing member, …) or breaking a rule; the message names the field |
//! | 400 | `bad_signature` | the signature does not verify |
//! | 400 | `id_mismatch` | the card describes another agent than `{id}` |
//! | 400 | `bad_body` | the body could not be read |
//! | 400 | `bad_query`, `unknown_parameter`, `duplicate_parameter`, `bad_limit`, `bad_cursor` | search parameters |
//! | 401 | `unauthorized` | missing or invalid signed request (the message says why) |
//! | 401 | `replayed` | the signed request's nonce was used before |
//! | 404 | `not_found` | no card for that agent |
//! | 409 | `stale_card` | the card's seq is not above the highest accepted one |
//! | 410 | `revoked` | the agent's key is revoked |
//! | 405 | `method_not_allowed` | the route does not serve that method (see `Allow`) |
//! | 413 | `too_large` | the body exceeds [`MAX_HTTP_BODY`] (or the card/revocation limit) |
//! | 500 | `internal` | storage failed |
//!
//! The handlers are generic over [`RegistryState`] so this module needs
//! nothing of the relay but its store, metrics, clock and two presence hooks.
//! [`routes`] must be merged at the root of the application (not nested):
//! a signed DELETE is checked against the request target as the client sent
//! it.

use std::future::Future;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mesh_core::card::{CardError, SignedCard};
use mesh_core::limits::REGISTRY_REQUEST_SKEW_MS;
use mesh_core::registry::RegistryRequest;
use mesh_core::revocation::{Revocation, RevocationError};
use mesh_core::AgentId;
use serde_json::json;

use crate::defaults::{MAX_HTTP_BODY, SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT};
use crate::metrics::Metrics;
use crate::store::{CardPut, CardRecord, Presence, SearchQuery, Store, StoreError};

/// Longest query-parameter name echoed back in an error message.
const MAX_ECHOED_NAME: usize = 64;

/// What the registry handlers need from the application.
pub trait RegistryState: Clone + Send + Sync + 'static {
    /// The durable store.
    fn store(&self) -> &Store;
    /// Where request latencies are recorded.
    fn metrics(&self) -> &Metrics;
    /// Wall-clock Unix milliseconds (signed requests carry wall-clock time).
    fn now_ms(&self) -> u64;
    /// Whether `agent` holds a live connection to this relay.
    fn is_online(&self, agent: &AgentId) -> bool;
    /// Called after a revocation was persisted: refuse the key and
    /// disconnect it. Called again for a repeated revocation.
    fn on_revoked(&self, agent: AgentId);
}

/// The registry routes, to be merged at the root of the application.
pub fn routes<S: RegistryState>() -> Router<S> {
    Router::new()
        .route(
            "/v1/agents",
            get(search_agents::<S>).fallback(method_not_allowed),
        )
        .route(
            "/v1/agents/{id}",
            get(get_agent::<S>)
                .put(put_agent::<S>)
                .delete(delete_agent::<S>)
                .fallback(method_not_allowed),
        )
        .route(
            "/v1/revocations",
            post(post_revocation::<S>).fallback(method_not_allowed),
        )
        .layer(DefaultBodyLimit::max(MAX_HTTP_BODY))
}

/// A registry error: an HTTP status and a JSON body
/// `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (see the module docs).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    fn not_found(agent: &AgentId) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no card for {agent}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor => {
                ApiError::bad_request("bad_cursor", "the cursor is not one this registry issued")
            }
            StoreError::BadQuery(why) => ApiError::bad_request("bad_query", why),
            other => {
                tracing::error!(error = %other, "registry storage failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the registry could not access its storage",
                )
            }
        }
    }
}

/// Runs a handler body, turns its error into a response, and records its
/// latency under `route`.
async fn timed<S, F>(state: &S, route: &'static str, work: F) -> Response
where
    S: RegistryState,
    F: Future<Output = Result<Response, ApiError>>,
{
    let started = Instant::now();
    let response = work.await.unwrap_or_else(IntoResponse::into_response);
    state
        .metrics()
        .http_seconds
        .get_or_create(&[("route", route)])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn put_agent<S: RegistryState>(
    State(state): State<S>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    timed(&state, "agents_put", async {
        let agent = agent_from_path(id)?;
        let body = body.map_err(body_error)?;
        let card = SignedCard::from_json(&body).map_err(|e| card_error(e, &body))?;
        if card.agent_id() != agent {
            return Err(ApiError::bad_request(
                "id_mismatch",
                format!(
                    "the card is for {} but was published at {agent}",
                    card.agent_id()
                ),
            ));
        }
        let seq = card.seq();
        let now = state.now_ms();
        match state.store().call(move |s| s.card_put(&card, now)).await? {
            CardPut::Stored { created } => {
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let body = json!({ "agentId": agent.to_did(), "seq": seq });
                Ok((status, axum::Json(body)).into_response())
            }
            CardPut::Stale { stored_seq } => Err(ApiError::new(
                StatusCode::CONFLICT,
                "stale_card",
                format!(
                    "card seq {seq} is not greater than the stored seq {stored_seq}; publish a card with a higher seq"
                ),
            )),
            CardPut::Revoked => Err(revoked(&agent)),
        }
    })
    .await
}

async fn get_agent<S: RegistryState>(
    State(state): State<S>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    timed(&state, "agents_get", async {
        let agent = agent_from_path(id)?;
        let record = state
            .store()
            .call(move |s| s.card_get(&agent))
            .await?
            .ok_or_else(|| ApiError::not_found(&agent))?;
        let mut out = Vec::with_capacity(record.json.len() + 64);
        write_item(&state, &record, &mut out);
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

async fn search_agents<S: RegistryState>(
    State(state): State<S>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    timed(&state, "agents_search", async {
        let Query(pairs) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
        let q = search_query(pairs)?;
        let page = state.store().call(move |s| s.card_search(&q)).await?;
        let mut out = Vec::with_capacity(page.items.iter().map(|r| r.json.len() + 64).sum());
        out.extend_from_slice(b"{\"items\":[");
        for (i, record) in page.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_item(&state, record, &mut out);
        }
        out.extend_from_slice(b"],\"nextCursor\":");
        out.extend_from_slice(json!(page.next_cursor).to_string().as_bytes());
        out.push(b'}');
        Ok(json_response(StatusCode::OK, out))
    })
    .await
}

async fn delete_agent<S: RegistryState>(
    State(state): State<S>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    timed(&state, "agents_delete", async {
        let agent = agent_from_path(id)?;
        let header = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "a signed `Authorization: AgentMesh v1.…` header is required",
                )
            })?
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
        let request = RegistryRequest::from_authorization(header)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let target = uri
            .path_and_query()
            .map_or_else(|| uri.path(), |pq| pq.as_str());
        let now = state.now_ms();
        request
            .verify("DELETE", target, now)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        if request.agent() != agent {
            return Err(ApiError::unauthorized(format!(
                "the request is signed by {}, not by {agent}",
                request.agent()
            )));
        }
        let nonce = request.nonce();
        let expires = now.saturating_add(2 * REGISTRY_REQUEST_SKEW_MS);
        let deleted = state
            .store()
            .call(move |s| {
                if !s.nonce_insert(&agent, nonce, expires)? {
                    return Ok(None);
                }
                s.card_delete(&agent).map(Some)
            })
            .await?;
        match deleted {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "replayed",
                "this signed request was already used; sign a new one",
            )),
            Some(false) => Err(ApiError::not_found(&agent)),
            Some(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        }
    })
    .await
}

async fn post_revocation<S: RegistryState>(
    State(state): State<S>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    timed(&state, "revocations_post", async {
        let body = body.map_err(body_error)?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("bad_json", "the body is not UTF-8"))?;
        let revocation = Revocation::from_json(text).map_err(|e| revocation_error(e, &body))?;
        let agent = revocation.agent();
        let now = state.now_ms();
        state
            .store()
            .call(move |s| s.revoke(&revocation, now))
            .await?;
        state.on_revoked(agent);
        let body = json!({ "agentId": agent.to_did(), "revoked": true });
        Ok((StatusCode::OK, axum::Json(body)).into_response())
    })
    .await
}

/// Per-route fallback for methods a route does not serve (axum adds the
/// `Allow` header), so that this error is JSON too.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not served at this path",
    )
}

fn agent_from_path(id: Result<Path<String>, PathRejection>) -> Result<AgentId, ApiError> {
    let Path(text) = id.map_err(|e| ApiError::bad_request("bad_agent_id", e.body_text()))?;
    text.parse::<AgentId>().map_err(|e| {
        ApiError::bad_request(
            "bad_agent_id",
            format!("the path does not name an agent: {e}"),
        )
    })
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!("the body is larger than {MAX_HTTP_BODY} bytes"))
    } else {
        ApiError::bad_request("bad_body", e.body_text())
    }
}

/// mesh-core's JSON reader's complaint if `body` is not JSON by the §7.1
/// rules; `None` if it is (so the card or revocation error is about its
/// shape). Only on the error path: the body is read a second time.
fn syntax_error(body: &[u8]) -> Option<String> {
    mesh_core::json::Value::parse(body)
        .err()
        .map(|e| format!("the body is not JSON: {e}"))
}

fn card_error(e: CardError, body: &[u8]) -> ApiError {
    match e {
        CardError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        CardError::BadSignature => ApiError::bad_request("bad_signature", e.to_string()),
        CardError::Json(_) => match syntax_error(body) {
            Some(message) => ApiError::bad_request("bad_json", message),
            None => ApiError::bad_request("invalid_card", e.to_string()),
        },
        CardError::MissingSignature
        | CardError::Invalid { .. }
        | CardError::SignerMismatch { .. } => ApiError::bad_request("invalid_card", e.to_string()),
    }
}

fn revocation_error(e: RevocationError, body: &[u8]) -> ApiError {
    match e {
        RevocationError::TooLarge(_) => ApiError::too_large(e.to_string()),
        RevocationError::MalformedSignature | RevocationError::BadSignature => {
            ApiError::bad_request("bad_signature", e.to_string())
        }
        RevocationError::Json(_) => match syntax_error(body) {
            Some(message) => ApiError::bad_request("bad_json", message),
            None => ApiError::bad_request("invalid_revocation", e.to_string()),
        },
        RevocationError::ReasonTooLong(_) | RevocationError::TimeOutOfRange(_) => {
            ApiError::bad_request("invalid_revocation", e.to_string())
        }
    }
}

fn revoked(agent: &AgentId) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "revoked",
        format!("the key of {agent} has been revoked"),
    )
}

/// Reads the search parameters. Unknown or repeated parameters are refused
/// rather than ignored, so a typo never silently widens a search. Empty
/// values mean "not given".
fn search_query(pairs: Vec<(String, String)>) -> Result<SearchQuery, ApiError> {
    let mut q = SearchQuery {
        limit: SEARCH_DEFAULT_LIMIT,
        ..SearchQuery::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name) {
            return Err(ApiError::bad_request(
                "duplicate_parameter",
                format!("query parameter `{}` is given twice", echo(&name)),
            ));
        }
        let given = (!value.is_empty()).then_some(value);
        match name.as_str() {
            "capability" => q.capability = given,
            "q" => q.text = given,
            "cursor" => q.cursor = given,
            "online" => {
                q.online_only = match given.as_deref() {
                    None | Some("false") | Some("0") => false,
                    Some("true") | Some("1") => true,
                    Some(_) => {
                        return Err(ApiError::bad_request(
                            "bad_query",
                            "`online` must be true or false",
                        ))
                    }
                }
            }
            "limit" => {
                if let Some(v) = given {
                    q.limit = v
                        .parse::<u32>()
                        .ok()
                        .filter(|l| (1..=SEARCH_MAX_LIMIT).contains(l))
                        .ok_or_else(|| {
                            ApiError::bad_request(
                                "bad_limit",
                                format!("`limit` must be an integer from 1 to {SEARCH_MAX_LIMIT}"),
                            )
                        })?;
                }
            }
            other => {
                let known = "capability, q, online, limit or cursor";
                let message = format!(
                    "unknown query parameter `{}`; expected {known}",
                    echo(other)
                );
                return Err(ApiError::bad_request("unknown_parameter", message));
            }
        }
        seen.push(name);
    }
    Ok(q)
}

/// A parameter name shortened for an error message.
fn echo(name: &str) -> String {
    name.chars().take(MAX_ECHOED_NAME).collect()
}

/// Appends `{"card": <stored canonical JSON, verbatim>, "presence": …}`.
/// The card bytes are copied, not re-serialized, so they stay exactly what
/// was verified.
fn write_item<S: RegistryState>(state: &S, record: &CardRecord, out: &mut Vec<u8>) {
    let presence = Presence {
        online: state.is_online(&record.agent),
        last_seen_ms: record.presence.last_seen_ms,
    };
    out.extend_from_slice(b"{\"card\":");
    out.extend_from_slice(&record.json);
    out.extend_from_slice(b",\"presence\":");
    out.extend_from_slice(json!(presence).to_string().as_bytes());
    out.push(b'}');
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::card::{AgentCard, Skill};
    use mesh_core::Identity;
    use serde_json::Value;
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const RELAY: &str = "wss://relay.example/v1/ws";
    const NOW: u64 = 1_800_000_000_000;

    #[derive(Clone)]
    struct TestState {
        store: Store,
        metrics: Arc<Metrics>,
        now: Arc<AtomicU64>,
        online: Arc<Mutex<HashSet<AgentId>>>,
        revoked: Arc<Mutex<Vec<AgentId>>>,
    }

    impl RegistryState for TestState {
        fn store(&self) -> &Store {
            &self.store
        }
        fn metrics(&self) -> &Metrics {
            &self.metrics
        }
        fn now_ms(&self) -> u64 {
            self.now.load(Ordering::SeqCst)
        }
        fn is_online(&self, agent: &AgentId) -> bool {
            self.online.lock().unwrap().contains(agent)
        }
        fn on_revoked(&self, agent: AgentId) {
            self.revoked.lock().unwrap().push(agent);
        }
    }

    struct Server {
        addr: SocketAddr,
        state: TestState,
    }

    async fn server() -> Server {
        let state = TestState {
            store: Store::open(":memory:").unwrap(),
            metrics: Arc::new(Metrics::new()),
            now: Arc::new(AtomicU64::new(NOW)),
            online: Arc::default(),
            revoked: Arc::default(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = routes::<TestState>().with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, state }
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
            })
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// Asserts an error reply and returns its message.
        fn error(&self, status: u16, code: &str) -> String {
            let v = self.json();
            assert_eq!(
                (self.status, v["error"]["code"].as_str()),
                (status, Some(code)),
                "{v}"
            );
            assert_eq!(self.header("content-type"), Some("application/json"));
            v["error"]["message"].as_str().unwrap().to_owned()
        }
    }

    /// A minimal HTTP/1.1 client: one request per connection.
    async fn http(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        // The server may answer (413) without reading an oversized body.
        let _ = stream.write_all(body).await;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        if chunked {
            let (mut rest, mut out) = (&body[..], Vec::new());
            loop {
                let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
                let size = std::str::from_utf8(&rest[..eol]).unwrap();
                let size = usize::from_str_radix(size.split(';').next().unwrap(), 16).unwrap();
                if size == 0 {
                    break;
                }
                out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
                rest = &rest[eol + 2 + size + 2..];
            }
            body = out;
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    fn identity(n: u32) -> Identity {
        let mut secret = [9u8; 32];
        secret[..4].copy_from_slice(&n.to_be_bytes());
        Identity::from_secret_bytes(&secret)
    }

    fn signed_card(id: &Identity, name: &str, seq: u64) -> SignedCard {
        AgentCard::builder(id.agent_id(), RELAY, name)
            .description("Translates text between languages")
            .skill(Skill::new("translate", "Translate", "any pair").with_tags(["nlp", "language"]))
            .issued_at(seq)
            .sign(id)
            .unwrap()
    }

    fn agent_path(agent: &AgentId) -> String {
        format!("/v1/agents/{}", agent.to_did())
    }

    async fn put(s: &Server, card: &SignedCard) -> Reply {
        let path = agent_path(&card.agent_id());
        http(s.addr, "PUT", &path, &[], card.as_json()).await
    }

    fn authorization(id: &Identity, target: &str, ts: u64, nonce: u8) -> String {
        RegistryRequest::sign(id, "DELETE", target, ts, [nonce; 16])
            .unwrap()
            .to_authorization()
    }

    async fn search(s: &Server, query: &str) -> Reply {
        http(s.addr, "GET", &format!("/v1/agents{query}"), &[], b"").await
    }

    fn item_agents(v: &Value) -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["card"]["mesh"]["agentId"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn put_search_get_delete_round_trip() {
        let s = server().await;
        let alice = identity(1);
        let a = alice.agent_id();
        let did = a.to_did();
        let v1 = signed_card(&alice, "Alice", 100);

        let r = put(&s, &v1).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json(), json!({"agentId": did, "seq": 100}));

        // Found by capability (skill id and tag), by text, and online.
        for q in [
            "?capability=translate",
            "?capability=nlp",
            "?q=languages",
            "?q=ali&limit=5",
            "",
        ] {
            let r = search(&s, q).await;
            assert_eq!(r.status, 200);
            assert_eq!(item_agents(&r.json()), vec![did.clone()], "{q}");
            assert_eq!(r.json()["nextCursor"], Value::Null);
        }
        let r = search(&s, "?capability=summarize").await;
        assert_eq!(r.json(), json!({"items": [], "nextCursor": null}));
        let r = search(&s, "?online=true").await;
        assert!(item_agents(&r.json()).is_empty(), "not online yet");

        // GET: the card verbatim, with live presence.
        s.state.store.presence_set(&a, true, NOW - 5).unwrap();
        s.state.online.lock().unwrap().insert(a);
        let r = http(s.addr, "GET", &agent_path(&a), &[], b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let mut want = b"{\"card\":".to_vec();
        want.extend_from_slice(v1.as_json());
        assert!(r.body.starts_with(&want), "card bytes are verbatim");
        let v = r.json();
        assert_eq!(v["presence"], json!({"online": true, "lastSeen": NOW - 5}));
        let echoed = serde_json::to_vec(&v["card"]).unwrap();
        assert_eq!(
            SignedCard::from_json(&echoed).unwrap(),
            v1,
            "clients can verify it"
        );
        let r = search(&s, "?online=true").await;
        assert_eq!(item_agents(&r.json()), vec![did.clone()]);
        assert_eq!(r.json()["items"][0]["presence"]["online"], json!(true));

        // Percent-encoded colons in the path work.
        let encoded = format!("/v1/agents/{}", did.replace(':', "%3A"));
        let r = http(s.addr, "GET", &encoded, &[], b"").await;
        assert_eq!(r.status, 200);

        // Same seq again: stale; newer: replaced (200); older: stale.
        let msg = put(&s, &v1).await.error(409, "stale_card");
        assert!(msg.contains("100"), "{msg}");
        let v2 = signed_card(&alice, "Alice v2", 200);
        let r = put(&s, &v2).await;
        assert_eq!(
            (r.status, r.json()),
            (200, json!({"agentId": did, "seq": 200}))
        );
        let msg = put(&s, &v1).await.error(409, "stale_card");
        assert!(msg.contains("stored seq 200"), "{msg}");

        // Signed DELETE withdraws it.
        let path = agent_path(&a);
        let auth = authorization(&alice, &path, NOW, 1);
        let r = http(s.addr, "DELETE", &path, &[("Authorization", &auth)], b"").await;
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        http(s.addr, "GET", &path, &[], b"")
            .await
            .error(404, "not_found");
        assert!(item_agents(&search(&s, "?capability=translate").await.json()).is_empty());

        // Other methods: JSON 405 with Allow.
        let r = http(s.addr, "POST", &path, &[], b"{}").await;
        r.error(405, "method_not_allowed");
        let allow = r.header("allow").unwrap();
        assert!(allow.contains("PUT") && allow.contains("DELETE"), "{allow}");
        other_routes_refuse_other_methods(&s).await;

        let metrics = s.state.metrics.render();
        for route in ["agents_put", "agents_get", "agents_search", "agents_delete"] {
            assert!(metrics.contains(&format!("route=\"{route}\"")), "{metrics}");
        }
    }

    async fn other_routes_refuse_other_methods(s: &Server) {
        for path in ["/v1/agents", "/v1/revocations"] {
            let method = if path == "/v1/agents" { "POST" } else { "GET" };
            http(s.addr, method, path, &[], b"")
                .await
                .error(405, "method_not_allowed");
        }
    }

    #[tokio::test]
    async fn put_refuses_bad_cards() {
        let s = server().await;
        let alice = identity(1);
        let bob = identity(2);
        let card = signed_card(&alice, "Alice", 1);

        // Published under another agent's id.
        let r = http(
            s.addr,
            "PUT",
            &agent_path(&bob.agent_id()),
            &[],
            card.as_json(),
        )
        .await;
        r.error(400, "id_mismatch");
        // Not a did:key.
        for bad in [
            "/v1/agents/alice",
            "/v1/agents/did:key:z6MkNOPE",
            "/v1/agents/%FF",
        ] {
            http(s.addr, "PUT", bad, &[], card.as_json())
                .await
                .error(400, "bad_agent_id");
            http(s.addr, "GET", bad, &[], b"")
                .await
                .error(400, "bad_agent_id");
        }

        let path = agent_path(&alice.agent_id());
        // Malformed JSON.
        for body in [&b"{\"name\": "[..], b"", b"not json", b"{}}"] {
            http(s.addr, "PUT", &path, &[], body)
                .await
                .error(400, "bad_json");
        }
        // Unknown member: the message names it.
        let mut v: Value = serde_json::from_slice(card.as_json()).unwrap();
        v["colour"] = json!("blue");
        let msg = http(s.addr, "PUT", &path, &[], &serde_json::to_vec(&v).unwrap())
            .await
            .error(400, "invalid_card");
        assert!(msg.contains("colour"), "{msg}");
        // A rule broken (empty name is refused before the signature check).
        let mut v: Value = serde_json::from_slice(card.as_json()).unwrap();
        v["name"] = json!("");
        let msg = http(s.addr, "PUT", &path, &[], &serde_json::to_vec(&v).unwrap())
            .await
            .error(400, "invalid_card");
        assert!(msg.contains("name"), "{msg}");
        // Missing signature.
        let mut v: Value = serde_json::from_slice(card.as_json()).unwrap();
        v.as_object_mut().unwrap().remove("signature");
        http(s.addr, "PUT", &path, &[], &serde_json::to_vec(&v).unwrap())
            .await
            .error(400, "invalid_card");
        // Tampered content.
        let mut v: Value = serde_json::from_slice(card.as_json()).unwrap();
        v["description"] = json!("Steals your secrets");
        http(s.addr, "PUT", &path, &[], &serde_json::to_vec(&v).unwrap())
            .await
            .error(400, "bad_signature");
        // Oversized body: JSON 413, not axum's plain text.
        let huge = vec![b' '; MAX_HTTP_BODY + 1];
        let msg = http(s.addr, "PUT", &path, &[], &huge)
            .await
            .error(413, "too_large");
        assert!(msg.contains(&MAX_HTTP_BODY.to_string()), "{msg}");
        // Within the HTTP limit but over the card limit: also 413.
        let mut big = card.as_json().to_vec();
        big.extend(std::iter::repeat_n(b' ', mesh_core::limits::MAX_CARD_LEN));
        http(s.addr, "PUT", &path, &[], &big)
            .await
            .error(413, "too_large");

        // Nothing was stored by any of that; the real card still goes in.
        assert_eq!(put(&s, &card).await.status, 201);
    }

    #[tokio::test]
    async fn search_parameters_are_checked() {
        let s = server().await;
        let long_text = format!("?q={}", "x".repeat(300));
        for (q, code) in [
            ("?capabilty=x", "unknown_parameter"),
            ("?text=x", "unknown_parameter"),
            ("?q=a&q=b", "duplicate_parameter"),
            ("?limit=0", "bad_limit"),
            ("?limit=101", "bad_limit"),
            ("?limit=-1", "bad_limit"),
            ("?limit=ten", "bad_limit"),
            ("?online=yes", "bad_query"),
            ("?cursor=%21%21", "bad_cursor"),
            ("?cursor=AQ", "bad_cursor"),
            (long_text.as_str(), "bad_query"),
        ] {
            let msg = search(&s, q).await.error(400, code);
            assert!(!msg.is_empty());
        }
        let msg = search(&s, "?colour=blue")
            .await
            .error(400, "unknown_parameter");
        assert!(msg.contains("colour"), "{msg}");
        // Accepted edge values and empty parameters.
        for q in [
            "?limit=1",
            "?limit=100",
            "?capability=&q=&online=&limit=&cursor=",
            "?online=false",
            "?q=%22%20NEAR(%20OR%20*%20-",
        ] {
            assert_eq!(search(&s, q).await.status, 200, "{q}");
        }
    }

    #[tokio::test]
    async fn search_pages_over_http() {
        let s = server().await;
        let mut want = HashSet::new();
        for i in 0..23 {
            let id = identity(100 + i);
            assert_eq!(
                put(&s, &signed_card(&id, &format!("Agent {i:02}"), 1))
                    .await
                    .status,
                201
            );
            want.insert(id.agent_id().to_did());
        }
        let mut got = Vec::new();
        let mut query = "?capability=nlp&limit=10".to_owned();
        let mut pages = 0;
        loop {
            let v = search(&s, &query).await.json();
            pages += 1;
            got.extend(item_agents(&v));
            match v["nextCursor"].as_str() {
                Some(c) => query = format!("?capability=nlp&limit=10&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(got.len(), 23);
        assert_eq!(got.into_iter().collect::<HashSet<_>>(), want);
    }

    #[tokio::test]
    async fn delete_requires_a_fresh_signed_request() {
        let s = server().await;
        let alice = identity(1);
        let mallory = identity(2);
        let a = alice.agent_id();
        let path = agent_path(&a);
        assert_eq!(put(&s, &signed_card(&alice, "Alice", 1)).await.status, 201);
        let delete = |auth: Option<String>, target: String| {
            let addr = s.addr;
            async move {
                match auth {
                    Some(auth) => {
                        http(
                            addr,
                            "DELETE",
                            &target,
                            &[("Authorization", auth.as_str())],
                            b"",
                        )
                        .await
                    }
                    None => http(addr, "DELETE", &target, &[], b"").await,
                }
            }
        };

        let msg = delete(None, path.clone()).await.error(401, "unauthorized");
        assert!(msg.contains("Authorization"), "{msg}");
        delete(Some("Bearer abc".into()), path.clone())
            .await
            .error(401, "unauthorized");
        delete(Some("AgentMesh v1.garbage".into()), path.clone())
            .await
            .error(401, "unauthorized");
        // Signed for another path (e.g. with a query), method or agent.
        let other = format!("{path}?x=1");
        let msg = delete(Some(authorization(&alice, &other, NOW, 1)), path.clone())
            .await
            .error(401, "unauthorized");
        assert!(msg.contains("signed for"), "{msg}");
        let put_signed = RegistryRequest::sign(&alice, "PUT", &path, NOW, [1; 16])
            .unwrap()
            .to_authorization();
        delete(Some(put_signed), path.clone())
            .await
            .error(401, "unauthorized");
        let mallory_path = agent_path(&mallory.agent_id());
        let msg = delete(Some(authorization(&mallory, &path, NOW, 1)), path.clone())
            .await
            .error(401, "unauthorized");
        assert!(msg.contains("signed by"), "{msg}");
        // Too old / too far ahead of the registry's clock.
        let skew = REGISTRY_REQUEST_SKEW_MS;
        for ts in [NOW - skew - 1, NOW + skew + 1] {
            delete(Some(authorization(&alice, &path, ts, 1)), path.clone())
                .await
                .error(401, "unauthorized");
        }
        // Tampered signature.
        let good = authorization(&alice, &path, NOW, 1);
        let tampered = good.replacen(&NOW.to_string(), &(NOW - 1).to_string(), 1);
        delete(Some(tampered), path.clone())
            .await
            .error(401, "unauthorized");
        assert!(s.state.store.card_get(&a).unwrap().is_some(), "still there");

        // A valid request works once; its replay is refused.
        assert_eq!(delete(Some(good.clone()), path.clone()).await.status, 204);
        delete(Some(good), path.clone())
            .await
            .error(401, "replayed");
        // A fresh request for a card that is gone: 404.
        delete(Some(authorization(&alice, &path, NOW, 2)), path.clone())
            .await
            .error(404, "not_found");
        // The request target includes percent-encoding exactly as sent.
        assert_eq!(put(&s, &signed_card(&alice, "Alice", 2)).await.status, 201);
        let encoded = path.replace(':', "%3A");
        assert_eq!(
            delete(
                Some(authorization(&alice, &encoded, NOW, 3)),
                encoded.clone()
            )
            .await
            .status,
            204
        );
        // Mallory may delete her own card, not one for a bad id.
        delete(
            Some(authorization(&mallory, &mallory_path, NOW, 1)),
            mallory_path,
        )
        .await
        .error(404, "not_found");
        delete(
            Some(authorization(&mallory, "/v1/agents/x", NOW, 2)),
            "/v1/agents/x".into(),
        )
        .await
        .error(400, "bad_agent_id");
    }

    #[tokio::test]
    async fn revocation_withdraws_the_card() {
        let s = server().await;
        let alice = identity(1);
        let a = alice.agent_id();
        let path = agent_path(&a);
        assert_eq!(put(&s, &signed_card(&alice, "Alice", 1)).await.status, 201);
        let rev = Revocation::new(&alice, NOW, "key leaked").unwrap();

        let r = http(
            s.addr,
            "POST",
            "/v1/revocations",
            &[],
            rev.to_json().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json(), json!({"agentId": a.to_did(), "revoked": true}));
        assert_eq!(*s.state.revoked.lock().unwrap(), vec![a]);
        http(s.addr, "GET", &path, &[], b"")
            .await
            .error(404, "not_found");
        assert!(item_agents(&search(&s, "").await.json()).is_empty());
        let msg = put(&s, &signed_card(&alice, "Alice", 2))
            .await
            .error(410, "revoked");
        assert!(msg.contains("revoked"), "{msg}");
        // Idempotent.
        let r = http(
            s.addr,
            "POST",
            "/v1/revocations",
            &[],
            rev.to_json().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(s.state.store.is_revoked(&a).unwrap());

        // Bad statements.
        let bob = identity(2);
        let good: Value =
            serde_json::from_str(&Revocation::new(&bob, NOW, "x").unwrap().to_json()).unwrap();
        let mut forged = good.clone();
        forged["reason"] = json!("y");
        let mut extra = good.clone();
        extra["by"] = json!("me");
        for (body, status, code) in [
            (serde_json::to_vec(&forged).unwrap(), 400, "bad_signature"),
            (
                serde_json::to_vec(&extra).unwrap(),
                400,
                "invalid_revocation",
            ),
            (b"{\"agentId\":".to_vec(), 400, "bad_json"),
            (vec![0xff, 0xfe], 400, "bad_json"),
            (vec![b' '; 5000], 413, "too_large"),
            (vec![b' '; MAX_HTTP_BODY + 10], 413, "too_large"),
        ] {
            let r = http(s.addr, "POST", "/v1/revocations", &[], &body).await;
            r.error(status, code);
        }
        assert!(!s.state.store.is_revoked(&bob.agent_id()).unwrap());
        assert!(s
            .state
            .metrics
            .render()
            .contains("route=\"revocations_post\""));
    }
}
