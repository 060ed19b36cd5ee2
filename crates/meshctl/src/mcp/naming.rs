//! MCP tool names for mesh skills.
//!
//! A tool is `{short agent id}__{skill id}`: the agent's 12-hex-digit short
//! id, two underscores, the skill id. Skill ids may hold `A-Z a-z 0-9 . _ -`
//! (up to 64 characters), and MCP allows dots in tool names since the
//! 2025-11-25 revision, but the assistants' model APIs behind MCP clients
//! accept only `^[a-zA-Z0-9_-]{1,64}$` for function names. So:
//!
//! 1. `.` becomes `_` (`echo.stream` → `echo_stream`);
//! 2. a name that would exceed [`MAX_TOOL_NAME`] characters keeps the first
//!    41 characters of the skill part and appends `_` and 8 hex digits of
//!    SHA-256 over the skill id;
//! 3. when two skills of one agent map to the same name (`a.b` and `a_b`),
//!    the first in the card keeps it and the others take the hashed form of
//!    rule 2;
//! 4. when two *different* agents would produce the same name (their short
//!    ids collide, which takes deliberate key grinding), both take the hashed
//!    form over their full agent id and skill id, so no agent can take over
//!    a name another already has.
//!
//! Names are only ever looked up in the table built with them, never parsed
//! back, so the mapping needs no inverse. The `mesh__` prefix cannot clash:
//! a short id is hexadecimal.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// Longest tool name handed out (what model APIs accept).
pub const MAX_TOOL_NAME: usize = 64;
/// Hex digits of the hash suffix of rule 2.
const HASH_HEX: usize = 8;

/// One skill to name: which agent (full id and short id) and which skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillRef {
    /// The agent's did:key.
    pub agent_did: String,
    /// The agent's short id (12 hex digits).
    pub agent_short: String,
    /// The skill id as the card has it.
    pub skill_id: String,
}

/// A skill id with every character outside `A-Z a-z 0-9 -` as `_`.
fn sanitized(skill_id: &str) -> impl Iterator<Item = char> + '_ {
    skill_id.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        }
    })
}

/// The plain name of rules 1–2.
fn plain(skill: &SkillRef) -> String {
    let sanitized: String = sanitized(&skill.skill_id).collect();
    let name = format!("{}__{sanitized}", skill.agent_short);
    if name.len() <= MAX_TOOL_NAME {
        name
    } else {
        hashed(skill, &skill.skill_id)
    }
}

/// `{short}__{prefix}_{hash of seed}`, at most [`MAX_TOOL_NAME`] long.
fn hashed(skill: &SkillRef, seed: &str) -> String {
    let digest = hex::encode(Sha256::digest(seed.as_bytes()));
    let keep = MAX_TOOL_NAME - skill.agent_short.len() - 2 - 1 - HASH_HEX;
    let prefix: String = sanitized(&skill.skill_id).take(keep).collect();
    format!("{}__{prefix}_{}", skill.agent_short, &digest[..HASH_HEX])
}

/// Names every skill in `skills` (in order: each agent's skills in card
/// order); the result is parallel to the input.
pub fn tool_names(skills: &[SkillRef]) -> Vec<String> {
    let mut names: Vec<String> = skills.iter().map(plain).collect();

    // Rule 4: a plain name claimed by two agents goes to neither.
    let mut agents_by_name: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, skill) in names.iter().zip(skills) {
        let owners = agents_by_name.entry(name.as_str()).or_default();
        if !owners.contains(&skill.agent_did.as_str()) {
            owners.push(&skill.agent_did);
        }
    }
    let contested: Vec<String> = agents_by_name
        .into_iter()
        .filter(|(_, owners)| owners.len() > 1)
        .map(|(name, _)| name.to_string())
        .collect();
    for (name, skill) in names.iter_mut().zip(skills) {
        if contested.contains(name) {
            *name = hashed(skill, &format!("{} {}", skill.agent_did, skill.skill_id));
        }
    }

    // Rule 3: within one agent, the first skill keeps a name.
    let mut taken: HashMap<String, usize> = HashMap::new();
    for i in 0..names.len() {
        if taken.contains_key(&names[i]) {
            names[i] = hashed(&skills[i], &skills[i].skill_id);
        }
        taken.insert(names[i].clone(), i);
    }
    names
}

/// Whether `name` is one [`tool_names`] could produce or a built-in
/// (`^[a-zA-Z0-9_-]{1,64}$`).
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(agent: &str, short: &str, id: &str) -> SkillRef {
        SkillRef {
            agent_did: agent.to_string(),
            agent_short: short.to_string(),
            skill_id: id.to_string(),
        }
    }

    #[test]
    fn dots_become_underscores() {
        let names = tool_names(&[
            skill("did:a", "0123456789ab", "echo"),
            skill("did:a", "0123456789ab", "echo.stream"),
            skill("did:a", "0123456789ab", "x-y_z"),
        ]);
        assert_eq!(
            names,
            [
                "0123456789ab__echo",
                "0123456789ab__echo_stream",
                "0123456789ab__x-y_z"
            ]
        );
    }

    #[test]
    fn long_ids_are_cut_and_hashed_within_64_characters() {
        let long = "s".repeat(64);
        let names = tool_names(&[skill("did:a", "0123456789ab", &long)]);
        assert_eq!(names[0].len(), MAX_TOOL_NAME);
        assert!(names[0].starts_with("0123456789ab__sss"));
        assert!(is_valid_tool_name(&names[0]));
        // A 50-character skill id still fits as it is.
        let fits = "f".repeat(50);
        let names = tool_names(&[skill("did:a", "0123456789ab", &fits)]);
        assert_eq!(names[0], format!("0123456789ab__{fits}"));
    }

    #[test]
    fn a_collision_within_one_agent_leaves_the_first_its_name() {
        let names = tool_names(&[
            skill("did:a", "0123456789ab", "a.b"),
            skill("did:a", "0123456789ab", "a_b"),
        ]);
        assert_eq!(names[0], "0123456789ab__a_b");
        assert_ne!(names[1], names[0]);
        assert!(names[1].starts_with("0123456789ab__a_b_"));
        assert!(is_valid_tool_name(&names[1]));
    }

    #[test]
    fn agents_sharing_a_short_id_both_lose_the_plain_name() {
        let names = tool_names(&[
            skill("did:a", "0123456789ab", "echo"),
            skill("did:b", "0123456789ab", "echo"),
        ]);
        assert_ne!(names[0], "0123456789ab__echo");
        assert_ne!(names[1], "0123456789ab__echo");
        assert_ne!(names[0], names[1]);
        assert!(names.iter().all(|n| is_valid_tool_name(n)));
    }

    #[test]
    fn names_are_stable() {
        let input = [
            skill("did:a", "0123456789ab", "a.b"),
            skill("did:a", "0123456789ab", "a_b"),
            skill("did:b", "ba9876543210", "echo"),
        ];
        assert_eq!(tool_names(&input), tool_names(&input));
    }
}
