//! Talking to other agents: `request`, `stream`, `send` and `listen`.

use std::io::{IsTerminal, Read};
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::StreamExt;
use mesh_client::{MeshClient, MessageEvent};
use mesh_core::acl::{CapabilityPattern, Policy, Rule, Source, CHAT_CAPABILITY};
use mesh_core::app::ReceiptKind;
use mesh_core::AgentId;
use serde_json::json;

use crate::chat::{self, News};
use crate::cli::{ListenArgs, RequestArgs};
use crate::progress::Spinner;
use crate::{close, output, shutdown_signal, Ctx, Exit};

/// The request body: the argument, stdin for `-`, or nothing.
fn request_body(arg: Option<&str>) -> anyhow::Result<Bytes> {
    match arg {
        None => Ok(Bytes::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the request body from stdin")?;
            Ok(Bytes::from(buf))
        }
        Some(text) => Ok(Bytes::from(text.to_owned())),
    }
}

/// `meshctl request`.
pub async fn request(ctx: &Ctx, args: &RequestArgs) -> anyhow::Result<()> {
    let body = request_body(args.body.as_deref())?;
    let client = ctx.connect(ctx.identity()?, Policy::deny_all()).await?;
    let started = Instant::now();
    let answer = crate::progress::spin(
        format!("waiting for {} ({})", args.peer.short(), args.capability),
        client.request_with_timeout(args.peer, &args.capability, body, ctx.timeout_ms),
    )
    .await;
    close(&client).await;
    let answer =
        answer.with_context(|| format!("request {} to {}", args.capability, args.peer.short()))?;
    if ctx.json {
        return output::json_line(&json!({
            "peer": args.peer.to_did(),
            "capability": args.capability,
            "bytes": answer.len(),
            "ms": started.elapsed().as_millis(),
            "body": String::from_utf8_lossy(&answer),
        }));
    }
    output::raw(&answer)?;
    // On a terminal, keep the prompt off the answer's last line; a pipe or
    // file gets the bytes exactly.
    if std::io::stdout().is_terminal() && !answer.is_empty() && !answer.ends_with(b"\n") {
        output::raw(b"\n")?;
    }
    Ok(())
}

/// `meshctl stream`.
pub async fn stream(ctx: &Ctx, args: &RequestArgs) -> anyhow::Result<()> {
    let body = request_body(args.body.as_deref())?;
    let client = ctx.connect(ctx.identity()?, Policy::deny_all()).await?;
    let outcome = print_stream(ctx, &client, args, body).await;
    // The stream was dropped inside `print_stream`, which queued the cancel;
    // closing after it lets the cancel go out before the socket closes.
    close(&client).await;
    outcome
}

async fn print_stream(
    ctx: &Ctx,
    client: &MeshClient,
    args: &RequestArgs,
    body: Bytes,
) -> anyhow::Result<()> {
    let what = || format!("stream {} from {}", args.capability, args.peer.short());
    let mut chunks = client
        .request_stream_with_timeout(args.peer, &args.capability, body, ctx.timeout_ms)
        .with_context(what)?;
    let mut spinner = Spinner::start(format!(
        "waiting for {} ({})",
        args.peer.short(),
        args.capability
    ));
    let interrupted = shutdown_signal();
    tokio::pin!(interrupted);
    let mut seq: u64 = 0;
    loop {
        let next = tokio::select! {
            next = chunks.next() => next,
            signal = &mut interrupted => {
                drop(chunks);
                spinner.stop();
                eprintln!("cancelled ({signal})");
                return Err(Exit(130).into());
            }
        };
        spinner.stop();
        let chunk = match next {
            None => return Ok(()),
            Some(chunk) => chunk.with_context(what)?,
        };
        if ctx.json {
            output::json_line(&json!({"seq": seq, "body": String::from_utf8_lossy(&chunk)}))?;
        } else if chunk.ends_with(b"\n") {
            output::raw(&chunk)?;
        } else {
            let mut line = chunk.to_vec();
            line.push(b'\n');
            output::raw(&line)?;
        }
        seq += 1;
    }
}

/// `meshctl send`.
pub async fn send(ctx: &Ctx, peer: AgentId, text: &str) -> anyhow::Result<()> {
    let client = ctx.connect(ctx.identity()?, Policy::deny_all()).await?;
    let outcome = send_and_wait(ctx, &client, peer, text).await;
    close(&client).await;
    let (status, detail) = outcome.with_context(|| format!("send to {}", peer.short()))?;
    if ctx.json {
        return output::json_line(&json!({"peer": peer.to_did(), "status": status}));
    }
    output::line(&detail)
}

/// Sends and waits for the first delivery news about the message: its
/// JSON status and a line for a person.
async fn send_and_wait(
    ctx: &Ctx,
    client: &MeshClient,
    peer: AgentId,
    text: &str,
) -> anyhow::Result<(&'static str, String)> {
    let wait = chat::send_and_wait(client, peer, text);
    let spinning = crate::progress::spin(format!("sending to {}", peer.short()), wait);
    let Ok(news) = tokio::time::timeout(ctx.timeout(), spinning).await else {
        bail!(
            "no receipt within {} ms: the peer may not accept chat from us, or may be offline \
             (a first message to an offline peer waits for it to come online)",
            ctx.timeout_ms
        )
    };
    let news = news?.context("the client closed before any delivery news")?;
    let detail = match news {
        News::Receipt(kind) => {
            let by = match kind {
                ReceiptKind::Delivered => "to",
                ReceiptKind::Read => "by",
            };
            format!("{} {by} {}", kind.name(), peer.short())
        }
        News::Queued => format!(
            "queued by the relay: {} is offline and gets it when it reconnects",
            peer.short()
        ),
    };
    Ok((news.name(), detail))
}

/// `meshctl listen`.
pub async fn listen(ctx: &Ctx, args: &ListenArgs) -> anyhow::Result<()> {
    if !args.anyone && args.from.is_empty() {
        bail!(
            "listen needs --anyone or --from DID (repeatable): chat is denied by default, so \
             without one every message would only show as an unacknowledged contact request"
        );
    }
    let chat = vec![CapabilityPattern::Exact(CHAT_CAPABILITY.to_string())];
    let rules = if args.anyone {
        vec![Rule::allow(Source::Any, chat)]
    } else {
        args.from
            .iter()
            .map(|a| Rule::allow(Source::Agent(*a), chat.clone()))
            .collect()
    };
    let client = ctx.connect(ctx.identity()?, Policy { rules }).await?;
    let mut events = client.messages();
    eprintln!(
        "listening as {} ({}); Ctrl-C to stop",
        client.agent_id(),
        client.agent_id().short()
    );
    let interrupted = shutdown_signal();
    tokio::pin!(interrupted);
    let outcome = loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = &mut interrupted => break Ok(()),
        };
        let Some(event) = event else {
            break Err(anyhow::anyhow!("the connection closed"));
        };
        if let Err(e) = print_event(ctx, args, &event) {
            break Err(e);
        }
    };
    close(&client).await;
    outcome
}

fn print_event(ctx: &Ctx, args: &ListenArgs, event: &MessageEvent) -> anyhow::Result<()> {
    match event {
        MessageEvent::Chat {
            from,
            msg_id,
            sent_at_ms,
            text,
            allowed,
        } => {
            if ctx.json {
                return output::json_line(&json!({
                    "type": "message",
                    "from": from.to_did(),
                    // A string, as in the npm package: ids use 63 bits, more than
                    // a JSON number holds exactly in JavaScript.
                    "msgId": msg_id.to_string(),
                    "sentAt": sent_at_ms,
                    "text": text,
                    "allowed": allowed,
                }));
            }
            let one_line = text.replace(['\r', '\n'], " ");
            if *allowed {
                output::line(&format!("{}: {one_line}", from.short()))
            } else {
                output::line(&format!(
                    "{} (contact request, not accepted; allow with --from {from}): {one_line}",
                    from.short()
                ))
            }
        }
        MessageEvent::Receipt { from, msg_id, kind } if args.receipts => {
            let kind = kind.name();
            if ctx.json {
                return output::json_line(&json!({
                    "type": "receipt",
                    "from": from.to_did(),
                    "msgId": msg_id.to_string(),
                    "kind": kind,
                }));
            }
            output::line(&format!(
                "{}: receipt: message {msg_id} {kind}",
                from.short()
            ))
        }
        _ => Ok(()),
    }
}
