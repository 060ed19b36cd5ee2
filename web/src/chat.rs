//! Conversations: the list (contact requests, chats with people, request
//! threads with agents) and the open thread — messages with their delivery
//! state, requests with their (streamed) answers, the safety number, and
//! the composer.
//!
//! Rows are keyed by entry id and update in place (delivery state, new
//! chunks), so an element on screen stays the same element for its life.

use leptos::prelude::*;

use crate::components::{Avatar, Icon, IconKind};
use crate::format;
use crate::model::{Contact, ContactStatus, Delivery, Dir, Entry, EntryBody, ReqStatus};
use crate::service;
use crate::state::{app, Conn, Mode, Tab};

/// The conversations screen: list and thread side by side (one at a time
/// on a phone).
#[component]
pub fn ChatsScreen() -> impl IntoView {
    let s = app();
    let has_open = move || s.open_peer.get().is_some();
    view! {
        <div class="chats" class:thread-open=has_open>
            <aside class="sidebar" aria-label="Conversations">
                <Requests />
                <ConvSection title="Chats" agents=false />
                <ConvSection title="Agents" agents=true />
                <EmptyList />
            </aside>
            <section class="pane">
                {move || match s.open_peer.get() {
                    Some(peer) => view! { <Thread peer=peer /> }.into_any(),
                    None => view! { <NoThread /> }.into_any(),
                }}
            </section>
        </div>
    }
}

fn contact_memo(did: StoredValue<String>) -> Memo<Option<Contact>> {
    let s = app();
    Memo::new(move |_| {
        s.contacts
            .with(|cs| did.with_value(|d| cs.iter().find(|c| &c.did == d).cloned()))
    })
}

/// First contacts waiting for Accept / Block.
#[component]
fn Requests() -> impl IntoView {
    let s = app();
    let pending = Memo::new(move |_| {
        s.contacts.with(|cs| {
            cs.iter()
                .filter(|c| c.status == ContactStatus::Pending)
                .map(|c| c.did.clone())
                .collect::<Vec<_>>()
        })
    });
    view! {
        <Show when=move || !pending.with(Vec::is_empty)>
            <h2 class="section-title">"Requests"</h2>
            <ul class="list" role="list">
                <For each=move || pending.get() key=|d| d.clone() let:did>
                    <RequestItem did=did />
                </For>
            </ul>
        </Show>
    }
}

#[component]
fn RequestItem(did: String) -> impl IntoView {
    let s = app();
    let d = StoredValue::new(did.clone());
    let contact = contact_memo(d);
    let name = Signal::derive(move || {
        contact.with(|c| c.as_ref().map(|c| c.name.clone()).unwrap_or_default())
    });
    let said = move || {
        s.threads.with(|t| {
            d.with_value(|d| {
                let texts: Vec<_> = t
                    .get(d)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| match &e.body {
                        EntryBody::Chat {
                            dir: Dir::In, text, ..
                        } => Some(text.clone()),
                        _ => None,
                    })
                    .collect();
                match texts.len() {
                    0 => String::new(),
                    1 => texts[0].clone(),
                    n => format!("{} (+{} more)", texts[n - 1], n - 1),
                }
            })
        })
    };
    let short = did
        .parse::<mesh_core::AgentId>()
        .map(|a| a.short())
        .unwrap_or_default();
    view! {
        <li class="request-item" data-testid="contact-request" data-peer=did.clone()>
            <div class="request-top">
                <Avatar name=name did=did.clone() />
                <div class="request-who">
                    <span class="conv-name">{move || name.get()}</span>
                    <span class="muted small">"wants to chat · " <code>{short}</code></span>
                </div>
            </div>
            <p class="request-text">{said}</p>
            <div class="request-actions">
                <button class="btn primary small" data-testid="contact-accept" on:click=move |_| d.with_value(|d| service::accept(d))>
                    "Accept"
                </button>
                <button class="btn ghost danger small" data-testid="contact-block" on:click=move |_| d.with_value(|d| service::block(d))>
                    "Block"
                </button>
            </div>
        </li>
    }
}

/// Accepted conversations, newest activity first: people (`agents ==
/// false`) or agents.
#[component]
fn ConvSection(title: &'static str, agents: bool) -> impl IntoView {
    let s = app();
    let dids = Memo::new(move |_| {
        s.contacts.with(|cs| {
            let mut v: Vec<_> = cs
                .iter()
                .filter(|c| c.status == ContactStatus::Accepted && c.is_agent() == agents)
                .map(|c| (c.last_at, c.did.clone()))
                .collect();
            v.sort_by_key(|c| std::cmp::Reverse(c.0));
            v.into_iter().map(|(_, d)| d).collect::<Vec<_>>()
        })
    });
    view! {
        <Show when=move || !dids.with(Vec::is_empty)>
            <h2 class="section-title">{title}</h2>
            <ul class="list" role="list">
                <For each=move || dids.get() key=|d| d.clone() let:did>
                    <ConvItem did=did />
                </For>
            </ul>
        </Show>
    }
}

#[component]
fn ConvItem(did: String) -> impl IntoView {
    let s = app();
    let d = StoredValue::new(did.clone());
    let contact = contact_memo(d);
    let name = Signal::derive(move || {
        contact.with(|c| c.as_ref().map(|c| c.name.clone()).unwrap_or_default())
    });
    let verified = move || contact.with(|c| c.as_ref().is_some_and(|c| c.verified));
    let agent = contact.with_untracked(|c| c.as_ref().is_some_and(Contact::is_agent));
    let summary = Memo::new(move |_| {
        s.threads.with(|t| {
            d.with_value(|d| {
                let es = t.get(d).map(Vec::as_slice).unwrap_or_default();
                let unread = es.iter().filter(|e| e.is_unread()).count();
                let last = es
                    .iter()
                    .rev()
                    .find(|e| !matches!(e.body, EntryBody::Note { .. }))
                    .map(|e| (e.preview(), e.at));
                (unread, last)
            })
        })
    });
    let active = move || {
        s.open_peer
            .with(|p| d.with_value(|d| p.as_ref() == Some(d)))
    };
    view! {
        <li>
            <button
                class="conv"
                class:active=active
                class:unread=move || summary.with(|s| s.0 > 0)
                data-testid="conv"
                data-peer=did.clone()
                aria-current=move || if active() { "true" } else { "false" }
                on:click=move |_| {
                    let mode = if agent { Mode::Request } else { Mode::Chat };
                    d.with_value(|d| service::open_thread(d, mode));
                }
            >
                <Avatar name=name did=did.clone() agent=agent />
                <span class="conv-main">
                    <span class="conv-top">
                        <span class="conv-name">{move || name.get()}</span>
                        {move || {
                            verified()
                                .then(|| {
                                    view! {
                                        <span class="verified" data-testid="verified-badge" title="Verified" aria-label="Verified">
                                            <Icon kind=IconKind::ShieldCheck size=15 />
                                        </span>
                                    }
                                })
                        }}
                        <span class="conv-time">
                            {move || summary.with(|s| s.1.as_ref().map(|l| format::when(l.1)).unwrap_or_default())}
                        </span>
                    </span>
                    <span class="conv-bottom">
                        <span class="conv-preview">
                            {move || {
                                summary
                                    .with(|s| {
                                        s.1
                                            .as_ref()
                                            .map(|l| l.0.clone())
                                            .unwrap_or_else(|| "No messages yet".into())
                                    })
                            }}
                        </span>
                        {move || {
                            let n = summary.with(|s| s.0);
                            (n > 0)
                                .then(|| {
                                    view! {
                                        <span class="unread-count" data-testid="conv-unread" aria-label=format!("{n} unread")>
                                            {n.to_string()}
                                        </span>
                                    }
                                })
                        }}
                    </span>
                </span>
            </button>
        </li>
    }
}

/// The list's empty state.
#[component]
fn EmptyList() -> impl IntoView {
    let s = app();
    let empty = move || {
        s.contacts
            .with(|cs| cs.iter().all(|c| c.status == ContactStatus::Blocked))
    };
    view! {
        <Show when=empty>
            <div class="empty small-empty">
                <Icon kind=IconKind::Chat size=28 />
                <p class="empty-title">"No conversations yet"</p>
                <p>"Find people and agents to talk to."</p>
                <button class="btn primary small" on:click=move |_| service::go(Tab::Discover)>
                    <Icon kind=IconKind::Compass size=16 />
                    "Discover"
                </button>
            </div>
        </Show>
    }
}

/// The pane when no thread is open.
#[component]
fn NoThread() -> impl IntoView {
    view! {
        <div class="no-thread">
            <div class="empty">
                <Icon kind=IconKind::Lock size=32 />
                <p class="empty-title">"Private by design"</p>
                <p>
                    "Pick a conversation. Everything you send is end-to-end encrypted; "
                    "the relay only ever sees ciphertext."
                </p>
            </div>
        </div>
    }
}

/// One conversation.
#[component]
fn Thread(peer: String) -> impl IntoView {
    let s = app();
    let safety = service::safety_number(&peer).unwrap_or_default();
    let short = peer
        .parse::<mesh_core::AgentId>()
        .map(|a| a.short())
        .unwrap_or_default();
    let did = peer.clone();
    let p = StoredValue::new(peer);
    let contact = contact_memo(p);
    let name = Signal::derive(move || {
        contact.with(|c| c.as_ref().map(|c| c.name.clone()).unwrap_or_default())
    });
    let verified = Signal::derive(move || contact.with(|c| c.as_ref().is_some_and(|c| c.verified)));
    let agent = contact.with_untracked(|c| c.as_ref().is_some_and(Contact::is_agent));
    let pending =
        move || contact.with(|c| matches!(c, Some(c) if c.status == ContactStatus::Pending));
    let subtitle = move || {
        contact.with(|c| {
            c.as_ref()
                .filter(|c| !c.description.is_empty())
                .map(|c| c.description.clone())
                .unwrap_or_else(|| "End-to-end encrypted".into())
        })
    };
    let ids = Memo::new(move |_| {
        s.threads.with(|t| {
            p.with_value(|p| {
                t.get(p)
                    .map(|es| es.iter().map(|e| e.id).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
        })
    });

    // The list is a `column-reverse` scroller: it stays pinned to the
    // newest entry by itself (streams, resizes); only a new entry brings a
    // reader who scrolled up back down.
    let list = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |prev: Option<usize>| {
        let n = ids.with(Vec::len);
        if prev != Some(n) {
            if let Some(el) = list.get() {
                el.set_scroll_top(0);
            }
        }
        n
    });
    let show_safety = RwSignal::new(false);
    // We wrote, they never answered nor acknowledged anything: most likely
    // our first contact waits for their Accept.
    let awaiting = Memo::new(move |_| {
        s.threads.with(|t| {
            p.with_value(|p| {
                let es = t.get(p).map(Vec::as_slice).unwrap_or_default();
                let mut chats = es.iter().filter_map(|e| match &e.body {
                    EntryBody::Chat { dir, state, .. } => Some((*dir, *state)),
                    _ => None,
                });
                let first = chats.clone().next();
                first.is_some()
                    && chats.all(|(dir, state)| {
                        dir == Dir::Out && matches!(state, Delivery::Sending | Delivery::Queued)
                    })
            })
        })
    });

    view! {
        <article class="thread" data-testid="thread" data-peer=did.clone() aria-label=move || format!("Conversation with {}", name.get())>
            <header class="thread-head">
                <button class="icon-btn back" aria-label="Back to conversations" title="Back" on:click=move |_| service::close_thread()>
                    <Icon kind=IconKind::Back />
                </button>
                <Avatar name=name did=did.clone() agent=agent />
                <div class="thread-title">
                    <h2>
                        <span class="thread-name">{move || name.get()}</span>
                        {move || {
                            verified
                                .get()
                                .then(|| {
                                    view! {
                                        <span class="verified" title="Verified" aria-label="Verified">
                                            <Icon kind=IconKind::ShieldCheck size=16 />
                                        </span>
                                    }
                                })
                        }}
                    </h2>
                    <p class="sub">
                        <code title=did.clone()>{short}</code>
                        " · "
                        <span class="thread-desc">{subtitle}</span>
                    </p>
                </div>
            </header>
            <div class="trust" class:is-verified=move || verified.get() class:expanded=move || show_safety.get()>
                <Icon kind=IconKind::Lock size=18 />
                <div class="trust-text">
                    <span class="trust-label">"Safety number"</span>
                    <button
                        type="button"
                        class="link-btn safety-toggle"
                        aria-expanded=move || show_safety.get().to_string()
                        aria-controls="safety-number"
                        on:click=move |_| show_safety.update(|v| *v = !*v)
                    >
                        {move || if show_safety.get() { "Hide" } else { "Show" }}
                    </button>
                    <code class="safety" id="safety-number" data-testid="safety-number">{safety}</code>
                </div>
                <button
                    class="btn small verify-btn"
                    class:on=move || verified.get()
                    data-testid="mark-verified"
                    aria-pressed=move || verified.get().to_string()
                    title=move || format!("Compare this number with {} over another channel (in person, a call). If it matches, mark it verified.", name.get())
                    on:click=move |_| p.with_value(|p| service::set_verified(p, !verified.get_untracked()))
                >
                    <Icon kind=IconKind::ShieldCheck size=16 />
                    {move || if verified.get() { "Verified" } else { "Mark as verified" }}
                </button>
            </div>
            <div class="messages" node_ref=list>
                <div class="messages-inner" role="log" aria-label="Messages">
                    <p class="e2e-note">
                        <Icon kind=IconKind::Lock size=14 />
                        "Messages and requests here are end-to-end encrypted."
                    </p>
                    <For each=move || ids.get() key=|id| *id let:id>
                        <EntryRow peer=p id=id />
                    </For>
                    {move || {
                        (!agent && awaiting.get())
                            .then(|| {
                                view! {
                                    <p class="note waiting">
                                        {move || format!(
                                            "{} sees your messages once they accept you as a contact; until then they show as sending.",
                                            name.get(),
                                        )}
                                    </p>
                                }
                            })
                    }}
                </div>
            </div>
            {move || {
                pending()
                    .then(|| {
                        view! {
                            <div class="pending-note" role="note">
                                <p>{move || format!("{} is not in your contacts yet.", name.get())}</p>
                                <button class="btn primary small" on:click=move |_| p.with_value(|p| service::accept(p))>"Accept"</button>
                                <button class="btn ghost danger small" on:click=move |_| p.with_value(|p| service::block(p))>"Block"</button>
                            </div>
                        }
                    })
            }}
            <Composer peer=p agent=agent />
        </article>
    }
}

fn find(entries: Option<&Vec<Entry>>, id: u64) -> Option<&Entry> {
    entries.and_then(|es| es.iter().rev().find(|e| e.id == id))
}

/// One entry of the thread; updates in place.
#[component]
fn EntryRow(peer: StoredValue<String>, id: u64) -> impl IntoView {
    let s = app();
    let rev = Memo::new(move |_| {
        s.threads
            .with(|t| peer.with_value(|p| find(t.get(p), id).map(|e| e.rev)))
    });
    let entry = Memo::new(move |_| {
        // `get`, not `track`: a memo computes (and subscribes to its own
        // sources) only when read.
        let _ = rev.get();
        s.threads
            .with_untracked(|t| peer.with_value(|p| find(t.get(p), id).cloned()))
    });
    let Some(first) = entry.get_untracked() else {
        return ().into_any();
    };
    let time = format::clock(first.at);
    match first.body {
        EntryBody::Chat {
            dir: Dir::In, text, ..
        } => view! {
            <div class="msg in" data-testid="msg" data-dir="in">
                <div class="bubble">
                    <p class="msg-text" data-testid="msg-text">{text}</p>
                    <span class="meta">{time}</span>
                </div>
            </div>
        }
        .into_any(),
        EntryBody::Chat { text, .. } => {
            let state = move || {
                entry.with(|e| match e.as_ref().map(|e| &e.body) {
                    Some(EntryBody::Chat { state, .. }) => *state,
                    _ => Delivery::Sending,
                })
            };
            let error = move || {
                entry.with(|e| match e.as_ref().map(|e| &e.body) {
                    Some(EntryBody::Chat { error, .. }) => error.clone(),
                    _ => None,
                })
            };
            view! {
                <div class="msg out" data-testid="msg" data-dir="out" data-state=move || state().as_str()>
                    <div class="bubble">
                        <p class="msg-text" data-testid="msg-text">{text}</p>
                        <span class="meta">
                            {time}
                            <DeliveryMark state=Signal::derive(state) />
                        </span>
                    </div>
                    {move || {
                        (state() == Delivery::Failed)
                            .then(|| {
                                view! {
                                    <p class="msg-error" role="alert">
                                        <Icon kind=IconKind::Alert size=14 />
                                        <span>{error().unwrap_or_else(|| "Not delivered.".into())}</span>
                                        <button class="link-btn" on:click=move |_| peer.with_value(|p| service::retry(p, id))>
                                            "Retry"
                                        </button>
                                    </p>
                                }
                            })
                    }}
                </div>
            }
            .into_any()
        }
        EntryBody::Request {
            capability, body, ..
        } => {
            let status = move || {
                entry.with(|e| match e.as_ref().map(|e| &e.body) {
                    Some(EntryBody::Request { status, .. }) => *status,
                    _ => ReqStatus::Error,
                })
            };
            let count = move || {
                entry.with(|e| match e.as_ref().map(|e| &e.body) {
                    Some(EntryBody::Request { chunks, .. }) => chunks.len(),
                    _ => 0,
                })
            };
            let error = move || {
                entry.with(|e| match e.as_ref().map(|e| &e.body) {
                    Some(EntryBody::Request { error, .. }) => error.clone(),
                    _ => None,
                })
            };
            let chunk = move |i: usize| {
                entry.with_untracked(|e| match e.as_ref().map(|e| &e.body) {
                    Some(EntryBody::Request { chunks, .. }) => chunks.get(i).cloned(),
                    _ => None,
                })
            };
            let label = move || {
                let n = count();
                let chunks = if n == 1 {
                    "1 chunk".to_string()
                } else {
                    format!("{n} chunks")
                };
                match status() {
                    ReqStatus::Running if n == 0 => "Waiting for the answer…".to_string(),
                    ReqStatus::Running => format!("Streaming… {chunks}"),
                    ReqStatus::Done if n <= 1 => "Answered".to_string(),
                    ReqStatus::Done => format!("Answered · {chunks}"),
                    ReqStatus::Cancelled => format!("Cancelled · {chunks}"),
                    ReqStatus::Error => "Failed".to_string(),
                }
            };
            let body_text = if body.is_empty() {
                "(empty body)".to_string()
            } else {
                body
            };
            view! {
                <div class="req">
                    <div class="req-ask">
                        <span class="req-cap">
                            <Icon kind=IconKind::Bolt size=14 />
                            {capability}
                        </span>
                        <pre class="req-body-text">{body_text}</pre>
                        <span class="meta">{time}</span>
                    </div>
                    <div class="req-result" data-testid="req-result" data-status=move || status().as_str()>
                        <div class="req-status">
                            {move || (status() == ReqStatus::Running).then(|| view! { <span class="spinner" aria-hidden="true"></span> })}
                            <span>{label}</span>
                        </div>
                        <div class="req-chunks" class:many=move || { count() > 1 }>
                            <For each=move || 0..count() key=|i| *i let:i>
                                <span class="chunk" data-testid="req-chunk">{chunk(i).unwrap_or_default()}</span>
                            </For>
                        </div>
                        {move || {
                            error()
                                .map(|e| {
                                    view! {
                                        <p class="req-error" data-testid="req-error" role="alert">
                                            <Icon kind=IconKind::Alert size=14 />
                                            <span>{e}</span>
                                        </p>
                                    }
                                })
                        }}
                    </div>
                </div>
            }
            .into_any()
        }
        EntryBody::Note { text } => view! {
            <p class="note">
                <span>{text}</span>
                " · "
                {time}
            </p>
        }
        .into_any(),
    }
}

/// The tick(s) after an outgoing message.
#[component]
fn DeliveryMark(state: Signal<Delivery>) -> impl IntoView {
    move || {
        let (icon, label) = match state.get() {
            Delivery::Sending => (IconKind::Clock, "Sending"),
            Delivery::Queued => (IconKind::Clock, "Queued: they are offline"),
            Delivery::Delivered => (IconKind::Check, "Delivered"),
            Delivery::Read => (IconKind::CheckDouble, "Read"),
            Delivery::Failed => (IconKind::Alert, "Not delivered"),
        };
        let short = match state.get() {
            Delivery::Queued => "Queued",
            Delivery::Read => "Read",
            Delivery::Delivered => "Delivered",
            Delivery::Failed => "Failed",
            Delivery::Sending => "",
        };
        view! {
            <span class=format!("tick {}", state.get().as_str()) title=label aria-label=label>
                <Icon kind=icon size=14 />
                <span class="tick-label">{short}</span>
            </span>
        }
    }
}

/// The composer: a chat message, or a request to a capability.
#[component]
fn Composer(peer: StoredValue<String>, agent: bool) -> impl IntoView {
    let s = app();
    let offline = move || !matches!(s.conn.get(), Conn::Online);
    let mode = s.mode;
    view! {
        <div class="composer-wrap">
            {move || {
                offline()
                    .then(|| {
                        view! {
                            <p class="offline-note">
                                <Icon kind=IconKind::Clock size=14 />
                                "Not connected: messages are kept and sent when the connection is back."
                            </p>
                        }
                    })
            }}
            <div class="mode-switch" role="group" aria-label="What to send">
                <button
                    type="button"
                    data-testid="mode-chat"
                    aria-pressed=move || (mode.get() == Mode::Chat).to_string()
                    on:click=move |_| mode.set(Mode::Chat)
                >
                    <Icon kind=IconKind::Chat size=15 />
                    "Message"
                </button>
                <button
                    type="button"
                    data-testid="mode-request"
                    aria-pressed=move || (mode.get() == Mode::Request).to_string()
                    on:click=move |_| mode.set(Mode::Request)
                >
                    <Icon kind=IconKind::Bolt size=15 />
                    "Request"
                </button>
                {move || {
                    agent
                        .then(|| {
                            if mode.get() == Mode::Chat {
                                "Its card offers no chat: it may not read messages."
                            } else {
                                "This agent answers requests."
                            }
                        })
                        .map(|hint| view! { <span class="mode-hint">{hint}</span> })
                }}
            </div>
            {move || match mode.get() {
                Mode::Chat => view! { <ChatComposer peer=peer /> }.into_any(),
                Mode::Request => view! { <RequestComposer peer=peer /> }.into_any(),
            }}
        </div>
    }
}

#[component]
fn ChatComposer(peer: StoredValue<String>) -> impl IntoView {
    let s = app();
    let draft = move || {
        s.drafts
            .with(|d| peer.with_value(|p| d.get(p).cloned().unwrap_or_default()))
    };
    let set_draft = move |v: String| {
        s.drafts.update(|d| {
            d.insert(peer.get_value(), v);
        })
    };
    let problem = RwSignal::new(None::<String>);
    let send = move || {
        let text = s
            .drafts
            .with_untracked(|d| peer.with_value(|p| d.get(p).cloned().unwrap_or_default()));
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        match peer.with_value(|p| service::send_chat(p, text)) {
            Ok(()) => {
                set_draft(String::new());
                problem.set(None);
            }
            Err(e) => problem.set(Some(e)),
        }
    };
    view! {
        <form class="composer" on:submit=move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            send();
        }>
            {move || problem.get().map(|e| view! { <p class="composer-error" role="alert">{e}</p> })}
            <label class="visually-hidden" for="composer-input">"Message"</label>
            <textarea
                id="composer-input"
                data-testid="composer-input"
                rows="1"
                placeholder="Write a message…"
                prop:value=draft
                on:input:target=move |ev| set_draft(ev.target().value())
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send();
                    }
                }
            ></textarea>
            <button type="submit" class="send-btn" data-testid="composer-send" aria-label="Send" title="Send (Enter)">
                <Icon kind=IconKind::Send />
            </button>
        </form>
    }
}

#[component]
fn RequestComposer(peer: StoredValue<String>) -> impl IntoView {
    let s = app();
    let cap = s.req_cap;
    let contact = contact_memo(peer);
    let skills = move || {
        contact.with(|c| {
            c.as_ref()
                .map(|c| c.request_skills().map(|s| s.id.clone()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
    };
    let body = move || {
        s.req_drafts
            .with(|d| peer.with_value(|p| d.get(p).cloned().unwrap_or_default()))
    };
    let set_body = move |v: String| {
        s.req_drafts.update(|d| {
            d.insert(peer.get_value(), v);
        })
    };
    let running = Memo::new(move |_| {
        s.threads.with(|t| {
            peer.with_value(|p| {
                t.get(p).is_some_and(|es| {
                    es.iter().any(|e| {
                        matches!(
                            e.body,
                            EntryBody::Request {
                                status: ReqStatus::Running,
                                ..
                            }
                        )
                    })
                })
            })
        })
    });
    let problem = RwSignal::new(None::<String>);
    let send = move || {
        let text = s
            .req_drafts
            .with_untracked(|d| peer.with_value(|p| d.get(p).cloned().unwrap_or_default()));
        let capability = cap.get_untracked();
        match peer.with_value(|p| service::send_request(p, &capability, &text)) {
            Ok(()) => {
                set_body(String::new());
                problem.set(None);
            }
            Err(e) => problem.set(Some(e)),
        }
    };
    view! {
        <form class="req-composer" on:submit=move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            send();
        }>
            <div class="req-row">
                <label for="req-capability" class="inline-label">"Capability"</label>
                <input
                    id="req-capability"
                    class="cap-input"
                    data-testid="req-capability"
                    type="text"
                    list="req-skills"
                    autocapitalize="off"
                    autocomplete="off"
                    spellcheck="false"
                    placeholder="e.g. echo"
                    prop:value=move || cap.get()
                    on:input:target=move |ev| cap.set(ev.target().value())
                />
                <datalist id="req-skills">
                    {move || skills().into_iter().map(|id| view! { <option value=id></option> }).collect_view()}
                </datalist>
                <div class="skill-picks" role="group" aria-label="Skills on their card">
                    {move || {
                        skills()
                            .into_iter()
                            .map(|id| {
                                let pick = id.clone();
                                let current = id.clone();
                                view! {
                                    <button
                                        type="button"
                                        class="chip-btn"
                                        aria-pressed=move || (cap.get() == current).to_string()
                                        on:click=move |_| cap.set(pick.clone())
                                    >
                                        {id}
                                    </button>
                                }
                            })
                            .collect_view()
                    }}
                </div>
            </div>
            {move || problem.get().map(|e| view! { <p class="composer-error" role="alert">{e}</p> })}
            <div class="composer">
                <label class="visually-hidden" for="req-body">"Request body"</label>
                <textarea
                    id="req-body"
                    data-testid="req-body"
                    rows="1"
                    placeholder="Request body (text or JSON)"
                    title="Ctrl+Enter sends"
                    prop:value=body
                    on:input:target=move |ev| set_body(ev.target().value())
                    on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                        if ev.key() == "Enter" && (ev.ctrl_key() || ev.meta_key()) {
                            ev.prevent_default();
                            send();
                        }
                    }
                ></textarea>
                {move || {
                    running
                        .get()
                        .then(|| {
                            view! {
                                <button
                                    type="button"
                                    class="btn danger-outline pill"
                                    data-testid="req-cancel"
                                    title="Cancel the running request"
                                    on:click=move |_| peer.with_value(|p| service::cancel_requests(p))
                                >
                                    <Icon kind=IconKind::Stop size=16 />
                                    <span class="btn-label">"Cancel"</span>
                                </button>
                            }
                        })
                }}
                <button type="submit" class="btn primary pill" data-testid="req-send" title="Send the request (Ctrl+Enter)">
                    <Icon kind=IconKind::Send size=16 />
                    <span class="btn-label">"Send"</span>
                </button>
            </div>
        </form>
    }
}
