//! The registry: `publish`, `unpublish` and `search`.

use anyhow::Context;
use mesh_client::registry::{CardEntry, SearchQuery};
use mesh_core::card::{AgentCard, AgentCardBuilder};
use mesh_core::Identity;
use serde_json::json;

use crate::card_file::{parse_skill_flag, CardFile};
use crate::cli::{PublishArgs, SearchArgs};
use crate::{output, Ctx};

/// Signs the card `builder` describes, issued now (so it supersedes every
/// earlier card of ours), and publishes it. Returns its sequence number.
pub async fn sign_and_publish(
    ctx: &Ctx,
    identity: &Identity,
    builder: AgentCardBuilder,
) -> anyhow::Result<u64> {
    let card = builder
        .issued_at(output::unix_ms())
        .sign(identity)
        .context("invalid card")?;
    let registry = ctx.registry()?;
    ctx.bounded("publishing the card", registry.publish(&card))
        .await
        .with_context(|| format!("cannot publish to {}", registry.base_url()))
}

/// `meshctl publish`.
pub async fn publish(ctx: &Ctx, args: &PublishArgs) -> anyhow::Result<()> {
    let me = ctx.identity()?;
    let agent = me.agent_id();
    let builder = match (&args.card, &args.name) {
        (Some(path), _) => CardFile::load(path)?.builder(agent, &ctx.relay),
        (None, Some(name)) => {
            let mut b = AgentCard::builder(agent, &ctx.relay, name.clone())
                .description(args.description.clone().unwrap_or_default())
                .streaming(args.streaming);
            for flag in &args.skills {
                b = b.skill(parse_skill_flag(flag)?);
            }
            b
        }
        (None, None) => anyhow::bail!("give --name (and optionally --skill …) or --card FILE"),
    };
    let seq = sign_and_publish(ctx, &me, builder).await?;
    if ctx.json {
        return output::json_line(&json!({"agentId": agent.to_did(), "seq": seq}));
    }
    output::line(&format!(
        "published the card of {} (seq {seq}) to {}",
        agent.short(),
        ctx.registry()?.base_url()
    ))
}

/// `meshctl unpublish`.
pub async fn unpublish(ctx: &Ctx) -> anyhow::Result<()> {
    let me = ctx.identity()?;
    let registry = ctx.registry()?;
    ctx.bounded("withdrawing the card", registry.delete(&me))
        .await
        .with_context(|| format!("cannot withdraw the card of {}", me.agent_id().short()))?;
    if ctx.json {
        return output::json_line(&json!({"agentId": me.agent_id().to_did(), "deleted": true}));
    }
    output::line(&format!("withdrew the card of {}", me.agent_id().short()))
}

/// `meshctl search` / `discover`.
pub async fn search(ctx: &Ctx, args: &SearchArgs) -> anyhow::Result<()> {
    let registry = ctx.registry()?;
    let mut query = SearchQuery {
        capability: args.capability.clone(),
        text: args.query.clone(),
        online_only: args.online,
        limit: args.limit,
        cursor: None,
    };
    let mut items: Vec<CardEntry> = Vec::new();
    let mut rejected = 0;
    let next_cursor = loop {
        let page = ctx
            .bounded("searching", registry.search(&query))
            .await
            .with_context(|| format!("cannot search {}", registry.base_url()))?;
        items.extend(page.items);
        rejected += page.rejected;
        match page.next_cursor {
            Some(cursor) if args.all => query.cursor = Some(cursor),
            other => break other,
        }
    };
    if rejected > 0 {
        eprintln!(
            "warning: {rejected} card(s) from the registry failed verification and are not shown"
        );
    }
    if ctx.json {
        let items: Vec<serde_json::Value> = items
            .iter()
            .map(|e| output::to_serde(&e.to_json()))
            .collect();
        return output::json_pretty(&json!({
            "items": items,
            "nextCursor": next_cursor,
            "rejected": rejected,
        }));
    }
    if items.is_empty() {
        eprintln!("no agents found");
        return Ok(());
    }
    let now = output::unix_ms();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let card = e.card.card();
            let presence = match (e.online, e.last_seen_ms) {
                (true, _) => "online".to_string(),
                (false, Some(t)) => format!("seen {}", output::ago(t, now)),
                (false, None) => "never seen".to_string(),
            };
            let skills: Vec<&str> = card.skills.iter().map(|s| s.id.as_str()).collect();
            vec![
                e.card.agent_id().short(),
                output::truncate(&card.name, 32),
                presence,
                output::truncate(&skills.join(", "), 60),
            ]
        })
        .collect();
    for l in output::table(&["ID", "NAME", "PRESENCE", "SKILLS"], &rows) {
        output::line(&l)?;
    }
    if let Some(cursor) = next_cursor {
        eprintln!("more results: add --all to fetch every page (next cursor {cursor})");
    }
    Ok(())
}
