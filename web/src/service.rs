//! Every side effect of the app, behind plain functions the views call:
//! the mesh client (connect, events, chat, requests), the registry (cards,
//! search), IndexedDB (through [`crate::store`]) and the few browser APIs
//! (downloads, visibility). Views never touch any of them directly.
//!
//! Everything protocol-related goes through `mesh-client`; this module only
//! turns its events into app state and app actions into its calls.

use std::cell::RefCell;
use std::collections::HashMap;

use futures::future::{AbortHandle, Abortable, Either};
use futures::StreamExt;
use leptos::prelude::*;
use mesh_client::idb::KvStore;
use mesh_client::registry::{CardEntry, RegistryClient, SearchQuery};
use mesh_client::rt::{sleep_ms, spawn, unix_ms};
use mesh_client::{ClientError, ClientOptions, ConnectionState, MeshClient, MessageEvent};
use mesh_core::app::ReceiptKind;
use mesh_core::{AgentCard, AgentId, ErrorCode, Identity, Policy, Skill, CHAT_CAPABILITY};
use wasm_bindgen::JsCast;

use crate::contacts_acl;
use crate::model::{
    self, bound, Contact, ContactStatus, Delivery, Dir, Entry, EntryBody, ReqStatus, SkillInfo,
};
use crate::state::{app, Banner, BannerKind, Conn, Me, Mode, Phase, Tab};
use crate::store::{self, Profile};

/// The description on every person's card.
const PERSON_DESCRIPTION: &str = "A person on agent-mesh";
/// Longest wait between two attempts to reach the relay (ms).
const RECONNECT_MAX_MS: u64 = 8_000;
/// How long publishing our card may hold up going online (ms).
const PUBLISH_WAIT_MS: u64 = 5_000;
/// Results per search page.
const SEARCH_PAGE: u32 = 30;

/// What the service holds that is not reactive state.
#[derive(Default)]
struct Services {
    store: Option<KvStore>,
    identity: Option<Identity>,
    client: Option<MeshClient>,
    policy: Policy,
    /// Requests in flight, by entry id: aborting drops the response stream,
    /// which cancels the request at the peer.
    running: HashMap<u64, (String, AbortHandle)>,
    next_local: u64,
    connecting: bool,
}

thread_local! {
    static SVC: RefCell<Services> = RefCell::new(Services {
        // Increasing across reloads too, so a thread's ids stay in order.
        next_local: unix_ms().saturating_mul(1000),
        ..Services::default()
    });
}

fn with<R>(f: impl FnOnce(&mut Services) -> R) -> R {
    SVC.with(|s| f(&mut s.borrow_mut()))
}

fn client() -> Option<MeshClient> {
    with(|s| s.client.clone())
}

fn next_id() -> u64 {
    with(|s| {
        s.next_local += 1;
        s.next_local
    })
}

// ---------------------------------------------------------------- banner --

/// Shows `text` in the banner.
pub fn show_error(text: impl Into<String>) {
    app().banner.set(Some(Banner {
        text: text.into(),
        kind: BannerKind::Error,
    }));
}

/// How long good news stays up (ms).
const INFO_MS: u64 = 6_000;

/// Shows good news in the banner for a few seconds.
pub fn show_info(text: impl Into<String>) {
    let banner = Banner {
        text: text.into(),
        kind: BannerKind::Info,
    };
    app().banner.set(Some(banner.clone()));
    spawn(async move {
        sleep_ms(INFO_MS).await;
        if app().banner.with_untracked(|b| b.as_ref() == Some(&banner)) {
            app().banner.set(None);
        }
    });
}

fn show_connection_problem(text: String) {
    app().banner.set(Some(Banner {
        text,
        kind: BannerKind::Connection,
    }));
}

fn clear_connection_problem() {
    let banner = app().banner;
    if banner.with_untracked(|b| matches!(b, Some(b) if b.kind == BannerKind::Connection)) {
        banner.set(None);
    }
}

/// Hides the banner.
pub fn dismiss_banner() {
    app().banner.set(None);
}

/// A sentence a person understands for `err`, in the context of talking to
/// `peer` (a display name).
pub fn describe(err: &ClientError, peer: &str) -> String {
    match err {
        ClientError::Denied(_) => format!("{peer} does not accept this."),
        ClientError::UnknownCapability(c) => format!("{peer} has no capability “{c}”."),
        ClientError::RateLimited { retry_after_ms } => format!(
            "Too many messages: the relay asks to wait. Retry in {} s.",
            retry_after_ms.div_ceil(1000).max(1)
        ),
        ClientError::Timeout(ms) => {
            format!("{peer} did not answer within {} s.", ms.div_ceil(1000))
        }
        ClientError::Unreachable(why) => format!("{peer} cannot be reached right now ({why})."),
        ClientError::Revoked(_) => format!("The key of {peer} (or yours) has been revoked."),
        ClientError::Cancelled => "Cancelled.".into(),
        ClientError::HandlerFailed(why) => format!("{peer} failed to answer: {why}"),
        ClientError::BadRequest(why) => format!("{peer} rejected the request: {why}"),
        ClientError::PayloadTooLarge(_) => "Too large: a message may be at most 1 MiB.".into(),
        ClientError::Transport(_) => format!("The relay at {} cannot be reached.", relay_host()),
        ClientError::Closed => "The connection to the relay is closed.".into(),
        ClientError::Registry { status: 0, .. } => {
            format!("The registry at {} cannot be reached.", relay_host())
        }
        ClientError::Registry {
            status: 429,
            message,
            ..
        } => format!("The registry is busy (rate limited): {message}"),
        ClientError::Registry { message, .. } => format!("The registry refused: {message}"),
        ClientError::Auth { code, message } if *code == ErrorCode::Revoked => {
            format!("Your identity has been revoked: {message}")
        }
        ClientError::Auth { message, .. } => format!("The relay refused us: {message}"),
        ClientError::Protocol(why) => format!("Something went wrong talking to {peer}: {why}"),
        ClientError::Remote { message, .. } => format!("{peer}: {message}"),
    }
}

// --------------------------------------------------------------- browser --

fn relay_host() -> String {
    window().location().host().unwrap_or_default()
}

/// The relay this page came from: `ws(s)://<host>/v1/ws`.
pub fn relay_url() -> String {
    let secure = window().location().protocol().ok().as_deref() == Some("https:");
    format!(
        "{}://{}/v1/ws",
        if secure { "wss" } else { "ws" },
        relay_host()
    )
}

fn registry() -> Result<RegistryClient, String> {
    RegistryClient::for_relay(&relay_url()).map_err(|e| describe(&e, "the registry"))
}

fn document_visible() -> bool {
    document().visibility_state() == web_sys::VisibilityState::Visible
}

/// Tracks page visibility; read receipts go out when a thread is seen.
pub fn watch_visibility() {
    let update = || {
        app().page_visible.set(document_visible());
        if let Some(peer) = app().open_peer.get_untracked() {
            mark_read(&peer);
        }
    };
    update();
    let handle = window_event_listener_untyped("visibilitychange", move |_| update());
    // The listener lives as long as the page.
    std::mem::forget(handle);
}

// ----------------------------------------------------------- persistence --

fn store() -> Option<KvStore> {
    with(|s| s.store.clone())
}

fn report_store_error(e: mesh_client::idb::StoreError) {
    show_error(format!("Could not save on this device: {e}"));
}

fn persist_contacts() {
    let Some(store) = store() else { return };
    let contacts = app().contacts.get_untracked();
    spawn(async move {
        if let Err(e) = store::save_contacts(&store, &contacts).await {
            report_store_error(e);
        }
    });
}

fn persist_thread(did: &str) {
    let Some(store) = store() else { return };
    let did = did.to_string();
    let entries = app()
        .threads
        .with_untracked(|t| t.get(&did).cloned())
        .unwrap_or_default();
    spawn(async move {
        if let Err(e) = store::save_thread(&store, &did, &entries).await {
            report_store_error(e);
        }
    });
}

fn persist_policy() {
    let Some(store) = store() else { return };
    let policy = with(|s| s.policy.clone());
    spawn(async move {
        if let Err(e) = store::save_policy(&store, &policy).await {
            report_store_error(e);
        }
    });
}

// ------------------------------------------------------------------ boot --

/// Loads what this browser remembers and either shows onboarding or
/// restores the app (history first, then the connection).
pub fn boot() {
    spawn(async {
        let store = match KvStore::open(store::DB_NAME).await {
            Ok(s) => s,
            Err(e) => {
                show_error(format!(
                    "This browser does not let the app store anything ({e}); an identity \
                     created now is lost when the page closes. Export it to keep it."
                ));
                app().phase.set(Phase::Onboarding);
                return;
            }
        };
        with(|s| s.store = Some(store.clone()));
        let mut damaged = Vec::new();
        let snap = match store::load(&store, &mut damaged).await {
            Ok(s) => s,
            Err(e) => {
                show_error(format!("Could not read this device's storage: {e}"));
                app().phase.set(Phase::Onboarding);
                return;
            }
        };
        if !damaged.is_empty() {
            show_error(format!(
                "Some saved data was damaged: {}",
                damaged.join("; ")
            ));
        }
        let Some(identity) = snap.identity else {
            app().phase.set(Phase::Onboarding);
            return;
        };
        let mut threads = snap.threads;
        for entries in threads.values_mut() {
            model::settle_after_reload(entries);
        }
        app().threads.set(threads);
        app().contacts.set(snap.contacts);
        set_policy(snap.policy, false);
        let name = if snap.profile.name.is_empty() {
            format!("Agent {}", identity.agent_id().short())
        } else {
            snap.profile.name
        };
        become_identity(identity, name, snap.profile.topics);
        connect();
    });
}

fn become_identity(identity: Identity, name: String, topics: Vec<String>) {
    let id = identity.agent_id();
    with(|s| s.identity = Some(identity));
    app().me.set(Some(Me {
        did: id.to_did(),
        short: id.short(),
        name,
        topics,
    }));
    app().phase.set(Phase::Ready);
}

/// Onboarding: a new identity named `name`, found also by `topics`.
pub fn create_identity(name: String, topics: Vec<String>) {
    match Identity::generate() {
        Ok(identity) => start_with(identity, name, topics),
        Err(e) => show_error(format!("Could not create a key in this browser: {e}")),
    }
}

/// Onboarding: an identity from an exported file's text. Without a name,
/// the one on its published card is used.
pub fn import_identity(text: String, name: String) {
    let identity = match Identity::from_secret_text(&text) {
        Ok(i) => i,
        Err(e) => {
            show_error(format!("This file is not an agent-mesh identity ({e})."));
            return;
        }
    };
    spawn(async move {
        let mut name = name.trim().to_string();
        let mut topics = Vec::new();
        if let Ok(reg) = registry() {
            if let Ok(Some(entry)) = reg.get(&identity.agent_id()).await {
                let card = entry.card.card();
                if name.is_empty() {
                    name = card.name.clone();
                }
                topics = model::topics_of(card);
            }
        }
        if name.is_empty() {
            name = format!("Agent {}", identity.agent_id().short());
        }
        start_with(identity, name, topics);
    });
}

fn start_with(identity: Identity, name: String, topics: Vec<String>) {
    spawn(async move {
        if let Some(store) = store() {
            let saved = store.save_identity(store::IDENTITY_KEY, &identity).await;
            let profile = store::save_profile(
                &store,
                &Profile {
                    name: name.clone(),
                    topics: topics.clone(),
                },
            )
            .await;
            if let Err(e) = saved.and(profile) {
                report_store_error(e);
            }
        }
        set_policy(with(|s| s.policy.clone()), true);
        become_identity(identity, name.clone(), topics);
        app().tab.set(Tab::Discover);
        show_info(format!(
            "Welcome, {name}. Your identity is ready and your card is published so people \
             can find you. Export the identity in Settings to keep a backup."
        ));
        connect();
    });
}

// ------------------------------------------------------------ connection --

/// Connects to the relay (retrying until it answers), unless connected or
/// already trying.
pub fn connect() {
    let busy = with(|s| {
        let busy = s.connecting || s.client.is_some();
        if !busy {
            s.connecting = true;
        }
        busy
    });
    if busy {
        return;
    }
    spawn(async {
        let mut delay = 1_000;
        loop {
            let Some(identity) = with(|s| s.identity.clone()) else {
                break;
            };
            app().conn.set(Conn::Connecting);
            let options = ClientOptions {
                acl: with(|s| s.policy.clone()),
                reconnect_max_ms: RECONNECT_MAX_MS,
                ..ClientOptions::default()
            };
            match MeshClient::connect(&relay_url(), identity, options).await {
                Ok(client) => {
                    with(|s| s.client = Some(client.clone()));
                    connected(client).await;
                    break;
                }
                Err(e) => {
                    let fatal = matches!(e, ClientError::Auth { .. } | ClientError::Revoked(_));
                    if fatal {
                        let revoked = matches!(&e, ClientError::Revoked(_))
                            || matches!(&e, ClientError::Auth { code, .. } if *code == ErrorCode::Revoked);
                        app()
                            .conn
                            .set(if revoked { Conn::Revoked } else { Conn::Closed });
                        show_error(describe(&e, "the relay"));
                        break;
                    }
                    app().conn.set(Conn::Offline);
                    show_connection_problem(format!(
                        "Cannot reach the relay at {}. Your messages are kept and sent once it \
                         answers; retrying…",
                        relay_host()
                    ));
                    sleep_ms(delay).await;
                    delay = (delay * 2).min(RECONNECT_MAX_MS);
                }
            }
        }
        with(|s| s.connecting = false);
    });
}

async fn connected(client: MeshClient) {
    // Subscribe first: the first subscriber also gets what the relay handed
    // over while we were starting (messages held for us while offline).
    let events = client.messages();
    spawn(pump_events(events));
    // Publish before showing "online", so that whoever sees us online also
    // finds our card. Never wait long for it.
    let publish = Box::pin(publish_card());
    match futures::future::select(publish, Box::pin(sleep_ms(PUBLISH_WAIT_MS))).await {
        Either::Left((Err(e), _)) => show_error(format!("Could not publish your card: {e}")),
        Either::Left((Ok(()), _)) => {}
        Either::Right((_, publish)) => spawn(async move {
            if let Err(e) = publish.await {
                show_error(format!("Could not publish your card: {e}"));
            }
        }),
    }
    let states = client.state_changes();
    spawn(watch_states(states));
    flush_outbox();
    flush_receipts();
}

async fn watch_states(mut states: impl futures::Stream<Item = ConnectionState> + Unpin) {
    let mut was_online = false;
    while let Some(s) = states.next().await {
        let conn = match s {
            ConnectionState::Online => {
                was_online = true;
                clear_connection_problem();
                Conn::Online
            }
            ConnectionState::Connecting if was_online => Conn::Reconnecting,
            ConnectionState::Connecting => Conn::Connecting,
            ConnectionState::Offline => Conn::Reconnecting,
            ConnectionState::Revoked => {
                show_error("Your identity has been revoked: the relay no longer accepts it.");
                Conn::Revoked
            }
            ConnectionState::Closed(reason) => {
                with(|s| s.client = None);
                show_error(format!("Disconnected from the relay: {reason}"));
                Conn::Closed
            }
        };
        app().conn.set(conn);
        if matches!(conn, Conn::Online) {
            flush_outbox();
            flush_receipts();
        }
    }
}

/// Reconnects after the connection was closed for good (e.g. another tab
/// took over this identity).
pub fn reconnect() {
    dismiss_banner();
    connect();
}

async fn publish_card() -> Result<(), String> {
    let Some(identity) = with(|s| s.identity.clone()) else {
        return Ok(());
    };
    let (name, topics) = app()
        .me
        .with_untracked(|m| m.as_ref().map(|m| (m.name.clone(), m.topics.clone())))
        .unwrap_or_default();
    let tags = ["chat".to_string(), "person".to_string()]
        .into_iter()
        .chain(topics);
    let card = AgentCard::builder(identity.agent_id(), relay_url(), name)
        .description(PERSON_DESCRIPTION)
        .skill(Skill::new(CHAT_CAPABILITY, "Chat", "Send me a message").with_tags(tags))
        .issued_at(unix_ms())
        .sign(&identity)
        .map_err(|e| e.to_string())?;
    registry()?
        .publish(&card)
        .await
        .map(|_| ())
        .map_err(|e| describe(&e, "the registry"))
}

// ---------------------------------------------------------------- events --

async fn pump_events(mut events: impl futures::Stream<Item = MessageEvent> + Unpin) {
    while let Some(event) = events.next().await {
        on_event(event);
    }
}

fn on_event(event: MessageEvent) {
    match event {
        MessageEvent::Chat {
            from,
            msg_id,
            text,
            allowed,
            ..
        } => on_chat(from, msg_id, text, allowed),
        MessageEvent::Receipt { from, msg_id, kind } => {
            let state = match kind {
                ReceiptKind::Read => Delivery::Read,
                _ => Delivery::Delivered,
            };
            advance(&from.to_did(), msg_id, state, None);
        }
        MessageEvent::Queued { peer, msg_id } => {
            advance(&peer.to_did(), msg_id, Delivery::Queued, None)
        }
        MessageEvent::Failed {
            peer,
            msg_id,
            error,
        } => {
            let did = peer.to_did();
            let why = describe(&error, &display_name(&did));
            advance(&did, msg_id, Delivery::Failed, Some(why));
        }
    }
}

fn on_chat(from: AgentId, msg_id: u64, text: String, allowed: bool) {
    let did = from.to_did();
    let known = app().contact(&did);
    if matches!(&known, Some(c) if c.status == ContactStatus::Blocked) {
        return;
    }
    let duplicate = app().threads.with_untracked(|t| {
        t.get(&did).is_some_and(|es| {
            es.iter().any(|e| {
                matches!(e.body, EntryBody::Chat { dir: Dir::In, msg_id: Some(m), .. } if m == msg_id)
            })
        })
    });
    if duplicate {
        return;
    }
    let status = if allowed {
        ContactStatus::Accepted
    } else {
        ContactStatus::Pending
    };
    match known {
        None => {
            upsert_contact(Contact {
                did: did.clone(),
                name: format!("Agent {}", from.short()),
                description: String::new(),
                skills: Vec::new(),
                streaming: false,
                verified: false,
                status,
                last_at: unix_ms(),
            });
            fetch_card(did.clone());
        }
        Some(c) if c.status != status => update_contact(&did, |c| c.status = status),
        Some(_) => {}
    }
    push_entry(
        &did,
        EntryBody::Chat {
            dir: Dir::In,
            text,
            msg_id: Some(msg_id),
            state: Delivery::Delivered,
            error: None,
            read: false,
            receipted: false,
        },
    );
    mark_read(&did);
}

/// Moves our message `msg_id` to `peer` forward to `state`.
fn advance(peer: &str, msg_id: u64, state: Delivery, why: Option<String>) {
    let mut changed = false;
    app().threads.update(|t| {
        let Some(entries) = t.get_mut(peer) else {
            return;
        };
        for e in entries.iter_mut().rev() {
            if let EntryBody::Chat {
                dir: Dir::Out,
                msg_id: Some(m),
                state: s,
                error,
                ..
            } = &mut e.body
            {
                if *m == msg_id {
                    if s.advances_to(state) {
                        *s = state;
                        *error = why.clone();
                        e.rev += 1;
                        changed = true;
                    }
                    break;
                }
            }
        }
    });
    if changed {
        persist_thread(peer);
    }
}

/// Fills in a contact's name, description and skills from its card.
fn fetch_card(did: String) {
    spawn(async move {
        let Ok(agent) = did.parse::<AgentId>() else {
            return;
        };
        let Ok(reg) = registry() else { return };
        if let Ok(Some(entry)) = reg.get(&agent).await {
            let view = CardView::from_entry(&entry, "");
            update_contact(&did, |c| view.fill(c));
        }
    });
}

// -------------------------------------------------------------- contacts --

fn upsert_contact(contact: Contact) {
    app()
        .contacts
        .update(|cs| match cs.iter_mut().find(|c| c.did == contact.did) {
            Some(c) => *c = contact,
            None => cs.push(contact),
        });
    persist_contacts();
}

fn update_contact(did: &str, f: impl FnOnce(&mut Contact)) {
    app().contacts.update(|cs| {
        if let Some(c) = cs.iter_mut().find(|c| c.did == did) {
            f(c);
        }
    });
    persist_contacts();
}

/// A contact's display name (a short id if unknown).
pub fn display_name(did: &str) -> String {
    app()
        .contact(did)
        .map(|c| c.name)
        .or_else(|| {
            did.parse::<AgentId>()
                .ok()
                .map(|a| format!("Agent {}", a.short()))
        })
        .unwrap_or_else(|| did.to_string())
}

/// Accepts a first contact: chat from them is allowed from now on, and
/// what they already wrote is shown (and receipted).
pub fn accept(did: &str) {
    let Ok(agent) = did.parse::<AgentId>() else {
        return;
    };
    allow_chat(agent);
    update_contact(did, |c| c.status = ContactStatus::Accepted);
    push_entry(
        did,
        EntryBody::Note {
            text: "You accepted this contact.".into(),
        },
    );
    open_thread(did, Mode::Chat);
}

/// Blocks a contact: nothing from them is accepted or shown.
pub fn block(did: &str) {
    let Ok(agent) = did.parse::<AgentId>() else {
        return;
    };
    edit_policy(|p| contacts_acl::block(p, agent));
    update_contact(did, |c| c.status = ContactStatus::Blocked);
    if app().open_peer.get_untracked().as_deref() == Some(did) {
        app().open_peer.set(None);
    }
}

/// Marks (or unmarks) a contact as verified by safety number.
pub fn set_verified(did: &str, verified: bool) {
    update_contact(did, |c| c.verified = verified);
}

/// The safety number we share with `did` (12 groups of 5 digits).
pub fn safety_number(did: &str) -> Option<String> {
    let agent = did.parse::<AgentId>().ok()?;
    with(|s| {
        s.identity
            .as_ref()
            .map(|i| i.safety_number(&agent).to_string())
    })
}

/// Lets `agent` chat with us (see [`contacts_acl::allow_chat`]).
fn allow_chat(agent: AgentId) {
    let mut policy = with(|s| s.policy.clone());
    if contacts_acl::allow_chat(&mut policy, agent) {
        set_policy(policy, true);
    }
}

fn edit_policy(f: impl FnOnce(&mut Policy)) {
    let mut policy = with(|s| s.policy.clone());
    f(&mut policy);
    set_policy(policy, true);
}

/// Puts `policy` in force (client, settings text) and optionally saves it.
fn set_policy(policy: Policy, save: bool) {
    let text = policy.to_json().unwrap_or_default();
    if let Some(c) = client() {
        c.set_acl(policy.clone());
    }
    with(|s| s.policy = policy);
    app().acl_text.set(text);
    if save {
        persist_policy();
    }
}

/// Settings: applies an ACL typed as JSON. `Err` is the parse error.
pub fn apply_acl(text: &str) -> Result<(), String> {
    let policy = Policy::from_json(text).map_err(|e| e.to_string())?;
    set_policy(policy, true);
    Ok(())
}

// --------------------------------------------------------------- threads --

fn push_entry(did: &str, body: EntryBody) -> u64 {
    let id = next_id();
    let now = unix_ms();
    app().threads.update(|t| {
        let entries = t.entry(did.to_string()).or_default();
        entries.push(Entry {
            id,
            at: now,
            rev: 0,
            body,
        });
        bound(entries);
    });
    update_contact(did, |c| c.last_at = now);
    persist_thread(did);
    id
}

fn update_entry(did: &str, id: u64, save: bool, f: impl FnOnce(&mut EntryBody)) {
    app().threads.update(|t| {
        if let Some(e) = t
            .get_mut(did)
            .and_then(|es| es.iter_mut().rev().find(|e| e.id == id))
        {
            f(&mut e.body);
            e.rev += 1;
        }
    });
    if save {
        persist_thread(did);
    }
}

/// Whether `did`'s thread is in front of the person now.
fn thread_visible(did: &str) -> bool {
    let s = app();
    s.phase.get_untracked() == Phase::Ready
        && s.tab.get_untracked() == Tab::Chats
        && s.open_peer.get_untracked().as_deref() == Some(did)
        && s.page_visible.get_untracked()
}

/// Marks `did`'s messages read if the thread is on screen, and sends read
/// receipts (only to accepted contacts: a first contact learns nothing
/// until it is accepted).
pub fn mark_read(did: &str) {
    if !thread_visible(did) {
        return;
    }
    let unread = app()
        .threads
        .with_untracked(|t| t.get(did).is_some_and(|es| es.iter().any(Entry::is_unread)));
    if unread {
        app().threads.update(|t| {
            for e in t.get_mut(did).into_iter().flatten() {
                if let EntryBody::Chat {
                    dir: Dir::In,
                    read: read @ false,
                    ..
                } = &mut e.body
                {
                    *read = true;
                    e.rev += 1;
                }
            }
        });
        persist_thread(did);
    }
    send_receipts(did);
}

/// Sends the read receipts `did` is owed.
fn send_receipts(did: &str) {
    let Some(client) = client() else { return };
    if client.state() != ConnectionState::Online
        || !matches!(app().contact(did), Some(c) if c.status == ContactStatus::Accepted)
    {
        return;
    }
    let Ok(agent) = did.parse::<AgentId>() else {
        return;
    };
    let owed: Vec<u64> = app().threads.with_untracked(|t| {
        t.get(did)
            .into_iter()
            .flatten()
            .filter_map(|e| match e.body {
                EntryBody::Chat {
                    dir: Dir::In,
                    read: true,
                    receipted: false,
                    msg_id: Some(m),
                    ..
                } => Some(m),
                _ => None,
            })
            .collect()
    });
    if owed.is_empty() {
        return;
    }
    let sent: Vec<u64> = owed
        .into_iter()
        .filter(|m| client.send_read_receipt(agent, *m).is_ok())
        .collect();
    app().threads.update(|t| {
        for e in t.get_mut(did).into_iter().flatten() {
            if let EntryBody::Chat {
                dir: Dir::In,
                msg_id: Some(m),
                receipted,
                ..
            } = &mut e.body
            {
                if sent.contains(m) {
                    *receipted = true;
                }
            }
        }
    });
    persist_thread(did);
}

/// Read receipts owed to anyone (e.g. read while offline).
fn flush_receipts() {
    let peers: Vec<String> = app()
        .threads
        .with_untracked(|t| t.keys().cloned().collect());
    for did in peers {
        send_receipts(&did);
    }
}

/// Sends what was written while there was no connection.
fn flush_outbox() {
    let waiting: Vec<(String, u64, String)> = app().threads.with_untracked(|t| {
        t.iter()
            .flat_map(|(did, es)| {
                es.iter().filter_map(move |e| match &e.body {
                    EntryBody::Chat {
                        dir: Dir::Out,
                        msg_id: None,
                        state: Delivery::Sending,
                        text,
                        ..
                    } => Some((did.clone(), e.id, text.clone())),
                    _ => None,
                })
            })
            .collect()
    });
    for (did, id, text) in waiting {
        hand_over(&did, id, &text);
    }
}

/// Gives an outgoing entry to the client; records the message id or why
/// it failed.
fn hand_over(did: &str, id: u64, text: &str) {
    let Some(client) = client() else { return };
    let outcome = did
        .parse::<AgentId>()
        .map_err(|e| e.to_string())
        .and_then(|agent| {
            client
                .send_message(agent, text)
                .map_err(|e| describe(&e, &display_name(did)))
        });
    update_entry(did, id, true, |b| {
        if let EntryBody::Chat {
            msg_id,
            state,
            error,
            ..
        } = b
        {
            match outcome {
                Ok(m) => {
                    *msg_id = Some(m);
                    *state = Delivery::Sending;
                    *error = None;
                }
                Err(why) => {
                    *state = Delivery::Failed;
                    *error = Some(why);
                }
            }
        }
    });
}

/// Opens `did`'s conversation in `mode`.
pub fn open_thread(did: &str, mode: Mode) {
    let s = app();
    if s.open_peer.get_untracked().as_deref() != Some(did) {
        s.open_peer.set(Some(did.to_string()));
    }
    s.mode.set(mode);
    s.tab.set(Tab::Chats);
    mark_read(did);
}

/// Shows the conversation list (phones: leaves the thread).
pub fn close_thread() {
    app().open_peer.set(None);
}

/// Switches the main screen.
pub fn go(tab: Tab) {
    app().tab.set(tab);
    if tab == Tab::Chats {
        if let Some(did) = app().open_peer.get_untracked() {
            mark_read(&did);
        }
    }
}

/// Sends a chat message. `Err` (a sentence) means nothing was sent and the
/// composer should keep the text.
pub fn send_chat(did: &str, text: &str) -> Result<(), String> {
    let agent = did.parse::<AgentId>().map_err(|e| e.to_string())?;
    if text.len() > mesh_core::limits::MAX_APP_BODY {
        return Err("Too long: a message may be at most 1 MiB.".into());
    }
    // Writing to someone means they may answer.
    allow_chat(agent);
    if matches!(app().contact(did), Some(c) if c.status != ContactStatus::Accepted) {
        update_contact(did, |c| c.status = ContactStatus::Accepted);
    }
    let body = |msg_id| EntryBody::Chat {
        dir: Dir::Out,
        text: text.to_string(),
        msg_id,
        state: Delivery::Sending,
        error: None,
        read: true,
        receipted: true,
    };
    match client() {
        Some(client) if client.state() == ConnectionState::Online => {
            let msg_id = client
                .send_message(agent, text)
                .map_err(|e| describe(&e, &display_name(did)))?;
            push_entry(did, body(Some(msg_id)));
        }
        // Not connected: our own outbox (in IndexedDB, so it survives a
        // reload, which the client's memory does not) sends it once we are.
        _ => {
            push_entry(did, body(None));
        }
    }
    Ok(())
}

/// Sends a failed message again (through the outbox, so it also waits
/// for a connection if there is none).
pub fn retry(did: &str, id: u64) {
    update_entry(did, id, true, |b| {
        if let EntryBody::Chat {
            msg_id,
            state,
            error,
            ..
        } = b
        {
            *msg_id = None;
            *state = Delivery::Sending;
            *error = None;
        }
    });
    if client().is_some_and(|c| c.state() == ConnectionState::Online) {
        flush_outbox();
    }
}

/// Sends a request for `capability` with `body`; the answer (streamed or
/// not) fills the entry as it arrives. `Err` means nothing was sent.
pub fn send_request(did: &str, capability: &str, body: &str) -> Result<(), String> {
    let capability = capability.trim();
    if capability.is_empty() {
        return Err("Choose a capability first.".into());
    }
    mesh_core::acl::validate_capability(capability).map_err(|e| e.to_string())?;
    let agent = did.parse::<AgentId>().map_err(|e| e.to_string())?;
    let client = client().ok_or_else(|| {
        "Not connected to the relay yet: the request can be sent once the app is online."
            .to_string()
    })?;
    // Always ask for a stream: a unary answer arrives as its one chunk, and
    // dropping the stream cancels either kind at the peer.
    let mut stream = client
        .request_stream(agent, capability, body.as_bytes().to_vec())
        .map_err(|e| describe(&e, &display_name(did)))?;
    let id = push_entry(
        did,
        EntryBody::Request {
            capability: capability.to_string(),
            body: body.to_string(),
            status: ReqStatus::Running,
            chunks: Vec::new(),
            error: None,
        },
    );
    let (abort, registration) = AbortHandle::new_pair();
    with(|s| s.running.insert(id, (did.to_string(), abort)));
    let peer = did.to_string();
    let reading = {
        let peer = peer.clone();
        async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(chunk) => {
                        let text = String::from_utf8_lossy(&chunk).into_owned();
                        update_entry(&peer, id, false, |b| {
                            if let EntryBody::Request { chunks, .. } = b {
                                chunks.push(text);
                            }
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    };
    spawn(async move {
        let outcome = Abortable::new(reading, registration).await;
        with(|s| s.running.remove(&id));
        let name = display_name(&peer);
        update_entry(&peer, id, true, |b| {
            if let EntryBody::Request { status, error, .. } = b {
                (*status, *error) = match outcome {
                    Ok(Ok(())) => (ReqStatus::Done, None),
                    Ok(Err(ClientError::Cancelled)) | Err(_) => (ReqStatus::Cancelled, None),
                    Ok(Err(e)) => (ReqStatus::Error, Some(describe(&e, &name))),
                };
            }
        });
    });
    Ok(())
}

/// Cancels every request running in `did`'s thread (the cancel reaches
/// the peer's handler).
pub fn cancel_requests(did: &str) {
    with(|s| {
        for (peer, abort) in s.running.values() {
            if peer == did {
                abort.abort();
            }
        }
    });
}

// ------------------------------------------------------------- discovery --

/// A search result, ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardView {
    /// did:key.
    pub did: String,
    /// `AgentId::short`.
    pub short: String,
    /// Card name.
    pub name: String,
    /// Card description.
    pub description: String,
    /// Card skills.
    pub skills: Vec<SkillInfo>,
    /// The card says it streams.
    pub streaming: bool,
    /// Connected to the relay now.
    pub online: bool,
    /// Last seen (Unix ms).
    pub last_seen: Option<u64>,
    /// This is our own card.
    pub is_me: bool,
}

impl CardView {
    fn from_entry(entry: &CardEntry, my_did: &str) -> Self {
        let card = entry.card.card();
        let id = entry.card.agent_id();
        let did = id.to_did();
        CardView {
            is_me: did == my_did,
            did,
            short: id.short(),
            name: card.name.clone(),
            description: card.description.clone(),
            skills: card
                .skills
                .iter()
                .map(|s| SkillInfo {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    description: s.description.clone(),
                })
                .collect(),
            streaming: card.capabilities.streaming,
            online: entry.online,
            last_seen: entry.last_seen_ms,
        }
    }

    fn fill(&self, c: &mut Contact) {
        c.name = self.name.clone();
        c.description = self.description.clone();
        c.skills = self.skills.clone();
        c.streaming = self.streaming;
    }

    fn to_contact(&self) -> Contact {
        let mut c = Contact {
            did: self.did.clone(),
            name: String::new(),
            description: String::new(),
            skills: Vec::new(),
            streaming: false,
            verified: false,
            status: ContactStatus::Accepted,
            last_at: unix_ms(),
        };
        self.fill(&mut c);
        c
    }
}

/// One page of search results and the cursor to the next.
pub type Found = (Vec<CardView>, Option<String>);

/// Searches the registry.
pub async fn search(
    text: String,
    capability: String,
    online_only: bool,
    cursor: Option<String>,
) -> Result<Found, String> {
    let some = |s: String| {
        let s = s.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    let query = SearchQuery {
        capability: some(capability),
        text: some(text),
        online_only,
        limit: Some(SEARCH_PAGE),
        cursor,
    };
    let page = registry()?
        .search(&query)
        .await
        .map_err(|e| describe(&e, "the registry"))?;
    let me = app()
        .me
        .with_untracked(|m| m.as_ref().map(|m| m.did.clone()))
        .unwrap_or_default();
    let items = page
        .items
        .iter()
        .map(|e| CardView::from_entry(e, &me))
        .collect();
    Ok((items, page.next_cursor))
}

/// Opens a conversation with the agent of `card` (remembering its card).
pub fn start_from_card(card: &CardView, request: Option<&str>) {
    match app().contact(&card.did) {
        Some(_) => update_contact(&card.did, |c| {
            card.fill(c);
            if c.status == ContactStatus::Pending {
                // Choosing to talk to them answers their request.
                c.status = ContactStatus::Accepted;
            }
        }),
        None => upsert_contact(card.to_contact()),
    }
    match request {
        Some(skill) => {
            app().req_cap.set(skill.to_string());
            open_thread(&card.did, Mode::Request);
        }
        None => {
            let mode =
                if card.skills.iter().any(|s| s.id == CHAT_CAPABILITY) || card.skills.is_empty() {
                    Mode::Chat
                } else {
                    Mode::Request
                };
            if mode == Mode::Request {
                let first = card
                    .skills
                    .first()
                    .map(|s| s.id.clone())
                    .unwrap_or_default();
                app().req_cap.set(first);
            }
            open_thread(&card.did, mode);
        }
    }
}

// -------------------------------------------------------------- settings --

/// Changes our display name and topics and republishes our card.
pub fn save_name(name: String, topics: Vec<String>) {
    let name = name.trim().to_string();
    if name.is_empty() {
        show_error("A display name cannot be empty.");
        return;
    }
    app().me.update(|m| {
        if let Some(m) = m {
            m.name = name.clone();
            m.topics = topics.clone();
        }
    });
    spawn(async move {
        if let Some(store) = store() {
            if let Err(e) = store::save_profile(&store, &Profile { name, topics }).await {
                report_store_error(e);
            }
        }
        match publish_card().await {
            Ok(()) => show_info("Saved. Your card shows the new name and topics."),
            Err(e) => show_error(format!("Saved here, but the card was not updated: {e}")),
        }
    });
}

/// Downloads the identity's secret as a one-line text file.
pub fn export_identity() {
    let Some(identity) = with(|s| s.identity.clone()) else {
        return;
    };
    if let Err(e) = download(
        &format!("agent-mesh-{}.identity", identity.agent_id().short()),
        &format!("{}\n", identity.to_secret_text().as_str()),
    ) {
        show_error(format!("Could not export: {e}"));
    }
}

fn download(file_name: &str, text: &str) -> Result<(), String> {
    let js = |e: wasm_bindgen::JsValue| format!("{e:?}");
    let parts = js_sys::Array::of1(&text.into());
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/plain");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).map_err(js)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(js)?;
    let a: web_sys::HtmlAnchorElement =
        document().create_element("a").map_err(js)?.unchecked_into();
    a.set_href(&url);
    a.set_download(file_name);
    let body = document().body().ok_or("no document body")?;
    body.append_child(&a).map_err(js)?;
    a.click();
    a.remove();
    set_timeout(
        move || {
            let _ = web_sys::Url::revoke_object_url(&url);
        },
        std::time::Duration::from_secs(10),
    );
    Ok(())
}

/// Forgets the identity and everything stored with it on this device, and
/// withdraws its card; then starts over.
pub fn forget_identity() {
    spawn(async {
        if let Some(c) = client() {
            c.close().await;
        }
        let identity = with(|s| {
            s.client = None;
            s.identity.take()
        });
        if let (Some(identity), Ok(reg)) = (identity, registry()) {
            // Best effort: an unreachable registry must not keep the key here.
            let _ = reg.delete(&identity).await;
        }
        if let Some(store) = store() {
            if let Err(e) = store::wipe(&store).await {
                report_store_error(e);
                return;
            }
        }
        let _ = window().location().reload();
    });
}
