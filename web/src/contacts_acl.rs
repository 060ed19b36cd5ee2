//! How accepting and blocking a contact edit the ACL. Pure functions over a
//! [`Policy`], so the rules the app writes are unit-tested natively.
//!
//! The app owns at most one rule per contact, always first in the policy
//! (so it wins over a broader rule a person wrote below): an allow of
//! `mesh.chat` for an accepted contact, a deny of everything for a blocked
//! one. Rules a person wrote by hand are never touched.

use mesh_core::acl::{CapabilityPattern, Rule, Source};
use mesh_core::{AgentId, Policy, CHAT_CAPABILITY};

fn chat() -> CapabilityPattern {
    CapabilityPattern::Exact(CHAT_CAPABILITY.into())
}

/// Drops the rules this app writes for `agent` (a chat allow, a block).
pub fn forget(p: &mut Policy, agent: AgentId) {
    p.rules.retain(|r| {
        !(r.source == Source::Agent(agent)
            && (r.capabilities == [chat()] || r.capabilities == [CapabilityPattern::Any]))
    });
}

/// Lets `agent` chat with us; `false` if the policy already allowed it (and
/// is unchanged).
pub fn allow_chat(p: &mut Policy, agent: AgentId) -> bool {
    if p.evaluate(&agent, CHAT_CAPABILITY).is_allowed() {
        return false;
    }
    forget(p, agent);
    p.rules
        .insert(0, Rule::allow(Source::Agent(agent), vec![chat()]));
    true
}

/// Refuses everything from `agent`.
pub fn block(p: &mut Policy, agent: AgentId) {
    forget(p, agent);
    p.rules.insert(
        0,
        Rule::deny(Source::Agent(agent), vec![CapabilityPattern::Any]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::Identity;

    fn agent(n: u8) -> AgentId {
        Identity::from_secret_bytes(&[n; 32]).agent_id()
    }

    #[test]
    fn default_deny_until_accepted() {
        let mut p = Policy::default();
        assert!(!p.evaluate(&agent(1), CHAT_CAPABILITY).is_allowed());
        assert!(allow_chat(&mut p, agent(1)));
        assert!(p.evaluate(&agent(1), CHAT_CAPABILITY).is_allowed());
        // Only chat, only that agent.
        assert!(!p.evaluate(&agent(1), "echo").is_allowed());
        assert!(!p.evaluate(&agent(2), CHAT_CAPABILITY).is_allowed());
        // Accepting twice writes one rule.
        assert!(!allow_chat(&mut p, agent(1)));
        assert_eq!(p.rules.len(), 1);
    }

    #[test]
    fn block_replaces_the_allow_and_wins_over_a_broad_rule() {
        let mut p = Policy::from_json(
            r#"{"rule": [{"source": "*", "capabilities": ["mesh.chat"], "action": "allow"}]}"#,
        )
        .unwrap();
        allow_chat(&mut p, agent(1));
        assert_eq!(p.rules.len(), 1, "already allowed by the broad rule");
        block(&mut p, agent(1));
        assert!(!p.evaluate(&agent(1), CHAT_CAPABILITY).is_allowed());
        assert!(!p.evaluate(&agent(1), "echo").is_allowed());
        assert!(p.evaluate(&agent(2), CHAT_CAPABILITY).is_allowed());
        // Accepting after a block lifts it.
        assert!(allow_chat(&mut p, agent(1)));
        assert!(p.evaluate(&agent(1), CHAT_CAPABILITY).is_allowed());
        assert_eq!(
            p.rules.len(),
            2,
            "the block is gone, the hand-written rule stays"
        );
        assert_eq!(p.rules[1].source, Source::Any);
    }

    #[test]
    fn hand_written_rules_for_the_agent_are_kept() {
        let mut p = Policy::default();
        p.rules.push(Rule::allow(
            Source::Agent(agent(1)),
            vec!["echo".parse().unwrap()],
        ));
        block(&mut p, agent(1));
        allow_chat(&mut p, agent(1));
        assert_eq!(p.rules.len(), 2);
        assert!(p.evaluate(&agent(1), "echo").is_allowed());
        // The text form round-trips (it is what Settings shows and saves).
        let back = Policy::from_json(&p.to_json().unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
