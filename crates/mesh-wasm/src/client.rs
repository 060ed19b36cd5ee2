//! `MeshClient`: one connection to a relay, from JavaScript.

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use futures::future::{select, Either};
use futures::lock::Mutex as AsyncMutex;
use futures::StreamExt;
use mesh_client::registry::{CardEntry, RegistryClient, SearchQuery};
use mesh_client::{
    ClientOptions, ConnectionState, HandlerError, IncomingRequest, MeshClient, MessageEvent,
    ResponseStream,
};
use mesh_core::acl::Policy;
use mesh_core::card::{AgentCard, Skill};
use mesh_core::json::{into_array, ShapeError, Value};
use mesh_core::ErrorCode;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::convert::{
    abort_error, aborted, agent_id, body, bytes, client_error, get, invalid, message_of, opt_bool,
    opt_signal, opt_string, opt_u64, parse_json, set, to_json,
};
use crate::identity::JsIdentity;

/// A connected agent: requests, streams, handlers, chat, ACL and registry
/// over one relay connection that reconnects and resumes by itself.
#[wasm_bindgen(js_name = MeshClient)]
pub struct JsClient {
    inner: MeshClient,
    registry: RegistryClient,
}

/// A response body with `fetch`-like readers.
#[wasm_bindgen(js_name = MeshResponse)]
pub struct JsResponse {
    body: Bytes,
}

#[wasm_bindgen(js_class = MeshResponse)]
impl JsResponse {
    /// The raw bytes.
    #[wasm_bindgen(getter)]
    pub fn body(&self) -> js_sys::Uint8Array {
        bytes(&self.body)
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<JsValue, JsValue> {
        parse_json(&self.text())
    }
}

/// A streamed answer. The package entry makes it an async iterable of
/// `Uint8Array` chunks; `cancel()` (or breaking out of `for await`) cancels
/// the request at the peer.
#[wasm_bindgen(js_name = ResponseStream)]
pub struct JsResponseStream {
    state: Rc<AsyncMutex<Option<ResponseStream>>>,
    signal: Option<web_sys::AbortSignal>,
    /// Fired by `cancel()` without waiting for the lock a pending `next()`
    /// holds, so that a cancel never waits for the next chunk.
    stop: web_sys::AbortController,
}

fn iter_result(done: bool, value: JsValue) -> JsValue {
    let out = js_sys::Object::new();
    set(&out, "done", done);
    set(&out, "value", value);
    out.into()
}

#[wasm_bindgen(js_class = ResponseStream)]
impl JsResponseStream {
    /// The next chunk: `{ done: false, value: Uint8Array }`, then
    /// `{ done: true }`; rejects with the request's error.
    pub fn next(&self) -> js_sys::Promise {
        let state = self.state.clone();
        let signal = self.signal.clone();
        let stop = self.stop.signal();
        future_to_promise(async move {
            let mut guard = state.lock().await;
            let Some(stream) = guard.as_mut() else {
                return Ok(iter_result(true, JsValue::UNDEFINED));
            };
            let caller_abort = async {
                match &signal {
                    Some(signal) => aborted(signal).await,
                    None => futures::future::pending().await,
                }
            };
            let cancelled = select(Box::pin(aborted(&stop)), Box::pin(caller_abort));
            let item = match select(stream.next(), cancelled).await {
                Either::Left((item, _)) => item,
                Either::Right((which, _)) => {
                    // Dropping the stream sends the cancel to the peer.
                    *guard = None;
                    return match which {
                        Either::Left(_) => Ok(iter_result(true, JsValue::UNDEFINED)),
                        Either::Right(_) => Err(abort_error()),
                    };
                }
            };
            match item {
                Some(Ok(chunk)) => Ok(iter_result(false, bytes(&chunk).into())),
                Some(Err(e)) => {
                    *guard = None;
                    Err(client_error(&e))
                }
                None => {
                    *guard = None;
                    Ok(iter_result(true, JsValue::UNDEFINED))
                }
            }
        })
    }

    /// Stops the stream at once (a pending `next()` resolves `{ done: true }`)
    /// and cancels the request at the peer.
    pub fn cancel(&self) -> js_sys::Promise {
        self.stop.abort();
        let state = self.state.clone();
        future_to_promise(async move {
            state.lock().await.take();
            Ok(iter_result(true, JsValue::UNDEFINED))
        })
    }
}

/// `Connecting | Online | Offline | Revoked | Closed` as `{ state, reason? }`.
fn state_js(state: &ConnectionState) -> JsValue {
    let out = js_sys::Object::new();
    let name = match state {
        ConnectionState::Connecting => "connecting",
        ConnectionState::Online => "online",
        ConnectionState::Offline => "offline",
        ConnectionState::Revoked => "revoked",
        ConnectionState::Closed(reason) => {
            set(&out, "reason", reason.as_str());
            "closed"
        }
    };
    set(&out, "state", name);
    out.into()
}

fn message_js(event: &MessageEvent) -> JsValue {
    let out = js_sys::Object::new();
    match event {
        MessageEvent::Chat {
            from,
            msg_id,
            sent_at_ms,
            text,
            allowed,
        } => {
            set(&out, "type", "chat");
            set(&out, "from", from.to_did());
            set(&out, "msgId", msg_id.to_string());
            set(&out, "sentAt", *sent_at_ms as f64);
            set(&out, "text", text.as_str());
            set(&out, "allowed", *allowed);
        }
        MessageEvent::Receipt { from, msg_id, kind } => {
            set(&out, "type", "receipt");
            set(&out, "from", from.to_did());
            set(&out, "msgId", msg_id.to_string());
            set(&out, "kind", kind.name());
        }
        MessageEvent::Queued { peer, msg_id } => {
            set(&out, "type", "queued");
            set(&out, "peer", peer.to_did());
            set(&out, "msgId", msg_id.to_string());
        }
        MessageEvent::Failed {
            peer,
            msg_id,
            error,
        } => {
            set(&out, "type", "failed");
            set(&out, "peer", peer.to_did());
            set(&out, "msgId", msg_id.to_string());
            set(&out, "error", client_error(error));
        }
    }
    out.into()
}

fn card_entry_js(entry: &CardEntry) -> Result<JsValue, JsValue> {
    let out = js_sys::Object::new();
    let card = String::from_utf8_lossy(entry.card.as_json()).into_owned();
    set(&out, "card", parse_json(&card)?);
    set(&out, "agentId", entry.card.agent_id().to_did());
    set(&out, "online", entry.online);
    set(
        &out,
        "lastSeen",
        entry
            .last_seen_ms
            .map(|ms| JsValue::from(ms as f64))
            .unwrap_or(JsValue::NULL),
    );
    Ok(out.into())
}

fn policy_from_js(value: &JsValue) -> Result<Policy, JsValue> {
    let text = to_json(value, "the ACL policy")?;
    Policy::from_json(&text).map_err(|e| invalid(format!("invalid ACL policy: {e}")))
}

/// The JS object a handler receives: `{ from, capability, body, signal }`
/// (the package entry wraps it with `text()` and `json()`).
fn request_js(req: &IncomingRequest, signal: &web_sys::AbortSignal) -> JsValue {
    let out = js_sys::Object::new();
    set(&out, "from", req.from.to_did());
    set(&out, "capability", req.capability.as_str());
    set(&out, "body", bytes(&req.body));
    set(&out, "signal", signal.clone());
    out.into()
}

/// A handler's thrown value as the error the requester receives.
fn handler_error(thrown: &JsValue) -> HandlerError {
    let message = message_of(thrown);
    match get(thrown, "code").as_string().as_deref() {
        Some("bad_request") => HandlerError::bad_request(message),
        _ => HandlerError::failed(message),
    }
}

/// Calls `f(arg)` and awaits the result if it is a promise.
async fn call_async(f: &js_sys::Function, arg: &JsValue) -> Result<JsValue, JsValue> {
    let out = f.call1(&JsValue::NULL, arg)?;
    if out.has_type::<js_sys::Promise>() || get(&out, "then").is_function() {
        JsFuture::from(js_sys::Promise::resolve(&out)).await
    } else {
        Ok(out)
    }
}

/// Runs `work` until it ends or the requester cancels; on cancel the
/// handler's `AbortSignal` fires.
async fn until_cancelled<T>(
    req: &IncomingRequest,
    controller: &web_sys::AbortController,
    work: impl std::future::Future<Output = Result<T, HandlerError>>,
) -> Result<T, HandlerError> {
    let work = Box::pin(work);
    let cancelled = Box::pin(req.cancelled());
    match select(work, cancelled).await {
        Either::Left((out, _)) => out,
        Either::Right(((), _)) => {
            controller.abort();
            Err(HandlerError {
                code: ErrorCode::Cancelled,
                message: "cancelled by the requester".into(),
            })
        }
    }
}

#[wasm_bindgen(js_class = MeshClient)]
impl JsClient {
    /// Connects to the relay at `relayUrl` (`ws://…/v1/ws` or
    /// `wss://…/v1/ws`) as `identity`, resolving once authenticated.
    /// Options: `requestTimeoutMs`, `connectTimeoutMs`, `acl` (policy
    /// object), `registryUrl`, `WebSocket` (a constructor, for runtimes
    /// without a global one).
    pub fn connect(relay_url: String, identity: &JsIdentity, options: JsValue) -> js_sys::Promise {
        let identity = identity.inner.clone();
        future_to_promise(async move {
            let mut opts = ClientOptions::default();
            if let Some(ms) = opt_u64(&options, "requestTimeoutMs")? {
                opts.request_timeout_ms = ms;
            }
            if let Some(ms) = opt_u64(&options, "connectTimeoutMs")? {
                opts.connect_timeout_ms = ms;
            }
            let acl = get(&options, "acl");
            if !acl.is_undefined() && !acl.is_null() {
                opts.acl = policy_from_js(&acl)?;
            }
            let ws = get(&options, "WebSocket");
            opts.dialer.websocket = if ws.is_function() {
                Some(ws.unchecked_into::<js_sys::Function>())
            } else if ws.is_undefined() || ws.is_null() {
                None
            } else {
                return Err(invalid("option WebSocket must be a constructor"));
            };
            let registry = match opt_string(&options, "registryUrl")? {
                Some(url) => RegistryClient::new(&url),
                None => RegistryClient::for_relay(&relay_url),
            }
            .map_err(|e| invalid(e.to_string()))?;
            let inner = MeshClient::connect(&relay_url, identity, opts)
                .await
                .map_err(|e| client_error(&e))?;
            Ok(JsClient { inner, registry }.into())
        })
    }

    /// Our agent id.
    #[wasm_bindgen(getter, js_name = agentId)]
    pub fn agent_id(&self) -> String {
        self.inner.agent_id().to_did()
    }

    /// The connection state now: `{ state, reason? }`.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> JsValue {
        state_js(&self.inner.state())
    }

    /// Sends `body` to `peerId`'s `capability` and resolves with its
    /// response. Options: `timeoutMs`, `signal` (an `AbortSignal`; aborting
    /// cancels the request at the peer).
    pub fn request(
        &self,
        peer_id: &str,
        capability: String,
        request_body: JsValue,
        options: JsValue,
    ) -> js_sys::Promise {
        let prepared = (|| {
            let peer = agent_id(peer_id)?;
            let b = body(&request_body)?;
            let timeout = opt_u64(&options, "timeoutMs")?;
            let signal = opt_signal(&options)?;
            Ok::<_, JsValue>((peer, b, timeout, signal))
        })();
        let client = self.inner.clone();
        future_to_promise(async move {
            let (peer, b, timeout, signal) = prepared?;
            let call = async {
                match timeout {
                    Some(ms) => client.request_with_timeout(peer, &capability, b, ms).await,
                    None => client.request(peer, &capability, b).await,
                }
            };
            let out = match signal {
                Some(signal) => match select(Box::pin(call), Box::pin(aborted(&signal))).await {
                    Either::Left((out, _)) => out,
                    Either::Right(((), _)) => return Err(abort_error()),
                },
                None => call.await,
            };
            match out {
                Ok(body) => Ok(JsResponse { body }.into()),
                Err(e) => Err(client_error(&e)),
            }
        })
    }

    /// Starts a streamed request; read the chunks with `for await`. Options:
    /// `timeoutMs` (per chunk), `signal`.
    #[wasm_bindgen(js_name = requestStream)]
    pub fn request_stream(
        &self,
        peer_id: &str,
        capability: &str,
        request_body: JsValue,
        options: JsValue,
    ) -> Result<JsResponseStream, JsValue> {
        let peer = agent_id(peer_id)?;
        let b = body(&request_body)?;
        let signal = opt_signal(&options)?;
        let stream = match opt_u64(&options, "timeoutMs")? {
            Some(ms) => self
                .inner
                .request_stream_with_timeout(peer, capability, b, ms),
            None => self.inner.request_stream(peer, capability, b),
        }
        .map_err(|e| client_error(&e))?;
        let stop = web_sys::AbortController::new().map_err(|e| invalid(message_of(&e)))?;
        Ok(JsResponseStream {
            state: Rc::new(AsyncMutex::new(Some(stream))),
            signal,
            stop,
        })
    }

    /// Serves `capability`: `handler(request)` runs for every request the
    /// ACL allows and its (awaited) return value is the response —
    /// `Uint8Array`, string, or JSON. A thrown error becomes a
    /// `handler_failed` reply (`bad_request` if its `code` says so).
    pub fn handle(&self, capability: &str, handler: js_sys::Function) {
        self.inner.handle(capability, move |req: IncomingRequest| {
            let handler = handler.clone();
            async move {
                let controller = web_sys::AbortController::new()
                    .map_err(|e| HandlerError::failed(message_of(&e)))?;
                let arg = request_js(&req, &controller.signal());
                let work = async {
                    let out = call_async(&handler, &arg)
                        .await
                        .map_err(|e| handler_error(&e))?;
                    body(&out).map_err(|e| HandlerError::failed(message_of(&e)))
                };
                until_cancelled(&req, &controller, work).await
            }
        });
    }

    /// Serves `capability` with a streamed answer: `handler(request)`
    /// returns an async iterable (e.g. an `async function*`); each value it
    /// yields is one chunk. On cancel, `request.signal` aborts and the
    /// iterator's `return()` is called.
    #[wasm_bindgen(js_name = handleStream)]
    pub fn handle_stream(&self, capability: &str, handler: js_sys::Function) {
        self.inner.handle_stream(capability, move |req, mut sink| {
            let handler = handler.clone();
            async move {
                let controller = web_sys::AbortController::new()
                    .map_err(|e| HandlerError::failed(message_of(&e)))?;
                let arg = request_js(&req, &controller.signal());
                let iterator = Rc::new(Cell::new(JsValue::UNDEFINED));
                let work = {
                    let iterator = iterator.clone();
                    async move {
                        let iterable = call_async(&handler, &arg)
                            .await
                            .map_err(|e| handler_error(&e))?;
                        let it = async_iterator(&iterable).map_err(HandlerError::failed)?;
                        iterator.set(it.clone());
                        let next = get(&it, "next");
                        let next: js_sys::Function = next
                            .dyn_into()
                            .map_err(|_| HandlerError::failed("iterator has no next()"))?;
                        loop {
                            let step = next.call0(&it).map_err(|e| handler_error(&e))?;
                            let step = JsFuture::from(js_sys::Promise::resolve(&step))
                                .await
                                .map_err(|e| handler_error(&e))?;
                            if get(&step, "done").as_bool() == Some(true) {
                                return Ok(());
                            }
                            let chunk = body(&get(&step, "value"))
                                .map_err(|e| HandlerError::failed(message_of(&e)))?;
                            if sink.send(chunk).await.is_err() {
                                return Err(HandlerError {
                                    code: ErrorCode::Cancelled,
                                    message: "cancelled by the requester".into(),
                                });
                            }
                        }
                    }
                };
                let out = until_cancelled(&req, &controller, work).await;
                if out.is_err() {
                    // Let the generator run its `finally` blocks.
                    let it = iterator.take();
                    if let Ok(ret) = get(&it, "return").dyn_into::<js_sys::Function>() {
                        let _ = ret.call0(&it);
                    }
                }
                out
            }
        });
    }

    /// Stops serving `capability`.
    pub fn unhandle(&self, capability: &str) {
        self.inner.unhandle(capability);
    }

    /// Replaces the ACL policy: `{ rule: [{ source, capabilities, action }] }`
    /// — `source` a did:key or `"*"`, `capabilities` names or patterns
    /// (`"echo"`, `"summarize.*"`, `"*"`), `action` `"allow"` or `"deny"`;
    /// first match decides, no match denies.
    #[wasm_bindgen(js_name = setAcl)]
    pub fn set_acl(&self, policy: JsValue) -> Result<(), JsValue> {
        self.inner.set_acl(policy_from_js(&policy)?);
        Ok(())
    }

    /// The ACL policy in force.
    #[wasm_bindgen(getter)]
    pub fn acl(&self) -> Result<JsValue, JsValue> {
        let text = self
            .inner
            .acl()
            .to_json()
            .map_err(|e| invalid(e.to_string()))?;
        parse_json(&text)
    }

    /// Sends a chat message; returns its id. Delivery news arrives through
    /// `onMessage` (`queued`, then the peer's `receipt`, or `failed`).
    #[wasm_bindgen(js_name = sendMessage)]
    pub fn send_message(&self, peer_id: &str, text: &str) -> Result<String, JsValue> {
        let peer = agent_id(peer_id)?;
        self.inner
            .send_message(peer, text)
            .map(|id| id.to_string())
            .map_err(|e| client_error(&e))
    }

    /// Tells `peerId` we read its message `msgId`.
    #[wasm_bindgen(js_name = sendReadReceipt)]
    pub fn send_read_receipt(&self, peer_id: &str, msg_id: &str) -> Result<(), JsValue> {
        let peer = agent_id(peer_id)?;
        let msg_id: u64 = msg_id
            .parse()
            .map_err(|_| invalid(format!("not a message id: {msg_id:?}")))?;
        self.inner
            .send_read_receipt(peer, msg_id)
            .map_err(|e| client_error(&e))
    }

    /// Calls `callback(event)` for every chat message, receipt and delivery
    /// update from now on; returns a function that unsubscribes.
    #[wasm_bindgen(js_name = onMessage)]
    pub fn on_message(&self, callback: js_sys::Function) -> js_sys::Function {
        let events = self.inner.messages();
        subscribe(events, callback, |e| message_js(&e))
    }

    /// Calls `callback({ state, reason? })` now and on every connection
    /// state change; returns a function that unsubscribes.
    #[wasm_bindgen(js_name = onStateChange)]
    pub fn on_state_change(&self, callback: js_sys::Function) -> js_sys::Function {
        let changes = self.inner.state_changes();
        subscribe(changes, callback, |s| state_js(&s))
    }

    /// Signs and publishes our Agent Card: `{ name, description?, skills?,
    /// streaming?, version? }` with skills as in A2A (`{ id, name,
    /// description, tags?, examples?, inputSchema? }`). Resolves with the
    /// card's sequence number.
    #[wasm_bindgen(js_name = publishCard)]
    pub fn publish_card(&self, card: JsValue) -> js_sys::Promise {
        let prepared = (|| {
            let name =
                opt_string(&card, "name")?.ok_or_else(|| invalid("the card needs a name"))?;
            let mut builder = AgentCard::builder(
                self.inner.agent_id(),
                self.inner.relay_url().to_string(),
                name,
            );
            if let Some(d) = opt_string(&card, "description")? {
                builder = builder.description(d);
            }
            if let Some(v) = opt_string(&card, "version")? {
                builder = builder.version(v);
            }
            if let Some(s) = opt_bool(&card, "streaming")? {
                builder = builder.streaming(s);
            }
            let skills = get(&card, "skills");
            if !skills.is_undefined() && !skills.is_null() {
                let text = to_json(&skills, "skills")?;
                let skills = Value::parse(text.as_bytes())
                    .map_err(ShapeError::from_json)
                    .and_then(|v| into_array(v, "skills", Skill::from_value))
                    .map_err(|e| invalid(format!("invalid skills: {e}")))?;
                for skill in skills {
                    builder = builder.skill(skill);
                }
            }
            builder
                .issued_at(mesh_client::rt::unix_ms())
                .sign(self.inner.identity())
                .map_err(|e| invalid(format!("invalid card: {e}")))
        })();
        let registry = self.registry.clone();
        future_to_promise(async move {
            let signed = prepared?;
            let seq = registry
                .publish(&signed)
                .await
                .map_err(|e| client_error(&e))?;
            Ok(JsValue::from(seq as f64))
        })
    }

    /// Withdraws our card from the registry (a signed request).
    #[wasm_bindgen(js_name = unpublishCard)]
    pub fn unpublish_card(&self) -> js_sys::Promise {
        let registry = self.registry.clone();
        let identity = self.inner.identity().clone();
        future_to_promise(async move {
            registry
                .delete(&identity)
                .await
                .map_err(|e| client_error(&e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The verified card of `agentId` with its presence, or `null`.
    #[wasm_bindgen(js_name = getCard)]
    pub fn get_card(&self, agent: &str) -> js_sys::Promise {
        let agent = agent_id(agent);
        let registry = self.registry.clone();
        future_to_promise(async move {
            let agent = agent?;
            match registry.get(&agent).await.map_err(|e| client_error(&e))? {
                Some(entry) => card_entry_js(&entry),
                None => Ok(JsValue::NULL),
            }
        })
    }

    /// Searches the registry: `{ capability?, text?, online?, limit?,
    /// cursor? }` → `{ items, rejected, nextCursor }`. Every card is
    /// verified here; cards that fail are counted in `rejected`.
    pub fn search(&self, query: JsValue) -> js_sys::Promise {
        let prepared = (|| {
            Ok::<_, JsValue>(SearchQuery {
                capability: opt_string(&query, "capability")?,
                text: opt_string(&query, "text")?,
                online_only: opt_bool(&query, "online")?.unwrap_or(false),
                limit: opt_u64(&query, "limit")?.map(|n| n.min(u64::from(u32::MAX)) as u32),
                cursor: opt_string(&query, "cursor")?,
            })
        })();
        let registry = self.registry.clone();
        future_to_promise(async move {
            let page = registry
                .search(&prepared?)
                .await
                .map_err(|e| client_error(&e))?;
            let items = js_sys::Array::new();
            for entry in &page.items {
                items.push(&card_entry_js(entry)?);
            }
            let out = js_sys::Object::new();
            set(&out, "items", items);
            set(&out, "rejected", page.rejected as u32);
            set(
                &out,
                "nextCursor",
                page.next_cursor.map(JsValue::from).unwrap_or(JsValue::NULL),
            );
            Ok(out.into())
        })
    }

    /// Closes the connection; pending requests fail with `going_away`.
    pub fn close(&self) -> js_sys::Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            client.close().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// `iterable[Symbol.asyncIterator]()`, else `iterable[Symbol.iterator]()`.
fn async_iterator(iterable: &JsValue) -> Result<JsValue, String> {
    for symbol in [js_sys::Symbol::async_iterator(), js_sys::Symbol::iterator()] {
        if let Ok(f) = js_sys::Reflect::get(iterable, &symbol) {
            if let Ok(f) = f.dyn_into::<js_sys::Function>() {
                return f.call0(iterable).map_err(|e| message_of(&e));
            }
        }
    }
    Err("a streaming handler must return an async iterable (e.g. from an async function*)".into())
}

/// Feeds every item of `events` to `callback` until the returned function
/// is called.
fn subscribe<S, T>(
    mut events: S,
    callback: js_sys::Function,
    to_js: impl Fn(T) -> JsValue + 'static,
) -> js_sys::Function
where
    S: futures::Stream<Item = T> + Unpin + 'static,
    T: 'static,
{
    let (stop_tx, mut stop_rx) = futures::channel::oneshot::channel::<()>();
    wasm_bindgen_futures::spawn_local(async move {
        while let Either::Left((Some(item), _)) = select(events.next(), &mut stop_rx).await {
            // A throwing callback must not end the subscription.
            let _ = callback.call1(&JsValue::NULL, &to_js(item));
        }
    });
    let stop = Cell::new(Some(stop_tx));
    Closure::<dyn FnMut()>::new(move || {
        if let Some(tx) = stop.take() {
            let _ = tx.send(());
        }
    })
    .into_js_value()
    .unchecked_into()
}
