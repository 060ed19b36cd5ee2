//! Agent Cards: what an agent says about itself, signed by its own key.
//!
//! A card is the agent's entry in the registry: who it is, what it can do
//! (skills with tags, searchable) and where to reach it (its relay). The
//! JSON is the [A2A] v1.0 Agent Card — camelCase members `name`,
//! `description`, `version`, `skills`, `capabilities`, `defaultInputModes`,
//! `defaultOutputModes`, `supportedInterfaces`, optional `provider`,
//! `iconUrl`, `documentationUrl` — plus two members of our own: `mesh` (the
//! agent's `did:key`, relay URL, issue time and sequence number) and
//! `signature`.
//!
//! # Why the card is signed over its canonical JSON
//!
//! The registry stores and serves cards but must never be able to forge or
//! alter one, so the agent signs the card itself. The signed bytes are the
//! [RFC 8785] JSON Canonicalization Scheme (JCS) form of the card object
//! *without* its `signature` member:
//!
//! ```text
//! signature = Ed25519(agent key,
//!     signed_message(SignatureContext::Card, [ JCS(card object minus "signature") ]))
//! ```
//!
//! and `signature` is that 64-byte signature in base64url without padding.
//! A verifier parses the JSON it received, removes `signature`,
//! canonicalizes what is left and checks it against the key in
//! `mesh.agentId`. Because verification runs over the received JSON value —
//! never over a re-serialization of the typed struct — a change to any
//! member, at any depth, including members the typed struct would not keep,
//! makes verification fail.
//!
//! A feature that follows from JCS: whitespace, member order and string
//! escaping are *not* part of what is signed. A card re-indented by a
//! pretty-printer, or re-serialized by a JavaScript client with its members
//! in another order, still verifies. [`SignedCard::to_json`] always returns
//! the canonical form, so a registry that stores that form serves the same
//! bytes to everyone.
//!
//! Everything else is checked as well: unknown members are refused at every
//! level (so a typo is an error, not silently ignored data), lengths are
//! bounded (see [`crate::limits`]), and the JSON is read by
//! [`crate::json`]'s strict reader: duplicate object members, lone
//! surrogates and numbers that not every JSON implementation holds exactly
//! (integers beyond ±(2^53 − 1), more than 15 significant digits) are
//! refused, as RFC 8785 requires I-JSON. The canonical form is written by
//! the same module.
//!
//! The registry additionally refuses a card whose `mesh.seq` is not greater
//! than the one it stores ([`SignedCard::supersedes`]), so an old card
//! cannot be replayed over a newer one.
//!
//! [A2A]: https://a2a-protocol.org/
//! [RFC 8785]: https://www.rfc-editor.org/rfc/rfc8785

use std::collections::HashSet;
use std::fmt;

use crate::identity::{AgentId, Identity, Signature};
use crate::json::{into_string, Fields, JsonError, Number, Object, ShapeError, Value};
use crate::limits::{
    MAX_CARD_DEPTH, MAX_CARD_DESCRIPTION_LEN, MAX_CARD_LEN, MAX_CARD_NAME_LEN, MAX_CARD_SKILLS,
    MAX_CARD_URL_LEN, MAX_CARD_VERSION_LEN, MAX_JSON_SAFE_INTEGER, MAX_MEDIA_TYPE_LEN,
    MAX_SKILL_TAGS, MAX_SKILL_TAG_LEN,
};
use crate::sign::SignatureContext;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The `protocolBinding` of the agent-mesh interface in a card's
/// `supportedInterfaces`; its `url` is the agent's relay URL.
pub const MESH_PROTOCOL_BINDING: &str = "urn:agent-mesh:binding:v1";

/// Media types the card builder puts in `defaultInputModes` and
/// `defaultOutputModes` unless told otherwise.
pub const DEFAULT_MEDIA_TYPES: [&str; 2] = ["text/plain", "application/json"];

/// Name of the JSON member that carries the card signature.
const SIGNATURE_MEMBER: &str = "signature";

/// Why a card could not be built, signed, read or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// The serialized card is larger than [`MAX_CARD_LEN`].
    #[error("card is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Size of the card in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not JSON, or not JSON of the card's shape (wrong type,
    /// missing or unknown member, duplicate member). The message comes from
    /// the JSON parser and names what is wrong.
    #[error("card JSON: {0}")]
    Json(String),
    /// The card has no `signature` member.
    #[error("card has no signature")]
    MissingSignature,
    /// A member is well-formed JSON but breaks a card rule.
    #[error("card field `{field}`: {reason}")]
    Invalid {
        /// Where the problem is, e.g. `skills[2].tags[0]`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature does not verify with the key in `mesh.agentId`: the
    /// card was altered, or signed by another key.
    #[error("card signature does not verify")]
    BadSignature,
    /// The card names one agent in `mesh.agentId` but was to be signed by
    /// another identity.
    #[error("card is for {card} but the signing identity is {signer}")]
    SignerMismatch {
        /// The agent the card describes.
        card: AgentId,
        /// The identity asked to sign it.
        signer: AgentId,
    },
}

impl CardError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CardError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<JsonError> for CardError {
    fn from(err: JsonError) -> Self {
        CardError::Json(err.to_string())
    }
}

impl From<ShapeError> for CardError {
    fn from(err: ShapeError) -> Self {
        CardError::Json(err.to_string())
    }
}

/// The unsigned content of an Agent Card.
///
/// Build one with [`AgentCard::builder`], sign it with [`AgentCard::sign`].
/// Received cards arrive as [`SignedCard`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentCard {
    /// Human-readable name, 1 to [`MAX_CARD_NAME_LEN`] characters.
    pub name: String,
    /// What the agent does, up to [`MAX_CARD_DESCRIPTION_LEN`] characters.
    pub description: String,
    /// The agent's own version string (free form, e.g. `1.2.0`).
    pub version: String,
    /// Who runs the agent.
    pub provider: Option<Provider>,
    /// URL of an icon for the agent.
    pub icon_url: Option<String>,
    /// URL of documentation about the agent.
    pub documentation_url: Option<String>,
    /// Optional protocol features the agent supports.
    pub capabilities: CardCapabilities,
    /// Media types the agent accepts unless a skill says otherwise.
    pub default_input_modes: Vec<String>,
    /// Media types the agent produces unless a skill says otherwise.
    pub default_output_modes: Vec<String>,
    /// What the agent can do; at most [`MAX_CARD_SKILLS`].
    pub skills: Vec<Skill>,
    /// Where the agent can be reached. Must include the mesh interface:
    /// `protocolBinding` [`MESH_PROTOCOL_BINDING`] at `mesh.relayUrl`.
    pub supported_interfaces: Vec<AgentInterface>,
    /// The agent-mesh binding: identity, relay, freshness.
    pub mesh: MeshBinding,
}

/// One thing an agent can do (an A2A `AgentSkill`).
#[derive(Debug, Clone, PartialEq)]
pub struct Skill {
    /// Identifier, unique within the card: 1 to [`MAX_SKILL_TAG_LEN`]
    /// characters of `[A-Za-z0-9._-]`. Usually the capability name that
    /// serves it.
    pub id: String,
    /// Human-readable name, 1 to [`MAX_CARD_NAME_LEN`] characters.
    pub name: String,
    /// What the skill does, up to [`MAX_CARD_DESCRIPTION_LEN`] characters.
    pub description: String,
    /// Search keywords; at most [`MAX_SKILL_TAGS`], each 1 to
    /// [`MAX_SKILL_TAG_LEN`] characters.
    pub tags: Vec<String>,
    /// Example prompts or requests.
    pub examples: Option<Vec<String>>,
    /// Media types accepted, overriding the card default.
    pub input_modes: Option<Vec<String>>,
    /// Media types produced, overriding the card default.
    pub output_modes: Option<Vec<String>>,
    /// A JSON Schema (an object) describing the request body, e.g. for
    /// bridging the skill to an MCP tool.
    pub input_schema: Option<Value>,
}

/// Optional protocol features (an A2A `AgentCapabilities`); absent members
/// read as `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardCapabilities {
    /// The agent streams responses.
    pub streaming: bool,
    /// The agent can push notifications.
    pub push_notifications: bool,
}

/// One way to reach the agent (an A2A `AgentInterface`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInterface {
    /// Where the interface is; for the mesh binding, the relay URL.
    pub url: String,
    /// How to talk to it; [`MESH_PROTOCOL_BINDING`] for agent-mesh.
    pub protocol_binding: String,
    /// A2A protocol version spoken there (A2A interfaces carry it; the mesh
    /// interface leaves it out).
    pub protocol_version: Option<String>,
    /// A2A tenant id used when calling the interface.
    pub tenant: Option<String>,
}

impl AgentInterface {
    /// The agent-mesh interface at `relay_url`.
    pub fn mesh(relay_url: impl Into<String>) -> Self {
        AgentInterface {
            url: relay_url.into(),
            protocol_binding: MESH_PROTOCOL_BINDING.to_owned(),
            protocol_version: None,
            tenant: None,
        }
    }
}

/// Who runs the agent (an A2A `AgentProvider`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Name of the organization, 1 to [`MAX_CARD_NAME_LEN`] characters.
    pub organization: String,
    /// The organization's website.
    pub url: String,
}

/// The agent-mesh member of a card (`mesh`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshBinding {
    /// The agent (its `did:key`); the card must be signed by this key.
    pub agent_id: AgentId,
    /// The relay the agent connects to.
    pub relay_url: String,
    /// When the card was issued, Unix milliseconds (≤ 2^53 − 1).
    pub issued_at: u64,
    /// Sequence number (≤ 2^53 − 1): a registry refuses a card whose `seq`
    /// is not greater than the one it stores.
    pub seq: u64,
}

impl AgentCard {
    /// Starts a card for `agent_id`, reachable through the relay at
    /// `relay_url`, with sane defaults for everything else.
    pub fn builder(
        agent_id: AgentId,
        relay_url: impl Into<String>,
        name: impl Into<String>,
    ) -> AgentCardBuilder {
        let relay_url = relay_url.into();
        let modes = || {
            DEFAULT_MEDIA_TYPES
                .iter()
                .map(|m| (*m).to_owned())
                .collect()
        };
        AgentCardBuilder {
            card: AgentCard {
                name: name.into(),
                description: String::new(),
                version: "1.0.0".to_owned(),
                provider: None,
                icon_url: None,
                documentation_url: None,
                capabilities: CardCapabilities::default(),
                default_input_modes: modes(),
                default_output_modes: modes(),
                skills: Vec::new(),
                supported_interfaces: vec![AgentInterface::mesh(relay_url.clone())],
                mesh: MeshBinding {
                    agent_id,
                    relay_url,
                    issued_at: 0,
                    seq: 0,
                },
            },
            seq: None,
        }
    }

    /// The agent the card describes.
    pub fn agent_id(&self) -> AgentId {
        self.mesh.agent_id
    }

    /// Checks every card rule that is not already a type (lengths, character
    /// sets, URLs, safe integers, the mesh interface). Signing and
    /// verification both run it.
    pub fn validate(&self) -> Result<(), CardError> {
        check_text("name", &self.name, 1, MAX_CARD_NAME_LEN, false)?;
        check_text(
            "description",
            &self.description,
            0,
            MAX_CARD_DESCRIPTION_LEN,
            true,
        )?;
        check_text("version", &self.version, 1, MAX_CARD_VERSION_LEN, false)?;
        if let Some(p) = &self.provider {
            check_text(
                "provider.organization",
                &p.organization,
                1,
                MAX_CARD_NAME_LEN,
                false,
            )?;
            check_url("provider.url", &p.url)?;
        }
        if let Some(u) = &self.icon_url {
            check_url("iconUrl", u)?;
        }
        if let Some(u) = &self.documentation_url {
            check_url("documentationUrl", u)?;
        }
        check_media_types("defaultInputModes", &self.default_input_modes)?;
        check_media_types("defaultOutputModes", &self.default_output_modes)?;

        if self.skills.len() > MAX_CARD_SKILLS {
            return Err(CardError::invalid(
                "skills",
                format!(
                    "at most {MAX_CARD_SKILLS} skills (got {})",
                    self.skills.len()
                ),
            ));
        }
        let mut ids = HashSet::new();
        for (i, skill) in self.skills.iter().enumerate() {
            skill.validate(i)?;
            if !ids.insert(skill.id.as_str()) {
                return Err(CardError::invalid(
                    format!("skills[{i}].id"),
                    format!("duplicate skill id `{}`", skill.id),
                ));
            }
        }

        for (i, iface) in self.supported_interfaces.iter().enumerate() {
            check_url(&format!("supportedInterfaces[{i}].url"), &iface.url)?;
            check_text(
                &format!("supportedInterfaces[{i}].protocolBinding"),
                &iface.protocol_binding,
                1,
                MAX_CARD_URL_LEN,
                false,
            )?;
            if let Some(v) = &iface.protocol_version {
                check_text(
                    &format!("supportedInterfaces[{i}].protocolVersion"),
                    v,
                    1,
                    MAX_CARD_VERSION_LEN,
                    false,
                )?;
            }
            if let Some(t) = &iface.tenant {
                check_text(
                    &format!("supportedInterfaces[{i}].tenant"),
                    t,
                    1,
                    MAX_CARD_NAME_LEN,
                    false,
                )?;
            }
        }

        check_url("mesh.relayUrl", &self.mesh.relay_url)?;
        let has_mesh_interface = self
            .supported_interfaces
            .iter()
            .any(|i| i.protocol_binding == MESH_PROTOCOL_BINDING && i.url == self.mesh.relay_url);
        if !has_mesh_interface {
            return Err(CardError::invalid(
                "supportedInterfaces",
                format!(
                    "must include {{\"url\": mesh.relayUrl, \"protocolBinding\": \"{MESH_PROTOCOL_BINDING}\"}}"
                ),
            ));
        }
        check_safe_u64("mesh.issuedAt", self.mesh.issued_at)?;
        check_safe_u64("mesh.seq", self.mesh.seq)?;
        Ok(())
    }

    /// Validates the card and signs it with `identity`, which must be the
    /// agent the card names in `mesh.agentId`.
    ///
    /// The result is exactly what a verifier reading its
    /// [`SignedCard::to_json`] gets back.
    pub fn sign(self, identity: &Identity) -> Result<SignedCard, CardError> {
        self.validate()?;
        let signer = identity.agent_id();
        if self.mesh.agent_id != signer {
            return Err(CardError::SignerMismatch {
                card: self.mesh.agent_id,
                signer,
            });
        }
        let mut value = self.to_object();
        check_depth(&value)?;
        let body = value.to_canonical();
        if body.len() > MAX_CARD_LEN {
            return Err(CardError::TooLarge {
                len: body.len(),
                max: MAX_CARD_LEN,
            });
        }
        let signature = identity.sign(SignatureContext::Card, &[&body]);
        value.insert(
            SIGNATURE_MEMBER,
            URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        );
        let canonical = value.to_canonical();
        // Read back through the verifier so that the signed card we return is
        // exactly the one every reader of these bytes will see.
        SignedCard::from_json(&canonical)
    }
}

/// Whether `id` may be a skill's id: 1 to [`MAX_SKILL_TAG_LEN`] bytes of
/// ASCII letters, digits, `.`, `_` and `-`. (Capability names allow more, so
/// not every capability can be listed as a skill.)
pub fn is_valid_skill_id(id: &str) -> bool {
    (1..=MAX_SKILL_TAG_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Skill {
    /// A skill with no tags, examples, modes or schema.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Skill {
            id: id.into(),
            name: name.into(),
            description: description.into(),
            tags: Vec::new(),
            examples: None,
            input_modes: None,
            output_modes: None,
            input_schema: None,
        }
    }

    /// Adds search tags.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Adds example requests.
    pub fn with_examples<I, S>(mut self, examples: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.examples
            .get_or_insert_with(Vec::new)
            .extend(examples.into_iter().map(Into::into));
        self
    }

    /// Sets the JSON Schema of the request body (must be a JSON object).
    pub fn with_input_schema(mut self, schema: Value) -> Self {
        self.input_schema = Some(schema);
        self
    }

    fn validate(&self, i: usize) -> Result<(), CardError> {
        let at = |f: &str| format!("skills[{i}].{f}");
        check_text(&at("id"), &self.id, 1, MAX_SKILL_TAG_LEN, false)?;
        if !is_valid_skill_id(&self.id) {
            return Err(CardError::invalid(
                at("id"),
                "only letters, digits, '.', '_' and '-' are allowed",
            ));
        }
        check_text(&at("name"), &self.name, 1, MAX_CARD_NAME_LEN, false)?;
        check_text(
            &at("description"),
            &self.description,
            0,
            MAX_CARD_DESCRIPTION_LEN,
            true,
        )?;
        if self.tags.len() > MAX_SKILL_TAGS {
            return Err(CardError::invalid(
                at("tags"),
                format!("at most {MAX_SKILL_TAGS} tags (got {})", self.tags.len()),
            ));
        }
        for (j, tag) in self.tags.iter().enumerate() {
            check_text(&at(&format!("tags[{j}]")), tag, 1, MAX_SKILL_TAG_LEN, false)?;
        }
        if let Some(examples) = &self.examples {
            for (j, example) in examples.iter().enumerate() {
                check_text(
                    &at(&format!("examples[{j}]")),
                    example,
                    1,
                    MAX_CARD_DESCRIPTION_LEN,
                    true,
                )?;
            }
        }
        if let Some(modes) = &self.input_modes {
            check_media_types(&at("inputModes"), modes)?;
        }
        if let Some(modes) = &self.output_modes {
            check_media_types(&at("outputModes"), modes)?;
        }
        if let Some(schema) = &self.input_schema {
            if !schema.is_object() {
                return Err(CardError::invalid(
                    at("inputSchema"),
                    "must be a JSON Schema object",
                ));
            }
        }
        Ok(())
    }
}

/// Builds an [`AgentCard`] with sane defaults: version `1.0.0`, empty
/// description, no skills, both mode lists [`DEFAULT_MEDIA_TYPES`], the
/// mesh interface at the relay URL, `issuedAt` 0 and `seq` = `issuedAt`.
#[derive(Debug, Clone)]
pub struct AgentCardBuilder {
    card: AgentCard,
    seq: Option<u64>,
}

impl AgentCardBuilder {
    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.card.description = description.into();
        self
    }

    /// Sets the agent's version string.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.card.version = version.into();
        self
    }

    /// Sets who runs the agent.
    pub fn provider(mut self, organization: impl Into<String>, url: impl Into<String>) -> Self {
        self.card.provider = Some(Provider {
            organization: organization.into(),
            url: url.into(),
        });
        self
    }

    /// Sets the icon URL.
    pub fn icon_url(mut self, url: impl Into<String>) -> Self {
        self.card.icon_url = Some(url.into());
        self
    }

    /// Sets the documentation URL.
    pub fn documentation_url(mut self, url: impl Into<String>) -> Self {
        self.card.documentation_url = Some(url.into());
        self
    }

    /// Declares streaming support.
    pub fn streaming(mut self, on: bool) -> Self {
        self.card.capabilities.streaming = on;
        self
    }

    /// Declares push-notification support.
    pub fn push_notifications(mut self, on: bool) -> Self {
        self.card.capabilities.push_notifications = on;
        self
    }

    /// Adds a skill.
    pub fn skill(mut self, skill: Skill) -> Self {
        self.card.skills.push(skill);
        self
    }

    /// Replaces the default input media types.
    pub fn default_input_modes<I, S>(mut self, modes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.card.default_input_modes = modes.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the default output media types.
    pub fn default_output_modes<I, S>(mut self, modes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.card.default_output_modes = modes.into_iter().map(Into::into).collect();
        self
    }

    /// Adds another interface (e.g. an A2A HTTP endpoint) next to the mesh one.
    pub fn interface(mut self, interface: AgentInterface) -> Self {
        self.card.supported_interfaces.push(interface);
        self
    }

    /// Sets the issue time (Unix milliseconds). Unless [`Self::seq`] is
    /// called, it is also the sequence number, which makes every later card
    /// from a clock that does not run backwards supersede this one.
    pub fn issued_at(mut self, unix_ms: u64) -> Self {
        self.card.mesh.issued_at = unix_ms;
        self
    }

    /// Sets the sequence number explicitly.
    pub fn seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    /// The finished (unsigned, not yet validated) card.
    pub fn build(self) -> AgentCard {
        let mut card = self.card;
        card.mesh.seq = self.seq.unwrap_or(card.mesh.issued_at);
        card
    }

    /// Builds, validates and signs the card.
    pub fn sign(self, identity: &Identity) -> Result<SignedCard, CardError> {
        self.build().sign(identity)
    }
}

/// A verified (or freshly signed) Agent Card.
///
/// There is no way to get one without a valid signature by the agent the
/// card names. It keeps the canonical JSON of exactly what was verified, so
/// storing and serving [`SignedCard::to_json`] never changes the signed
/// content.
#[derive(Clone, PartialEq)]
pub struct SignedCard {
    card: AgentCard,
    signature: Signature,
    canonical: Vec<u8>,
}

impl SignedCard {
    /// Reads and verifies a card: size limit, JSON, `signature` present,
    /// shape (unknown members refused), card rules, then the signature over
    /// the JCS form of the received object without `signature`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CardError> {
        if bytes.len() > MAX_CARD_LEN {
            return Err(CardError::TooLarge {
                len: bytes.len(),
                max: MAX_CARD_LEN,
            });
        }
        Self::from_value(Value::parse(bytes)?)
    }

    /// Verifies a card already read as JSON (e.g. one entry of a registry
    /// answer), exactly as [`SignedCard::from_json`] does after reading.
    pub fn from_value(value: Value) -> Result<Self, CardError> {
        let Value::Object(mut obj) = value else {
            return Err(CardError::Json("a card must be a JSON object".to_owned()));
        };
        let signature_text = match obj.remove(SIGNATURE_MEMBER) {
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(CardError::invalid(SIGNATURE_MEMBER, "must be a string"));
            }
            None => return Err(CardError::MissingSignature),
        };
        let signature = decode_signature(&signature_text)?;
        check_depth(&obj)?;
        // What is signed is the received object, not a re-serialization of
        // the typed card (which is read from a copy).
        let body = obj.to_canonical();
        if body.len() > MAX_CARD_LEN {
            return Err(CardError::TooLarge {
                len: body.len(),
                max: MAX_CARD_LEN,
            });
        }
        let card = AgentCard::from_value(Value::Object(obj.clone()))?;
        card.validate()?;
        card.mesh
            .agent_id
            .verify(SignatureContext::Card, &[&body], &signature)
            .map_err(|_| CardError::BadSignature)?;
        obj.insert(SIGNATURE_MEMBER, signature_text);
        let canonical = obj.to_canonical();
        if canonical.len() > MAX_CARD_LEN {
            return Err(CardError::TooLarge {
                len: canonical.len(),
                max: MAX_CARD_LEN,
            });
        }
        Ok(SignedCard {
            card,
            signature,
            canonical,
        })
    }

    /// The canonical (RFC 8785) JSON of the card, signature included: what
    /// a registry stores and serves.
    pub fn to_json(&self) -> Vec<u8> {
        self.canonical.clone()
    }

    /// The canonical JSON, borrowed.
    pub fn as_json(&self) -> &[u8] {
        &self.canonical
    }

    /// The card's content.
    pub fn card(&self) -> &AgentCard {
        &self.card
    }

    /// The card's content, by value.
    pub fn into_card(self) -> AgentCard {
        self.card
    }

    /// The agent that signed the card.
    pub fn agent_id(&self) -> AgentId {
        self.card.mesh.agent_id
    }

    /// The card's sequence number.
    pub fn seq(&self) -> u64 {
        self.card.mesh.seq
    }

    /// When the card was issued (Unix milliseconds).
    pub fn issued_at(&self) -> u64 {
        self.card.mesh.issued_at
    }

    /// The card signature.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// Whether this card may replace `stored`: same agent, greater `seq`.
    pub fn supersedes(&self, stored: &SignedCard) -> bool {
        self.agent_id() == stored.agent_id() && self.seq() > stored.seq()
    }
}

impl fmt::Debug for SignedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedCard")
            .field("card", &self.card)
            .field("signature", &self.signature)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// The JSON form, read and written by hand: every member is named here once,
// unknown members are refused at every level, and absent optional members
// are left out rather than written as `null`.

fn string_values(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

fn put_opt(o: &mut Object, name: &str, value: Option<Value>) {
    if let Some(v) = value {
        o.insert(name, v);
    }
}

impl AgentCard {
    /// Reads a card's content (without `signature`) from JSON, refusing
    /// unknown members. It is not validated: see [`AgentCard::validate`].
    pub fn from_value(value: Value) -> Result<Self, CardError> {
        let card = Fields::read(value, "", |f| {
            Ok(AgentCard {
                name: f.string("name")?,
                description: f.string("description")?,
                version: f.string("version")?,
                provider: f
                    .optional("provider")?
                    .map(|v| Provider::from_value(v, "provider"))
                    .transpose()?,
                icon_url: f.opt_string("iconUrl")?,
                documentation_url: f.opt_string("documentationUrl")?,
                capabilities: CardCapabilities::from_value(f.required("capabilities")?)?,
                default_input_modes: f.array("defaultInputModes", into_string)?,
                default_output_modes: f.array("defaultOutputModes", into_string)?,
                skills: f.array("skills", Skill::from_value)?,
                supported_interfaces: f.array("supportedInterfaces", AgentInterface::from_value)?,
                mesh: MeshBinding::from_value(f.required("mesh")?)?,
            })
        })?;
        Ok(card)
    }

    /// The card's content as a JSON object (what is signed).
    pub fn to_object(&self) -> Object {
        let mut o = Object::new();
        o.insert("name", self.name.as_str());
        o.insert("description", self.description.as_str());
        o.insert("version", self.version.as_str());
        if let Some(p) = &self.provider {
            let mut po = Object::new();
            po.insert("organization", p.organization.as_str());
            po.insert("url", p.url.as_str());
            o.insert("provider", po);
        }
        put_opt(&mut o, "iconUrl", self.icon_url.as_deref().map(Value::from));
        put_opt(
            &mut o,
            "documentationUrl",
            self.documentation_url.as_deref().map(Value::from),
        );
        let mut caps = Object::new();
        caps.insert("streaming", self.capabilities.streaming);
        caps.insert("pushNotifications", self.capabilities.push_notifications);
        o.insert("capabilities", caps);
        o.insert(
            "defaultInputModes",
            string_values(&self.default_input_modes),
        );
        o.insert(
            "defaultOutputModes",
            string_values(&self.default_output_modes),
        );
        o.insert(
            "skills",
            Value::Array(self.skills.iter().map(|s| s.to_object().into()).collect()),
        );
        let interfaces = self.supported_interfaces.iter().map(|i| {
            let mut io = Object::new();
            io.insert("url", i.url.as_str());
            io.insert("protocolBinding", i.protocol_binding.as_str());
            put_opt(
                &mut io,
                "protocolVersion",
                i.protocol_version.as_deref().map(Value::from),
            );
            put_opt(&mut io, "tenant", i.tenant.as_deref().map(Value::from));
            Value::from(io)
        });
        o.insert("supportedInterfaces", Value::Array(interfaces.collect()));
        let mut mesh = Object::new();
        mesh.insert("agentId", self.mesh.agent_id.to_did());
        mesh.insert("relayUrl", self.mesh.relay_url.as_str());
        // Out-of-range values are refused by `validate` before signing; here
        // they read as null, which the verifier refuses too.
        mesh.insert("issuedAt", Number::from_u64(self.mesh.issued_at));
        mesh.insert("seq", Number::from_u64(self.mesh.seq));
        o.insert("mesh", mesh);
        o
    }
}

impl Skill {
    /// Reads one skill (an A2A `AgentSkill`) from JSON, refusing unknown
    /// members; `path` names it in errors (e.g. `skills[0]`). It is
    /// validated when the card is signed or verified.
    pub fn from_value(value: Value, path: &str) -> Result<Self, ShapeError> {
        Fields::read(value, path, |f| {
            Ok(Skill {
                id: f.string("id")?,
                name: f.string("name")?,
                description: f.string("description")?,
                tags: f.array("tags", into_string)?,
                examples: f.opt_array("examples", into_string)?,
                input_modes: f.opt_array("inputModes", into_string)?,
                output_modes: f.opt_array("outputModes", into_string)?,
                input_schema: f.optional("inputSchema")?,
            })
        })
    }

    /// The skill as a JSON object.
    pub fn to_object(&self) -> Object {
        let mut o = Object::new();
        o.insert("id", self.id.as_str());
        o.insert("name", self.name.as_str());
        o.insert("description", self.description.as_str());
        o.insert("tags", string_values(&self.tags));
        put_opt(
            &mut o,
            "examples",
            self.examples.as_deref().map(string_values),
        );
        put_opt(
            &mut o,
            "inputModes",
            self.input_modes.as_deref().map(string_values),
        );
        put_opt(
            &mut o,
            "outputModes",
            self.output_modes.as_deref().map(string_values),
        );
        put_opt(&mut o, "inputSchema", self.input_schema.clone());
        o
    }
}

impl Provider {
    fn from_value(value: Value, path: &str) -> Result<Self, ShapeError> {
        Fields::read(value, path, |f| {
            Ok(Provider {
                organization: f.string("organization")?,
                url: f.string("url")?,
            })
        })
    }
}

impl CardCapabilities {
    fn from_value(value: Value) -> Result<Self, ShapeError> {
        Fields::read(value, "capabilities", |f| {
            Ok(CardCapabilities {
                streaming: f.flag("streaming")?,
                push_notifications: f.flag("pushNotifications")?,
            })
        })
    }
}

impl AgentInterface {
    fn from_value(value: Value, path: &str) -> Result<Self, ShapeError> {
        Fields::read(value, path, |f| {
            Ok(AgentInterface {
                url: f.string("url")?,
                protocol_binding: f.string("protocolBinding")?,
                protocol_version: f.opt_string("protocolVersion")?,
                tenant: f.opt_string("tenant")?,
            })
        })
    }
}

impl MeshBinding {
    fn from_value(value: Value) -> Result<Self, ShapeError> {
        Fields::read(value, "mesh", |f| {
            let agent_id = f.string("agentId")?;
            Ok(MeshBinding {
                agent_id: agent_id
                    .parse()
                    .map_err(|e| ShapeError::new("mesh.agentId", format!("{e}")))?,
                relay_url: f.string("relayUrl")?,
                issued_at: f.u64("issuedAt")?,
                seq: f.u64("seq")?,
            })
        })
    }
}

/// Refuses a card nested deeper than [`MAX_CARD_DEPTH`] (its input
/// schemas are the only part that can nest): well below the JSON reader's
/// own limit, so a card still reads inside any registry answer.
fn check_depth(card: &Object) -> Result<(), CardError> {
    let depth = card.iter().map(|(_, v)| v.depth()).max().unwrap_or(0) + 1;
    if depth > MAX_CARD_DEPTH {
        return Err(CardError::invalid(
            "skills",
            format!("the card nests {depth} levels deep; at most {MAX_CARD_DEPTH} are allowed"),
        ));
    }
    Ok(())
}

fn decode_signature(text: &str) -> Result<Signature, CardError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| CardError::invalid(SIGNATURE_MEMBER, "must be base64url without padding"))?;
    Signature::from_slice(&bytes)
        .map_err(|_| CardError::invalid(SIGNATURE_MEMBER, "must encode 64 bytes"))
}

/// Checks a text member: `min..=max` characters; control characters only
/// where `multiline` (and then only tab, LF and CR).
fn check_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<(), CardError> {
    let n = value.chars().count();
    if n < min || n > max {
        let reason = if min == 0 {
            format!("must be at most {max} characters (got {n})")
        } else {
            format!("must be {min} to {max} characters (got {n})")
        };
        return Err(CardError::invalid(field, reason));
    }
    if min > 0 && value.trim().is_empty() {
        return Err(CardError::invalid(field, "must not be blank"));
    }
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\t' | '\n' | '\r'));
    if !value.chars().all(allowed) {
        return Err(CardError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a URL: `scheme://rest`, printable ASCII without spaces, at most
/// [`MAX_CARD_URL_LEN`] bytes.
fn check_url(field: &str, url: &str) -> Result<(), CardError> {
    if url.is_empty() || url.len() > MAX_CARD_URL_LEN {
        return Err(CardError::invalid(
            field,
            format!("must be 1 to {MAX_CARD_URL_LEN} bytes (got {})", url.len()),
        ));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CardError::invalid(
            field,
            "must be printable ASCII without spaces (percent-encode the rest)",
        ));
    }
    let valid_scheme = url.split_once("://").is_some_and(|(scheme, rest)| {
        let mut bytes = scheme.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            && !rest.is_empty()
    });
    if !valid_scheme {
        return Err(CardError::invalid(
            field,
            "must be an absolute URL (scheme://…)",
        ));
    }
    Ok(())
}

/// Checks a list of media types (`type/subtype`, printable ASCII).
fn check_media_types(field: &str, modes: &[String]) -> Result<(), CardError> {
    for (i, mode) in modes.iter().enumerate() {
        let ok = !mode.is_empty()
            && mode.len() <= MAX_MEDIA_TYPE_LEN
            && mode.bytes().all(|b| b.is_ascii_graphic())
            && mode
                .split_once('/')
                .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty());
        if !ok {
            return Err(CardError::invalid(
                format!("{field}[{i}]"),
                format!(
                    "must be a media type `type/subtype` of at most {MAX_MEDIA_TYPE_LEN} bytes"
                ),
            ));
        }
    }
    Ok(())
}

fn check_safe_u64(field: &str, n: u64) -> Result<(), CardError> {
    if n > MAX_JSON_SAFE_INTEGER {
        return Err(CardError::invalid(
            field,
            format!("must be at most 2^53 - 1 = {MAX_JSON_SAFE_INTEGER}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// A serde_json value (the tests' JSON toolkit) as a card JSON value.
    fn js(v: Value) -> crate::json::Value {
        crate::json::Value::parse(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    /// A card's content as a serde_json value.
    fn body_of(card: &AgentCard) -> Value {
        serde_json::from_slice(&card.to_object().to_canonical()).unwrap()
    }

    fn identity(n: u8) -> Identity {
        Identity::from_secret_bytes(&[n; 32])
    }

    const RELAY: &str = "wss://relay.example/v1/ws";

    /// A card that uses every member, nested JSON Schema included.
    fn full_card(id: &Identity) -> AgentCard {
        AgentCard::builder(id.agent_id(), RELAY, "Résumé summarizer")
            .description("Summarizes documents.\nLine two.")
            .version("2.1.0")
            .provider("Example Org", "https://example.org")
            .icon_url("https://example.org/icon.png")
            .documentation_url("https://example.org/docs")
            .streaming(true)
            .skill(
                Skill::new("summarize.text", "Summarize text", "Short summaries")
                    .with_tags(["nlp", "summary"])
                    .with_examples(["Summarize this article"])
                    .with_input_schema(js(json!({
                        "type": "object",
                        "properties": {
                            "text": {"type": "string", "maxLength": 10000},
                            "ratio": {"type": "number", "default": 0.25},
                            "bullets": {"type": "boolean", "default": false},
                            "offset": {"type": "integer", "minimum": -5},
                            "style": {"enum": ["short", null]}
                        },
                        "required": ["text"]
                    }))),
            )
            .skill(Skill::new("echo", "Echo", "").with_tags(["test"]))
            .interface(AgentInterface {
                url: "https://a2a.example/v1".to_owned(),
                protocol_binding: "JSONRPC".to_owned(),
                protocol_version: Some("1.0".to_owned()),
                tenant: None,
            })
            .issued_at(1_700_000_000_000)
            .build()
    }

    /// Signs an arbitrary JSON object as a card body with `id`, bypassing
    /// all typed checks: for testing what the verifier does with content a
    /// key holder really signed.
    fn sign_raw(id: &Identity, mut body: Value) -> Vec<u8> {
        if let Some(obj) = body.as_object_mut() {
            obj.remove(SIGNATURE_MEMBER);
        }
        let bytes = serde_jcs::to_vec(&body).unwrap();
        let sig = id.sign(SignatureContext::Card, &[&bytes]);
        body.as_object_mut().unwrap().insert(
            SIGNATURE_MEMBER.into(),
            URL_SAFE_NO_PAD.encode(sig.to_bytes()).into(),
        );
        serde_json::to_vec(&body).unwrap()
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let id = identity(1);
        let card = full_card(&id);
        let signed = card.clone().sign(&id).unwrap();
        assert_eq!(signed.card(), &card);
        assert_eq!(signed.agent_id(), id.agent_id());
        assert_eq!(signed.seq(), 1_700_000_000_000);
        let back = SignedCard::from_json(&signed.to_json()).unwrap();
        assert_eq!(back, signed);
        // The wire form is camelCase A2A with our two extra members.
        let v: Value = serde_json::from_slice(signed.as_json()).unwrap();
        for key in [
            "name",
            "description",
            "version",
            "provider",
            "iconUrl",
            "documentationUrl",
            "capabilities",
            "defaultInputModes",
            "defaultOutputModes",
            "skills",
            "supportedInterfaces",
            "mesh",
            "signature",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["mesh"]["agentId"], json!(id.agent_id().to_did()));
        assert_eq!(v["skills"][0]["inputSchema"]["type"], json!("object"));
        assert_eq!(
            v["supportedInterfaces"][0],
            json!({"url": RELAY, "protocolBinding": MESH_PROTOCOL_BINDING})
        );
        assert_eq!(v["signature"].as_str().unwrap().len(), 86);
    }

    #[test]
    fn builder_defaults_are_valid() {
        let id = identity(2);
        let signed = AgentCard::builder(id.agent_id(), RELAY, "minimal")
            .sign(&id)
            .unwrap();
        let card = signed.card();
        assert_eq!(card.default_input_modes, DEFAULT_MEDIA_TYPES);
        assert_eq!(card.default_output_modes, DEFAULT_MEDIA_TYPES);
        assert_eq!(card.mesh.seq, 0);
        let explicit = AgentCard::builder(id.agent_id(), RELAY, "x")
            .issued_at(10)
            .seq(3)
            .build();
        assert_eq!((explicit.mesh.issued_at, explicit.mesh.seq), (10, 3));
    }

    /// Every mutation of a JSON value that we can think of systematically:
    /// each leaf changed, each member and element removed, a member or an
    /// element added to every container.
    fn mutations(v: &Value) -> Vec<(String, Value)> {
        type Edit<'a> = &'a dyn Fn(&mut Value);
        fn push(out: &mut Vec<(String, Value)>, root: &Value, ptr: &str, desc: &str, f: Edit) {
            let mut m = root.clone();
            f(m.pointer_mut(ptr).unwrap());
            out.push((format!("{ptr}: {desc}"), m));
        }
        fn walk(root: &Value, ptr: &str, v: &Value, out: &mut Vec<(String, Value)>) {
            match v {
                Value::String(s) => {
                    push(out, root, ptr, "append", &|x| *x = format!("{s}x").into());
                    if let Some(c) = s.chars().next() {
                        let other = if c == 'A' { 'B' } else { 'A' };
                        let changed = format!("{other}{}", &s[c.len_utf8()..]);
                        push(out, root, ptr, "first char", &|x| {
                            *x = changed.clone().into()
                        });
                    }
                    push(out, root, ptr, "to null", &|x| *x = Value::Null);
                }
                Value::Number(n) => {
                    let next = match (n.as_u64(), n.as_i64(), n.as_f64()) {
                        (Some(u), _, _) => json!(u + 1),
                        (None, Some(i), _) => json!(i + 1),
                        (_, _, Some(f)) => json!(f + 1.0),
                        _ => json!(0),
                    };
                    push(out, root, ptr, "+1", &|x| *x = next.clone());
                    push(out, root, ptr, "to string", &|x| *x = n.to_string().into());
                }
                Value::Bool(b) => push(out, root, ptr, "flip", &|x| *x = (!b).into()),
                Value::Null => push(out, root, ptr, "null to 0", &|x| *x = json!(0)),
                Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        push(out, root, ptr, &format!("remove [{i}]"), &|x| {
                            x.as_array_mut().unwrap().remove(i);
                        });
                        walk(root, &format!("{ptr}/{i}"), child, out);
                    }
                    let extra = items.first().cloned().unwrap_or(json!("x"));
                    push(out, root, ptr, "push", &|x| {
                        x.as_array_mut().unwrap().push(extra.clone())
                    });
                }
                Value::Object(members) => {
                    for (k, child) in members {
                        push(out, root, ptr, &format!("remove {k}"), &|x| {
                            x.as_object_mut().unwrap().remove(k);
                        });
                        let esc = k.replace('~', "~0").replace('/', "~1");
                        walk(root, &format!("{ptr}/{esc}"), child, out);
                    }
                    push(out, root, ptr, "add member", &|x| {
                        x.as_object_mut().unwrap().insert("zz".into(), json!(1));
                    });
                }
            }
        }
        let mut out = Vec::new();
        walk(v, "", v, &mut out);
        out
    }

    #[test]
    fn any_change_to_any_field_fails_verification() {
        let id = identity(3);
        let signed = full_card(&id).sign(&id).unwrap();
        let original: Value = serde_json::from_slice(signed.as_json()).unwrap();
        let all = mutations(&original);
        assert!(all.len() > 150, "only {} mutations", all.len());
        let mut bad_signature = 0;
        for (desc, mutated) in &all {
            let bytes = serde_json::to_vec(mutated).unwrap();
            match SignedCard::from_json(&bytes) {
                Ok(_) => panic!("mutation accepted: {desc}"),
                Err(CardError::BadSignature) => bad_signature += 1,
                Err(_) => {}
            }
        }
        // Most mutations leave a well-formed card, so it is the signature
        // that catches them (not merely the shape checks).
        assert!(
            bad_signature * 3 > all.len(),
            "{bad_signature}/{}",
            all.len()
        );
        // And the targeted ones named in the spec:
        for ptrs in [
            &["/skills/0/tags/1"][..],
            &["/name"],
            &["/description"],
            &["/mesh/relayUrl", "/supportedInterfaces/0/url"],
        ] {
            let mut m = original.clone();
            for ptr in ptrs {
                let s = m.pointer(ptr).unwrap().as_str().unwrap().to_owned();
                *m.pointer_mut(ptr).unwrap() = format!("{s}x").into();
            }
            let r = SignedCard::from_json(&serde_json::to_vec(&m).unwrap());
            assert_eq!(r.unwrap_err(), CardError::BadSignature, "{ptrs:?}");
        }
        let mut m = original.clone();
        m["mesh"]["seq"] = json!(signed.seq() + 1);
        let r = SignedCard::from_json(&serde_json::to_vec(&m).unwrap());
        assert_eq!(r.unwrap_err(), CardError::BadSignature);
    }

    #[test]
    fn a_valid_signature_by_another_key_fails() {
        let a = identity(4);
        let b = identity(5);
        let body = body_of(&full_card(&a));
        let forged = sign_raw(&b, body);
        assert_eq!(
            SignedCard::from_json(&forged).unwrap_err(),
            CardError::BadSignature
        );
    }

    #[test]
    fn signer_mismatch_is_refused() {
        let a = identity(4);
        let b = identity(5);
        let err = full_card(&a).sign(&b).unwrap_err();
        assert_eq!(
            err,
            CardError::SignerMismatch {
                card: a.agent_id(),
                signer: b.agent_id()
            }
        );
        assert!(err.to_string().contains("signing identity"));
    }

    #[test]
    fn unknown_members_are_refused_even_when_signed() {
        let id = identity(6);
        let body = body_of(&full_card(&id));
        for ptr in ["", "/skills/0", "/mesh", "/capabilities", "/provider"] {
            let mut m = body.clone();
            m.pointer_mut(ptr)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert("bogus".into(), json!(true));
            let err = SignedCard::from_json(&sign_raw(&id, m)).unwrap_err();
            match err {
                CardError::Json(msg) => assert!(msg.contains("unknown field \"bogus\""), "{msg}"),
                other => panic!("{ptr}: {other:?}"),
            }
        }
        // Unknown members inside a JSON Schema are the schema's business.
        let mut m = body.clone();
        m["skills"][0]["inputSchema"]["x-extension"] = json!({"any": [1, 2.5]});
        assert!(SignedCard::from_json(&sign_raw(&id, m)).is_ok());
    }

    /// One form per typed card: an optional member is left out, and a
    /// signed `null` in its place is refused rather than read as absent.
    #[test]
    fn null_members_are_refused_even_when_signed() {
        let id = identity(15);
        let body = body_of(&full_card(&id));
        for ptr in [
            "/iconUrl",
            "/capabilities/streaming",
            "/skills/0/examples",
            "/skills/1/inputSchema",
        ] {
            let mut m = body.clone();
            let (parent, name) = ptr.rsplit_once('/').unwrap();
            m.pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert(name.into(), Value::Null);
            match SignedCard::from_json(&sign_raw(&id, m)).unwrap_err() {
                CardError::Json(msg) => assert!(msg.contains("must not be null"), "{ptr}: {msg}"),
                other => panic!("{ptr}: {other:?}"),
            }
        }
    }

    /// A card at most `MAX_CARD_DEPTH` deep signs, verifies, and still
    /// reads inside a registry answer; one level more is refused both ways.
    #[test]
    fn nesting_is_bounded_below_the_reader_limit() {
        let id = identity(16);
        // Card (1) → skills (2) → skill (3) → schema (4) → … nested objects.
        let schema = |levels: usize| {
            let text = "{\"a\":".repeat(levels) + "1" + &"}".repeat(levels);
            crate::json::Value::parse(text.as_bytes()).unwrap()
        };
        let card = |levels| {
            AgentCard::builder(id.agent_id(), RELAY, "deep")
                .skill(Skill::new("s", "s", "").with_input_schema(schema(levels)))
                .build()
        };
        let deepest = card(MAX_CARD_DEPTH - 3).sign(&id).unwrap();
        let answer = format!(
            r#"{{"items":[{{"card":{},"presence":{{"online":true}}}}]}}"#,
            String::from_utf8(deepest.to_json()).unwrap()
        );
        assert!(crate::json::Value::parse(answer.as_bytes()).is_ok());
        let err = card(MAX_CARD_DEPTH - 2).sign(&id).unwrap_err();
        assert!(
            matches!(&err, CardError::Invalid { reason, .. } if reason.contains("levels deep")),
            "{err:?}"
        );
        let mut too_deep = body_of(&card(MAX_CARD_DEPTH - 3));
        too_deep["skills"][0]["inputSchema"] =
            json!({"b": serde_json::to_value(&too_deep["skills"][0]["inputSchema"]).unwrap()});
        assert!(matches!(
            SignedCard::from_json(&sign_raw(&id, too_deep)).unwrap_err(),
            CardError::Invalid { .. }
        ));
    }

    #[test]
    fn duplicate_members_are_refused() {
        let id = identity(7);
        let signed = full_card(&id).sign(&id).unwrap();
        let text = String::from_utf8(signed.to_json()).unwrap();
        let dup = text.replacen("{", "{\"name\":\"evil\",", 1);
        let err = SignedCard::from_json(dup.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, CardError::Json(m) if m.contains("duplicate member \"name\"")),
            "{err:?}"
        );
    }

    #[test]
    fn missing_or_malformed_signature() {
        let id = identity(8);
        let signed = full_card(&id).sign(&id).unwrap();
        let mut v: Value = serde_json::from_slice(signed.as_json()).unwrap();
        let sig = v["signature"].as_str().unwrap().to_owned();
        v.as_object_mut().unwrap().remove("signature");
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_eq!(
            SignedCard::from_json(&bytes).unwrap_err(),
            CardError::MissingSignature
        );
        for bad in [
            json!(5),
            json!(format!("{sig}=")),
            json!(&sig[..80]),
            json!("!!"),
        ] {
            v["signature"] = bad;
            let err = SignedCard::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert!(matches!(err, CardError::Invalid { ref field, .. } if field == "signature"));
        }
        assert!(SignedCard::from_json(b"[1,2]").is_err());
        assert!(SignedCard::from_json(b"{} {}").is_err());
    }

    #[test]
    fn too_large_is_refused() {
        let bytes = vec![b' '; MAX_CARD_LEN + 1];
        assert_eq!(
            SignedCard::from_json(&bytes).unwrap_err(),
            CardError::TooLarge {
                len: MAX_CARD_LEN + 1,
                max: MAX_CARD_LEN
            }
        );
        // A valid card padded past the limit is refused before parsing.
        let id = identity(9);
        let mut padded = full_card(&id).sign(&id).unwrap().to_json();
        padded.resize(MAX_CARD_LEN + 1, b'\n');
        assert!(matches!(
            SignedCard::from_json(&padded),
            Err(CardError::TooLarge { .. })
        ));
        // Signing a card whose content is over the limit fails too.
        let mut b = AgentCard::builder(id.agent_id(), RELAY, "big");
        for i in 0..MAX_CARD_SKILLS {
            b = b.skill(Skill::new(
                format!("s{i}"),
                "s",
                "d".repeat(MAX_CARD_DESCRIPTION_LEN),
            ));
        }
        assert!(matches!(b.sign(&id), Err(CardError::TooLarge { .. })));
    }

    #[test]
    fn validation_rules() {
        let id = identity(10);
        let base = || full_card(&id);
        let field_of = |card: AgentCard| match card.sign(&id) {
            Err(CardError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut c = base();
        c.name = String::new();
        assert_eq!(field_of(c), "name");
        let mut c = base();
        c.name = "n".repeat(MAX_CARD_NAME_LEN + 1);
        assert_eq!(field_of(c), "name");
        let mut c = base();
        c.name = "é".repeat(MAX_CARD_NAME_LEN); // characters, not bytes
        assert!(c.sign(&id).is_ok());
        let mut c = base();
        c.description = "d".repeat(MAX_CARD_DESCRIPTION_LEN + 1);
        assert_eq!(field_of(c), "description");
        let mut c = base();
        c.skills[0].id = "has space".into();
        assert_eq!(field_of(c), "skills[0].id");
        let mut c = base();
        c.skills[1].id = c.skills[0].id.clone();
        assert_eq!(field_of(c), "skills[1].id");
        let mut c = base();
        c.skills[0].tags = (0..=MAX_SKILL_TAGS).map(|i| i.to_string()).collect();
        assert_eq!(field_of(c), "skills[0].tags");
        let mut c = base();
        c.skills[0].tags[1] = "t".repeat(MAX_SKILL_TAG_LEN + 1);
        assert_eq!(field_of(c), "skills[0].tags[1]");
        let mut c = base();
        c.skills[0].input_schema = Some(js(json!([1])));
        assert_eq!(field_of(c), "skills[0].inputSchema");
        let mut c = base();
        c.skills = (0..=MAX_CARD_SKILLS)
            .map(|i| Skill::new(format!("s{i}"), "s", ""))
            .collect();
        assert_eq!(field_of(c), "skills");
        let mut c = base();
        c.mesh.seq = MAX_JSON_SAFE_INTEGER + 1;
        assert_eq!(field_of(c), "mesh.seq");
        let mut c = base();
        c.mesh.issued_at = u64::MAX;
        assert_eq!(field_of(c), "mesh.issuedAt");
        let mut c = base();
        c.mesh.relay_url = "wss://elsewhere.example".into();
        assert_eq!(field_of(c), "supportedInterfaces");
        let mut c = base();
        c.icon_url = Some("not a url".into());
        assert_eq!(field_of(c), "iconUrl");
        let mut c = base();
        c.documentation_url = Some(format!("https://x/{}", "a".repeat(MAX_CARD_URL_LEN)));
        assert_eq!(field_of(c), "documentationUrl");
        let mut c = base();
        c.default_output_modes.push("plain".into());
        assert_eq!(field_of(c), "defaultOutputModes[2]");
    }

    /// Writes `v` with members in reverse order, indentation, and every
    /// non-ASCII character as a `\u` escape.
    fn reordered(v: &Value, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth + 1);
        match v {
            Value::Object(m) => {
                out.push_str("{\n");
                let members: Vec<_> = m.iter().rev().collect();
                for (i, (k, child)) in members.iter().enumerate() {
                    out.push_str(&format!("{pad}{} :  ", serde_json::to_string(k).unwrap()));
                    reordered(child, out, depth + 1);
                    out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push_str("[ ");
                for (i, child) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" ,\t");
                    }
                    reordered(child, out, depth + 1);
                }
                out.push_str(" ]");
            }
            Value::String(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '/' => out.push_str("\\/"),
                        c if c.is_ascii() && !c.is_control() => out.push(c),
                        c => {
                            let mut buf = [0u16; 2];
                            for unit in c.encode_utf16(&mut buf) {
                                out.push_str(&format!("\\u{unit:04X}"));
                            }
                        }
                    }
                }
                out.push('"');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    #[test]
    fn whitespace_member_order_and_escapes_do_not_matter() {
        let id = identity(11);
        let signed = full_card(&id).sign(&id).unwrap();
        let v: Value = serde_json::from_slice(signed.as_json()).unwrap();
        let mut text = String::new();
        reordered(&v, &mut text, 0);
        assert_ne!(text.as_bytes(), signed.as_json());
        assert!(text.contains("\\u00E9"), "expected an escaped é");
        let back = SignedCard::from_json(text.as_bytes()).unwrap();
        assert_eq!(back.to_json(), signed.to_json());
        assert_eq!(back, signed);
    }

    #[test]
    fn verifies_cards_embedded_in_larger_documents() {
        let id = identity(12);
        let signed = full_card(&id).sign(&id).unwrap();
        let card = String::from_utf8(signed.to_json()).unwrap();
        let doc = format!(r#"{{"cards": [{card}], "next": null}}"#);
        let first = |doc: &str| {
            let v = crate::json::Value::parse(doc.as_bytes()).unwrap();
            v.get("cards").unwrap().as_array().unwrap()[0].clone()
        };
        assert_eq!(SignedCard::from_value(first(&doc)).unwrap(), signed);
        let tampered = doc.replace("Summarize text", "Summarise text");
        assert_eq!(
            SignedCard::from_value(first(&tampered)).unwrap_err(),
            CardError::BadSignature
        );
    }

    #[test]
    fn supersedes_needs_same_agent_and_greater_seq() {
        let a = identity(13);
        let b = identity(14);
        let card = |id: &Identity, seq| {
            AgentCard::builder(id.agent_id(), RELAY, "c")
                .seq(seq)
                .sign(id)
                .unwrap()
        };
        assert!(card(&a, 2).supersedes(&card(&a, 1)));
        assert!(!card(&a, 1).supersedes(&card(&a, 1)));
        assert!(!card(&a, 1).supersedes(&card(&a, 2)));
        assert!(!card(&b, 9).supersedes(&card(&a, 1)));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "[a-zA-Z0-9 ]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("name".to_owned()),
                        Just("mesh".to_owned()),
                        Just("signature".to_owned()),
                        Just("skills".to_owned()),
                        "[a-z]{1,8}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = SignedCard::from_json(&bytes);
        }

        #[test]
        fn json_ish_text_never_panics(text in r#"[\[\]{}":,0-9a-zA-Z .\-\\e+]{0,300}"#) {
            let _ = SignedCard::from_json(text.as_bytes());
        }

        #[test]
        fn arbitrary_json_values_are_refused(v in arb_json()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            prop_assert!(SignedCard::from_json(&bytes).is_err());
        }

        #[test]
        fn edited_cards_verify_only_if_unchanged(
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            op in 0u8..3,
        ) {
            let id = identity(15);
            let original = full_card(&id).sign(&id).unwrap();
            let mut bytes = original.to_json();
            let i = pos.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
            if let Ok(card) = SignedCard::from_json(&bytes) {
                prop_assert_eq!(card.to_json(), original.to_json());
            }
        }
    }
}
