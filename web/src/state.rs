//! The app's reactive state: one set of signals the screens read and the
//! service module writes. Signals are `Copy` handles, so the whole set is
//! one `Copy` struct reachable from anywhere through [`app`] — views,
//! event handlers and the background tasks that pump the mesh client.

use std::collections::HashMap;

use leptos::prelude::*;

use crate::model::{Contact, Entry};

/// Which screen the app is on as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading IndexedDB.
    Loading,
    /// No identity yet.
    Onboarding,
    /// Identity loaded; the main screens.
    Ready,
}

/// The main screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Conversations.
    Chats,
    /// Registry search.
    Discover,
    /// Profile, identity, ACL.
    Settings,
}

/// The connection as shown in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// First connection attempt.
    Connecting,
    /// Authenticated with the relay.
    Online,
    /// Lost after being online; the client is retrying.
    Reconnecting,
    /// Never reached the relay in this session; retrying.
    Offline,
    /// Our key is revoked.
    Revoked,
    /// Closed for good (replaced by another tab, or the relay's key changed).
    Closed,
}

impl Conn {
    /// The header text (also what tests read).
    pub fn as_str(self) -> &'static str {
        match self {
            Conn::Connecting => "connecting",
            Conn::Online => "online",
            Conn::Reconnecting => "reconnecting",
            Conn::Offline => "offline",
            Conn::Revoked => "revoked",
            Conn::Closed => "closed",
        }
    }
}

/// What the thread composer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A chat message.
    Chat,
    /// A request to a capability.
    Request,
}

/// Us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// Our did:key.
    pub did: String,
    /// `AgentId::short`.
    pub short: String,
    /// Display name.
    pub name: String,
    /// Topics on our card (see [`crate::model::parse_topics`]).
    pub topics: Vec<String>,
}

/// Why the banner is up: connection banners go away by themselves once the
/// connection is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BannerKind {
    /// Something failed.
    Error,
    /// The relay cannot be reached.
    Connection,
    /// Good news (e.g. "identity exported").
    Info,
}

/// The dismissible message at the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// What to say.
    pub text: String,
    /// Why.
    pub kind: BannerKind,
}

/// Every signal of the app.
#[derive(Clone, Copy)]
pub struct AppState {
    /// Loading / onboarding / ready.
    pub phase: RwSignal<Phase>,
    /// The main screen.
    pub tab: RwSignal<Tab>,
    /// The connection.
    pub conn: RwSignal<Conn>,
    /// Us, once we have an identity.
    pub me: RwSignal<Option<Me>>,
    /// Contacts (accepted, pending, blocked).
    pub contacts: RwSignal<Vec<Contact>>,
    /// Conversations by peer did.
    pub threads: RwSignal<HashMap<String, Vec<Entry>>>,
    /// The conversation on screen.
    pub open_peer: RwSignal<Option<String>>,
    /// The composer mode of the open conversation.
    pub mode: RwSignal<Mode>,
    /// The capability in the request composer.
    pub req_cap: RwSignal<String>,
    /// Unsent chat text per conversation.
    pub drafts: RwSignal<HashMap<String, String>>,
    /// Unsent request bodies per conversation.
    pub req_drafts: RwSignal<HashMap<String, String>>,
    /// The banner.
    pub banner: RwSignal<Option<Banner>>,
    /// The ACL as JSON, as last applied.
    pub acl_text: RwSignal<String>,
    /// Whether the page is visible (tab in front, window not minimized).
    pub page_visible: RwSignal<bool>,
}

impl AppState {
    fn new() -> Self {
        AppState {
            phase: RwSignal::new(Phase::Loading),
            tab: RwSignal::new(Tab::Chats),
            conn: RwSignal::new(Conn::Connecting),
            me: RwSignal::new(None),
            contacts: RwSignal::new(Vec::new()),
            threads: RwSignal::new(HashMap::new()),
            open_peer: RwSignal::new(None),
            mode: RwSignal::new(Mode::Chat),
            req_cap: RwSignal::new(String::new()),
            drafts: RwSignal::new(HashMap::new()),
            req_drafts: RwSignal::new(HashMap::new()),
            banner: RwSignal::new(None),
            acl_text: RwSignal::new(String::new()),
            page_visible: RwSignal::new(true),
        }
    }

    /// The contact `did`, if known (untracked read).
    pub fn contact(&self, did: &str) -> Option<Contact> {
        self.contacts
            .with_untracked(|cs| cs.iter().find(|c| c.did == did).cloned())
    }
}

thread_local! {
    static STATE: AppState = AppState::new();
}

/// The app's state (created on first use; lives as long as the page).
pub fn app() -> AppState {
    STATE.with(|s| *s)
}
