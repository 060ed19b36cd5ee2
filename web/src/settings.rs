//! Settings: display name (republishes the card), identity export and
//! forgetting, and the ACL as editable JSON.

use leptos::prelude::*;

use crate::components::{Icon, IconKind};
use crate::service;
use crate::state::app;

/// The settings screen.
#[component]
pub fn SettingsScreen() -> impl IntoView {
    let s = app();
    let name = RwSignal::new(None::<String>);
    let shown_name = move || {
        name.get().unwrap_or_else(|| {
            s.me.with(|m| m.as_ref().map(|m| m.name.clone()).unwrap_or_default())
        })
    };
    let topics = RwSignal::new(None::<String>);
    let topics_error = RwSignal::new(None::<String>);
    let shown_topics = move || {
        topics.get().unwrap_or_else(|| {
            s.me.with(|m| m.as_ref().map(|m| m.topics.join(", ")).unwrap_or_default())
        })
    };
    let save_name = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match crate::model::parse_topics(&shown_topics()) {
            Ok(t) => {
                topics_error.set(None);
                service::save_name(shown_name(), t);
                name.set(None);
                topics.set(None);
            }
            Err(e) => topics_error.set(Some(e)),
        }
    };

    // `None`: the editor shows the policy in force (and follows it as
    // contacts are accepted or blocked); `Some`: what the person typed.
    let acl_draft = RwSignal::new(None::<String>);
    let acl_error = RwSignal::new(None::<String>);
    let acl_shown = move || acl_draft.get().unwrap_or_else(|| s.acl_text.get());
    let save_acl = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match service::apply_acl(&acl_shown()) {
            Ok(()) => {
                acl_draft.set(None);
                acl_error.set(None);
                service::show_info("Access rules saved and in force.");
            }
            Err(e) => acl_error.set(Some(e)),
        }
    };
    let did = move || {
        s.me.with(|m| m.as_ref().map(|m| m.did.clone()).unwrap_or_default())
    };
    let forget = move |_| {
        let ok = window()
            .confirm_with_message(
                "Forget this identity on this device?\n\nYour key, contacts and conversations \
                 are deleted from this browser and your card is withdrawn. Unless you exported \
                 the identity, it is gone for good.",
            )
            .unwrap_or(false);
        if ok {
            service::forget_identity();
        }
    };

    view! {
        <section class="settings" aria-labelledby="settings-title">
            <div class="page-head">
                <h1 id="settings-title">"Settings"</h1>
            </div>

            <div class="panel">
                <h2>"Profile"</h2>
                <form class="row-form" on:submit=save_name>
                    <div class="field grow">
                        <label for="display-name">"Display name"</label>
                        <input
                            id="display-name"
                            data-testid="display-name"
                            type="text"
                            maxlength="128"
                            autocomplete="nickname"
                            prop:value=shown_name
                            on:input:target=move |ev| name.set(Some(ev.target().value()))
                        />
                    </div>
                    <div class="field grow">
                        <label for="topics">"Topics"</label>
                        <input
                            id="topics"
                            data-testid="topics"
                            type="text"
                            maxlength="200"
                            placeholder="e.g. rust, design, climate"
                            aria-invalid=move || if topics_error.get().is_some() { "true" } else { "false" }
                            prop:value=shown_topics
                            on:input:target=move |ev| topics.set(Some(ev.target().value()))
                        />
                    </div>
                    <button type="submit" class="btn primary" data-testid="save-name">"Save"</button>
                </form>
                {move || topics_error.get().map(|e| view! { <p class="field-error" data-testid="topics-error">{e}</p> })}
                <p class="hint">"Saving republishes your card, so people find you by the new name and topics."</p>
            </div>

            <div class="panel">
                <h2>"Your identity"</h2>
                <div class="field">
                    <span class="label">"Your address (did:key)"</span>
                    <code class="did">{did}</code>
                </div>
                <p class="hint">
                    "Your secret key lives only in this browser. Export it to keep a backup, or to use "
                    "the same identity in another browser or with meshctl."
                </p>
                <div class="actions">
                    <button class="btn secondary" data-testid="export-identity" on:click=move |_| service::export_identity()>
                        <Icon kind=IconKind::Download size=18 />
                        "Export identity"
                    </button>
                </div>
            </div>

            <div class="panel">
                <h2>"Who may reach you"</h2>
                <p class="hint">
                    "Access rules, in order: the first rule that matches the sender and the capability "
                    "decides; if none matches, the answer is no. Accepting or blocking a contact edits "
                    "these rules for you. Chat is the capability " <code>"mesh.chat"</code> "."
                </p>
                <form class="stack" on:submit=save_acl>
                    <label for="acl-editor" class="label">"Access rules (JSON)"</label>
                    <textarea
                        id="acl-editor"
                        class="code-editor"
                        data-testid="acl-editor"
                        rows="10"
                        spellcheck="false"
                        autocapitalize="off"
                        aria-invalid=move || acl_error.get().is_some().to_string()
                        aria-describedby="acl-error"
                        prop:value=acl_shown
                        on:input:target=move |ev| acl_draft.set(Some(ev.target().value()))
                    ></textarea>
                    {move || {
                        acl_error
                            .get()
                            .map(|e| {
                                view! {
                                    <p class="field-error" id="acl-error" data-testid="acl-error" role="alert">
                                        <Icon kind=IconKind::Alert size=16 />
                                        <span>{e}</span>
                                    </p>
                                }
                            })
                    }}
                    <div class="actions">
                        <button type="submit" class="btn primary" data-testid="acl-save">"Apply rules"</button>
                        <button
                            type="button"
                            class="btn ghost"
                            disabled=move || acl_draft.get().is_none()
                            on:click=move |_| {
                                acl_draft.set(None);
                                acl_error.set(None);
                            }
                        >
                            "Discard changes"
                        </button>
                    </div>
                </form>
            </div>

            <div class="panel">
                <h2>"Connection"</h2>
                <dl class="facts">
                    <dt>"Relay"</dt>
                    <dd><code>{service::relay_url()}</code></dd>
                    <dt>"State"</dt>
                    <dd>{move || s.conn.get().as_str()}</dd>
                </dl>
            </div>

            <div class="panel danger-zone">
                <h2>"Forget this identity"</h2>
                <p class="hint">
                    "Deletes your key, contacts and conversations from this browser and withdraws "
                    "your card. Export the identity first if you want to keep it."
                </p>
                <div class="actions">
                    <button class="btn danger" data-testid="forget-identity" on:click=forget>
                        "Forget this identity"
                    </button>
                </div>
            </div>
        </section>
    }
}
