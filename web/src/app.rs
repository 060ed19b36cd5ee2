//! The page: onboarding, or the header (brand, navigation, connection, our
//! id) over the three main screens.

use leptos::prelude::*;

use crate::chat::ChatsScreen;
use crate::components::{BannerView, ConnPill, Icon, IconKind};
use crate::discovery::DiscoverScreen;
use crate::onboarding::Onboarding;
use crate::service;
use crate::settings::SettingsScreen;
use crate::state::{app, Phase, Tab};

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    let s = app();
    service::watch_visibility();
    service::boot();
    move || match s.phase.get() {
        Phase::Loading => view! {
            <div class="splash" aria-busy="true">
                <img src="/icons/icon.svg" alt="" width="56" height="56" />
                <p>"Opening agent-mesh…"</p>
            </div>
        }
        .into_any(),
        Phase::Onboarding => view! { <Onboarding /> }.into_any(),
        Phase::Ready => view! { <Shell /> }.into_any(),
    }
}

/// A main-navigation button.
#[component]
fn NavButton(
    tab: Tab,
    testid: &'static str,
    label: &'static str,
    icon: IconKind,
    #[prop(optional, into)] badge: Option<Signal<usize>>,
) -> impl IntoView {
    let s = app();
    let current = move || s.tab.get() == tab;
    view! {
        <button
            class="nav-btn"
            class:active=current
            data-testid=testid
            aria-current=move || if current() { "page" } else { "false" }
            on:click=move |_| service::go(tab)
        >
            <Icon kind=icon />
            <span class="nav-label">{label}</span>
            {move || {
                badge
                    .map(|b| b.get())
                    .filter(|n| *n > 0)
                    .map(|n| {
                        view! {
                            <span class="nav-badge" aria-label=format!("{n} unread")>
                                {n.to_string()}
                            </span>
                        }
                    })
            }}
        </button>
    }
}

/// Header, banner and the current screen. All three screens stay mounted
/// (hidden when not current) so a search or a half-edited ACL survives a
/// trip to another screen.
#[component]
fn Shell() -> impl IntoView {
    let s = app();
    let unread = Signal::derive(move || {
        s.threads.with(|t| {
            t.values()
                .map(|es| es.iter().filter(|e| e.is_unread()).count())
                .sum::<usize>()
        })
    });
    // The unread count in the tab title, like every messenger.
    Effect::new(move |_| {
        let n = unread.get();
        document().set_title(&if n > 0 {
            format!("({n}) agent-mesh")
        } else {
            "agent-mesh".to_string()
        });
    });
    let short = move || {
        s.me.with(|m| m.as_ref().map(|m| m.short.clone()).unwrap_or_default())
    };
    let did = move || {
        s.me.with(|m| m.as_ref().map(|m| m.did.clone()).unwrap_or_default())
    };
    let name = move || {
        s.me.with(|m| m.as_ref().map(|m| m.name.clone()).unwrap_or_default())
    };
    let hidden = move |tab: Tab| move || s.tab.get() != tab;
    view! {
        <div class="shell">
            <header class="topbar">
                <div class="brand">
                    <img src="/icons/icon.svg" alt="" width="28" height="28" />
                    <span class="brand-name">"agent-mesh"</span>
                </div>
                <nav class="tabs" aria-label="Main">
                    <NavButton tab=Tab::Chats testid="nav-chats" label="Chats" icon=IconKind::Chat badge=unread />
                    <NavButton tab=Tab::Discover testid="nav-discover" label="Discover" icon=IconKind::Compass />
                    <NavButton tab=Tab::Settings testid="nav-settings" label="Settings" icon=IconKind::Sliders />
                </nav>
                <div class="whoami">
                    <ConnPill />
                    <span class="me" title=move || format!("{}\n{}", name(), did())>
                        <span class="me-name">{name}</span>
                        <span class="my-id" data-testid="my-id">{short}</span>
                    </span>
                </div>
            </header>
            <BannerView />
            <main class="main">
                <div class="screen" hidden=hidden(Tab::Chats)>
                    <ChatsScreen />
                </div>
                <div class="screen" hidden=hidden(Tab::Discover)>
                    <DiscoverScreen />
                </div>
                <div class="screen" hidden=hidden(Tab::Settings)>
                    <SettingsScreen />
                </div>
            </main>
        </div>
    }
}
