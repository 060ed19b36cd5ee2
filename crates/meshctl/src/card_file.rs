//! The card file `meshctl publish --card` reads: a small, documented subset
//! of an Agent Card that a person writes by hand, in TOML or JSON. The
//! identity, relay URL, issue time and sequence number are filled in by
//! `meshctl`, and the card is validated by `mesh-core` before it is signed.
//!
//! ```toml
//! name = "Summarizer"              # required
//! description = "Summarizes text"  # optional
//! version = "1.0.0"                # optional (default 1.0.0)
//! streaming = false                # optional
//!
//! [[skills]]
//! id = "summarize"                 # required: letters, digits, '.', '_', '-'
//! name = "Summarize"               # optional (default: the id)
//! description = "Short summary"    # optional
//! tags = ["text", "nlp"]           # optional
//! inputSchema = { type = "object", properties = { text = { type = "string" } } }
//! ```
//!
//! The JSON form has the same members (`{"name": …, "skills": [{"id": …}]}`).
//! Unknown members are refused, so a typo is an error rather than a silently
//! missing field.

use std::path::Path;

use anyhow::{bail, Context};
use mesh_core::card::{AgentCard, AgentCardBuilder, Skill};
use mesh_core::AgentId;
use serde::Deserialize;

/// A card as written in a card file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardFile {
    /// The agent's display name.
    pub name: String,
    /// What the agent does.
    #[serde(default)]
    pub description: String,
    /// The agent's own version string.
    #[serde(default)]
    pub version: Option<String>,
    /// Whether the agent streams responses.
    #[serde(default)]
    pub streaming: bool,
    /// What the agent can do.
    #[serde(default)]
    pub skills: Vec<SkillFile>,
}

/// One skill in a card file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillFile {
    /// Skill id, usually the capability name that serves it.
    pub id: String,
    /// Display name; the id when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// What the skill does.
    #[serde(default)]
    pub description: String,
    /// Search keywords.
    #[serde(default)]
    pub tags: Vec<String>,
    /// JSON Schema (an object) of the request body.
    #[serde(default, rename = "inputSchema", alias = "input_schema")]
    pub input_schema: Option<serde_json::Value>,
}

impl CardFile {
    /// Reads a card file: JSON if it ends in `.json`, TOML if it ends in
    /// `.toml`, otherwise JSON when it starts with `{` and TOML if not.
    pub fn load(path: &Path) -> anyhow::Result<CardFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read card file {}", path.display()))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let json = match ext {
            "json" => true,
            "toml" => false,
            _ => text.trim_start().starts_with('{'),
        };
        Self::parse(&text, json).with_context(|| format!("invalid card file {}", path.display()))
    }

    /// Parses card-file text.
    pub fn parse(text: &str, json: bool) -> anyhow::Result<CardFile> {
        let card: CardFile = if json {
            serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?
        } else {
            toml::from_str(text).map_err(|e| match e.span() {
                Some(span) => {
                    let before = text.get(..span.start).unwrap_or(text);
                    let line = before.matches('\n').count() + 1;
                    anyhow::anyhow!("line {line}: {}", e.message())
                }
                None => anyhow::anyhow!("{}", e.message()),
            })?
        };
        card.check()?;
        Ok(card)
    }

    /// Rules the card builder would otherwise report less clearly.
    fn check(&self) -> anyhow::Result<()> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.skills {
            if !seen.insert(s.id.as_str()) {
                bail!("skill id {:?} appears twice", s.id);
            }
            if let Some(schema) = &s.input_schema {
                if !schema.is_object() {
                    bail!("skill {:?}: inputSchema must be a JSON Schema object", s.id);
                }
                crate::output::from_serde(schema)
                    .with_context(|| format!("skill {:?}: inputSchema", s.id))?;
            }
        }
        Ok(())
    }

    /// Starts the card for `agent` at `relay_url` (sign it after setting
    /// the issue time).
    pub fn builder(&self, agent: AgentId, relay_url: &str) -> AgentCardBuilder {
        let mut b = AgentCard::builder(agent, relay_url, self.name.clone())
            .description(self.description.clone())
            .streaming(self.streaming);
        if let Some(v) = &self.version {
            b = b.version(v.clone());
        }
        for s in &self.skills {
            let mut skill = Skill::new(
                s.id.clone(),
                s.name.clone().unwrap_or_else(|| s.id.clone()),
                s.description.clone(),
            )
            .with_tags(s.tags.iter().cloned());
            // `check` has read every schema already, so this cannot fail.
            if let Some(Ok(schema)) = s.input_schema.as_ref().map(crate::output::from_serde) {
                skill = skill.with_input_schema(schema);
            }
            b = b.skill(skill);
        }
        b
    }
}

/// Parses a `--skill` flag: `id` or `id:tag,tag`.
pub fn parse_skill_flag(flag: &str) -> anyhow::Result<Skill> {
    let (id, tags) = match flag.split_once(':') {
        Some((id, tags)) => (id, tags),
        None => (flag, ""),
    };
    let id = id.trim();
    if id.is_empty() {
        bail!("--skill {flag:?}: the skill id is empty (expected ID or ID:TAG,TAG)");
    }
    let tags: Vec<&str> = tags
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    Ok(Skill::new(id, id, "").with_tags(tags))
}

#[cfg(test)]
mod tests {
    use mesh_core::Identity;

    use super::*;

    const TOML: &str = r#"
name = "Summarizer"
description = "Summarizes text"
streaming = true

[[skills]]
id = "summarize"
tags = ["text", "nlp"]
inputSchema = { type = "object", properties = { text = { type = "string" } } }
"#;

    #[test]
    fn toml_and_json_read_the_same_and_sign() -> anyhow::Result<()> {
        let from_toml = CardFile::parse(TOML, false)?;
        let from_json = CardFile::parse(
            r#"{"name": "Summarizer", "description": "Summarizes text", "streaming": true,
                "skills": [{"id": "summarize", "tags": ["text", "nlp"],
                "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]}"#,
            true,
        )?;
        assert_eq!(from_toml, from_json);
        let me = Identity::generate()?;
        let card = from_toml
            .builder(me.agent_id(), "ws://127.0.0.1:8080/v1/ws")
            .issued_at(1)
            .sign(&me)?;
        let skill = &card.card().skills[0];
        assert_eq!(
            (skill.id.as_str(), skill.name.as_str()),
            ("summarize", "summarize")
        );
        assert!(card.card().capabilities.streaming);
        Ok(())
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        assert!(CardFile::parse("name = \"x\"\ndescripton = \"typo\"", false).is_err());
        assert!(CardFile::parse("description = \"no name\"", false).is_err());
        assert!(CardFile::parse(
            "name = \"x\"\n[[skills]]\nid = \"a\"\n[[skills]]\nid = \"a\"",
            false
        )
        .is_err());
        assert!(CardFile::parse(
            r#"{"name": "x", "skills": [{"id": "a", "inputSchema": 3}]}"#,
            true
        )
        .is_err());
    }

    #[test]
    fn skill_flags() -> anyhow::Result<()> {
        let s = parse_skill_flag("echo:test, demo")?;
        assert_eq!(
            (s.id.as_str(), s.tags.clone()),
            ("echo", vec!["test".to_string(), "demo".into()])
        );
        assert!(parse_skill_flag("echo")?.tags.is_empty());
        assert!(parse_skill_flag(":x").is_err());
        Ok(())
    }
}
