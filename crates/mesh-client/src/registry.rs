//! The registry client: publish our signed Agent Card, fetch and search
//! others' — verifying every card's signature here, so a registry can never
//! alter a card unnoticed — delete our card with a signed request, and
//! publish revocations. HTTP through reqwest natively (hyper + rustls with
//! ring) and the runtime's own `fetch` in browsers, Node, Deno and Workers.

use mesh_core::card::SignedCard;
use mesh_core::json::{Number, Object, Value};
use mesh_core::registry::RegistryRequest;
use mesh_core::revocation::Revocation;
use mesh_core::{AgentId, Identity};

use crate::error::ClientError;

/// A card from the registry, verified, with the relay's view of presence.
#[derive(Debug, Clone)]
pub struct CardEntry {
    /// The verified card.
    pub card: SignedCard,
    /// Whether the agent is connected to the relay now.
    pub online: bool,
    /// When the relay last saw it (Unix ms).
    pub last_seen_ms: Option<u64>,
}

impl CardEntry {
    /// The entry as the registry serves it: `{card, presence: {online,
    /// lastSeen}}` (for tools that pass entries on as JSON).
    pub fn to_json(&self) -> Value {
        // The canonical form of a verified card always reads back (the
        // writer and reader are tested against each other in mesh-core).
        let card = Value::parse(self.card.as_json()).unwrap_or(Value::Null);
        let mut presence = Object::new();
        presence.insert("online", self.online);
        presence.insert("lastSeen", self.last_seen_ms.and_then(Number::from_u64));
        let mut entry = Object::new();
        entry.insert("card", card);
        entry.insert("presence", presence);
        Value::Object(entry)
    }
}

/// Registry search parameters; all optional.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Skill id or tag, exact.
    pub capability: Option<String>,
    /// Free text (every word matches as a prefix).
    pub text: Option<String>,
    /// Only agents connected now.
    pub online_only: bool,
    /// Page size (1–100; the registry's default when `None`).
    pub limit: Option<u32>,
    /// Continue after a previous page.
    pub cursor: Option<String>,
}

/// One page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    /// Verified cards. Cards that fail verification are left out and
    /// counted in `rejected`.
    pub items: Vec<CardEntry>,
    /// Cards the registry returned that did not verify.
    pub rejected: usize,
    /// Cursor for the next page, if there is one.
    pub next_cursor: Option<String>,
}

// The registry's JSON is read with mesh-core's strict reader (the one the
// card verifier uses; duplicate members are refused everywhere) and picked
// apart by hand: in the WebAssembly build every JSON library and derived
// deserializer is code to download.

fn protocol(what: &str) -> ClientError {
    ClientError::Protocol(format!("unexpected registry answer: {what}"))
}

fn parse(body: &[u8]) -> Result<Value, ClientError> {
    Value::parse(body).map_err(|e| protocol(&e.to_string()))
}

/// How long one registry exchange (connect, request, whole answer) may take
/// unless [`RegistryClient::with_timeout`] says otherwise.
pub const REGISTRY_TIMEOUT_MS: u64 = 30_000;

/// Largest registry answer read, in bytes: a full search page (100 cards
/// of at most 64 KiB, with presence) fits with room to spare. A larger
/// answer is refused. Natively the body is read in chunks and refused as
/// soon as it passes the cap; in JavaScript runtimes an answer whose
/// `Content-Length` is over the cap is refused before its body is read,
/// but one sent without a length is read whole (by `fetch`) before the
/// check.
pub const MAX_REGISTRY_ANSWER: usize = 8 * 1024 * 1024;

/// Talks to one relay's registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    http: http::Http,
    timeout_ms: u64,
}

/// Verifies one `{card, presence: {online, lastSeen}}` entry.
fn verify_entry(e: &Value) -> Result<CardEntry, ClientError> {
    let card = e
        .get("card")
        .ok_or_else(|| protocol("an entry without a card"))?;
    let card = SignedCard::from_value(card.clone()).map_err(|err| {
        ClientError::Protocol(format!("registry returned an invalid card: {err}"))
    })?;
    let presence = e.get("presence");
    let online = presence
        .and_then(|p| p.get("online"))
        .and_then(Value::as_bool)
        .ok_or_else(|| protocol("an entry without presence.online"))?;
    let last_seen_ms = presence
        .and_then(|p| p.get("lastSeen"))
        .and_then(Value::as_u64);
    Ok(CardEntry {
        card,
        online,
        last_seen_ms,
    })
}

impl RegistryClient {
    /// The registry of the relay whose WebSocket URL is `relay_url`
    /// (`ws://host:port/v1/ws` → `http://host:port`, `wss` → `https`).
    pub fn for_relay(relay_url: &str) -> Result<Self, ClientError> {
        let (scheme, rest) = relay_url
            .split_once("://")
            .ok_or_else(|| ClientError::BadRequest(format!("not a URL: {relay_url}")))?;
        let scheme = match scheme {
            "ws" | "http" => "http",
            "wss" | "https" => "https",
            other => {
                return Err(ClientError::BadRequest(format!(
                    "unsupported scheme {other}"
                )))
            }
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        Self::new(&format!("{scheme}://{authority}"))
    }

    /// A registry at `base_url` (e.g. `https://relay.example.org`).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ClientError::BadRequest(format!(
                "the registry URL must start with http:// or https://: {base_url}"
            )));
        }
        Ok(RegistryClient {
            base: base_url.trim_end_matches('/').to_string(),
            http: http::Http::new()?,
            timeout_ms: REGISTRY_TIMEOUT_MS,
        })
    }

    /// Sets how long one exchange may take (default
    /// [`REGISTRY_TIMEOUT_MS`]); past it a call fails with
    /// [`ClientError::Timeout`].
    pub fn with_timeout(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms.max(1);
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends one request; a non-2xx answer becomes the registry's typed
    /// error (404 too, unless `allow_404`, which reads as `None`).
    async fn call(
        &self,
        method: &'static str,
        path_and_query: &str,
        headers: &[(&'static str, String)],
        body: Option<Vec<u8>>,
        allow_404: bool,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let url = format!("{}{}", self.base, path_and_query);
        let exchange = self.http.send(method, &url, headers, body);
        let timer = crate::rt::sleep_ms(self.timeout_ms);
        futures::pin_mut!(exchange, timer);
        let answer = match futures::future::select(exchange, timer).await {
            futures::future::Either::Left((answer, _)) => answer,
            // Dropping the exchange abandons it (natively the connection is
            // closed; in JS the fetch is aborted).
            futures::future::Either::Right(_) => return Err(ClientError::Timeout(self.timeout_ms)),
        };
        let (status, body) = answer.map_err(|message| ClientError::Registry {
            status: 0,
            code: "unreachable".into(),
            message,
        })?;
        if (200..300).contains(&status) {
            return Ok(Some(body));
        }
        if status == 404 && allow_404 {
            return Ok(None);
        }
        let error = Value::parse(&body).ok().and_then(|v| {
            let error = v.get("error")?;
            let text = |key: &str| error.get(key).and_then(Value::as_str).map(String::from);
            Some((text("code")?, text("message")?))
        });
        Err(match error {
            Some((code, message)) => ClientError::Registry {
                status,
                code,
                message,
            },
            None => ClientError::Registry {
                status,
                code: "http_error".into(),
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            },
        })
    }

    /// Publishes (creates or replaces) a signed card; returns its sequence
    /// number as stored.
    pub async fn publish(&self, card: &SignedCard) -> Result<u64, ClientError> {
        let path = format!("/v1/agents/{}", card.agent_id());
        let json = [("content-type", "application/json".to_string())];
        self.call("PUT", &path, &json, Some(card.to_json()), false)
            .await?;
        Ok(card.seq())
    }

    /// Fetches and verifies `agent`'s card; `None` if it has none.
    pub async fn get(&self, agent: &AgentId) -> Result<Option<CardEntry>, ClientError> {
        let path = format!("/v1/agents/{agent}");
        let Some(body) = self.call("GET", &path, &[], None, true).await? else {
            return Ok(None);
        };
        let entry = verify_entry(&parse(&body)?)?;
        if entry.card.agent_id() != *agent {
            return Err(ClientError::Protocol(
                "registry returned another agent's card".into(),
            ));
        }
        Ok(Some(entry))
    }

    /// Searches the registry; every returned card is verified.
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchPage, ClientError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(c) = &q.capability {
            params.push(("capability", c.clone()));
        }
        if let Some(t) = &q.text {
            params.push(("q", t.clone()));
        }
        if q.online_only {
            params.push(("online", "true".into()));
        }
        if let Some(l) = q.limit {
            params.push(("limit", l.to_string()));
        }
        if let Some(c) = &q.cursor {
            params.push(("cursor", c.clone()));
        }
        let mut path = String::from("/v1/agents");
        for (i, (key, value)) in params.iter().enumerate() {
            path.push(if i == 0 { '?' } else { '&' });
            path.push_str(key);
            path.push('=');
            path.push_str(&encode_component(value));
        }
        let body = self
            .call("GET", &path, &[], None, false)
            .await?
            .unwrap_or_default();
        let page = parse(&body)?;
        let entries = page
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| protocol("a search page without items"))?;
        let next_cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(String::from);
        let mut items = Vec::new();
        let mut rejected = 0;
        for e in entries {
            match verify_entry(e) {
                Ok(entry) => items.push(entry),
                Err(_) => rejected += 1,
            }
        }
        Ok(SearchPage {
            items,
            rejected,
            next_cursor,
        })
    }

    /// Withdraws our own card with a signed, fresh request.
    pub async fn delete(&self, identity: &Identity) -> Result<(), ClientError> {
        let path = format!("/v1/agents/{}", identity.agent_id());
        let signed = RegistryRequest::new_random(identity, "DELETE", &path, crate::rt::unix_ms())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let auth = [("authorization", signed.to_authorization())];
        self.call("DELETE", &path, &auth, None, false).await?;
        Ok(())
    }

    /// Publishes a revocation of a key (normally our own).
    pub async fn revoke(&self, revocation: &Revocation) -> Result<(), ClientError> {
        let json = [("content-type", "application/json".to_string())];
        self.call(
            "POST",
            "/v1/revocations",
            &json,
            Some(revocation.to_json().into_bytes()),
            false,
        )
        .await?;
        Ok(())
    }
}

/// Percent-encodes a query component (everything but RFC 3986's
/// unreserved characters).
fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP exchange: reqwest (hyper + rustls/ring) natively, the runtime's
/// `fetch` in browsers, Node, Deno and Workers (no HTTP stack in the wasm).
mod http {
    use super::MAX_REGISTRY_ANSWER;
    use crate::error::ClientError;

    fn too_large() -> String {
        format!("the registry's answer is larger than {MAX_REGISTRY_ANSWER} bytes")
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[derive(Debug, Clone)]
    pub(super) struct Http(reqwest::Client);

    #[cfg(not(target_arch = "wasm32"))]
    impl Http {
        pub(super) fn new() -> Result<Self, ClientError> {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .build()
                .map(Http)
                .map_err(|e| ClientError::Protocol(e.to_string()))
        }

        /// `(status, body)`, or why nothing came back.
        pub(super) async fn send(
            &self,
            method: &'static str,
            url: &str,
            headers: &[(&'static str, String)],
            body: Option<Vec<u8>>,
        ) -> Result<(u16, Vec<u8>), String> {
            let method =
                reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
            let mut req = self.0.request(method, url);
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            if let Some(body) = body {
                req = req.body(body);
            }
            let mut resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                if body.len() + chunk.len() > MAX_REGISTRY_ANSWER {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, body))
        }
    }

    #[cfg(target_arch = "wasm32")]
    #[derive(Debug, Clone)]
    pub(super) struct Http;

    #[cfg(target_arch = "wasm32")]
    impl Http {
        pub(super) fn new() -> Result<Self, ClientError> {
            Ok(Http)
        }

        /// `(status, body)`, or why nothing came back.
        pub(super) async fn send(
            &self,
            method: &'static str,
            url: &str,
            headers: &[(&'static str, String)],
            body: Option<Vec<u8>>,
        ) -> Result<(u16, Vec<u8>), String> {
            use wasm_bindgen::{JsCast, JsValue};
            use wasm_bindgen_futures::JsFuture;
            let describe = |e: JsValue| {
                js_sys::Reflect::get(&e, &"message".into())
                    .ok()
                    .and_then(|m| m.as_string())
                    .unwrap_or_else(|| format!("{e:?}"))
            };
            let global = js_sys::global();
            let fetch = js_sys::Reflect::get(&global, &"fetch".into())
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
                .ok_or_else(|| "this runtime has no fetch()".to_string())?;
            let init = js_sys::Object::new();
            let set = |k: &str, v: &JsValue| {
                let _ = js_sys::Reflect::set(&init, &k.into(), v);
            };
            set("method", &method.into());
            let hdrs = js_sys::Object::new();
            for (name, value) in headers {
                let _ = js_sys::Reflect::set(&hdrs, &(*name).into(), &value.as_str().into());
            }
            set("headers", &hdrs);
            if let Some(body) = body {
                set("body", &js_sys::Uint8Array::from(&body[..]));
            }
            // Aborted when this future is dropped (the caller's timeout), so
            // an abandoned fetch does not keep running.
            let mut abort = Abort::new();
            if let Some(signal) = abort.signal() {
                set("signal", &signal);
            }
            let promise = fetch.call2(&global, &url.into(), &init).map_err(describe)?;
            let resp = JsFuture::from(js_sys::Promise::resolve(&promise))
                .await
                .map_err(describe)?;
            let status = js_sys::Reflect::get(&resp, &"status".into())
                .ok()
                .and_then(|s| s.as_f64())
                .ok_or_else(|| "fetch returned no status".to_string())?;
            // An answer announced as too large is refused before its body is
            // read (and the fetch aborted, as `abort` is not disarmed).
            if announced_length(&resp).is_some_and(|n| n > MAX_REGISTRY_ANSWER as u64) {
                return Err(too_large());
            }
            let array_buffer = js_sys::Reflect::get(&resp, &"arrayBuffer".into())
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
                .ok_or_else(|| "fetch response has no arrayBuffer()".to_string())?;
            let buf = array_buffer.call0(&resp).map_err(describe)?;
            let buf = JsFuture::from(js_sys::Promise::resolve(&buf))
                .await
                .map_err(describe)?;
            let array = js_sys::Uint8Array::new(&buf);
            if array.length() as usize > MAX_REGISTRY_ANSWER {
                return Err(too_large());
            }
            abort.disarm();
            Ok((status as u16, array.to_vec()))
        }
    }

    /// The `Content-Length` a fetch `Response` announces, if any (read as
    /// an integer: a float parser would add 17 KB gzipped to the wasm).
    #[cfg(target_arch = "wasm32")]
    fn announced_length(resp: &wasm_bindgen::JsValue) -> Option<u64> {
        use wasm_bindgen::JsCast;
        let headers = js_sys::Reflect::get(resp, &"headers".into()).ok()?;
        let get = js_sys::Reflect::get(&headers, &"get".into())
            .ok()?
            .dyn_into::<js_sys::Function>()
            .ok()?;
        let value = get.call1(&headers, &"content-length".into()).ok()?;
        value.as_string()?.trim().parse().ok()
    }

    /// An `AbortController` (where the runtime has one) that aborts when
    /// dropped before [`Abort::disarm`].
    #[cfg(target_arch = "wasm32")]
    struct Abort(Option<wasm_bindgen::JsValue>);

    #[cfg(target_arch = "wasm32")]
    impl Abort {
        fn new() -> Self {
            let global = js_sys::global();
            let controller = js_sys::Reflect::get(&global, &"AbortController".into())
                .ok()
                .and_then(|c| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(c).ok())
                .and_then(|c| js_sys::Reflect::construct(&c, &js_sys::Array::new()).ok());
            Abort(controller)
        }

        fn signal(&self) -> Option<wasm_bindgen::JsValue> {
            let c = self.0.as_ref()?;
            js_sys::Reflect::get(c, &"signal".into()).ok()
        }

        fn disarm(&mut self) {
            self.0 = None;
        }
    }

    #[cfg(target_arch = "wasm32")]
    impl Drop for Abort {
        fn drop(&mut self) {
            let Some(c) = self.0.take() else { return };
            if let Some(abort) = js_sys::Reflect::get(&c, &"abort".into())
                .ok()
                .and_then(|f| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok())
            {
                let _ = abort.call0(&c);
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-connection HTTP server on loopback that reads the request and
    /// then does `answer` with the socket.
    async fn server<F, Fut>(answer: F) -> String
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            answer(sock).await;
        });
        url
    }

    fn someone() -> AgentId {
        Identity::from_secret_bytes(&[9; 32]).agent_id()
    }

    #[tokio::test]
    async fn a_registry_that_never_answers_times_out() {
        let url = server(|sock| async move {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            drop(sock);
        })
        .await;
        let registry = RegistryClient::new(&url).unwrap().with_timeout(300);
        let started = std::time::Instant::now();
        let err = registry.get(&someone()).await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout(300)), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_answer_past_the_limit_is_refused() {
        let url = server(|mut sock| async move {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                MAX_REGISTRY_ANSWER + 1
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let block = vec![b' '; 64 * 1024];
            for _ in 0..=(MAX_REGISTRY_ANSWER / block.len()) {
                if sock.write_all(&block).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let registry = RegistryClient::new(&url).unwrap();
        match registry.get(&someone()).await.unwrap_err() {
            ClientError::Registry {
                status: 0, message, ..
            } => assert!(message.contains("larger than"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
