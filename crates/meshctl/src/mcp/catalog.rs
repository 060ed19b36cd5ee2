//! The tool catalog: which agents `meshctl mcp` offers, read from the
//! registry, and one MCP tool per skill of theirs.
//!
//! Which agents: those named by `--agent` and `--contacts`, or, when none
//! are named, every agent in the registry (or every agent offering one of
//! the `--capability` names), at most [`MAX_AGENTS`]. Which skills: all of
//! them, or with `--capability` only those whose id or a tag is one of the
//! names. Our own agent is never offered.
//!
//! The catalog keeps offline agents' tools too but *lists* only online
//! agents': a tool the assistant cannot use is noise, and a call that
//! races an agent going away still finds its tool and gets a clear
//! `unreachable` instead of "unknown tool".

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use mesh_client::registry::{CardEntry, RegistryClient, SearchQuery};
use mesh_client::ClientError;
use mesh_core::card::{AgentCard, Skill};
use mesh_core::AgentId;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{json, Value};

use super::naming::{tool_names, SkillRef};

/// Most agents one catalog holds (the registry is read page by page up to
/// this many).
pub const MAX_AGENTS: usize = 256;
/// Most skill tools one catalog holds (a longer list would swamp the
/// assistant's context anyway); past it the rest are left out, by name
/// order, with a warning.
pub const MAX_TOOLS: usize = 512;
/// Most agents named by `--agent` and `--contacts` together.
pub const MAX_NAMED_AGENTS: usize = 256;
/// Registry page size while reading the catalog.
const PAGE: u32 = 100;
/// Registry look-ups of named agents in flight at once.
const LOOKUPS_IN_FLIGHT: usize = 8;
/// Largest contacts file read, in bytes.
const MAX_CONTACTS_FILE: u64 = 1 << 20;

/// Which agents and skills to offer (from the command line).
#[derive(Debug, Clone)]
pub struct Selection {
    /// `--capability`: only skills whose id or a tag is one of these.
    pub capabilities: Vec<String>,
    /// `--agent`.
    pub agents: Vec<AgentId>,
    /// `--contacts`.
    pub contacts: Option<PathBuf>,
    /// Ourselves, never offered.
    pub me: AgentId,
}

impl Selection {
    /// Whether `skill` passes the `--capability` filter.
    fn wants(&self, skill: &Skill) -> bool {
        self.capabilities.is_empty()
            || self
                .capabilities
                .iter()
                .any(|c| skill.id == *c || skill.tags.iter().any(|t| t == c))
    }

    /// The named agents: `--agent` and the contacts file, deduplicated.
    fn named(&self) -> anyhow::Result<Vec<AgentId>> {
        let mut agents = self.agents.clone();
        if let Some(path) = &self.contacts {
            agents.extend(read_contacts(path)?);
        }
        let mut seen = std::collections::HashSet::new();
        agents.retain(|a| seen.insert(*a));
        if agents.len() > MAX_NAMED_AGENTS {
            bail!(
                "{} agents named by --agent and --contacts; at most {MAX_NAMED_AGENTS} are offered",
                agents.len()
            );
        }
        Ok(agents)
    }
}

/// Reads a contacts file: one did:key per line; blank lines and `#`
/// comments are skipped, and so is anything after the id on its line.
pub fn read_contacts(path: &Path) -> anyhow::Result<Vec<AgentId>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read the contacts file {}", path.display()))?
        .len();
    if size > MAX_CONTACTS_FILE {
        bail!(
            "the contacts file {} is larger than {MAX_CONTACTS_FILE} bytes",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the contacts file {}", path.display()))?;
    parse_contacts(&text).with_context(|| format!("in the contacts file {}", path.display()))
}

fn parse_contacts(text: &str) -> anyhow::Result<Vec<AgentId>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        let agent: AgentId = word.parse().map_err(|_| {
            anyhow::anyhow!(
                "line {}: {word:?} is not an agent id (did:key:z6Mk…)",
                n + 1
            )
        })?;
        out.push(agent);
    }
    Ok(out)
}

/// How a tool's arguments become the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// The card's input schema describes an object: the arguments object is
    /// the body, as JSON.
    Arguments,
    /// The card's input schema describes something else (a string, an
    /// array…): it is wrapped as the property `body`, which is required,
    /// and that value is the body.
    WrappedBody,
    /// The card has no input schema: an optional `body`, any JSON.
    FreeBody,
}

/// One skill offered as a tool.
#[derive(Debug, Clone)]
pub struct SkillTool {
    /// The MCP tool (name, title, description, input schema).
    pub tool: Tool,
    /// The agent serving it.
    pub agent: AgentId,
    /// The agent's name on its card.
    pub agent_name: String,
    /// The skill id, i.e. the capability to request.
    pub skill_id: String,
    /// Whether the card says the agent streams answers.
    pub streaming: bool,
    /// How arguments become the body.
    pub body: BodyMode,
    /// Whether the agent was online at the last refresh.
    pub online: bool,
    /// When the relay last saw it (Unix ms).
    pub last_seen_ms: Option<u64>,
}

/// The tools known at one refresh.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Every skill tool, online or not, sorted by name.
    pub tools: Vec<SkillTool>,
    /// The agents found (for `mesh__send_message` by short id).
    pub agents: Vec<(AgentId, String, bool)>,
    /// Skill tools left out past [`MAX_TOOLS`].
    pub dropped: usize,
}

impl Catalog {
    /// The tools to list: online agents' only.
    pub fn listed(&self) -> impl Iterator<Item = &SkillTool> {
        self.tools.iter().filter(|t| t.online)
    }

    /// The tool called `name`, listed or not.
    pub fn find(&self, name: &str) -> Option<&SkillTool> {
        self.tools.iter().find(|t| t.tool.name == name)
    }

    /// What clients see of the catalog, to tell whether it changed.
    pub fn fingerprint(&self) -> String {
        let listed: Vec<&Tool> = self.listed().map(|t| &t.tool).collect();
        serde_json::to_string(&listed).unwrap_or_default()
    }

    /// The agent whose short id is `short`, if exactly one has it.
    pub fn agent_by_short(&self, short: &str) -> Option<AgentId> {
        let mut found = self.agents.iter().filter(|(a, _, _)| a.short() == short);
        match (found.next(), found.next()) {
            (Some((agent, _, _)), None) => Some(*agent),
            _ => None,
        }
    }
}

/// Runs a registry call, failing with `timeout` after `limit`.
async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => Err(ClientError::Timeout(
            u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        )),
    }
}

/// Reads the selected cards from the registry, each call bounded by
/// `limit`. Named agents without a card are left out.
pub async fn fetch(
    registry: &RegistryClient,
    selection: &Selection,
    limit: Duration,
) -> anyhow::Result<Vec<CardEntry>> {
    let named = selection.named()?;
    let mut entries = Vec::new();
    if !named.is_empty() {
        let lookups: Vec<(AgentId, Result<Option<CardEntry>, ClientError>)> =
            futures::stream::iter(named)
                .map(|agent| async move { (agent, bounded(limit, registry.get(&agent)).await) })
                .buffered(LOOKUPS_IN_FLIGHT)
                .collect()
                .await;
        for (agent, found) in lookups {
            let found = found
                .with_context(|| format!("cannot look up {} in the registry", agent.short()))?;
            entries.extend(found);
        }
    } else {
        let capabilities: Vec<Option<String>> = if selection.capabilities.is_empty() {
            vec![None]
        } else {
            selection.capabilities.iter().cloned().map(Some).collect()
        };
        for capability in capabilities {
            let mut query = SearchQuery {
                capability,
                limit: Some(PAGE),
                ..SearchQuery::default()
            };
            loop {
                let page = bounded(limit, registry.search(&query))
                    .await
                    .with_context(|| format!("cannot search {}", registry.base_url()))?;
                entries.extend(page.items);
                match page.next_cursor {
                    Some(cursor) if entries.len() < MAX_AGENTS => query.cursor = Some(cursor),
                    _ => break,
                }
            }
        }
    }
    entries.retain(|e| e.card.agent_id() != selection.me);
    let mut seen = std::collections::HashSet::new();
    entries.retain(|e| seen.insert(e.card.agent_id()));
    entries.truncate(MAX_AGENTS);
    Ok(entries)
}

/// Builds the catalog from verified registry entries.
pub fn build(entries: &[CardEntry], selection: &Selection) -> Catalog {
    let mut entries: Vec<&CardEntry> = entries.iter().collect();
    entries.sort_by_key(|e| e.card.agent_id().to_did());
    let mut refs = Vec::new();
    let mut owners: Vec<(&CardEntry, &Skill)> = Vec::new();
    for entry in &entries {
        let agent = entry.card.agent_id();
        for skill in entry
            .card
            .card()
            .skills
            .iter()
            .filter(|s| selection.wants(s))
        {
            refs.push(SkillRef {
                agent_did: agent.to_did(),
                agent_short: agent.short(),
                skill_id: skill.id.clone(),
            });
            owners.push((entry, skill));
        }
    }
    let names = tool_names(&refs);
    let mut tools: Vec<SkillTool> = names
        .into_iter()
        .zip(owners)
        .map(|(name, (entry, skill))| skill_tool(name, entry, skill))
        .collect();
    // Past the cap, the tools of offline agents go first: a tool that can
    // be called now is worth more than one that cannot.
    tools.sort_by(|a, b| (!a.online, &a.tool.name).cmp(&(!b.online, &b.tool.name)));
    let dropped = tools.len().saturating_sub(MAX_TOOLS);
    tools.truncate(MAX_TOOLS);
    tools.sort_by(|a, b| a.tool.name.cmp(&b.tool.name));
    let agents = entries
        .iter()
        .map(|e| (e.card.agent_id(), e.card.card().name.clone(), e.online))
        .collect();
    Catalog {
        tools,
        agents,
        dropped,
    }
}

fn skill_tool(name: String, entry: &CardEntry, skill: &Skill) -> SkillTool {
    let card: &AgentCard = entry.card.card();
    let agent = entry.card.agent_id();
    let schema = skill.input_schema.as_ref().map(crate::output::to_serde);
    let (schema, body) = input_schema(schema.as_ref());
    let what = if skill.description.trim().is_empty() {
        skill.name.clone()
    } else {
        skill.description.clone()
    };
    let mut description = format!(
        "{what}\n\nSkill `{}` of the mesh agent \"{}\" ({agent}), reached end-to-end encrypted through agent-mesh.",
        skill.id, card.name
    );
    if !skill.tags.is_empty() {
        description.push_str(&format!(" Tags: {}.", skill.tags.join(", ")));
    }
    if card.capabilities.streaming {
        description.push_str(" The agent streams its answer (sent as progress notifications).");
    }
    if let Some(examples) = skill.examples.as_ref().filter(|e| !e.is_empty()) {
        description.push_str(&format!(" Examples: {}.", examples.join(" | ")));
    }
    let tool = Tool::new(name, description, Arc::new(schema))
        .with_title(format!("{}: {}", card.name, skill.name))
        .with_annotations(ToolAnnotations::new().open_world(true));
    SkillTool {
        tool,
        agent,
        agent_name: card.name.clone(),
        skill_id: skill.id.clone(),
        streaming: card.capabilities.streaming,
        body,
        online: entry.online,
        last_seen_ms: entry.last_seen_ms,
    }
}

/// The description of the `body` argument of skills without a schema.
pub const FREE_BODY_DESCRIPTION: &str = "The request body. A string is sent as its text; any other JSON value is sent as JSON. Leave out for an empty body.";

/// The tool's input schema for a skill's (optional) card schema, and how
/// arguments then become the body.
pub fn input_schema(card_schema: Option<&Value>) -> (JsonObject, BodyMode) {
    let schema = match card_schema {
        Some(Value::Object(object)) if object.get("type") == Some(&json!("object")) => {
            return (object.clone(), BodyMode::Arguments)
        }
        Some(other) => json!({
            "type": "object",
            "properties": {"body": other},
            "required": ["body"],
            "additionalProperties": false,
        }),
        None => json!({
            "type": "object",
            "properties": {"body": {"description": FREE_BODY_DESCRIPTION}},
            "additionalProperties": false,
        }),
    };
    let mode = if card_schema.is_some() {
        BodyMode::WrappedBody
    } else {
        BodyMode::FreeBody
    };
    match schema {
        Value::Object(object) => (object, mode),
        _ => (JsonObject::new(), mode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_ids_with_comments_and_labels() {
        let a = mesh_core::Identity::from_secret_bytes(&[1; 32]).agent_id();
        let b = mesh_core::Identity::from_secret_bytes(&[2; 32]).agent_id();
        let text = format!("# my agents\n\n{a} summarizer\n  {b}   # translator\n");
        assert_eq!(parse_contacts(&text).unwrap(), vec![a, b]);
        let err = parse_contacts("did:key:nope\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    /// A verified entry for agent `n` with `skills` skills.
    fn entry(n: u8, skills: usize, online: bool) -> CardEntry {
        let id = mesh_core::Identity::from_secret_bytes(&[n; 32]);
        let mut card = AgentCard::builder(id.agent_id(), "ws://127.0.0.1:1/v1/ws", "agent");
        for i in 0..skills {
            card = card.skill(Skill::new(format!("s{i}"), "s", ""));
        }
        CardEntry {
            card: card.sign(&id).unwrap(),
            online,
            last_seen_ms: None,
        }
    }

    #[test]
    fn past_the_cap_the_tools_of_offline_agents_are_left_out_first() {
        let mut entries: Vec<CardEntry> = (1..=9).map(|n| entry(n, 64, false)).collect();
        entries.push(entry(10, 3, true));
        let me = mesh_core::Identity::from_secret_bytes(&[99; 32]).agent_id();
        let selection = Selection {
            capabilities: Vec::new(),
            agents: Vec::new(),
            contacts: None,
            me,
        };
        let catalog = build(&entries, &selection);
        assert_eq!(catalog.tools.len(), MAX_TOOLS);
        assert_eq!(catalog.dropped, 9 * 64 + 3 - MAX_TOOLS);
        assert_eq!(catalog.tools.iter().filter(|t| t.online).count(), 3);
        assert!(catalog
            .tools
            .windows(2)
            .all(|w| w[0].tool.name < w[1].tool.name));
    }

    #[test]
    fn schemas_are_used_wrapped_or_defaulted() {
        let object = json!({"type": "object", "properties": {"text": {"type": "string"}}});
        let (schema, mode) = input_schema(Some(&object));
        assert_eq!(Value::Object(schema), object);
        assert_eq!(mode, BodyMode::Arguments);

        let (schema, mode) = input_schema(Some(&json!({"type": "string"})));
        assert_eq!(mode, BodyMode::WrappedBody);
        assert_eq!(schema["properties"]["body"], json!({"type": "string"}));
        assert_eq!(schema["required"], json!(["body"]));

        let (schema, mode) = input_schema(None);
        assert_eq!(mode, BodyMode::FreeBody);
        assert_eq!(schema["type"], json!("object"));
        assert!(schema.get("required").is_none());
    }
}
