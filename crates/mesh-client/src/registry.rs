//! The registry client: publish our signed Agent Card, fetch and search
//! others' — verifying every card's signature here, so a registry can never
//! alter a card unnoticed — delete our card with a signed request, and
//! publish revocations. HTTP through reqwest: hyper + rustls (ring)
//! natively, `fetch` in browsers and Workers.

use mesh_core::card::SignedCard;
use mesh_core::registry::RegistryRequest;
use mesh_core::revocation::Revocation;
use mesh_core::{AgentId, Identity};
use serde::Deserialize;

use crate::error::ClientError;

/// A card from the registry, verified, with the relay's view of presence.
#[derive(Debug, Clone)]
pub struct CardEntry {
    /// The verified card.
    pub card: SignedCard,
    /// Whether the agent is connected to the relay now.
    pub online: bool,
    /// When the relay last saw it (Unix ms).
    pub last_seen_ms: Option<u64>,
}

/// Registry search parameters; all optional.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Skill id or tag, exact.
    pub capability: Option<String>,
    /// Free text (every word matches as a prefix).
    pub text: Option<String>,
    /// Only agents connected now.
    pub online_only: bool,
    /// Page size (1–100; the registry's default when `None`).
    pub limit: Option<u32>,
    /// Continue after a previous page.
    pub cursor: Option<String>,
}

/// One page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    /// Verified cards. Cards that fail verification are left out and
    /// counted in `rejected`.
    pub items: Vec<CardEntry>,
    /// Cards the registry returned that did not verify.
    pub rejected: usize,
    /// Cursor for the next page, if there is one.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct WireEntry {
    card: serde_json::Value,
    presence: WirePresence,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePresence {
    online: bool,
    last_seen: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePage {
    items: Vec<WireEntry>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    error: WireErrorBody,
}

#[derive(Deserialize)]
struct WireErrorBody {
    code: String,
    message: String,
}

/// Talks to one relay's registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
}

fn verify_entry(e: WireEntry) -> Result<CardEntry, ClientError> {
    let raw = serde_json::to_vec(&e.card).map_err(|err| ClientError::Protocol(err.to_string()))?;
    let card = SignedCard::from_json(&raw).map_err(|err| {
        ClientError::Protocol(format!("registry returned an invalid card: {err}"))
    })?;
    Ok(CardEntry {
        card,
        online: e.presence.online,
        last_seen_ms: e.presence.last_seen,
    })
}

impl RegistryClient {
    /// The registry of the relay whose WebSocket URL is `relay_url`
    /// (`ws://host:port/v1/ws` → `http://host:port`, `wss` → `https`).
    pub fn for_relay(relay_url: &str) -> Result<Self, ClientError> {
        let (scheme, rest) = relay_url
            .split_once("://")
            .ok_or_else(|| ClientError::BadRequest(format!("not a URL: {relay_url}")))?;
        let scheme = match scheme {
            "ws" | "http" => "http",
            "wss" | "https" => "https",
            other => {
                return Err(ClientError::BadRequest(format!(
                    "unsupported scheme {other}"
                )))
            }
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        Self::new(&format!("{scheme}://{authority}"))
    }

    /// A registry at `base_url` (e.g. `https://relay.example.org`).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        #[cfg(not(target_arch = "wasm32"))]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(RegistryClient {
            base: base_url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn error(resp: reqwest::Response) -> ClientError {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<WireError>(&text) {
            Ok(e) => ClientError::Registry {
                status,
                code: e.error.code,
                message: e.error.message,
            },
            Err(_) => ClientError::Registry {
                status,
                code: "http_error".into(),
                message: text.chars().take(200).collect(),
            },
        }
    }

    /// Passes a 2xx response through; turns anything else into the
    /// registry's typed error.
    async fn success(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(Self::error(resp).await)
        }
    }

    fn net(e: reqwest::Error) -> ClientError {
        ClientError::Registry {
            status: 0,
            code: "unreachable".into(),
            message: e.to_string(),
        }
    }

    /// Publishes (creates or replaces) a signed card; returns its sequence
    /// number as stored.
    pub async fn publish(&self, card: &SignedCard) -> Result<u64, ClientError> {
        let url = format!("{}/v1/agents/{}", self.base, card.agent_id());
        let resp = self
            .http
            .put(url)
            .header("content-type", "application/json")
            .body(card.to_json())
            .send()
            .await
            .map_err(Self::net)?;
        Self::success(resp).await?;
        Ok(card.seq())
    }

    /// Fetches and verifies `agent`'s card; `None` if it has none.
    pub async fn get(&self, agent: &AgentId) -> Result<Option<CardEntry>, ClientError> {
        let url = format!("{}/v1/agents/{}", self.base, agent);
        let resp = self.http.get(url).send().await.map_err(Self::net)?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let resp = Self::success(resp).await?;
        let entry: WireEntry = resp
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let entry = verify_entry(entry)?;
        if entry.card.agent_id() != *agent {
            return Err(ClientError::Protocol(
                "registry returned another agent's card".into(),
            ));
        }
        Ok(Some(entry))
    }

    /// Searches the registry; every returned card is verified.
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchPage, ClientError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(c) = &q.capability {
            params.push(("capability", c.clone()));
        }
        if let Some(t) = &q.text {
            params.push(("q", t.clone()));
        }
        if q.online_only {
            params.push(("online", "true".into()));
        }
        if let Some(l) = q.limit {
            params.push(("limit", l.to_string()));
        }
        if let Some(c) = &q.cursor {
            params.push(("cursor", c.clone()));
        }
        let resp = self
            .http
            .get(format!("{}/v1/agents", self.base))
            .query(&params)
            .send()
            .await
            .map_err(Self::net)?;
        let resp = Self::success(resp).await?;
        let page: WirePage = resp
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut items = Vec::new();
        let mut rejected = 0;
        for e in page.items {
            match verify_entry(e) {
                Ok(entry) => items.push(entry),
                Err(_) => rejected += 1,
            }
        }
        Ok(SearchPage {
            items,
            rejected,
            next_cursor: page.next_cursor,
        })
    }

    /// Withdraws our own card with a signed, fresh request.
    pub async fn delete(&self, identity: &Identity) -> Result<(), ClientError> {
        let path = format!("/v1/agents/{}", identity.agent_id());
        let signed = RegistryRequest::new_random(identity, "DELETE", &path, crate::rt::unix_ms())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self
            .http
            .delete(format!("{}{}", self.base, path))
            .header("authorization", signed.to_authorization())
            .send()
            .await
            .map_err(Self::net)?;
        Self::success(resp).await?;
        Ok(())
    }

    /// Publishes a revocation of a key (normally our own).
    pub async fn revoke(&self, revocation: &Revocation) -> Result<(), ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/revocations", self.base))
            .header("content-type", "application/json")
            .body(revocation.to_json())
            .send()
            .await
            .map_err(Self::net)?;
        Self::success(resp).await?;
        Ok(())
    }
}
