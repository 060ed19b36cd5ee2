//! What `meshctl mcp --listen` and `meshctl gateway` share as local HTTP
//! servers: a loopback-only listening address, a bearer token compared in
//! constant time, and errors as `{"error": {"code", "message"}}`.
//!
//! Both servers hand our identity's powers to whoever can reach them, so
//! neither ever serves without a token, and neither binds anything but a
//! loopback address: a remote caller would need a reverse proxy with TLS in
//! front, chosen on purpose.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in a generated token (256 bits, printed as 64 hex digits).
pub const TOKEN_BYTES: usize = 32;
/// The shortest token accepted from `--token` or the environment.
pub const MIN_TOKEN_CHARS: usize = 32;

/// Reads `--listen`: `HOST:PORT` with a loopback host, or a bare port on
/// 127.0.0.1.
pub fn listen_addr(text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    let addr = match text.parse::<u16>() {
        Ok(port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        Err(_) => match text.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) if text.starts_with("localhost:") => {
                let port = text["localhost:".len()..]
                    .parse::<u16>()
                    .with_context(|| format!("invalid --listen {text:?}: bad port"))?;
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            }
            Err(_) => bail!(
                "invalid --listen {text:?}: expected HOST:PORT such as 127.0.0.1:8765, or a port"
            ),
        },
    };
    if !addr.ip().is_loopback() {
        bail!(
            "refusing --listen {addr}: only loopback addresses (127.0.0.1, [::1]) are served, \
             since whoever reaches this port acts as our agent; put a TLS reverse proxy in \
             front to reach it from elsewhere"
        );
    }
    Ok(addr)
}

/// The bearer token a local server insists on.
#[derive(Clone)]
pub struct BearerToken {
    /// SHA-256 of the token: compared in constant time, and of fixed length
    /// so the comparison does not reveal the token's length either.
    digest: Arc<[u8; 32]>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(…)")
    }
}

impl BearerToken {
    /// The token given by the operator, or a fresh random one. Returns the
    /// token and, when it was generated, its text to print.
    pub fn given_or_generated(
        given: Option<&str>,
    ) -> anyhow::Result<(BearerToken, Option<String>)> {
        match given {
            Some(text) => {
                let text = text.trim();
                if text.chars().count() < MIN_TOKEN_CHARS {
                    bail!(
                        "the token is too short: give at least {MIN_TOKEN_CHARS} characters \
                         (e.g. `openssl rand -hex 32`), or leave it out to have one generated"
                    );
                }
                if !text.bytes().all(|b| b.is_ascii_graphic()) {
                    bail!("the token must be printable ASCII without spaces");
                }
                Ok((BearerToken::new(text), None))
            }
            None => {
                let mut raw = [0u8; TOKEN_BYTES];
                getrandom::fill(&mut raw)
                    .map_err(|e| anyhow::anyhow!("cannot generate a token: {e}"))?;
                let text = hex::encode(raw);
                Ok((BearerToken::new(&text), Some(text)))
            }
        }
    }

    fn new(text: &str) -> BearerToken {
        BearerToken {
            digest: Arc::new(Sha256::digest(text.as_bytes()).into()),
        }
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let offered: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        bool::from(offered.ct_eq(&*self.digest))
    }
}

/// Whether a `Host` header names this machine by a loopback name: what a
/// page that rebinds its own domain name to 127.0.0.1 cannot send.
pub fn is_loopback_host(host: Option<&HeaderValue>) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A refusal sent before the request body was read: the body is left
/// unread, so the connection cannot carry another request. Saying so
/// (`Connection: close`) keeps a client from sending its next request on a
/// connection the server is about to close (which a client sees as a reset).
pub fn refuse(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Axum middleware: 403 unless the request is addressed to a loopback host,
/// 401 unless it carries the token.
pub async fn require_token(
    State(token): State<BearerToken>,
    request: Request,
    next: Next,
) -> Response {
    if !is_loopback_host(request.headers().get(header::HOST)) {
        return refuse(error_response(
            StatusCode::FORBIDDEN,
            "denied",
            "requests must be addressed to a loopback host (localhost, 127.0.0.1, [::1])",
        ));
    }
    if token.accepts(request.headers().get(header::AUTHORIZATION)) {
        return next.run(request).await;
    }
    let message = if request.headers().contains_key(header::AUTHORIZATION) {
        "wrong token: send the token meshctl printed at start (or gave with --token) as `Authorization: Bearer <token>`"
    } else {
        "missing token: send `Authorization: Bearer <token>` with the token meshctl printed at start"
    };
    let mut response = error_response(StatusCode::UNAUTHORIZED, "not_authenticated", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"meshctl\""),
    );
    refuse(response)
}

/// `{"error": {"code", "message"}}` with `status`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// Binds `addr`, naming the address when that fails.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_a_port_or_a_loopback_address_only() {
        assert_eq!(listen_addr("8765").unwrap().to_string(), "127.0.0.1:8765");
        assert_eq!(
            listen_addr("127.0.0.1:0").unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert_eq!(listen_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert_eq!(
            listen_addr("localhost:80").unwrap().to_string(),
            "127.0.0.1:80"
        );
        assert!(listen_addr("0.0.0.0:8765").is_err());
        assert!(listen_addr("192.168.1.2:8765").is_err());
        assert!(listen_addr("nonsense").is_err());
    }

    #[test]
    fn tokens_match_exactly_and_only_as_bearer() {
        let (token, printed) = BearerToken::given_or_generated(None).unwrap();
        let text = printed.unwrap();
        assert_eq!(text.len(), 2 * TOKEN_BYTES);
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(token.accepts(Some(&header(&format!("Bearer {text}")))));
        assert!(token.accepts(Some(&header(&format!("bearer  {text}")))));
        assert!(!token.accepts(Some(&header(&format!("Basic {text}")))));
        assert!(!token.accepts(Some(&header(&format!("Bearer {text}x")))));
        assert!(!token.accepts(Some(&header("Bearer"))));
        assert!(!token.accepts(None));
        let (other, _) = BearerToken::given_or_generated(None).unwrap();
        assert!(!other.accepts(Some(&header(&format!("Bearer {text}")))));
    }

    #[test]
    fn only_loopback_host_names_pass() {
        let ok = |h: &str| is_loopback_host(Some(&HeaderValue::from_str(h).unwrap()));
        assert!(ok("127.0.0.1:8790"));
        assert!(ok("localhost:8790"));
        assert!(ok("LOCALHOST"));
        assert!(ok("[::1]:8790"));
        assert!(ok("127.1.2.3"));
        assert!(!ok("evil.example:8790"));
        assert!(!ok("localhost.evil.example"));
        assert!(!ok("192.168.1.2:8790"));
        assert!(!ok(""));
        assert!(!is_loopback_host(None));
    }

    #[test]
    fn a_given_token_must_be_long_enough() {
        assert!(BearerToken::given_or_generated(Some("short")).is_err());
        assert!(BearerToken::given_or_generated(Some(&"x".repeat(31))).is_err());
        let long = "y".repeat(32);
        let (token, printed) = BearerToken::given_or_generated(Some(&long)).unwrap();
        assert!(printed.is_none());
        let value = HeaderValue::from_str(&format!("Bearer {long}")).unwrap();
        assert!(token.accepts(Some(&value)));
    }
}
