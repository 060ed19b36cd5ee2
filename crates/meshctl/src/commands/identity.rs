//! Our key: `keygen`, `id`, `fingerprint` and `revoke`.

use anyhow::{bail, Context};
use mesh_core::revocation::Revocation;
use mesh_core::{AgentId, Identity};
use serde_json::json;

use crate::cli::{KeygenArgs, RevokeArgs};
use crate::{identity_file, output, Ctx};

/// `meshctl keygen`.
pub fn keygen(ctx: &Ctx, args: &KeygenArgs) -> anyhow::Result<()> {
    let path = ctx.identity_path()?;
    let identity = Identity::generate().context("cannot generate a key")?;
    identity_file::create(&path, &identity, args.force)?;
    let agent = identity.agent_id();
    if ctx.json {
        return output::json_line(&json!({
            "agentId": agent.to_did(),
            "short": agent.short(),
            "identityFile": path.display().to_string(),
        }));
    }
    eprintln!("created identity {}", path.display());
    output::line(&agent.to_did())?;
    output::line(&format!("short id: {}", agent.short()))
}

/// `meshctl id`.
pub fn id(ctx: &Ctx) -> anyhow::Result<()> {
    let agent = ctx.identity()?.agent_id();
    if ctx.json {
        return output::json_line(&json!({"agentId": agent.to_did(), "short": agent.short()}));
    }
    output::line(&agent.to_did())?;
    output::line(&format!("short id: {}", agent.short()))
}

/// `meshctl fingerprint <peer>`.
pub fn fingerprint(ctx: &Ctx, peer: &AgentId) -> anyhow::Result<()> {
    let me = ctx.identity()?;
    if *peer == me.agent_id() {
        bail!("{peer} is our own id: a safety number is computed with a peer");
    }
    let number = me.safety_number(peer);
    if ctx.json {
        return output::json_line(&json!({
            "agentId": me.agent_id().to_did(),
            "peer": peer.to_did(),
            "safetyNumber": number.to_string(),
            "groups": number.groups(),
        }));
    }
    let groups: Vec<String> = number.groups().iter().map(|g| format!("{g:05}")).collect();
    eprintln!(
        "safety number of {} and {} (the peer sees the same digits):",
        me.agent_id().short(),
        peer.short()
    );
    for row in groups.chunks(4) {
        output::line(&row.join(" "))?;
    }
    Ok(())
}

/// `meshctl revoke`.
pub async fn revoke(ctx: &Ctx, args: &RevokeArgs) -> anyhow::Result<()> {
    if !args.yes {
        bail!(
            "refusing to revoke without --yes: revocation is permanent — the relay will refuse \
             this key for good and the registry will drop its card; re-run with --yes if the \
             key leaked or the agent is retired"
        );
    }
    let me = ctx.identity()?;
    let agent = me.agent_id();
    let revocation =
        Revocation::new(&me, output::unix_ms(), args.reason.clone()).context("cannot revoke")?;
    let registry = ctx.registry()?;
    ctx.bounded("publishing the revocation", registry.revoke(&revocation))
        .await
        .with_context(|| format!("cannot revoke {}", agent.short()))?;
    if ctx.json {
        return output::json_line(&serde_json::from_str(&revocation.to_json())?);
    }
    output::line(&format!(
        "revoked {agent}; the relay now refuses this key. Create a new identity with `meshctl keygen --force`."
    ))
}
