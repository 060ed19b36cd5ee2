//! Discovery: search the registry by free text and capability, see who is
//! online, and start a chat or a request from a card.

use leptos::prelude::*;
use mesh_core::CHAT_CAPABILITY;

use crate::components::{Avatar, Icon, IconKind};
use crate::format;
use crate::service::{self, CardView};
use crate::state::{app, Conn};

/// What the result area shows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Results {
    /// Nothing searched yet.
    Idle,
    /// A search is on its way.
    Loading,
    /// The registry's answer (cards, cursor to more).
    Found(Vec<CardView>, Option<String>),
    /// What went wrong.
    Failed(String),
}

/// The discovery screen.
#[component]
pub fn DiscoverScreen() -> impl IntoView {
    let text = RwSignal::new(String::new());
    let capability = RwSignal::new(String::new());
    let online = RwSignal::new(false);
    let results = RwSignal::new(Results::Idle);
    let more_loading = RwSignal::new(false);
    // Only the latest search may fill the results (answers can overtake).
    let latest = StoredValue::new(0u64);

    let run = move |cursor: Option<String>| {
        latest.update_value(|n| *n += 1);
        let ticket = latest.get_value();
        let (t, c, o) = (
            text.get_untracked(),
            capability.get_untracked(),
            online.get_untracked(),
        );
        let appending = cursor.is_some();
        if appending {
            more_loading.set(true);
        } else {
            results.set(Results::Loading);
        }
        leptos::task::spawn_local(async move {
            let outcome = service::search(t, c, o, cursor).await;
            if latest.get_value() != ticket {
                return;
            }
            more_loading.set(false);
            match outcome {
                Ok((mut items, next)) => {
                    if appending {
                        if let Results::Found(old, _) = results.get_untracked() {
                            let mut all = old;
                            all.append(&mut items);
                            items = all;
                        }
                    }
                    results.set(Results::Found(items, next));
                }
                Err(e) => results.set(Results::Failed(e)),
            }
        });
    };
    // Show everyone once we are online (and our own card is published): a
    // newcomer sees who is there before typing anything.
    let s = app();
    Effect::new(move |done: Option<bool>| {
        if done == Some(true) {
            return true;
        }
        let online = s.conn.get() == Conn::Online;
        if online && results.get_untracked() == Results::Idle {
            run(None);
        }
        online
    });

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        run(None);
    };
    let quick = move |cap: &'static str| {
        move |_| {
            capability.set(cap.to_string());
            run(None);
        }
    };

    view! {
        <section class="discover" aria-labelledby="discover-title">
            <div class="page-head">
                <h1 id="discover-title">"Discover"</h1>
                <p class="sub">"Find people and agents by name or by what they can do."</p>
            </div>
            <form class="search-bar" on:submit=submit role="search">
                <div class="field grow">
                    <label for="search-text">"Search"</label>
                    <div class="input-icon">
                        <Icon kind=IconKind::Search size=18 />
                        <input
                            id="search-text"
                            data-testid="search-text"
                            type="search"
                            placeholder="Name, description, skill…"
                            prop:value=move || text.get()
                            on:input:target=move |ev| text.set(ev.target().value())
                        />
                    </div>
                </div>
                <div class="field">
                    <label for="search-capability">"Capability"</label>
                    <input
                        id="search-capability"
                        data-testid="search-capability"
                        type="text"
                        placeholder="e.g. mesh.chat"
                        autocapitalize="off"
                        spellcheck="false"
                        prop:value=move || capability.get()
                        on:input:target=move |ev| capability.set(ev.target().value())
                    />
                </div>
                <label class="check">
                    <input
                        type="checkbox"
                        data-testid="search-online"
                        prop:checked=move || online.get()
                        on:change:target=move |ev| online.set(ev.target().checked())
                    />
                    <span>"Online only"</span>
                </label>
                <button type="submit" class="btn primary" data-testid="search-go">
                    "Search"
                </button>
            </form>
            <div class="quick" aria-label="Quick filters">
                <button type="button" class="chip-btn" on:click=quick(CHAT_CAPABILITY)>
                    <Icon kind=IconKind::User size=16 />
                    "People"
                </button>
                <button type="button" class="chip-btn" on:click=quick("")>
                    <Icon kind=IconKind::Compass size=16 />
                    "Everyone"
                </button>
            </div>
            <div class="results" aria-live="polite" aria-busy=move || (results.get() == Results::Loading).to_string()>
                {move || match results.get() {
                    Results::Idle => view! {
                        <div class="empty">
                            <Icon kind=IconKind::Compass size=28 />
                            <p>"Search by name, or by a capability such as " <code>"mesh.chat"</code> " (people)."</p>
                        </div>
                    }
                    .into_any(),
                    Results::Loading => view! {
                        <div class="card-grid">
                            <div class="card skeleton"></div>
                            <div class="card skeleton"></div>
                            <div class="card skeleton"></div>
                        </div>
                    }
                    .into_any(),
                    Results::Failed(e) => view! {
                        <div class="empty error" role="alert">
                            <Icon kind=IconKind::Alert size=28 />
                            <p>{e}</p>
                            <button class="btn secondary" on:click=move |_| run(None)>"Try again"</button>
                        </div>
                    }
                    .into_any(),
                    Results::Found(items, _) if items.is_empty() => view! {
                        <div class="empty" data-testid="search-empty">
                            <Icon kind=IconKind::Search size=28 />
                            <p class="empty-title">"Nobody matches that search."</p>
                            <p>"Try fewer words, another capability, or include agents that are offline."</p>
                        </div>
                    }
                    .into_any(),
                    Results::Found(items, next) => view! {
                        <p class="count">
                            {format!(
                                "{} {}{}",
                                items.len(),
                                if items.len() == 1 { "result" } else { "results" },
                                if next.is_some() { " so far" } else { "" },
                            )}
                        </p>
                        <div class="card-grid">
                            {items.into_iter().map(|c| view! { <ResultCard card=c /> }).collect_view()}
                        </div>
                        {next.map(|cursor| {
                            view! {
                                <div class="more">
                                    <button
                                        class="btn secondary"
                                        disabled=move || more_loading.get()
                                        on:click=move |_| run(Some(cursor.clone()))
                                    >
                                        "Show more"
                                    </button>
                                </div>
                            }
                        })}
                    }
                    .into_any(),
                }}
            </div>
        </section>
    }
}

/// One Agent Card.
#[component]
fn ResultCard(card: CardView) -> impl IntoView {
    let card = StoredValue::new(card);
    let c = card.get_value();
    let is_person = c.skills.iter().any(|s| s.id == CHAT_CAPABILITY);
    let presence = if c.online {
        view! { <span class="presence online"><span class="dot online"></span>"Online"</span> }
            .into_any()
    } else {
        let seen = c
            .last_seen
            .map(|t| format!("Last seen {}", format::ago(t)))
            .unwrap_or_else(|| "Offline".into());
        view! { <span class="presence"><span class="dot"></span>{seen}</span> }.into_any()
    };
    let skills = c
        .skills
        .iter()
        .map(|s| {
            let title = if s.description.is_empty() {
                s.name.clone()
            } else {
                format!("{}: {}", s.name, s.description)
            };
            if s.id == CHAT_CAPABILITY {
                return view! { <li class="chip chat" title=title>"chat"</li> }.into_any();
            }
            let id = s.id.clone();
            let skill = s.id.clone();
            view! {
                <li>
                    <button
                        class="chip-btn skill"
                        data-testid="card-request"
                        data-skill=id.clone()
                        title=format!("Send a request to {id} — {title}")
                        on:click=move |_| service::start_from_card(&card.get_value(), Some(&skill))
                    >
                        <Icon kind=IconKind::Bolt size=14 />
                        {id.clone()}
                    </button>
                </li>
            }
            .into_any()
        })
        .collect_view();
    let has_requests = c.skills.iter().any(|s| s.id != CHAT_CAPABILITY);
    let description = if c.description.is_empty() {
        "No description.".to_string()
    } else {
        c.description.clone()
    };
    view! {
        <article class="card" data-testid="card" data-agent=c.did.clone()>
            <header class="card-head">
                <Avatar name=c.name.clone() did=c.did.clone() agent=!is_person />
                <div class="card-title">
                    <h2 data-testid="card-name">{c.name.clone()}</h2>
                    <div class="card-meta">
                        {presence}
                        <span class="kind">{if is_person { "Person" } else { "Agent" }}</span>
                    </div>
                </div>
            </header>
            <p class="card-desc">{description}</p>
            <div class="skills">
                <span class="skills-label">
                    {if has_requests { "Skills · choose one to send a request" } else { "Skills" }}
                </span>
                <ul class="chips" aria-label="Skills">{skills}</ul>
            </div>
            <footer class="card-foot">
                <code class="short" title=c.did.clone()>{c.short.clone()}</code>
                {if c.is_me {
                    view! { <span class="you">"This is you"</span> }.into_any()
                } else {
                    view! {
                        <button
                            class="btn small"
                            class:primary=is_person
                            class:secondary=!is_person
                            data-testid="card-chat"
                            on:click=move |_| service::start_from_card(&card.get_value(), None)
                        >
                            <Icon kind=IconKind::Chat size=16 />
                            {if is_person { "Chat" } else { "Open" }}
                        </button>
                    }
                    .into_any()
                }}
            </footer>
        </article>
    }
}
