//! The relay itself: `status`.

use anyhow::Context;
use serde_json::{json, Value};

use crate::{output, Ctx};

/// `meshctl status`: the relay's `/status` and our card's presence.
pub async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let registry = ctx.registry()?;
    let url = format!("{}/status", registry.base_url());
    let http = reqwest::Client::builder()
        .timeout(ctx.timeout())
        .build()
        .context("cannot create the HTTP client")?;
    let relay: Value = crate::progress::spin("asking the relay", async {
        let resp = http.get(&url).send().await?.error_for_status()?;
        resp.json::<Value>().await
    })
    .await
    .with_context(|| format!("cannot get {url}"))?;

    // The relay's status is worth showing even before `meshctl keygen`.
    let me = match ctx.identity() {
        Ok(identity) => Some(identity.agent_id()),
        Err(e) => {
            eprintln!("note: {e:#}");
            None
        }
    };
    let entry = match &me {
        Some(me) => ctx
            .bounded("looking up our card", registry.get(me))
            .await
            .with_context(|| format!("cannot look up our card at {}", registry.base_url()))?,
        None => None,
    };

    if ctx.json {
        let card = entry.as_ref().map(|e| {
            json!({
                "name": e.card.card().name,
                "seq": e.card.seq(),
                "online": e.online,
                "lastSeen": e.last_seen_ms,
            })
        });
        return output::json_pretty(&json!({
            "relayUrl": ctx.relay,
            "relay": relay,
            "agentId": me.map(|m| m.to_did()),
            "card": card,
        }));
    }
    let field = |k: &str| {
        relay
            .get(k)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    };
    let text = |k: &str| {
        relay
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| "?".into())
    };
    output::line(&format!(
        "relay      {} (mesh-relay {})",
        ctx.relay,
        text("version")
    ))?;
    output::line(&format!("relay id   {}", text("relayId")))?;
    output::line(&format!(
        "uptime     {} s; {} connections, {} agents online",
        field("uptimeSeconds"),
        field("connections"),
        field("agentsOnline")
    ))?;
    let Some(me) = me else {
        return output::line("agent      no identity");
    };
    output::line(&format!("agent      {me} ({})", me.short()))?;
    let card = match entry {
        None => "no card published".to_string(),
        Some(e) => {
            let presence = match (e.online, e.last_seen_ms) {
                (true, _) => "online".to_string(),
                (false, Some(t)) => format!("offline, seen {}", output::ago(t, output::unix_ms())),
                (false, None) => "offline, never seen".to_string(),
            };
            format!(
                "{:?} (seq {}), {presence}",
                e.card.card().name,
                e.card.seq()
            )
        }
    };
    output::line(&format!("card       {card}"))
}
