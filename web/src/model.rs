//! What the app remembers: contacts, conversations and their entries. Plain
//! data, serialized as JSON into IndexedDB by [`crate::store`]; the screens
//! render it and [`crate::service`] changes it.

use mesh_core::CHAT_CAPABILITY;
use serde::{Deserialize, Serialize};

/// Where a contact stands with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactStatus {
    /// We talk to them (we wrote first, or accepted their first contact).
    Accepted,
    /// They wrote first and we have not decided yet.
    Pending,
    /// We blocked them; their messages are dropped unseen.
    Blocked,
}

/// One skill from a contact's Agent Card, as much as the app shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillInfo {
    /// The skill id (normally the capability name).
    pub id: String,
    /// Its human name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
}

/// Someone we talk to, or who asked to talk to us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Their `did:key`.
    pub did: String,
    /// Display name (from their card; a short id until we know it).
    pub name: String,
    /// Card description.
    #[serde(default)]
    pub description: String,
    /// Card skills.
    #[serde(default)]
    pub skills: Vec<SkillInfo>,
    /// Whether the card says they stream answers.
    #[serde(default)]
    pub streaming: bool,
    /// We compared safety numbers out of band.
    #[serde(default)]
    pub verified: bool,
    /// Accepted, pending or blocked.
    pub status: ContactStatus,
    /// Latest activity (Unix ms), for sorting.
    #[serde(default)]
    pub last_at: u64,
}

impl Contact {
    /// An agent whose card does not offer chat: its thread is about
    /// requests, and it is listed under "Agents".
    pub fn is_agent(&self) -> bool {
        !self.skills.is_empty() && !self.skills.iter().any(|s| s.id == CHAT_CAPABILITY)
    }

    /// The skills one can send a request to (everything but chat).
    pub fn request_skills(&self) -> impl Iterator<Item = &SkillInfo> {
        self.skills.iter().filter(|s| s.id != CHAT_CAPABILITY)
    }
}

/// Which way a chat message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// Received.
    In,
    /// Sent by us.
    Out,
}

/// How far one of our messages got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Handed to the client (or waiting for a connection).
    Sending,
    /// The relay holds it for the offline peer.
    Queued,
    /// The peer's device has it.
    Delivered,
    /// The peer has seen it.
    Read,
    /// It could not be delivered.
    Failed,
}

impl Delivery {
    /// Progress order: news never moves a message backwards.
    fn rank(self) -> u8 {
        match self {
            Delivery::Sending => 0,
            Delivery::Failed => 1,
            Delivery::Queued => 2,
            Delivery::Delivered => 3,
            Delivery::Read => 4,
        }
    }

    /// Whether `next` is news (a receipt even overrides a failure: it
    /// proves delivery).
    pub fn advances_to(self, next: Delivery) -> bool {
        match next {
            Delivery::Failed => matches!(self, Delivery::Sending | Delivery::Queued),
            _ => next.rank() > self.rank(),
        }
    }

    /// The `data-state` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Sending => "sending",
            Delivery::Queued => "queued",
            Delivery::Delivered => "delivered",
            Delivery::Read => "read",
            Delivery::Failed => "failed",
        }
    }
}

/// Where a request to an agent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReqStatus {
    /// Waiting for (more of) the answer.
    Running,
    /// Answered completely.
    Done,
    /// We cancelled it.
    Cancelled,
    /// It failed.
    Error,
}

impl ReqStatus {
    /// The `data-status` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReqStatus::Running => "running",
            ReqStatus::Done => "done",
            ReqStatus::Cancelled => "cancelled",
            ReqStatus::Error => "error",
        }
    }
}

/// What an entry of a conversation is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum EntryBody {
    /// A chat message.
    Chat {
        /// Sent or received.
        dir: Dir,
        /// The text.
        text: String,
        /// The wire message id (`None`: waiting in our outbox for a
        /// connection).
        msg_id: Option<u64>,
        /// Delivery progress (outgoing only).
        state: Delivery,
        /// Why it failed.
        #[serde(default)]
        error: Option<String>,
        /// Seen by us (incoming only).
        #[serde(default)]
        read: bool,
        /// Our read receipt went out (incoming only).
        #[serde(default)]
        receipted: bool,
    },
    /// A request we sent to one of the peer's capabilities, and its answer.
    Request {
        /// The capability asked for.
        capability: String,
        /// The request body (text).
        body: String,
        /// Where it stands.
        status: ReqStatus,
        /// The answer: one chunk for a unary answer, one per streamed chunk.
        chunks: Vec<String>,
        /// Why it failed.
        #[serde(default)]
        error: Option<String>,
    },
    /// A line from the app itself ("You accepted …").
    Note {
        /// The text.
        text: String,
    },
}

/// One item of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Local id, unique on this device.
    pub id: u64,
    /// When it happened here (Unix ms).
    pub at: u64,
    /// Bumped on every change, so the list re-renders just this entry.
    #[serde(skip)]
    pub rev: u32,
    /// The content.
    pub body: EntryBody,
}

impl Entry {
    /// A one-line summary for the conversation list.
    pub fn preview(&self) -> String {
        match &self.body {
            EntryBody::Chat {
                dir: Dir::Out,
                text,
                ..
            } => format!("You: {text}"),
            EntryBody::Chat { text, .. } => text.clone(),
            EntryBody::Request { capability, .. } => format!("Request · {capability}"),
            EntryBody::Note { text } => text.clone(),
        }
    }

    /// Incoming and not seen yet.
    pub fn is_unread(&self) -> bool {
        matches!(
            self.body,
            EntryBody::Chat {
                dir: Dir::In,
                read: false,
                ..
            }
        )
    }
}

/// The most entries kept per conversation (oldest dropped first).
pub const MAX_ENTRIES: usize = 500;

/// Drops the oldest entries past [`MAX_ENTRIES`].
pub fn bound(entries: &mut Vec<Entry>) {
    if entries.len() > MAX_ENTRIES {
        let extra = entries.len() - MAX_ENTRIES;
        entries.drain(..extra);
    }
}

/// Entries that were in flight when the page closed: a message that never
/// got news from the relay may have died with the old page (it offers a
/// retry; a late receipt still moves it on); an answer that was still
/// streaming is over.
pub fn settle_after_reload(entries: &mut [Entry]) {
    for e in entries {
        match &mut e.body {
            EntryBody::Chat {
                dir: Dir::Out,
                msg_id: Some(_),
                state: state @ Delivery::Sending,
                error,
                ..
            } => {
                *state = Delivery::Failed;
                *error = Some("Not confirmed before the page was closed.".into());
            }
            EntryBody::Request { status, error, .. } if *status == ReqStatus::Running => {
                *status = ReqStatus::Error;
                *error = Some("The page was closed before the answer was complete.".into());
            }
            _ => {}
        }
    }
}

/// The most topics a person's card carries.
pub const MAX_TOPICS: usize = 8;

/// Reads "rust, design, climate" into card tags: trimmed, lower-cased,
/// duplicates dropped, each a valid capability name (letters, digits, `.`,
/// `_`, `-`), at most [`MAX_TOPICS`].
pub fn parse_topics(text: &str) -> Result<Vec<String>, String> {
    let mut topics: Vec<String> = Vec::new();
    for raw in text.split(',') {
        let topic = raw.trim().to_lowercase();
        if topic.is_empty() || topics.contains(&topic) {
            continue;
        }
        if mesh_core::acl::validate_capability(&topic).is_err() {
            return Err(format!(
                "\"{topic}\" cannot be a topic: use letters, digits, '.', '_' or '-'."
            ));
        }
        topics.push(topic);
    }
    if topics.len() > MAX_TOPICS {
        return Err(format!("At most {MAX_TOPICS} topics."));
    }
    Ok(topics)
}

/// The topics on a person's card: the chat skill's tags besides the two
/// every person's card has.
pub fn topics_of(card: &mesh_core::card::AgentCard) -> Vec<String> {
    card.skills
        .iter()
        .filter(|s| s.id == CHAT_CAPABILITY)
        .flat_map(|s| s.tags.iter())
        .filter(|t| *t != "chat" && *t != "person")
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_normalised_and_checked() {
        assert_eq!(
            parse_topics(" Rust, design ,rust,, climate-tech ").unwrap(),
            vec!["rust", "design", "climate-tech"]
        );
        assert_eq!(parse_topics("").unwrap(), Vec::<String>::new());
        assert!(parse_topics("two words").is_err());
        assert!(parse_topics("a,b,c,d,e,f,g,h,i").is_err());
    }

    fn chat(dir: Dir, msg_id: Option<u64>, state: Delivery) -> Entry {
        Entry {
            id: 1,
            at: 1_000,
            rev: 0,
            body: EntryBody::Chat {
                dir,
                text: "hi".into(),
                msg_id,
                state,
                error: None,
                read: false,
                receipted: false,
            },
        }
    }

    #[test]
    fn delivery_only_moves_forward() {
        use Delivery::*;
        assert!(Sending.advances_to(Queued));
        assert!(Queued.advances_to(Delivered));
        assert!(Sending.advances_to(Read), "a read receipt may come first");
        assert!(!Read.advances_to(Delivered), "a late delivered receipt");
        assert!(!Delivered.advances_to(Queued));
        assert!(!Delivered.advances_to(Failed), "delivered is final news");
        assert!(Queued.advances_to(Failed));
        assert!(Failed.advances_to(Delivered), "a receipt proves delivery");
        assert!(Failed.advances_to(Queued), "the relay has it after all");
    }

    #[test]
    fn history_is_bounded_oldest_first() {
        let mut es: Vec<Entry> = (0..MAX_ENTRIES as u64 + 7)
            .map(|i| Entry {
                id: i,
                ..chat(Dir::In, Some(i), Delivery::Delivered)
            })
            .collect();
        bound(&mut es);
        assert_eq!(es.len(), MAX_ENTRIES);
        assert_eq!(es[0].id, 7);
    }

    #[test]
    fn stored_form_round_trips_without_the_render_revision() {
        let mut e = chat(Dir::Out, Some(42), Delivery::Queued);
        e.rev = 9;
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""t":"chat""#) && json.contains(r#""state":"queued""#));
        let back: Entry = serde_json::from_str(&json).unwrap();
        assert_eq!(back.rev, 0);
        assert_eq!(back.body, e.body);
    }

    #[test]
    fn a_reload_settles_what_was_in_flight() {
        let mut es = vec![
            chat(Dir::Out, Some(1), Delivery::Sending),
            chat(Dir::Out, None, Delivery::Sending),
            chat(Dir::Out, Some(2), Delivery::Queued),
            Entry {
                id: 2,
                at: 0,
                rev: 0,
                body: EntryBody::Request {
                    capability: "echo.stream".into(),
                    body: "a b".into(),
                    status: ReqStatus::Running,
                    chunks: vec!["a".into()],
                    error: None,
                },
            },
        ];
        settle_after_reload(&mut es);
        let states: Vec<_> = es
            .iter()
            .map(|e| match &e.body {
                EntryBody::Chat { state, .. } => state.as_str(),
                EntryBody::Request { status, .. } => status.as_str(),
                EntryBody::Note { .. } => "",
            })
            .collect();
        // Unsent (outbox) and queued-at-the-relay messages are still on
        // their way; only one handed to the lost page is in doubt.
        assert_eq!(states, ["failed", "sending", "queued", "error"]);
    }

    #[test]
    fn agents_are_contacts_whose_card_offers_no_chat() {
        let mut c = Contact {
            did: "did:key:z".into(),
            name: "Echo".into(),
            description: String::new(),
            skills: vec![],
            streaming: false,
            verified: false,
            status: ContactStatus::Accepted,
            last_at: 0,
        };
        assert!(!c.is_agent(), "unknown card: a person until we know");
        c.skills.push(SkillInfo {
            id: "echo".into(),
            name: "echo".into(),
            description: String::new(),
        });
        assert!(c.is_agent());
        c.skills.push(SkillInfo {
            id: CHAT_CAPABILITY.into(),
            name: "Chat".into(),
            description: String::new(),
        });
        assert!(!c.is_agent());
        assert_eq!(c.request_skills().count(), 1);
    }
}
