//! The MCP handler: `tools/list` from the catalog, `tools/call` as mesh
//! requests, and the built-in `mesh__*` tools.
//!
//! Errors follow the MCP guidance: a tool name we do not know is a protocol
//! error (`-32602`, invalid params); everything that goes wrong *in* a call
//! — arguments that do not fit, an agent that is offline, denies us, times
//! out — is a tool result with `isError: true`, whose text starts with the
//! mesh error code (`denied: …`) and whose `structuredContent` is
//! `{"error": {"code", "message"}}`, so both a model and a program can read
//! it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use mesh_client::registry::SearchQuery;
use mesh_client::{ClientError, HandlerError};
use mesh_core::limits::MAX_APP_BODY;
use mesh_core::AgentId;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, SubscriptionFilter, Tool, ToolAnnotations,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Value};

use super::catalog::{BodyMode, SkillTool};
use super::Bridge;
use crate::chat::{self, News};

/// Most bytes of a streamed answer collected into one tool result (the
/// stream is cancelled past it).
pub const MAX_RESULT_BYTES: usize = 4 * MAX_APP_BODY;
/// Longest a chunk's text may be inside a progress notification (the
/// whole chunk still goes into the result).
const MAX_PROGRESS_MESSAGE: usize = 64 * 1024;
/// Longest `mesh__inbox` may wait for something to arrive.
const MAX_INBOX_WAIT_MS: u64 = 60_000;
/// Longest timeout a `mesh__request` may ask for.
const MAX_REQUEST_TIMEOUT_MS: u64 = 600_000;

/// Built-in tool names.
pub mod builtin {
    /// Registry search.
    pub const SEARCH: &str = "mesh__search";
    /// A request to any agent and capability.
    pub const REQUEST: &str = "mesh__request";
    /// Chat.
    pub const SEND_MESSAGE: &str = "mesh__send_message";
    /// Pull waiting requests and messages (`--receive`).
    pub const INBOX: &str = "mesh__inbox";
    /// Answer a waiting request (`--receive`).
    pub const REPLY: &str = "mesh__reply";
}

/// A call that failed, with the mesh error code to report.
struct Failure {
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new("bad_request", message)
    }

    fn from_client(e: &ClientError) -> Failure {
        Failure::new(e.code().name(), e.to_string())
    }

    fn into_result(self) -> CallToolResult {
        let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
            "{}: {}",
            self.code, self.message
        ))]);
        result.structured_content =
            Some(json!({"error": {"code": self.code, "message": self.message}}));
        result
    }
}

type Outcome = Result<CallToolResult, Failure>;

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text.into())])
}

fn json_result(value: Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    let mut result = text_result(text);
    result.structured_content = Some(value);
    result
}

/// The MCP handler of one session (cheap: everything is in the [`Bridge`]).
#[derive(Clone)]
pub struct MeshTools {
    bridge: Arc<Bridge>,
}

impl MeshTools {
    /// A handler over `bridge`.
    pub fn new(bridge: Arc<Bridge>) -> MeshTools {
        MeshTools { bridge }
    }

    /// Every tool to list: the catalog's online agents' skills, then the
    /// built-ins.
    fn tools(&self) -> Vec<Tool> {
        let mut tools: Vec<Tool> = self
            .bridge
            .catalog()
            .listed()
            .map(|t| t.tool.clone())
            .collect();
        tools.extend(builtin_tools(self.bridge.inbox.is_some()));
        tools
    }

    async fn call(
        &self,
        name: &str,
        args: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<Outcome, McpError> {
        let receiving = self.bridge.inbox.is_some();
        // The built-ins that wait (the registry, a receipt, the inbox) stop
        // waiting when the client cancels.
        let ct = &context.ct;
        Ok(match name {
            builtin::SEARCH => until_cancelled(ct, self.search(args)).await,
            builtin::REQUEST => self.request(args, context).await,
            builtin::SEND_MESSAGE => until_cancelled(ct, self.send_message(args)).await,
            builtin::INBOX if receiving => until_cancelled(ct, self.inbox(args)).await,
            builtin::REPLY if receiving => self.reply(args),
            _ => {
                let catalog = self.bridge.catalog();
                let Some(tool) = catalog.find(name) else {
                    let hint = if matches!(name, builtin::INBOX | builtin::REPLY) {
                        " (mesh__inbox and mesh__reply exist only when meshctl mcp runs with --receive)"
                    } else {
                        " (call tools/list for the tools there are; an agent's tools disappear \
                         when its card is withdrawn)"
                    };
                    return Err(McpError::invalid_params(
                        format!("unknown tool {name:?}{hint}"),
                        None,
                    ));
                };
                self.call_skill(tool, args, context).await
            }
        })
    }

    /// A call of an agent's skill.
    async fn call_skill(
        &self,
        tool: &SkillTool,
        args: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Outcome {
        let body = skill_body(tool.body, args)?;
        if !tool.online {
            let seen = match tool.last_seen_ms {
                Some(t) => format!(
                    ", last seen {}",
                    crate::output::ago(t, crate::output::unix_ms())
                ),
                None => String::new(),
            };
            return Err(Failure::new(
                "unreachable",
                format!(
                    "the agent \"{}\" ({}) is offline{seen}; the request was not sent",
                    tool.agent_name,
                    tool.agent.short()
                ),
            ));
        }
        let call = Call {
            agent: tool.agent,
            capability: tool.skill_id.clone(),
            body,
            timeout_ms: self.bridge.timeout_ms,
            label: tool.tool.name.to_string(),
        };
        if tool.streaming {
            self.stream(call, context).await
        } else {
            self.unary(call, context).await
        }
    }

    /// A request answered at once (a streamed answer is collected by the
    /// client).
    async fn unary(&self, call: Call, context: &RequestContext<RoleServer>) -> Outcome {
        let started = Instant::now();
        let request = self.bridge.client.request_with_timeout(
            call.agent,
            &call.capability,
            call.body.clone(),
            call.timeout_ms,
        );
        let answer = tokio::select! {
            answer = request => answer,
            _ = context.ct.cancelled() => {
                call.log(started, "cancelled by the MCP client");
                return Err(Failure::new("cancelled", "cancelled by the MCP client"));
            }
        };
        match answer {
            Ok(body) => {
                call.log(started, &format!("ok, {} B", body.len()));
                Ok(text_result(crate::body::to_text(&body)))
            }
            Err(e) => {
                call.log(started, &format!("{}", e.code()));
                Err(Failure::from_client(&e))
            }
        }
    }

    /// A streamed request: each chunk becomes a progress notification (if
    /// the client sent a progress token); the result is all chunks' text.
    async fn stream(&self, call: Call, context: &RequestContext<RoleServer>) -> Outcome {
        let started = Instant::now();
        let mut chunks = self
            .bridge
            .client
            .request_stream_with_timeout(
                call.agent,
                &call.capability,
                call.body.clone(),
                call.timeout_ms,
            )
            .map_err(|e| Failure::from_client(&e))?;
        let progress = context.meta.get_progress_token();
        let mut collected = BytesMut::new();
        let mut count: u32 = 0;
        loop {
            let next = tokio::select! {
                next = chunks.next() => next,
                _ = context.ct.cancelled() => {
                    // Dropping the stream sends the cancel to the agent.
                    drop(chunks);
                    call.log(started, &format!("cancelled by the MCP client after {count} chunks"));
                    return Err(Failure::new("cancelled", "cancelled by the MCP client"));
                }
            };
            let chunk = match next {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    call.log(started, &format!("{} after {count} chunks", e.code()));
                    return Err(Failure::from_client(&e));
                }
            };
            count += 1;
            if collected.len() + chunk.len() > MAX_RESULT_BYTES {
                call.log(started, "answer too large");
                return Err(Failure::new(
                    "payload_too_large",
                    format!("the streamed answer exceeds {MAX_RESULT_BYTES} bytes; cancelled"),
                ));
            }
            collected.extend_from_slice(&chunk);
            if let Some(token) = &progress {
                let mut text = crate::body::to_text(&chunk);
                if text.len() > MAX_PROGRESS_MESSAGE {
                    let mut cut = MAX_PROGRESS_MESSAGE;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                    text.push('…');
                }
                let mut note = ProgressNotificationParam::new(token.clone(), f64::from(count));
                note.message = Some(text);
                // A client that stopped listening does not stop the call.
                let _ = context.peer.notify_progress(note).await;
            }
        }
        call.log(
            started,
            &format!("ok, {count} chunks, {} B", collected.len()),
        );
        Ok(text_result(crate::body::to_text(&collected)))
    }

    async fn search(&self, args: JsonObject) -> Outcome {
        let args: SearchArgs = parse_args(builtin::SEARCH, args)?;
        let limit = args.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(Failure::bad_request("limit must be between 1 and 100"));
        }
        let query = SearchQuery {
            capability: args.capability,
            text: args.query,
            online_only: args.online.unwrap_or(false),
            limit: Some(limit),
            cursor: args.cursor,
        };
        let page =
            match tokio::time::timeout(self.bridge.timeout(), self.bridge.registry.search(&query))
                .await
            {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return Err(Failure::from_client(&e)),
                Err(_) => {
                    return Err(Failure::new(
                        "timeout",
                        format!(
                            "the registry did not answer within {} ms",
                            self.bridge.timeout_ms
                        ),
                    ))
                }
            };
        let catalog = self.bridge.catalog();
        let items: Vec<Value> = page
            .items
            .iter()
            .map(|entry| {
                let card = entry.card.card();
                let agent = entry.card.agent_id();
                let skills: Vec<Value> = card
                    .skills
                    .iter()
                    .map(|s| {
                        let tool = catalog
                            .listed()
                            .find(|t| t.agent == agent && t.skill_id == s.id)
                            .map(|t| t.tool.name.to_string());
                        json!({
                            "id": s.id,
                            "name": s.name,
                            "description": s.description,
                            "tags": s.tags,
                            "tool": tool,
                        })
                    })
                    .collect();
                json!({
                    "agentId": agent.to_did(),
                    "short": agent.short(),
                    "name": card.name,
                    "description": card.description,
                    "online": entry.online,
                    "lastSeen": entry.last_seen_ms,
                    "streaming": card.capabilities.streaming,
                    "skills": skills,
                })
            })
            .collect();
        Ok(json_result(json!({
            "items": items,
            "nextCursor": page.next_cursor,
            "rejected": page.rejected,
            "note": "Call a skill with its `tool` when it has one, else with mesh__request {peer: agentId, capability: skill id}.",
        })))
    }

    async fn request(&self, args: JsonObject, context: &RequestContext<RoleServer>) -> Outcome {
        let args: RequestArgs = parse_args(builtin::REQUEST, args)?;
        let agent = self.peer(&args.peer)?;
        mesh_core::acl::validate_capability(&args.capability)
            .map_err(|e| Failure::bad_request(format!("invalid capability: {e}")))?;
        let timeout_ms = args.timeout_ms.unwrap_or(self.bridge.timeout_ms);
        if !(1..=MAX_REQUEST_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(Failure::bad_request(format!(
                "timeout_ms must be between 1 and {MAX_REQUEST_TIMEOUT_MS}"
            )));
        }
        let call = Call {
            agent,
            label: format!("{} {}", builtin::REQUEST, args.capability),
            capability: args.capability,
            body: crate::body::from_json(&args.body.unwrap_or(Value::Null)),
            timeout_ms,
        };
        self.unary(call, context).await
    }

    async fn send_message(&self, args: JsonObject) -> Outcome {
        let args: SendArgs = parse_args(builtin::SEND_MESSAGE, args)?;
        let peer = self.peer(&args.peer)?;
        if args.text.is_empty() {
            return Err(Failure::bad_request("text is empty"));
        }
        let wait = chat::send_and_wait(&self.bridge.client, peer, &args.text);
        let news = match tokio::time::timeout(self.bridge.timeout(), wait).await {
            Ok(Ok(Some(news))) => news,
            Ok(Ok(None)) => return Err(Failure::new("going_away", "the mesh connection closed")),
            Ok(Err(error)) => return Err(Failure::from_client(&error)),
            Err(_) => {
                return Err(Failure::new(
                    "timeout",
                    format!(
                        "no receipt within {} ms: the agent may not accept chat from us, or may be \
                         offline (a first message to an offline agent waits for it to come online \
                         and is delivered then: do not send it again)",
                        self.bridge.timeout_ms
                    ),
                ))
            }
        };
        let mut out = json!({"status": news.name(), "peer": peer.to_did()});
        if news == News::Queued {
            out["note"] =
                json!("the agent is offline; the relay delivers the message when it returns");
        }
        Ok(json_result(out))
    }

    async fn inbox(&self, args: JsonObject) -> Outcome {
        let args: InboxArgs = parse_args(builtin::INBOX, args)?;
        let wait = args.wait_ms.unwrap_or(0);
        if wait > MAX_INBOX_WAIT_MS {
            return Err(Failure::bad_request(format!(
                "wait_ms must be at most {MAX_INBOX_WAIT_MS}"
            )));
        }
        let max = args.max.unwrap_or(super::inbox::MAX_PENDING_REQUESTS);
        if max == 0 {
            return Err(Failure::bad_request("max must be at least 1"));
        }
        let Some(inbox) = &self.bridge.inbox else {
            return Err(Failure::bad_request("not receiving (start with --receive)"));
        };
        Ok(json_result(
            inbox.pull(Duration::from_millis(wait), max).await,
        ))
    }

    fn reply(&self, args: JsonObject) -> Outcome {
        let args: ReplyArgs = parse_args(builtin::REPLY, args)?;
        let Some(inbox) = &self.bridge.inbox else {
            return Err(Failure::bad_request("not receiving (start with --receive)"));
        };
        let answer = match (&args.error, &args.body) {
            (Some(_), Some(_)) => {
                return Err(Failure::bad_request("give either body or error, not both"))
            }
            (Some(message), None) => Err(HandlerError::failed(message.clone())),
            (None, body) => {
                let body = crate::body::from_json(body.as_ref().unwrap_or(&Value::Null));
                if body.len() > MAX_APP_BODY {
                    return Err(Failure::new(
                        "payload_too_large",
                        format!(
                            "the answer is {} bytes; the limit is {MAX_APP_BODY}",
                            body.len()
                        ),
                    ));
                }
                Ok(body)
            }
        };
        let answered_with_error = answer.is_err();
        let (from, capability) = inbox
            .reply(&args.id, answer)
            .map_err(|e| Failure::bad_request(e.to_string()))?;
        eprintln!(
            "{} {capability} -> {} by the assistant",
            from.short(),
            if answered_with_error {
                "refused"
            } else {
                "answered"
            }
        );
        Ok(json_result(json!({
            "id": args.id,
            "answered": from.to_did(),
            "capability": capability,
            "error": answered_with_error,
        })))
    }

    /// A peer given as a did:key, or as the short id of a catalog agent.
    fn peer(&self, text: &str) -> Result<AgentId, Failure> {
        let text = text.trim();
        if let Ok(agent) = text.parse::<AgentId>() {
            return Ok(agent);
        }
        if text.len() == 12 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Some(agent) = self.bridge.catalog().agent_by_short(text) {
                return Ok(agent);
            }
            return Err(Failure::bad_request(format!(
                "no agent with short id {text} is known here; give its full did:key (see mesh__search)"
            )));
        }
        Err(Failure::bad_request(format!(
            "peer {text:?} is not an agent id: give a did:key:z6Mk… (see mesh__search) or a listed agent's short id"
        )))
    }
}

/// `work`, unless the MCP client cancels first.
async fn until_cancelled(
    ct: &tokio_util::sync::CancellationToken,
    work: impl std::future::Future<Output = Outcome>,
) -> Outcome {
    tokio::select! {
        outcome = work => outcome,
        _ = ct.cancelled() => Err(Failure::new("cancelled", "cancelled by the MCP client")),
    }
}

/// One mesh request made for a tool call.
struct Call {
    agent: AgentId,
    capability: String,
    body: Bytes,
    timeout_ms: u64,
    /// The tool, for the log line.
    label: String,
}

impl Call {
    fn log(&self, started: Instant, result: &str) {
        eprintln!(
            "{} ({} {}) {} B -> {result} ({} ms)",
            self.label,
            self.agent.short(),
            self.capability,
            self.body.len(),
            started.elapsed().as_millis()
        );
    }
}

/// The request body for a skill call, by the tool's [`BodyMode`].
fn skill_body(mode: BodyMode, mut args: JsonObject) -> Result<Bytes, Failure> {
    if mode == BodyMode::Arguments {
        let body = Value::Object(args).to_string();
        return Ok(Bytes::from(body));
    }
    let body = args.remove("body");
    if let Some(extra) = args.keys().next() {
        return Err(Failure::bad_request(format!(
            "unexpected argument {extra:?}: this tool takes only `body`"
        )));
    }
    match (mode, body) {
        (BodyMode::WrappedBody, None) => Err(Failure::bad_request(
            "missing argument `body`: this tool requires it",
        )),
        (_, body) => Ok(crate::body::from_json(&body.unwrap_or(Value::Null))),
    }
}

fn parse_args<T: for<'de> Deserialize<'de>>(tool: &str, args: JsonObject) -> Result<T, Failure> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| Failure::bad_request(format!("invalid arguments for {tool}: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    capability: Option<String>,
    query: Option<String>,
    online: Option<bool>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestArgs {
    peer: String,
    capability: String,
    body: Option<Value>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArgs {
    peer: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxArgs {
    wait_ms: Option<u64>,
    max: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyArgs {
    id: String,
    body: Option<Value>,
    error: Option<String>,
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(object) => Arc::new(object),
        _ => Arc::new(JsonObject::new()),
    }
}

/// The built-in tools (`mesh__inbox` and `mesh__reply` only when
/// receiving).
fn builtin_tools(receiving: bool) -> Vec<Tool> {
    let peer = json!({
        "type": "string",
        "description": "The agent: its did:key (from mesh__search), or the 12-hex-digit short id of an agent whose tools are listed",
    });
    let body = json!({
        "description": "The request body. A string is sent as its text; any other JSON value is sent as JSON. Leave out for an empty body.",
    });
    let mut tools = vec![
        Tool::new(
            builtin::SEARCH,
            "Search the agent-mesh registry for agents by capability (a skill id or tag) and/or free text. Returns each agent's id, name, presence and skills, and for listed skills the tool that calls them.",
            schema(json!({
                "type": "object",
                "properties": {
                    "capability": {"type": "string", "description": "A skill id or tag (exact match)"},
                    "query": {"type": "string", "description": "Free text; every word matches as a prefix"},
                    "online": {"type": "boolean", "description": "Only agents connected now (default false)"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Results per page (default 20)"},
                    "cursor": {"type": "string", "description": "nextCursor of the previous page"},
                },
                "additionalProperties": false,
            })),
        )
        .with_title("Search mesh agents")
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(true)),
        Tool::new(
            builtin::REQUEST,
            "Send an end-to-end encrypted request to any mesh agent's capability and return its answer (for agents or capabilities without a listed tool).",
            schema(json!({
                "type": "object",
                "properties": {
                    "peer": peer,
                    "capability": {"type": "string", "description": "The capability (skill id) to call"},
                    "body": body,
                    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": MAX_REQUEST_TIMEOUT_MS, "description": "How long to wait for the answer"},
                },
                "required": ["peer", "capability"],
                "additionalProperties": false,
            })),
        )
        .with_title("Request from a mesh agent")
        .with_annotations(ToolAnnotations::new().open_world(true)),
        Tool::new(
            builtin::SEND_MESSAGE,
            "Send an end-to-end encrypted chat message to a mesh agent or person; waits until it is delivered (or stored by the relay for an offline agent).",
            schema(json!({
                "type": "object",
                "properties": {
                    "peer": peer,
                    "text": {"type": "string", "description": "The message"},
                },
                "required": ["peer", "text"],
                "additionalProperties": false,
            })),
        )
        .with_title("Send a mesh chat message")
        .with_annotations(ToolAnnotations::new().open_world(true)),
    ];
    if receiving {
        tools.push(
            Tool::new(
                builtin::INBOX,
                "List the requests other mesh agents sent us that wait for an answer (answer each with mesh__reply before it expires), and chat messages received since the last call.",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "wait_ms": {"type": "integer", "minimum": 0, "maximum": MAX_INBOX_WAIT_MS, "description": "When nothing waits, wait up to this long for something to arrive (default 0)"},
                        "max": {"type": "integer", "minimum": 1, "description": "Most requests to return"},
                    },
                    "additionalProperties": false,
                })),
            )
            .with_title("Mesh inbox")
            .with_annotations(ToolAnnotations::new().read_only(true)),
        );
        tools.push(
            Tool::new(
                builtin::REPLY,
                "Answer a request from mesh__inbox: give `body` (the answer) or `error` (a refusal the caller sees as handler_failed).",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "description": "The request's id from mesh__inbox"},
                        "body": body,
                        "error": {"type": "string", "description": "Refuse the request with this message instead"},
                    },
                    "required": ["id"],
                    "additionalProperties": false,
                })),
            )
            .with_title("Answer a mesh request"),
        );
    }
    tools
}

impl ServerHandler for MeshTools {
    fn get_info(&self) -> ServerConfig {
        let mut instructions = String::from(
            "Tools named <short agent id>__<skill> call agents on the agent-mesh network \
             (end-to-end encrypted); their list follows the agents online now. \
             mesh__search finds more agents, mesh__request calls any agent's capability, \
             mesh__send_message sends a chat message.",
        );
        if self.bridge.inbox.is_some() {
            instructions.push_str(
                " Other agents can ask us things: mesh__inbox lists waiting requests, \
                 mesh__reply answers one.",
            );
        }
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("meshctl", env!("CARGO_PKG_VERSION")))
        .with_instructions(instructions)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        // The list changes with presence: never let a client cache it.
        Ok(ListToolsResult::with_all_items(self.tools()).with_ttl_ms(0))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        let outcome = self.call(&request.name, args, &context).await?;
        Ok(outcome.unwrap_or_else(Failure::into_result).into())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.bridge
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(context.peer);
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = requested.tools_list_changed;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        if context.accepted().tools_list_changed != Some(true) {
            context.cancelled().await;
            return Ok(());
        }
        let mut changes = self.bridge.catalog.subscribe();
        changes.mark_unchanged();
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if context.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> JsonObject {
        match value {
            Value::Object(o) => o,
            _ => JsonObject::new(),
        }
    }

    #[test]
    fn bodies_follow_the_tool_schema() {
        let free = skill_body(BodyMode::FreeBody, args(json!({"body": "hi"}))).ok();
        assert_eq!(free.as_deref(), Some(&b"hi"[..]));
        let empty = skill_body(BodyMode::FreeBody, args(json!({}))).ok();
        assert_eq!(empty.as_deref(), Some(&b""[..]));
        let object = skill_body(BodyMode::FreeBody, args(json!({"body": {"a": 1}}))).ok();
        assert_eq!(object.as_deref(), Some(&b"{\"a\":1}"[..]));
        let whole = skill_body(BodyMode::Arguments, args(json!({"text": "x"}))).ok();
        assert_eq!(whole.as_deref(), Some(&b"{\"text\":\"x\"}"[..]));

        let extra = skill_body(BodyMode::FreeBody, args(json!({"text": "x"}))).err();
        assert!(extra.is_some_and(|f| f.code == "bad_request" && f.message.contains("\"text\"")));
        let missing = skill_body(BodyMode::WrappedBody, args(json!({}))).err();
        assert!(missing.is_some_and(|f| f.message.contains("missing argument `body`")));
    }

    #[test]
    fn builtin_tool_names_fit_model_apis() {
        for tool in builtin_tools(true) {
            assert!(
                super::super::naming::is_valid_tool_name(&tool.name),
                "{}",
                tool.name
            );
        }
    }
}
