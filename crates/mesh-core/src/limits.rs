//! Every number that bounds the protocol, in one place.
//!
//! docs/PROTOCOL.md ("Limits") lists the same numbers; a test keeps the two
//! in agreement. Relay operators may lower the relay-side limits (`mesh-relay`
//! has its own defaults module for the tunable ones); the values here are the
//! wire maxima every implementation must accept.

/// Protocol version carried in the first byte of every client↔relay frame.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest Noise message (handshake or transport), ciphertext and tag
/// included. Fixed by the Noise specification.
pub const NOISE_MAX_MESSAGE: usize = 65_535;

/// Authentication tag added by ChaChaPoly to every encrypted Noise payload.
pub const NOISE_TAG_LEN: usize = 16;

/// Header of an end-to-end fragment inside the encryption:
/// message number (u32), fragment index (u16), fragment count (u16).
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// Application bytes carried by one fragment (one Noise transport message).
pub const MAX_FRAGMENT_PAYLOAD: usize = NOISE_MAX_MESSAGE - NOISE_TAG_LEN - FRAGMENT_HEADER_LEN;

/// Largest body of one application payload (request, response, chunk, chat
/// text). 1 MiB, carried in at most [`MAX_FRAGMENTS`] fragments.
pub const MAX_APP_BODY: usize = 1024 * 1024;

/// Largest encoded application message: the body plus its header (kind,
/// ids, a capability name of at most [`MAX_CAPABILITY_LEN`] bytes, or an
/// error message of at most [`MAX_ERROR_MESSAGE_LEN`] bytes).
pub const MAX_APP_MESSAGE: usize = MAX_APP_BODY + 1024;

/// Most fragments one application message may be split into.
pub const MAX_FRAGMENTS: usize = MAX_APP_MESSAGE.div_ceil(MAX_FRAGMENT_PAYLOAD);

/// Header of an end-to-end transport envelope: kind (u8), session id (u64),
/// nonce (u64).
pub const TRANSPORT_HEADER_LEN: usize = 1 + 8 + 8;

/// Header of an end-to-end handshake envelope: kind (u8), session id (u64).
pub const HANDSHAKE_HEADER_LEN: usize = 1 + 8;

/// Largest end-to-end envelope, i.e. the largest opaque body of a routed
/// frame.
pub const MAX_SEALED_BODY: usize = TRANSPORT_HEADER_LEN + NOISE_MAX_MESSAGE;

/// Header of a routed frame (`Send`, `Deliver`): version, kind, flags,
/// peer id (32), message id (u64).
pub const ROUTED_HEADER_LEN: usize = 3 + 32 + 8;

/// Largest client↔relay frame of any kind.
pub const MAX_FRAME_LEN: usize = ROUTED_HEADER_LEN + MAX_SEALED_BODY;

/// Longest relay URL a client may put in its auth response, in bytes.
pub const MAX_RELAY_URL_LEN: usize = 512;

/// Longest human-readable message in an error frame or error reply, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 512;

/// Longest capability name, in bytes.
pub const MAX_CAPABILITY_LEN: usize = 128;

/// Width of the anti-replay window, in messages. A transport nonce more than
/// this far behind the highest one seen is rejected as too old.
pub const REPLAY_WINDOW: u64 = 4096;

/// Messages sent on one session before the sender starts a fresh handshake
/// (re-key). The old session stays usable until the new one is up.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 20;

/// Age after which the sender re-keys a session, in milliseconds (1 hour).
pub const REKEY_AFTER_MS: u64 = 60 * 60 * 1000;

/// Hard ceiling of messages on one session: past it nothing more is sent on
/// it, whether or not a re-key succeeded.
pub const REJECT_AFTER_MESSAGES: u64 = 1 << 40;

/// How long a superseded session still accepts incoming messages, so that
/// messages in flight during a re-key are not lost (milliseconds).
pub const SESSION_GRACE_MS: u64 = 2 * 60 * 1000;

/// Default lifetime of an unfinished handshake (milliseconds). Generous,
/// because the peer may be offline and its relay inbox holds the first
/// message until it returns.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 60 * 1000;

/// Lifetime of an unfinished handshake once the relay has reported its
/// first message `queued` (the peer is offline and its inbox holds the
/// message): as long as a relay keeps inbox frames by default, 7 days
/// (milliseconds).
pub const PARKED_HANDSHAKE_TIMEOUT_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Application messages queued per peer while a handshake is in progress.
pub const MAX_PENDING_PER_PEER: usize = 256;

/// Bytes of incomplete fragmented messages held per peer.
pub const MAX_REASSEMBLY_BYTES_PER_PEER: usize = 4 * MAX_APP_MESSAGE;

/// Age after which an incomplete fragmented message is discarded (ms).
pub const REASSEMBLY_TIMEOUT_MS: u64 = 60 * 1000;

/// Lifetime of a relay auth challenge (milliseconds).
pub const AUTH_TIMEOUT_MS: u64 = 5 * 1000;

/// Lifetime of a resume token (milliseconds).
pub const RESUME_TOKEN_TTL_MS: u64 = 2 * 60 * 1000;

/// Default heartbeat interval announced by the relay (milliseconds).
pub const HEARTBEAT_INTERVAL_MS: u64 = 15 * 1000;

/// Heartbeats that may go unanswered before a connection is declared dead.
pub const HEARTBEAT_MISSES: u32 = 3;

/// Largest serialized Agent Card, in bytes.
pub const MAX_CARD_LEN: usize = 64 * 1024;

/// Deepest nesting of arrays and objects in an Agent Card (the card object
/// is 1; its input schemas are what can nest). Well below
/// [`MAX_JSON_DEPTH`], so a card still reads inside a registry answer.
pub const MAX_CARD_DEPTH: usize = 64;

/// How far a signed registry request's timestamp may be from the server's
/// clock (milliseconds).
pub const REGISTRY_REQUEST_SKEW_MS: u64 = 5 * 60 * 1000;

/// Longest Agent Card `name` and skill `name`, in characters.
pub const MAX_CARD_NAME_LEN: usize = 128;

/// Longest Agent Card `description` and skill `description`, in characters.
pub const MAX_CARD_DESCRIPTION_LEN: usize = 4096;

/// Longest Agent Card `version` string, in characters.
pub const MAX_CARD_VERSION_LEN: usize = 64;

/// Most skills one Agent Card may list.
pub const MAX_CARD_SKILLS: usize = 64;

/// Most tags one skill may carry.
pub const MAX_SKILL_TAGS: usize = 32;

/// Longest skill id and skill tag, in characters.
pub const MAX_SKILL_TAG_LEN: usize = 64;

/// Longest URL anywhere in an Agent Card (relay, interface, provider, icon,
/// documentation), in bytes.
pub const MAX_CARD_URL_LEN: usize = 512;

/// Longest media type in an Agent Card's input/output modes, in bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 128;

/// Largest integer that JSON carries exactly everywhere (2^53 − 1, the
/// I-JSON / JavaScript safe-integer bound). Timestamps and sequence numbers
/// in signed JSON must not exceed it, and no integer in a signed card may.
pub const MAX_JSON_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Most significant digits a JSON number that is not a plain integer may
/// have: every decimal of at most 15 digits (IEEE double's `DBL_DIG`) reads
/// as a double and prints back unchanged, so every reader agrees on it. See
/// [`crate::json`].
pub const MAX_JSON_SIGNIFICANT_DIGITS: usize = 15;

/// Largest decimal exponent (of the first significant digit, either sign)
/// of a JSON number that is not a plain integer: ±307 keeps every accepted
/// number a normal, finite double.
pub const MAX_JSON_DECIMAL_EXPONENT: u32 = 307;

/// Deepest nesting of arrays and objects the JSON reader accepts.
pub const MAX_JSON_DEPTH: usize = 128;

/// Longest revocation `reason`, in UTF-8 bytes.
pub const MAX_REVOCATION_REASON_LEN: usize = 256;

/// Largest serialized revocation statement, in bytes.
pub const MAX_REVOCATION_LEN: usize = 4096;

/// Longest HTTP method in a signed registry request, in bytes.
pub const MAX_REGISTRY_METHOD_LEN: usize = 16;

/// Longest request target (path and query) in a signed registry request,
/// in bytes.
pub const MAX_REGISTRY_PATH_LEN: usize = 2048;

/// Largest `Authorization` value of a signed registry request, in bytes.
pub const MAX_REGISTRY_HEADER_LEN: usize = 4096;
