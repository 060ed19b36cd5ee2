//! The command line, declared once with clap's derive API: every flag, its
//! environment variable and default, and the `--help` text of every
//! subcommand (each with an example) live here and nowhere else.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};
use mesh_core::acl::Source;
use mesh_core::AgentId;

/// Where `--relay` points when neither the flag nor `MESH_RELAY` is given:
/// a relay started with `cargo run -p mesh-relay` on this machine.
pub const DEFAULT_RELAY: &str = "ws://127.0.0.1:8080/v1/ws";

/// `meshctl`: the agent-mesh command line.
#[derive(Debug, Parser)]
#[command(
    name = "meshctl",
    version,
    about = "agent-mesh from the terminal: identity, Agent Cards, requests, streams, chat, serving",
    long_about = "agent-mesh from the terminal.\n\n\
        Every agent is an Ed25519 key kept in an identity file (create one with \
        `meshctl keygen`). Traffic to other agents goes through a relay and is \
        end-to-end encrypted; the relay never sees a payload.",
    after_help = "Examples:\n  \
        meshctl keygen\n  \
        meshctl search --capability echo\n  \
        meshctl request did:key:z6Mk... echo 'hello'\n  \
        MESH_RELAY=wss://relay.example.org/v1/ws meshctl status"
)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes (before or after the subcommand's name).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// WebSocket URL of the relay (`ws://…/v1/ws` or `wss://…/v1/ws`); its
    /// registry is at the same host.
    #[arg(long, global = true, help_heading = "Global options", env = "MESH_RELAY", value_name = "WS URL", default_value = DEFAULT_RELAY)]
    pub relay: String,

    /// Identity file holding our secret key [default:
    /// $XDG_CONFIG_HOME/agent-mesh/identity, else
    /// $HOME/.config/agent-mesh/identity].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MESH_IDENTITY",
        value_name = "FILE"
    )]
    pub identity: Option<PathBuf>,

    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// How long to wait for the relay, the registry, a peer's answer or
    /// receipt (and, for `serve --forward`, the HTTP service), in
    /// milliseconds.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MESH_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout: u64,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new identity (an Ed25519 secret key) in the identity file.
    ///
    /// The file is created with mode 0600 (its directory 0700) and holds the
    /// secret key in its text form. An existing identity is never replaced
    /// unless --force is given: the old key, and everything addressed to it,
    /// would be lost.
    #[command(after_help = "Example:\n  meshctl keygen\n  meshctl --identity ./bob.key keygen")]
    Keygen(KeygenArgs),

    /// Print our agent id (did:key) and its short form.
    #[command(after_help = "Example:\n  meshctl id\n  meshctl id --json")]
    Id,

    /// Print the safety number shared with a peer, to compare out of band.
    ///
    /// Both sides compute the same twelve groups of five digits; if they
    /// match (read them to each other, or compare side by side), no one is
    /// in the middle.
    #[command(after_help = "Example:\n  meshctl fingerprint did:key:z6Mk...")]
    Fingerprint {
        /// The peer's agent id (did:key:z6Mk…).
        peer: AgentId,
    },

    /// Sign our Agent Card and publish it to the relay's registry
    ///
    /// Either describe the card with flags, or give a TOML/JSON card file
    /// with --card. Every publish supersedes the previous card (its sequence
    /// number is the current time).
    ///
    /// Card file (TOML shown; JSON uses the same member names):
    ///
    ///   name = "Summarizer"
    ///   description = "Summarizes text"
    ///   version = "1.0.0"          # optional
    ///   streaming = false          # optional
    ///   [[skills]]
    ///   id = "summarize"           # letters, digits, '.', '_', '-'
    ///   name = "Summarize"         # optional, defaults to id
    ///   description = "..."        # optional
    ///   tags = ["text", "nlp"]     # optional
    ///   inputSchema = { type = "object" }   # optional JSON Schema
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
            meshctl publish --name 'Echo bot' --skill echo:test,demo --skill echo.stream --streaming\n  \
            meshctl publish --card card.toml"
    )]
    Publish(PublishArgs),

    /// Withdraw our Agent Card from the registry (a signed request).
    #[command(after_help = "Example:\n  meshctl unpublish")]
    Unpublish,

    /// Search the registry for agents, by capability and/or free text.
    ///
    /// Every card shown has been verified against its agent's key. Prints a
    /// table (short id, name, presence, skills) or, with --json, the full
    /// cards with presence.
    #[command(
        visible_alias = "discover",
        after_help = "Examples:\n  meshctl search --capability echo --online\n  meshctl discover --query summarize --all --json"
    )]
    Search(SearchArgs),

    /// Send a request to a peer's capability and print the response body.
    ///
    /// The body is the third argument, or stdin when it is `-`, or empty.
    /// The response is written to stdout exactly as received (raw bytes).
    #[command(after_help = "Examples:\n  \
        meshctl request did:key:z6Mk... echo 'hello'\n  \
        echo '{\"text\": \"...\"}' | meshctl request did:key:z6Mk... summarize -")]
    Request(RequestArgs),

    /// Send a request and print a streamed answer chunk by chunk.
    ///
    /// Each chunk is printed as it arrives, followed by a newline unless it
    /// ends with one (--json: one {"seq", "body"} object per line). Ctrl-C
    /// cancels the request at the peer.
    #[command(
        after_help = "Example:\n  meshctl stream did:key:z6Mk... echo.stream 'one two three'"
    )]
    Stream(RequestArgs),

    /// Send a chat message and wait until it is delivered or queued.
    ///
    /// Waits (up to --timeout) for the peer's delivery receipt, or for the
    /// relay to report that it stored the message for an offline peer. The
    /// peer acknowledges only if it accepts chat from us.
    #[command(after_help = "Example:\n  meshctl send did:key:z6Mk... 'hello there'")]
    Send {
        /// The peer's agent id (did:key:z6Mk…).
        peer: AgentId,
        /// The message.
        text: String,
    },

    /// Print incoming chat messages, one per line, until Ctrl-C.
    ///
    /// Chat is default-deny: say whom to accept it from with --from (once
    /// per agent) or --anyone. Accepted messages are acknowledged with a
    /// delivery receipt; others are shown as contact requests and not
    /// acknowledged.
    #[command(
        after_help = "Examples:\n  meshctl listen --anyone\n  meshctl listen --from did:key:z6Mk... --json"
    )]
    Listen(ListenArgs),

    /// Run as an agent answering requests, until Ctrl-C or SIGTERM.
    ///
    /// --echo answers every request with its body and also serves
    /// `echo.stream`, which streams the body back word by word.
    ///
    /// --forward URL turns each allowed request into an HTTP POST to URL
    /// with the JSON body {"from": did, "capability": name, "body": …} (the
    /// request body as JSON if it parses, else as a string) and returns the
    /// HTTP response body as the answer. Give the capabilities to serve with
    /// --capability.
    ///
    /// Requests are default-deny: allow callers with --allow (an agent id,
    /// or * for anyone) or an ACL policy file with --acl (reloaded when it
    /// changes). Each request is logged on stderr.
    #[command(after_help = "Examples:\n  \
        meshctl serve --echo --allow '*'\n  \
        meshctl serve --forward http://127.0.0.1:9000/mesh --capability summarize --allow did:key:z6Mk...\n  \
        meshctl serve --forward http://127.0.0.1:9000/mesh --capability summarize --acl acl.toml --publish-card\n\n\
        ACL file (TOML):\n  \
        [[rule]]\n  \
        source = \"did:key:z6Mk...\"   # or \"*\"\n  \
        capabilities = [\"summarize\"]\n  \
        action = \"allow\"")]
    Serve(ServeArgs),

    /// Revoke our key for good: the relay refuses it and the registry drops
    /// its card.
    ///
    /// This is permanent and cannot be undone; use it when the secret key
    /// has leaked or the agent is retired. Requires --yes.
    #[command(after_help = "Example:\n  meshctl revoke --reason 'laptop stolen' --yes")]
    Revoke(RevokeArgs),

    /// Show the relay's status and whether our card is published and online.
    #[command(after_help = "Example:\n  meshctl status\n  meshctl status --json")]
    Status,

    /// Serve mesh agents to an AI assistant as MCP tools (Model Context
    /// Protocol), over stdio or, with --listen, streamable HTTP.
    ///
    /// Every skill of every agent found in the registry becomes one tool,
    /// named `<short agent id>__<skill id>` (dots in the skill id become
    /// `_`; at most 64 characters), with the skill's description and input
    /// schema from the agent's signed card. Only agents online now are
    /// listed; the list is refreshed every 5 s and the client is told when it
    /// changes (notifications/tools/list_changed). Narrow it with
    /// --capability (skills whose id or tag matches), --agent, or --contacts
    /// (a file of agent ids, one per line, re-read on every refresh).
    ///
    /// A tool call is an end-to-end encrypted request; a streamed answer
    /// arrives as progress notifications (when the client asks for progress)
    /// and then as the whole text; cancelling the call cancels the request at
    /// the agent. A skill without an input schema takes one argument, `body`
    /// (a string is sent as its text, any other JSON value as JSON).
    ///
    /// Built-in tools: mesh__search (the registry), mesh__send_message
    /// (chat), mesh__request (any agent and capability) and, with --receive,
    /// mesh__inbox and mesh__reply: requests from agents allowed by --allow
    /// to the capabilities named by --serve wait in an inbox (at most 64)
    /// until the assistant answers them; one left unanswered for
    /// --reply-timeout gets a `timeout` error.
    ///
    /// Over stdio, stdout carries only MCP; logs go to stderr. With --listen
    /// the endpoint is http://ADDR/mcp on a loopback address, and every
    /// request needs `Authorization: Bearer <token>`; the token is generated
    /// and printed on stderr unless given with --token or MESH_MCP_TOKEN.
    #[command(after_help = "Examples:\n  \
        meshctl mcp\n  \
        meshctl mcp --capability summarize --capability translate\n  \
        meshctl mcp --agent did:key:z6Mk... --receive --allow did:key:z6Mk...\n  \
        meshctl mcp --listen 127.0.0.1:8765\n\n\
        In an assistant's .mcp.json:\n  \
        {\"mcpServers\": {\"agent-mesh\": {\"command\": \"meshctl\", \"args\": [\"mcp\"]}}}")]
    Mcp(McpArgs),

    /// A local HTTP API to the mesh, for programs that only speak HTTP.
    ///
    /// POST /v1/request {"peer", "capability", "body", "timeout_ms"} answers
    /// with the peer's response body (a `body` string is sent as its text,
    /// any other JSON value as JSON); POST /v1/stream answers with
    /// server-sent events (`chunk` with {"seq", "body"}, then `end` or
    /// `error`); GET /v1/search?capability=&q=&online= lists verified cards
    /// with presence. Errors are {"error": {"code", "message"}} with the
    /// mesh's error codes and a matching HTTP status.
    ///
    /// Binds a loopback address only; every request needs `Authorization:
    /// Bearer <token>`, generated and printed on stderr unless given with
    /// --token or MESH_GATEWAY_TOKEN. To be called as well, run `meshctl
    /// serve --forward` beside it.
    #[command(after_help = "Examples:\n  \
        meshctl gateway --listen 127.0.0.1:8790\n  \
        curl -s -H \"Authorization: Bearer $TOKEN\" -d '{\"peer\": \"did:key:z6Mk...\", \"capability\": \"echo\", \"body\": \"hi\"}' http://127.0.0.1:8790/v1/request\n  \
        curl -sN -H \"Authorization: Bearer $TOKEN\" -d '{\"peer\": \"did:key:z6Mk...\", \"capability\": \"echo.stream\", \"body\": \"a b c\"}' http://127.0.0.1:8790/v1/stream\n  \
        curl -s -H \"Authorization: Bearer $TOKEN\" 'http://127.0.0.1:8790/v1/search?capability=echo&online=true'")]
    Gateway(GatewayArgs),
}

/// `keygen` flags.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Replace an existing identity (its key is lost for good).
    #[arg(long)]
    pub force: bool,
}

/// `publish` flags.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The agent's display name.
    #[arg(long, required_unless_present = "card", value_name = "N")]
    pub name: Option<String>,

    /// What the agent does.
    #[arg(long, value_name = "D")]
    pub description: Option<String>,

    /// A skill: its id, optionally followed by `:` and comma-separated
    /// search tags (`summarize:text,nlp`). Repeat for more skills.
    #[arg(long = "skill", value_name = "ID[:TAG,TAG]")]
    pub skills: Vec<String>,

    /// Declare that the agent streams responses.
    #[arg(long)]
    pub streaming: bool,

    /// Read the card from a TOML or JSON file instead of the flags above.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "description", "skills", "streaming"])]
    pub card: Option<PathBuf>,
}

/// `search` flags.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// A skill id or tag (exact match).
    #[arg(long, value_name = "C")]
    pub capability: Option<String>,

    /// Free text; every word matches as a prefix.
    #[arg(long, value_name = "Q")]
    pub query: Option<String>,

    /// Only agents connected to the relay now.
    #[arg(long)]
    pub online: bool,

    /// Results per page (1–100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: Option<u32>,

    /// Fetch every page, not only the first.
    #[arg(long)]
    pub all: bool,
}

/// `request` and `stream` arguments.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The peer's agent id (did:key:z6Mk…).
    pub peer: AgentId,
    /// The capability to call.
    pub capability: String,
    /// The request body; `-` reads it from stdin; empty when omitted.
    pub body: Option<String>,
}

/// `listen` flags.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Accept chat from this agent (repeatable).
    #[arg(long, value_name = "DID", conflicts_with = "anyone")]
    pub from: Vec<AgentId>,

    /// Accept chat from any agent.
    #[arg(long)]
    pub anyone: bool,

    /// Also print delivery and read receipts for our messages.
    #[arg(long)]
    pub receipts: bool,
}

/// `serve` flags.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["echo", "forward"])))]
pub struct ServeArgs {
    /// Answer each request with its own body (also serves `echo.stream`).
    #[arg(long)]
    pub echo: bool,

    /// Forward each request to this HTTP endpoint as a JSON POST.
    #[arg(long, value_name = "URL")]
    pub forward: Option<String>,

    /// A capability to serve (repeatable). Default for --echo: `echo`.
    /// Required for --forward.
    #[arg(long = "capability", value_name = "NAME")]
    pub capabilities: Vec<String>,

    /// Allow requests from this agent, or from anyone with `*`
    /// (repeatable), to the served capabilities.
    #[arg(long = "allow", value_name = "DID|*", conflicts_with = "acl")]
    pub allow: Vec<Source>,

    /// An ACL policy file (TOML, or JSON if it ends in .json), reloaded
    /// whenever it changes.
    #[arg(long, value_name = "FILE")]
    pub acl: Option<PathBuf>,

    /// Publish an Agent Card listing the served capabilities as skills.
    #[arg(long)]
    pub publish_card: bool,

    /// The name on the published card (with --publish-card).
    #[arg(long, value_name = "N", requires = "publish_card")]
    pub name: Option<String>,
}

/// `mcp` flags.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// Serve streamable HTTP at http://ADDR/mcp instead of stdio (a loopback
    /// address, or just a port on 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// With --listen: the bearer token HTTP clients must send (at least 32
    /// characters); generated and printed when not given.
    #[arg(
        long,
        env = "MESH_MCP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// List only skills whose id or tag is C (repeatable).
    #[arg(long = "capability", value_name = "C")]
    pub capabilities: Vec<String>,

    /// List only this agent's skills (repeatable; with --contacts, both).
    #[arg(long = "agent", value_name = "DID")]
    pub agents: Vec<AgentId>,

    /// A file of agent ids to list, one per line (`#` starts a comment;
    /// anything after the id is ignored); re-read on every refresh.
    #[arg(long, value_name = "FILE")]
    pub contacts: Option<PathBuf>,

    /// Accept requests from other agents into an inbox the assistant reads
    /// with mesh__inbox and answers with mesh__reply (and chat messages).
    #[arg(long)]
    pub receive: bool,

    /// With --receive: accept requests and chat from this agent, or from
    /// anyone with `*` (repeatable).
    #[arg(long = "allow", value_name = "DID|*", requires = "receive")]
    pub allow: Vec<Source>,

    /// With --receive: a capability name to accept requests for
    /// (repeatable) [default: ask].
    #[arg(long = "serve", value_name = "NAME", requires = "receive")]
    pub serve: Vec<String>,

    /// With --receive: how long a request waits in the inbox for an answer
    /// before its caller gets a `timeout` error, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 120_000,
        requires = "receive"
    )]
    pub reply_timeout: u64,
}

/// `gateway` flags.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Where to listen: a loopback address, or just a port on 127.0.0.1.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8790")]
    pub listen: String,

    /// The bearer token clients must send (at least 32 characters);
    /// generated and printed when not given.
    #[arg(
        long,
        env = "MESH_GATEWAY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// `revoke` flags.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Why the key is revoked (shown to anyone who checks).
    #[arg(long, value_name = "R", default_value = "")]
    pub reason: String,

    /// Confirm: revocation is permanent.
    #[arg(long)]
    pub yes: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
