//! First visit: create an identity (a key made in this browser) with a
//! display name, or import one exported earlier.

use leptos::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::components::{BannerView, Icon, IconKind};
use crate::service;

/// The onboarding screen.
#[component]
pub fn Onboarding() -> impl IntoView {
    let name = RwSignal::new(String::new());
    let topics = RwSignal::new(String::new());
    let topics_problem = RwSignal::new(None::<String>);
    let problem = RwSignal::new(None::<&'static str>);
    let busy = RwSignal::new(false);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let n = name.get_untracked().trim().to_string();
        if n.is_empty() {
            problem.set(Some("Choose a name people will see."));
            return;
        }
        problem.set(None);
        let t = match crate::model::parse_topics(&topics.get_untracked()) {
            Ok(t) => t,
            Err(e) => {
                topics_problem.set(Some(e));
                return;
            }
        };
        topics_problem.set(None);
        busy.set(true);
        service::create_identity(n, t);
    };
    let import = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        input.set_value("");
        let hint = name.get_untracked();
        busy.set(true);
        leptos::task::spawn_local(async move {
            match JsFuture::from(file.text()).await {
                Ok(text) => service::import_identity(text.as_string().unwrap_or_default(), hint),
                Err(_) => service::show_error("Could not read that file."),
            }
            busy.set(false);
        });
    };
    view! {
        <div class="onboard-page">
            <BannerView />
            <main class="onboard">
                <div class="onboard-card">
                    <img class="onboard-logo" src="/icons/icon.svg" alt="" width="64" height="64" />
                    <h1>"Welcome to agent-mesh"</h1>
                    <p class="lead">
                        "Talk privately with people and AI agents. Messages are end-to-end "
                        "encrypted: the relay in the middle only ever sees ciphertext."
                    </p>
                    <form class="stack" on:submit=create novalidate>
                        <div class="field">
                            <label for="onboard-name">"Your display name"</label>
                            <input
                                id="onboard-name"
                                data-testid="onboard-name"
                                type="text"
                                autocomplete="nickname"
                                maxlength="128"
                                placeholder="e.g. Ada Lovelace"
                                aria-describedby="onboard-name-hint"
                                aria-invalid=move || if problem.get().is_some() { "true" } else { "false" }
                                prop:value=move || name.get()
                                on:input:target=move |ev| name.set(ev.target().value())
                            />
                            {move || match problem.get() {
                                Some(p) => view! { <p class="field-error" id="onboard-name-hint">{p}</p> }.into_any(),
                                None => view! {
                                    <p class="hint" id="onboard-name-hint">
                                        "Shown on your public card, so people can find you."
                                    </p>
                                }.into_any(),
                            }}
                        </div>
                        <div class="field">
                            <label for="onboard-topics">"Topics " <span class="optional">"(optional)"</span></label>
                            <input
                                id="onboard-topics"
                                data-testid="onboard-topics"
                                type="text"
                                maxlength="200"
                                placeholder="e.g. rust, design, climate"
                                aria-describedby="onboard-topics-hint"
                                aria-invalid=move || if topics_problem.get().is_some() { "true" } else { "false" }
                                prop:value=move || topics.get()
                                on:input:target=move |ev| topics.set(ev.target().value())
                            />
                            {move || match topics_problem.get() {
                                Some(p) => view! { <p class="field-error" id="onboard-topics-hint">{p}</p> }.into_any(),
                                None => view! {
                                    <p class="hint" id="onboard-topics-hint">
                                        "Comma-separated; people can find you by them in Discover."
                                    </p>
                                }.into_any(),
                            }}
                        </div>
                        <button
                            type="submit"
                            class="btn primary block"
                            data-testid="onboard-create"
                            disabled=move || busy.get()
                        >
                            <Icon kind=IconKind::Key />
                            "Create my identity"
                        </button>
                    </form>
                    <div class="divider" role="separator">
                        <span>"or"</span>
                    </div>
                    <label class="btn secondary block file-btn">
                        <Icon kind=IconKind::Upload />
                        "Import an identity file"
                        <input
                            type="file"
                            class="visually-hidden"
                            data-testid="onboard-import"
                            accept=".identity,.txt,text/plain"
                            on:change=import
                        />
                    </label>
                    <ul class="features">
                        <li>
                            <Icon kind=IconKind::Key size=18 />
                            <span>"Your key is created in this browser and never leaves it unless you export it."</span>
                        </li>
                        <li>
                            <Icon kind=IconKind::Lock size=18 />
                            <span>"Every conversation is end-to-end encrypted (Noise), and you can verify who you talk to."</span>
                        </li>
                        <li>
                            <Icon kind=IconKind::Search size=18 />
                            <span>"Find people and agents by what they can do."</span>
                        </li>
                    </ul>
                </div>
            </main>
        </div>
    }
}
