//! Capability access control: who may call what on this agent.
//!
//! The relay cannot see requests, so the receiving agent decides, after
//! decryption, whether the authenticated sender may use the requested
//! capability. The decision is made by a [`Policy`]: an ordered list of
//! [`Rule`]s, each naming a source (one agent, or any), a list of capability
//! patterns and an action. Rules are evaluated in order and the first rule
//! whose source and one of whose patterns match decides. If no rule matches
//! the request is denied — the default is deny, and an empty policy
//! ([`Policy::deny_all`], also `Policy::default()`) allows nothing.
//!
//! Plain chat messages are governed by the reserved capability
//! [`CHAT_CAPABILITY`] (`mesh.chat`): an agent that should receive chat from
//! anyone needs a rule such as `{source = "*", capabilities = ["mesh.chat"],
//! action = "allow"}`.
//!
//! # Capability names and patterns
//!
//! A capability name is 1 to [`MAX_CAPABILITY_LEN`] bytes of
//! `[A-Za-z0-9._:/-]` ([`validate_capability`]). A pattern is one of
//!
//! - `*` — any capability;
//! - `name.*` — every capability that starts with `name.` and has at least
//!   one more character: `summarize.*` matches `summarize.x` and
//!   `summarize.x.y`, but neither `summarize` nor `summarizex`;
//! - `name` — exactly that capability.
//!
//! # File format
//!
//! TOML (feature `toml`, on by default) or JSON; both hold a top-level
//! `rule` array and refuse unknown keys:
//!
//! ```toml
//! [[rule]]
//! source = "did:key:z6Mk…"           # or "*" for any agent
//! capabilities = ["echo", "summarize.*"]
//! action = "allow"                   # or "deny"
//! ```
//!
//! ```json
//! {"rule": [{"source": "*", "capabilities": ["mesh.chat"], "action": "allow"}]}
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::json::{into_string, Fields, Object, ShapeError, Value};

use crate::identity::AgentId;
use crate::limits::MAX_CAPABILITY_LEN;

/// The reserved capability that governs plain chat messages.
pub const CHAT_CAPABILITY: &str = "mesh.chat";

/// Why a capability name, pattern, source or policy is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// A capability name is empty or longer than [`MAX_CAPABILITY_LEN`] bytes.
    #[error("capability name must be 1 to {MAX_CAPABILITY_LEN} bytes (got {0})")]
    CapabilityLength(usize),
    /// A capability name contains a character outside `[A-Za-z0-9._:/-]`.
    #[error("capability name `{name}` contains {found:?}; allowed are A-Z a-z 0-9 . _ : / -")]
    CapabilityChar {
        /// The offending name.
        name: String,
        /// The first character that is not allowed.
        found: char,
    },
    /// A pattern uses `*` other than as the whole pattern or a final `.*`.
    #[error("pattern `{0}`: '*' is only allowed alone or as a final \".*\"")]
    BadWildcard(String),
    /// A source is neither `*` nor a valid `did:key`.
    #[error("source `{0}` is neither \"*\" nor an agent did:key")]
    BadSource(String),
    /// A rule lists no capabilities, so it could never match.
    #[error("rule #{0}: capabilities must not be empty")]
    EmptyRule(usize),
    /// The policy text could not be parsed; the message says where and why.
    #[error("policy: {0}")]
    Parse(String),
    /// The policy could not be written out.
    #[error("policy could not be serialized: {0}")]
    Serialize(String),
}

/// Checks that `name` is a valid capability name (see the module docs).
pub fn validate_capability(name: &str) -> Result<(), AclError> {
    if name.is_empty() || name.len() > MAX_CAPABILITY_LEN {
        return Err(AclError::CapabilityLength(name.len()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-');
    if let Some(found) = name.chars().find(|c| !allowed(*c)) {
        return Err(AclError::CapabilityChar {
            name: name.to_owned(),
            found,
        });
    }
    Ok(())
}

/// Which senders a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any agent (`"*"`).
    Any,
    /// One agent (its `did:key`).
    Agent(AgentId),
}

impl Source {
    /// Whether this source covers `agent`.
    pub fn matches(&self, agent: &AgentId) -> bool {
        match self {
            Source::Any => true,
            Source::Agent(a) => a == agent,
        }
    }
}

impl FromStr for Source {
    type Err = AclError;

    fn from_str(s: &str) -> Result<Self, AclError> {
        if s == "*" {
            return Ok(Source::Any);
        }
        s.parse()
            .map(Source::Agent)
            .map_err(|_| AclError::BadSource(s.to_owned()))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Any => f.write_str("*"),
            Source::Agent(a) => write!(f, "{a}"),
        }
    }
}

/// A set of capabilities a rule applies to (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CapabilityPattern {
    /// Any capability (`*`).
    Any,
    /// Capabilities strictly under a dotted prefix (`name.*`); holds the
    /// prefix without the trailing `.*`.
    Prefix(String),
    /// Exactly one capability.
    Exact(String),
}

impl CapabilityPattern {
    /// Whether `capability` falls under this pattern.
    pub fn matches(&self, capability: &str) -> bool {
        match self {
            CapabilityPattern::Any => true,
            CapabilityPattern::Exact(name) => name == capability,
            CapabilityPattern::Prefix(prefix) => capability
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|rest| !rest.is_empty()),
        }
    }
}

impl FromStr for CapabilityPattern {
    type Err = AclError;

    fn from_str(s: &str) -> Result<Self, AclError> {
        if s == "*" {
            return Ok(CapabilityPattern::Any);
        }
        let (prefix, exact) = match s.strip_suffix(".*") {
            Some(prefix) => (prefix, false),
            None => (s, true),
        };
        if prefix.contains('*') {
            return Err(AclError::BadWildcard(s.to_owned()));
        }
        validate_capability(prefix)?;
        Ok(if exact {
            CapabilityPattern::Exact(prefix.to_owned())
        } else {
            CapabilityPattern::Prefix(prefix.to_owned())
        })
    }
}

impl fmt::Display for CapabilityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapabilityPattern::Any => f.write_str("*"),
            CapabilityPattern::Prefix(p) => write!(f, "{p}.*"),
            CapabilityPattern::Exact(n) => f.write_str(n),
        }
    }
}

/// Serializes `Display` text; deserializes through `FromStr`, so a bad value
/// in a policy file is reported with the parser's location.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_str!(Source);
serde_via_str!(CapabilityPattern);

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Refuse the request.
    Deny,
}

impl Action {
    /// Its name in a policy file: `allow` or `deny`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }

    /// The action called `name` in a policy file.
    pub fn from_name(name: &str) -> Option<Self> {
        [Action::Allow, Action::Deny]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// One policy rule: if the sender matches `source` and the capability
/// matches any of `capabilities`, `action` decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Which senders the rule covers.
    pub source: Source,
    /// Which capabilities the rule covers.
    pub capabilities: Vec<CapabilityPattern>,
    /// What happens when it matches.
    pub action: Action,
}

impl Rule {
    /// Reads one rule of a JSON policy (`path` names it in errors).
    fn from_value(value: Value, path: &str) -> Result<Self, ShapeError> {
        let bad = |at: String| move |e: AclError| ShapeError::new(at, e.to_string());
        Fields::read(value, path, |f| {
            let source = f.string("source")?;
            Ok(Rule {
                source: source.parse().map_err(bad(f.path_of("source")))?,
                capabilities: f.array("capabilities", |v, at| {
                    into_string(v, at)?.parse().map_err(bad(at.to_owned()))
                })?,
                action: {
                    let name = f.string("action")?;
                    Action::from_name(&name).ok_or_else(|| {
                        ShapeError::new(
                            f.path_of("action"),
                            format!("expected \"allow\" or \"deny\", found \"{name}\""),
                        )
                    })?
                },
            })
        })
    }

    /// An allow rule.
    pub fn allow(source: Source, capabilities: Vec<CapabilityPattern>) -> Self {
        Rule {
            source,
            capabilities,
            action: Action::Allow,
        }
    }

    /// A deny rule.
    pub fn deny(source: Source, capabilities: Vec<CapabilityPattern>) -> Self {
        Rule {
            source,
            capabilities,
            action: Action::Deny,
        }
    }

    /// Whether the rule covers `source` calling `capability`.
    pub fn matches(&self, source: &AgentId, capability: &str) -> bool {
        self.source.matches(source) && self.capabilities.iter().any(|p| p.matches(capability))
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No rule covers the sender and capability (default deny).
    NoRuleMatched,
    /// The rule at this index (0-based) is a deny rule and matched first.
    DeniedByRule(usize),
    /// The requested capability name is not valid, so no rule can cover it.
    InvalidCapability,
}

impl fmt::Display for DenyReason {
    /// Rules are numbered from 1 here, as a person counts them in the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoRuleMatched => f.write_str("no rule allows it (default deny)"),
            DenyReason::DeniedByRule(i) => write!(f, "denied by rule #{}", i + 1),
            DenyReason::InvalidCapability => f.write_str("the capability name is not valid"),
        }
    }
}

/// The outcome of [`Policy::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Allowed by the rule at this index (0-based).
    Allow {
        /// Index of the deciding rule.
        rule: usize,
    },
    /// Denied.
    Deny {
        /// Why.
        reason: DenyReason,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

impl fmt::Display for Decision {
    /// Rules are numbered from 1 here, as a person counts them in the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow { rule } => write!(f, "allowed by rule #{}", rule + 1),
            Decision::Deny { reason } => reason.fmt(f),
        }
    }
}

/// An ordered list of rules; first match decides, no match denies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The rules, in evaluation order (`rule` in policy files).
    #[serde(rename = "rule", default)]
    pub rules: Vec<Rule>,
}

impl Policy {
    /// A policy that allows everything from everyone. For development and
    /// tests; never the default.
    pub fn allow_all() -> Self {
        Policy {
            rules: vec![Rule::allow(Source::Any, vec![CapabilityPattern::Any])],
        }
    }

    /// A policy that allows nothing (the default).
    pub fn deny_all() -> Self {
        Policy::default()
    }

    /// Decides whether `source` may call `capability`.
    pub fn evaluate(&self, source: &AgentId, capability: &str) -> Decision {
        if validate_capability(capability).is_err() {
            return Decision::Deny {
                reason: DenyReason::InvalidCapability,
            };
        }
        match self
            .rules
            .iter()
            .position(|r| r.matches(source, capability))
        {
            Some(i) if self.rules[i].action == Action::Allow => Decision::Allow { rule: i },
            Some(i) => Decision::Deny {
                reason: DenyReason::DeniedByRule(i),
            },
            None => Decision::Deny {
                reason: DenyReason::NoRuleMatched,
            },
        }
    }

    /// Reads a policy from JSON (`{"rule": [...]}`).
    pub fn from_json(text: &str) -> Result<Self, AclError> {
        let parse = |e: &dyn fmt::Display| AclError::Parse(e.to_string());
        let value = Value::parse(text.as_bytes()).map_err(|e| parse(&e))?;
        let rules = Fields::read(value, "", |f| f.opt_array("rule", Rule::from_value))
            .map_err(|e| parse(&e))?
            .unwrap_or_default();
        let policy = Policy { rules };
        policy.check()?;
        Ok(policy)
    }

    /// Reads a policy from TOML (`[[rule]]` tables).
    #[cfg(feature = "toml")]
    pub fn from_toml(text: &str) -> Result<Self, AclError> {
        let policy: Policy = toml::from_str(text).map_err(|e| AclError::Parse(e.to_string()))?;
        policy.check()?;
        Ok(policy)
    }

    /// Writes the policy as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, AclError> {
        let rules = self.rules.iter().map(|r| {
            let mut o = Object::new();
            o.insert("source", r.source.to_string());
            let caps = r.capabilities.iter().map(|c| Value::from(c.to_string()));
            o.insert("capabilities", Value::Array(caps.collect()));
            o.insert("action", r.action.name());
            Value::Object(o)
        });
        let mut policy = Object::new();
        policy.insert("rule", Value::Array(rules.collect()));
        Ok(Value::Object(policy).to_pretty())
    }

    /// Writes the policy as TOML.
    #[cfg(feature = "toml")]
    pub fn to_toml(&self) -> Result<String, AclError> {
        toml::to_string(self).map_err(|e| AclError::Serialize(e.to_string()))
    }

    /// Rules that parsed but make no sense.
    fn check(&self) -> Result<(), AclError> {
        match self.rules.iter().position(|r| r.capabilities.is_empty()) {
            Some(i) => Err(AclError::EmptyRule(i + 1)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use proptest::prelude::*;

    fn agent(n: u8) -> AgentId {
        Identity::from_secret_bytes(&[n; 32]).agent_id()
    }

    fn pat(s: &str) -> CapabilityPattern {
        s.parse().unwrap()
    }

    #[test]
    fn capability_names() {
        for ok in [
            "echo",
            "mesh.chat",
            "a-b_c:d/e.F9",
            &"x".repeat(MAX_CAPABILITY_LEN),
        ] {
            assert!(validate_capability(ok).is_ok(), "{ok}");
        }
        assert_eq!(validate_capability(""), Err(AclError::CapabilityLength(0)));
        assert!(validate_capability(&"x".repeat(MAX_CAPABILITY_LEN + 1)).is_err());
        for bad in ["a b", "a*", "é", "a\n", "a?b"] {
            assert!(
                matches!(
                    validate_capability(bad),
                    Err(AclError::CapabilityChar { .. })
                ),
                "{bad}"
            );
        }
        validate_capability(CHAT_CAPABILITY).unwrap();
    }

    #[test]
    fn patterns() {
        assert_eq!(pat("*"), CapabilityPattern::Any);
        assert_eq!(pat("echo"), CapabilityPattern::Exact("echo".into()));
        assert_eq!(
            pat("summarize.*"),
            CapabilityPattern::Prefix("summarize".into())
        );
        for bad in ["summarize*", "*.x", "a.*.b", "a.**", ".*", "", "a b.*"] {
            assert!(bad.parse::<CapabilityPattern>().is_err(), "{bad}");
        }
        let p = pat("summarize.*");
        assert!(p.matches("summarize.x"));
        assert!(p.matches("summarize.x.y"));
        assert!(!p.matches("summarize"));
        assert!(!p.matches("summarize."));
        assert!(!p.matches("summarizex"));
        assert!(!p.matches("summarizex.y"));
        assert!(pat("echo").matches("echo"));
        assert!(!pat("echo").matches("echo.x"));
        for s in ["*", "echo", "summarize.*"] {
            assert_eq!(pat(s).to_string(), s);
        }
    }

    #[test]
    fn default_denies_and_first_match_wins() {
        let (a, b) = (agent(1), agent(2));
        assert_eq!(
            Policy::default().evaluate(&a, "echo"),
            Decision::Deny {
                reason: DenyReason::NoRuleMatched
            }
        );
        assert_eq!(Policy::deny_all(), Policy::default());
        assert!(Policy::allow_all().evaluate(&a, "anything").is_allowed());

        let policy = Policy {
            rules: vec![
                Rule::deny(Source::Agent(b), vec![pat("*")]),
                Rule::allow(Source::Any, vec![pat("echo"), pat("summarize.*")]),
                Rule::deny(Source::Any, vec![pat("echo")]),
            ],
        };
        assert_eq!(policy.evaluate(&a, "echo"), Decision::Allow { rule: 1 });
        assert_eq!(
            policy.evaluate(&a, "summarize.pdf"),
            Decision::Allow { rule: 1 }
        );
        assert_eq!(
            policy.evaluate(&b, "echo"),
            Decision::Deny {
                reason: DenyReason::DeniedByRule(0)
            }
        );
        assert_eq!(
            policy.evaluate(&a, "other"),
            Decision::Deny {
                reason: DenyReason::NoRuleMatched
            }
        );
        assert_eq!(
            Policy::allow_all().evaluate(&a, "bad name"),
            Decision::Deny {
                reason: DenyReason::InvalidCapability
            }
        );
        assert_eq!(
            policy.evaluate(&a, "echo").to_string(),
            "allowed by rule #2"
        );
        assert_eq!(policy.evaluate(&b, "echo").to_string(), "denied by rule #1");
        assert!(policy
            .evaluate(&a, "x")
            .to_string()
            .contains("default deny"));
    }

    #[cfg(feature = "toml")]
    #[test]
    fn toml_files() {
        let a = agent(3);
        let text = format!(
            r#"
[[rule]]
source = "{a}"
capabilities = ["*"]
action = "deny"

[[rule]]
source = "*"
capabilities = ["echo", "summarize.*", "mesh.chat"]
action = "allow"
"#
        );
        let policy = Policy::from_toml(&text).unwrap();
        assert_eq!(policy.rules.len(), 2);
        assert_eq!(policy.rules[0].source, Source::Agent(a));
        assert!(!policy.evaluate(&a, "echo").is_allowed());
        assert!(policy.evaluate(&agent(4), CHAT_CAPABILITY).is_allowed());
        assert_eq!(
            Policy::from_toml(&policy.to_toml().unwrap()).unwrap(),
            policy
        );
        assert_eq!(Policy::from_toml("").unwrap(), Policy::deny_all());

        let err = |t: &str| Policy::from_toml(t).unwrap_err().to_string();
        let e = err("[[rule]]\nsource = \"*\"\ncapabilities = [\"a b\"]\naction = \"allow\"\n");
        assert!(e.contains("a b") && e.contains("line 3"), "{e}");
        let e = err(
            "[[rule]]\nsource = \"*\"\ncapabilities = [\"x\"]\naction = \"allow\"\nextra = 1\n",
        );
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = err("[[rule]]\nsource = \"me\"\ncapabilities = [\"x\"]\naction = \"allow\"\n");
        assert!(e.contains("neither"), "{e}");
        let e = err("[[rule]]\nsource = \"*\"\ncapabilities = [\"x\"]\naction = \"maybe\"\n");
        assert!(e.contains("maybe"), "{e}");
        let e = err("[[rule]]\nsource = \"*\"\ncapabilities = []\naction = \"allow\"\n");
        assert_eq!(e, "rule #1: capabilities must not be empty");
        let e = err("[[rules]]\nsource = \"*\"\n");
        assert!(e.contains("unknown field `rules`"), "{e}");
    }

    #[test]
    fn json_files() {
        let text =
            r#"{"rule": [{"source": "*", "capabilities": ["mesh.chat"], "action": "allow"}]}"#;
        let policy = Policy::from_json(text).unwrap();
        assert!(policy.evaluate(&agent(5), "mesh.chat").is_allowed());
        assert!(!policy.evaluate(&agent(5), "echo").is_allowed());
        assert_eq!(
            Policy::from_json(&policy.to_json().unwrap()).unwrap(),
            policy
        );
        let e = Policy::from_json(
            r#"{"rule": [{"source": "*", "capabilities": ["x*"], "action": "allow"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x*") && e.contains("rule[0].capabilities[0]"),
            "{e}"
        );
        assert!(Policy::from_json(r#"{"rule": [], "other": 1}"#).is_err());
    }

    fn arb_agent() -> impl Strategy<Value = AgentId> {
        (1u8..6).prop_map(agent)
    }

    fn arb_name() -> impl Strategy<Value = String> {
        "[a-c]{1,2}(\\.[a-c]{1,2}){0,2}"
    }

    fn arb_pattern() -> impl Strategy<Value = CapabilityPattern> {
        prop_oneof![
            Just(CapabilityPattern::Any),
            arb_name().prop_map(CapabilityPattern::Exact),
            arb_name().prop_map(CapabilityPattern::Prefix),
        ]
    }

    fn arb_rule(actions: Vec<Action>) -> impl Strategy<Value = Rule> {
        (
            prop_oneof![Just(Source::Any), arb_agent().prop_map(Source::Agent)],
            prop::collection::vec(arb_pattern(), 1..4),
            prop::sample::select(actions),
        )
            .prop_map(|(source, capabilities, action)| Rule {
                source,
                capabilities,
                action,
            })
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        prop::collection::vec(arb_rule(vec![Action::Allow, Action::Deny]), 0..6)
            .prop_map(|rules| Policy { rules })
    }

    proptest! {
        #[test]
        fn without_an_allow_rule_nothing_is_allowed(
            rules in prop::collection::vec(arb_rule(vec![Action::Deny]), 0..8),
            who in arb_agent(),
            what in arb_name(),
        ) {
            let policy = Policy { rules };
            prop_assert!(!policy.evaluate(&who, &what).is_allowed());
        }

        #[test]
        fn the_first_matching_rule_decides(
            policy in arb_policy(),
            who in arb_agent(),
            what in arb_name(),
        ) {
            let decision = policy.evaluate(&who, &what);
            match policy.rules.iter().position(|r| r.matches(&who, &what)) {
                None => prop_assert_eq!(decision, Decision::Deny { reason: DenyReason::NoRuleMatched }),
                Some(i) => {
                    prop_assert!(policy.rules[..i].iter().all(|r| !r.matches(&who, &what)));
                    let expected = match policy.rules[i].action {
                        Action::Allow => Decision::Allow { rule: i },
                        Action::Deny => Decision::Deny { reason: DenyReason::DeniedByRule(i) },
                    };
                    prop_assert_eq!(decision, expected);
                }
            }
            // A matching rule put in front always wins.
            let mut front = policy.clone();
            front.rules.insert(0, Rule::deny(Source::Agent(who), vec![CapabilityPattern::Exact(what.clone())]));
            prop_assert_eq!(
                front.evaluate(&who, &what),
                Decision::Deny { reason: DenyReason::DeniedByRule(0) }
            );
        }

        #[test]
        fn prefix_semantics(prefix in arb_name(), rest in "[a-c.]{0,4}") {
            let p = CapabilityPattern::Prefix(prefix.clone());
            let cap = format!("{prefix}{rest}");
            let expected = rest.len() > 1 && rest.starts_with('.');
            prop_assert_eq!(p.matches(&cap), expected, "{} vs {}", p, cap);
        }

        #[test]
        fn policies_round_trip(policy in arb_policy()) {
            prop_assert_eq!(Policy::from_json(&policy.to_json().unwrap()).unwrap(), policy.clone());
            #[cfg(feature = "toml")]
            prop_assert_eq!(Policy::from_toml(&policy.to_toml().unwrap()).unwrap(), policy);
        }

        #[test]
        fn pattern_parsing_never_panics(s in "[a-z.*:/ -]{0,12}") {
            if let Ok(p) = s.parse::<CapabilityPattern>() {
                prop_assert_eq!(p.to_string(), s);
            }
        }
    }
}
