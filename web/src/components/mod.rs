//! Widgets shared by the screens: icons, avatars, the banner, the
//! connection pill.

use leptos::prelude::*;

use crate::format;
use crate::service;
use crate::state::{app, BannerKind, Conn};

/// The icons the app uses (24×24, stroked; one path each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IconKind {
    /// Conversations.
    Chat,
    /// Discovery.
    Compass,
    /// Settings.
    Sliders,
    /// Search.
    Search,
    /// End-to-end encryption.
    Lock,
    /// Verified.
    ShieldCheck,
    /// Send.
    Send,
    /// Back.
    Back,
    /// Close.
    Close,
    /// A request to a capability.
    Bolt,
    /// Stop.
    Stop,
    /// One tick: delivered.
    Check,
    /// Two ticks: read.
    CheckDouble,
    /// Waiting.
    Clock,
    /// A problem.
    Alert,
    /// Download.
    Download,
    /// Upload.
    Upload,
    /// A key.
    Key,
    /// Retry / reconnect.
    Refresh,
    /// A person.
    User,
    /// Information.
    Info,
}

impl IconKind {
    fn path(self) -> &'static str {
        match self {
            IconKind::Chat => "M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z",
            IconKind::Compass => concat!(
                "M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z",
                "M16.2 7.8l-2.1 6.3-6.3 2.1 2.1-6.3z"
            ),
            IconKind::Sliders => concat!(
                "M20 7h-9M14 17H5",
                "M17 14a3 3 0 1 0 0 6a3 3 0 1 0 0-6z",
                "M7 4a3 3 0 1 0 0 6a3 3 0 1 0 0-6z"
            ),
            IconKind::Search => "M11 3a8 8 0 1 0 0 16a8 8 0 1 0 0-16zM21 21l-4.3-4.3",
            IconKind::Lock => concat!(
                "M5 11h14a2 2 0 0 1 2 2v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2z",
                "M7 11V7a5 5 0 0 1 10 0v4"
            ),
            IconKind::ShieldCheck => "M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10zM9 12l2 2 4-4",
            IconKind::Send => "M22 2 15 22l-4-9-9-4zM22 2 11 13",
            IconKind::Back => "m15 18-6-6 6-6",
            IconKind::Close => "M18 6 6 18M6 6l12 12",
            IconKind::Bolt => "M13 2 3 14h9l-1 8 10-12h-9l1-8z",
            IconKind::Stop => "M7 7h10v10H7z",
            IconKind::Check => "M20 6 9 17l-5-5",
            IconKind::CheckDouble => "M17 6 7 17l-5-5M22 10l-7 7-1.5-1.5",
            IconKind::Clock => concat!("M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z", "M12 6v6l4 2"),
            IconKind::Alert => concat!(
                "M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z",
                "M12 8v4M12 16h.01"
            ),
            IconKind::Download => "M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4M7 10l5 5 5-5M12 15V3",
            IconKind::Upload => "M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4M17 8l-5-5-5 5M12 3v12",
            IconKind::Key => concat!(
                "M7.5 13a4.5 4.5 0 1 0 0 9a4.5 4.5 0 1 0 0-9z",
                "M10.7 14.3 21 4M16 9l3 3M19 6l2 2"
            ),
            IconKind::Refresh => "M21 12a9 9 0 1 1-3-6.7L21 8M21 3v5h-5",
            IconKind::User => {
                "M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2M12 3a4 4 0 1 0 0 8a4 4 0 1 0 0-8z"
            }
            IconKind::Info => concat!(
                "M12 2a10 10 0 1 0 0 20a10 10 0 1 0 0-20z",
                "M12 16v-4M12 8h.01"
            ),
        }
    }
}

/// An inline icon, hidden from assistive technology (the control around it
/// carries the label).
#[component]
pub fn Icon(
    /// Which icon.
    kind: IconKind,
    /// Width and height in px (default 20).
    #[prop(optional)]
    size: Option<u32>,
) -> impl IntoView {
    let size = size.unwrap_or(20);
    view! {
        <svg
            class="icon"
            width=size
            height=size
            viewBox="0 0 24 24"
            fill="none"
            stroke="currentColor"
            stroke-width="2"
            stroke-linecap="round"
            stroke-linejoin="round"
            aria-hidden="true"
            focusable="false"
        >
            <path d=kind.path() />
        </svg>
    }
}

/// A round avatar (a rounded square for agents) with initials on a colour
/// derived from the did.
#[component]
pub fn Avatar(
    /// The name the initials come from.
    #[prop(into)]
    name: Signal<String>,
    /// The did the colour comes from.
    #[prop(into)]
    did: String,
    /// An agent (rounded square) rather than a person (circle).
    #[prop(optional)]
    agent: bool,
    /// The larger size.
    #[prop(optional)]
    large: bool,
) -> impl IntoView {
    let style = format!("--hue:{}", format::hue(&did));
    view! {
        <span class="avatar" class:agent=agent class:large=large style=style aria-hidden="true">
            {move || format::initials(&name.get())}
        </span>
    }
}

/// The dismissible banner for errors and news.
#[component]
pub fn BannerView() -> impl IntoView {
    let s = app();
    move || {
        s.banner.get().map(|b| {
            let (class, icon) = match b.kind {
                BannerKind::Error => ("banner error", IconKind::Alert),
                BannerKind::Connection => ("banner warn", IconKind::Alert),
                BannerKind::Info => ("banner info", IconKind::Info),
            };
            // Good news is not an error: tests (and people) can tell them apart.
            let (role, testid, dismiss) = if b.kind == BannerKind::Info {
                ("status", "info-banner", "info-dismiss")
            } else {
                ("alert", "error-banner", "error-dismiss")
            };
            view! {
                <div class=class data-testid=testid role=role>
                    <Icon kind=icon />
                    <p>{b.text}</p>
                    <button
                        class="icon-btn"
                        data-testid=dismiss
                        aria-label="Dismiss"
                        title="Dismiss"
                        on:click=move |_| service::dismiss_banner()
                    >
                        <Icon kind=IconKind::Close size=18 />
                    </button>
                </div>
            }
        })
    }
}

/// The connection state, always visible in the header.
#[component]
pub fn ConnPill() -> impl IntoView {
    let s = app();
    let describe = move || match s.conn.get() {
        Conn::Online => "Connected to the relay",
        Conn::Connecting => "Connecting to the relay",
        Conn::Reconnecting => "Connection lost; reconnecting",
        Conn::Offline => "The relay cannot be reached; retrying",
        Conn::Revoked => "This identity has been revoked",
        Conn::Closed => "Disconnected",
    };
    view! {
        <span class="conn" role="status" title=describe aria-label=describe>
            <span class=move || format!("dot {}", s.conn.get().as_str()) aria-hidden="true"></span>
            <span data-testid="conn-state">{move || s.conn.get().as_str()}</span>
        </span>
        {move || {
            (s.conn.get() == Conn::Closed)
                .then(|| {
                    view! {
                        <button class="icon-btn" title="Reconnect" aria-label="Reconnect" on:click=move |_| service::reconnect()>
                            <Icon kind=IconKind::Refresh size=18 />
                        </button>
                    }
                })
        }}
    }
}
