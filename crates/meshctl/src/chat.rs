//! Sending one chat message and waiting for the first news of it: where
//! `meshctl send` and the MCP `send_message` tool stop waiting.

use futures::StreamExt;
use mesh_client::{ClientError, MeshClient, MessageEvent};
use mesh_core::app::ReceiptKind;
use mesh_core::AgentId;

/// The first news of a sent chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// The peer's receipt: it has the message (or has read it).
    Receipt(ReceiptKind),
    /// The relay stored it: the peer is offline and gets it when it
    /// reconnects.
    Queued,
}

impl News {
    /// Its name in JSON output: `delivered`, `read` or `queued`.
    pub fn name(self) -> &'static str {
        match self {
            News::Receipt(kind) => kind.name(),
            News::Queued => "queued",
        }
    }
}

/// Sends `text` to `peer` and waits for the first news of it; `Ok(None)`
/// when the client closed first. The caller bounds the wait.
pub async fn send_and_wait(
    client: &MeshClient,
    peer: AgentId,
    text: &str,
) -> Result<Option<News>, ClientError> {
    // Subscribed before sending, so no news can come before we listen.
    let mut events = client.messages();
    let id = client.send_message(peer, text)?;
    while let Some(event) = events.next().await {
        match event {
            MessageEvent::Receipt { from, msg_id, kind } if msg_id == id && from == peer => {
                return Ok(Some(News::Receipt(kind)))
            }
            MessageEvent::Queued { msg_id, .. } if msg_id == id => return Ok(Some(News::Queued)),
            MessageEvent::Failed { msg_id, error, .. } if msg_id == id => return Err(error),
            _ => {}
        }
    }
    Ok(None)
}
