//! All durable state of the relay, in one SQLite database.
//!
//! One file (or `:memory:`) holds the offline inboxes, presence of known
//! agents, the registry of signed Agent Cards with its search index,
//! revocations, and the nonces of signed registry requests. Embedding SQLite
//! means the relay runs with no other service, and one database means a
//! revocation can drop a card and an inbox in one transaction.
//!
//! # Durability
//!
//! File databases run in WAL mode with `synchronous=FULL`: every commit
//! fsyncs the WAL, so a frame reported as queued survives a SIGKILL (or a
//! power cut) of the relay. `NORMAL` would be faster but may lose the last
//! commits on power loss, which would break the "nothing lost" promise.
//!
//! # Concurrency
//!
//! A [`Store`] is one connection behind a mutex. Every method is synchronous
//! and short; async callers run them through [`Store::call`], which moves the
//! work to tokio's blocking pool so no database call ever stalls a runtime
//! thread. A panic while the lock is held poisons nothing: the connection is
//! recovered (an open transaction rolls back when it is dropped).
//!
//! # Encoding
//!
//! Agent ids are stored as their 32 key bytes. Times are Unix milliseconds
//! (saturated to `i64::MAX`). Message ids use the full `u64` range, so they
//! are stored bit-for-bit as SQLite's signed 64-bit integers. A row that no
//! longer decodes is reported as [`StoreError::Corrupt`], never a panic.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use mesh_core::card::SignedCard;
use mesh_core::limits::MAX_CARD_NAME_LEN;
use mesh_core::revocation::Revocation;
use mesh_core::AgentId;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

/// How long a statement waits for a lock held by another connection (e.g.
/// an operator's `sqlite3` shell) before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest capability filter accepted in a search, in bytes.
const MAX_SEARCH_CAPABILITY_LEN: usize = 256;

/// Longest free-text query accepted in a search, in bytes.
const MAX_SEARCH_TEXT_LEN: usize = 256;

/// Most terms of a free-text query that are used; the rest are ignored.
const MAX_SEARCH_TERMS: usize = 16;

/// Largest page of search results the store serves (the HTTP layer clamps
/// to the same number, [`crate::defaults::SEARCH_MAX_LIMIT`]).
const MAX_SEARCH_LIMIT: u32 = crate::defaults::SEARCH_MAX_LIMIT;

/// Version byte at the start of a decoded search cursor.
const CURSOR_VERSION: u8 = 1;

/// The schema, one migration per version. `PRAGMA user_version` records how
/// many have been applied; a migration runs in the same transaction as the
/// version bump, so a crash leaves the database at one version or the next.
const MIGRATIONS: &[&str] = &[SCHEMA_V1];

/// The schema version this build writes (the number of migrations).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Version 1: inboxes, presence, cards with search index, revocations,
/// registry nonces.
const SCHEMA_V1: &str = r#"
-- Offline inboxes. AUTOINCREMENT so that an id is never reused: a reader
-- paging with `id > after_id` must not miss a frame stored after the
-- highest one was acknowledged.
CREATE TABLE inbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    dst       BLOB    NOT NULL CHECK (length(dst) = 32),
    src       BLOB    NOT NULL CHECK (length(src) = 32),
    msg_id    INTEGER NOT NULL,
    body      BLOB    NOT NULL,
    len       INTEGER NOT NULL,
    stored_ms INTEGER NOT NULL,
    UNIQUE (dst, src, msg_id)
);
CREATE INDEX inbox_by_dst ON inbox (dst, id);
CREATE INDEX inbox_by_age ON inbox (stored_ms);

-- Per-recipient depth, kept exact by triggers in the same transaction as
-- every insert and delete, so the limit check on each push is one lookup.
CREATE TABLE inbox_depth (
    dst    BLOB    PRIMARY KEY,
    frames INTEGER NOT NULL,
    bytes  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER inbox_depth_on_insert AFTER INSERT ON inbox BEGIN
    INSERT INTO inbox_depth (dst, frames, bytes) VALUES (new.dst, 1, new.len)
    ON CONFLICT (dst) DO UPDATE SET frames = frames + 1, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER inbox_depth_on_delete AFTER DELETE ON inbox BEGIN
    UPDATE inbox_depth SET frames = frames - 1, bytes = bytes - old.len WHERE dst = old.dst;
    DELETE FROM inbox_depth WHERE dst = old.dst AND frames <= 0;
END;

-- Agents that have connected at least once, and whether they are online.
CREATE TABLE agents (
    agent        BLOB    PRIMARY KEY CHECK (length(agent) = 32),
    online       INTEGER NOT NULL DEFAULT 0,
    last_seen_ms INTEGER
) WITHOUT ROWID;

-- Signed Agent Cards. `id` is explicit so that it stays stable (VACUUM may
-- renumber implicit rowids) and can key the full-text index.
CREATE TABLE cards (
    id          INTEGER PRIMARY KEY,
    agent       BLOB    NOT NULL UNIQUE CHECK (length(agent) = 32),
    seq         INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    json        BLOB    NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX cards_by_name ON cards (name COLLATE NOCASE, agent);

-- Skill ids and tags, for exact capability search.
CREATE TABLE card_terms (
    card_id INTEGER NOT NULL REFERENCES cards (id) ON DELETE CASCADE,
    kind    TEXT    NOT NULL CHECK (kind IN ('id', 'tag')),
    term    TEXT    NOT NULL,
    PRIMARY KEY (card_id, kind, term)
) WITHOUT ROWID;
CREATE INDEX card_terms_by_term ON card_terms (term, card_id);

-- Free-text index; rowid = cards.id.
CREATE VIRTUAL TABLE cards_fts USING fts5 (
    name, description, skills,
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER cards_fts_on_delete AFTER DELETE ON cards BEGIN
    DELETE FROM cards_fts WHERE rowid = old.id;
END;

-- Highest card seq ever accepted per agent. Kept when a card is deleted, so
-- a captured old card cannot be re-published after its agent withdrew it.
CREATE TABLE card_seq (
    agent BLOB    PRIMARY KEY,
    seq   INTEGER NOT NULL
) WITHOUT ROWID;

-- Signed revocation statements (the JSON form, re-verifiable).
CREATE TABLE revocations (
    agent         BLOB    PRIMARY KEY CHECK (length(agent) = 32),
    revoked_at_ms INTEGER NOT NULL,
    statement     TEXT    NOT NULL,
    stored_ms     INTEGER NOT NULL
) WITHOUT ROWID;

-- Nonces of accepted signed registry requests, until they expire.
CREATE TABLE registry_nonces (
    agent      BLOB    NOT NULL,
    nonce      BLOB    NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (agent, nonce)
) WITHOUT ROWID;
CREATE INDEX registry_nonces_by_expiry ON registry_nonces (expires_ms);
"#;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (I/O, full disk, locked database, …).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A search cursor is not one this store handed out.
    #[error("invalid search cursor")]
    BadCursor,
    /// A search query breaks a limit; says which.
    #[error("invalid search query: {0}")]
    BadQuery(&'static str),
    /// A stored row does not decode (edited or damaged database); says what.
    #[error("corrupt database row: {0}")]
    Corrupt(String),
    /// The database was written by a newer relay with a schema this build
    /// does not know; opening it could damage it.
    #[error("database schema version {found} is newer than this relay supports ({supported})")]
    SchemaTooNew {
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The blocking task running the operation panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Join(#[source] tokio::task::JoinError),
}

/// Whether an agent is connected, and when it was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    /// The agent holds an authenticated connection to this relay.
    pub online: bool,
    /// When the agent last connected or disconnected (Unix ms); `None` if it
    /// never connected here. Serialized as `lastSeen`.
    #[serde(rename = "lastSeen")]
    pub last_seen_ms: Option<u64>,
}

/// Bounds of one agent's offline inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    /// Most frames held.
    pub max_frames: u64,
    /// Most body bytes held.
    pub max_bytes: u64,
}

/// What became of a frame offered to an inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxPush {
    /// Stored durably under `id`.
    Stored {
        /// Inbox row id (increasing; the order of delivery).
        id: i64,
    },
    /// The same (destination, sender, message id) is already stored.
    Duplicate {
        /// The id of the stored copy.
        id: i64,
    },
    /// Not stored: the inbox is at its frame or byte limit.
    Full {
        /// `true` if the byte limit refused it, `false` the frame limit.
        by_bytes: bool,
    },
}

/// A frame waiting in an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxFrame {
    /// Inbox row id (increasing in storage order).
    pub id: i64,
    /// The authenticated sender.
    pub src: AgentId,
    /// The sender's message id.
    pub msg_id: u64,
    /// The sealed body, as received.
    pub body: Bytes,
    /// When it was stored (Unix ms).
    pub stored_ms: u64,
}

/// What became of a card offered to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardPut {
    /// Stored; `created` is `false` when it replaced an older card.
    Stored {
        /// No card of this agent was stored before.
        created: bool,
    },
    /// Refused: its `seq` is not greater than the highest one accepted for
    /// this agent (no rollback, also not after a delete).
    Stale {
        /// The highest accepted seq.
        stored_seq: u64,
    },
    /// Refused: the agent's key is revoked.
    Revoked,
}

/// A registry search. All filters are combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Exact skill id or skill tag.
    pub capability: Option<String>,
    /// Free text over name, description, and skill ids, names, descriptions
    /// and tags; each word is matched as a prefix, all words must match.
    /// Empty (or only punctuation) means no text filter.
    pub text: Option<String>,
    /// Only agents online now.
    pub online_only: bool,
    /// Page size, 1 to [`crate::defaults::SEARCH_MAX_LIMIT`].
    pub limit: u32,
    /// Where to continue: a [`SearchPage::next_cursor`] from the same query.
    pub cursor: Option<String>,
}

/// A stored card with the agent's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    /// The agent the card describes.
    pub agent: AgentId,
    /// The canonical signed card JSON (RFC 8785), as verified.
    pub json: Vec<u8>,
    /// The agent's presence.
    pub presence: Presence,
}

/// One page of search results, ordered by name (case-insensitive), then
/// agent id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// The cards on this page.
    pub items: Vec<CardRecord>,
    /// Cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The relay's durable state: a shared handle to one SQLite connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, or an in-memory
    /// database for `":memory:"`, and brings its schema up to date.
    pub fn open(path: &str) -> Result<Store, StoreError> {
        let in_memory = path == ":memory:";
        let mut conn = if in_memory {
            Connection::open_in_memory()?
        } else {
            Connection::open(path)?
        };
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if !in_memory {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                // Still durable with synchronous=FULL, only slower.
                tracing::warn!(path, mode, "SQLite could not switch to WAL mode");
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on tokio's blocking pool: the way async code uses the store.
    pub async fn call<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(StoreError::Join)?
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic under the lock cannot leave a half-done write behind: an
        // open transaction rolls back when it is dropped during unwinding.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies the WAL into the main file and truncates it (for shutdown).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    // ----- inbox -------------------------------------------------------

    /// Stores a frame for offline `dst` unless the same (dst, src, msg_id)
    /// is already stored or the inbox would exceed `limits`.
    pub fn inbox_push(
        &self,
        dst: &AgentId,
        src: &AgentId,
        msg_id: u64,
        body: &[u8],
        now_ms: u64,
        limits: &InboxLimits,
    ) -> Result<InboxPush, StoreError> {
        self.push(dst, src, msg_id, body, now_ms, Some(limits))
    }

    /// Stores a frame ignoring the inbox limits: for frames the relay has
    /// already accepted (forwarded but unacknowledged when a connection
    /// dropped), which must never be lost. Duplicates are still detected.
    pub fn inbox_force_push(
        &self,
        dst: &AgentId,
        src: &AgentId,
        msg_id: u64,
        body: &[u8],
        now_ms: u64,
    ) -> Result<InboxPush, StoreError> {
        self.push(dst, src, msg_id, body, now_ms, None)
    }

    /// Stores several already-accepted frames for `dst` ignoring limits, in
    /// one transaction (one fsync instead of one per frame): what a dropped
    /// connection's unacknowledged frames need. Returns one outcome per
    /// frame, in order.
    pub fn inbox_force_push_all<'a, I>(
        &self,
        dst: &AgentId,
        frames: I,
        now_ms: u64,
    ) -> Result<Vec<InboxPush>, StoreError>
    where
        I: IntoIterator<Item = (&'a AgentId, u64, &'a [u8])>,
    {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::new();
        for (src, msg_id, body) in frames {
            out.push(push_in(&tx, dst, src, msg_id, body, now_ms, None)?);
        }
        tx.commit()?;
        Ok(out)
    }

    fn push(
        &self,
        dst: &AgentId,
        src: &AgentId,
        msg_id: u64,
        body: &[u8],
        now_ms: u64,
        limits: Option<&InboxLimits>,
    ) -> Result<InboxPush, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = push_in(&tx, dst, src, msg_id, body, now_ms, limits)?;
        if matches!(out, InboxPush::Stored { .. }) {
            tx.commit()?;
        }
        Ok(out)
    }

    /// Up to `limit` frames for `dst` with an id greater than `after_id`,
    /// oldest first. Start with `after_id = 0`.
    pub fn inbox_load(
        &self,
        dst: &AgentId,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<InboxFrame>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, src, msg_id, body, stored_ms FROM inbox
             WHERE dst = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![&dst.as_bytes()[..], after_id, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let src: Vec<u8> = row.get(1)?;
            let body: Vec<u8> = row.get(3)?;
            out.push(InboxFrame {
                id: row.get(0)?,
                src: agent_from_sql(&src)?,
                msg_id: msg_id_from_sql(row.get(2)?),
                body: Bytes::from(body),
                stored_ms: u64_from_sql(row.get(4)?, "inbox.stored_ms")?,
            });
        }
        Ok(out)
    }

    /// Removes the frame (dst, src, msg_id) after its recipient acknowledged
    /// it; `false` if there was none.
    pub fn inbox_ack(&self, dst: &AgentId, src: &AgentId, msg_id: u64) -> Result<bool, StoreError> {
        let conn = self.lock();
        let n = conn
            .prepare_cached("DELETE FROM inbox WHERE dst = ?1 AND src = ?2 AND msg_id = ?3")?
            .execute(params![
                &dst.as_bytes()[..],
                &src.as_bytes()[..],
                msg_id_to_sql(msg_id)
            ])?;
        Ok(n > 0)
    }

    /// Drops every frame waiting for `dst`; returns how many.
    pub fn inbox_purge(&self, dst: &AgentId) -> Result<u64, StoreError> {
        let conn = self.lock();
        let n = conn.execute("DELETE FROM inbox WHERE dst = ?1", [&dst.as_bytes()[..]])?;
        Ok(n as u64)
    }

    /// Drops frames stored more than `max_age_ms` before `now_ms`; returns
    /// how many.
    pub fn inbox_expire(&self, now_ms: u64, max_age_ms: u64) -> Result<u64, StoreError> {
        let cutoff = now_ms.saturating_sub(max_age_ms);
        let conn = self.lock();
        let n = conn.execute(
            "DELETE FROM inbox WHERE stored_ms < ?1",
            [u64_to_sql(cutoff)],
        )?;
        Ok(n as u64)
    }

    /// Frames and body bytes in all inboxes together.
    pub fn inbox_totals(&self) -> Result<(u64, u64), StoreError> {
        let conn = self.lock();
        let (frames, bytes): (i64, i64) = conn.query_row(
            "SELECT COALESCE(SUM(frames), 0), COALESCE(SUM(bytes), 0) FROM inbox_depth",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            u64_from_sql(frames, "inbox_depth.frames")?,
            u64_from_sql(bytes, "inbox_depth.bytes")?,
        ))
    }

    /// Frames and body bytes waiting for `dst`.
    pub fn inbox_depth(&self, dst: &AgentId) -> Result<(u64, u64), StoreError> {
        let conn = self.lock();
        depth(&conn, dst)
    }

    // ----- presence ----------------------------------------------------

    /// Records that `agent` connected (`online`) or disconnected at `now_ms`.
    pub fn presence_set(
        &self,
        agent: &AgentId,
        online: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO agents (agent, online, last_seen_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent) DO UPDATE SET online = excluded.online,
                                               last_seen_ms = excluded.last_seen_ms",
        )?
        .execute(params![&agent.as_bytes()[..], online, u64_to_sql(now_ms)])?;
        Ok(())
    }

    /// Marks every agent offline (at startup: no connection survived the
    /// previous process). Those that were online are last seen at `now_ms`.
    pub fn presence_reset_all(&self, now_ms: u64) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE agents SET online = 0, last_seen_ms = ?1 WHERE online <> 0",
            [u64_to_sql(now_ms)],
        )?;
        Ok(())
    }

    /// The presence of `agent`; offline and never seen if unknown.
    pub fn presence(&self, agent: &AgentId) -> Result<Presence, StoreError> {
        let conn = self.lock();
        let row: Option<(bool, Option<i64>)> = conn
            .prepare_cached("SELECT online, last_seen_ms FROM agents WHERE agent = ?1")?
            .query_row([&agent.as_bytes()[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            None => Ok(Presence::default()),
            Some((online, last_seen)) => presence_from_sql(online, last_seen),
        }
    }

    /// Whether `agent` ever connected here or has a card in the registry,
    /// and is not revoked: whether frames for it may be queued.
    pub fn is_known(&self, agent: &AgentId) -> Result<bool, StoreError> {
        let conn = self.lock();
        let known = conn
            .prepare_cached(
                "SELECT (EXISTS (SELECT 1 FROM agents WHERE agent = ?1)
                         OR EXISTS (SELECT 1 FROM cards WHERE agent = ?1))
                    AND NOT EXISTS (SELECT 1 FROM revocations WHERE agent = ?1)",
            )?
            .query_row([&agent.as_bytes()[..]], |r| r.get(0))?;
        Ok(known)
    }

    // ----- cards -------------------------------------------------------

    /// Stores a verified card unless the agent is revoked or the card's seq
    /// is not above the highest one accepted for the agent.
    pub fn card_put(&self, card: &SignedCard, now_ms: u64) -> Result<CardPut, StoreError> {
        let agent = card.agent_id();
        let key = &agent.as_bytes()[..];
        let content = card.card();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if revoked(&tx, &agent)? {
            return Ok(CardPut::Revoked);
        }
        let high: Option<i64> = tx
            .prepare_cached("SELECT seq FROM card_seq WHERE agent = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        if let Some(high) = high {
            let high = u64_from_sql(high, "card_seq.seq")?;
            if high >= card.seq() {
                return Ok(CardPut::Stale { stored_seq: high });
            }
        }
        tx.execute(
            "INSERT INTO card_seq (agent, seq) VALUES (?1, ?2)
             ON CONFLICT (agent) DO UPDATE SET seq = excluded.seq",
            params![key, u64_to_sql(card.seq())],
        )?;
        let existing: Option<i64> = tx
            .query_row("SELECT id FROM cards WHERE agent = ?1", [key], |r| r.get(0))
            .optional()?;
        let json = card.as_json();
        let card_id = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE cards SET seq = ?2, name = ?3, description = ?4, json = ?5,
                                      updated_ms = ?6
                     WHERE id = ?1",
                    params![
                        id,
                        u64_to_sql(card.seq()),
                        content.name,
                        content.description,
                        json,
                        u64_to_sql(now_ms)
                    ],
                )?;
                tx.execute("DELETE FROM card_terms WHERE card_id = ?1", [id])?;
                tx.execute("DELETE FROM cards_fts WHERE rowid = ?1", [id])?;
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO cards (agent, seq, name, description, json, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        key,
                        u64_to_sql(card.seq()),
                        content.name,
                        content.description,
                        json,
                        u64_to_sql(now_ms)
                    ],
                )?;
                tx.last_insert_rowid()
            }
        };
        {
            let mut term = tx.prepare_cached(
                "INSERT OR IGNORE INTO card_terms (card_id, kind, term) VALUES (?1, ?2, ?3)",
            )?;
            for skill in &content.skills {
                term.execute(params![card_id, "id", skill.id])?;
                for tag in &skill.tags {
                    term.execute(params![card_id, "tag", tag])?;
                }
            }
        }
        let mut skills_text = String::new();
        for skill in &content.skills {
            for part in [&skill.id, &skill.name, &skill.description]
                .into_iter()
                .chain(&skill.tags)
            {
                skills_text.push_str(part);
                skills_text.push('\n');
            }
        }
        tx.execute(
            "INSERT INTO cards_fts (rowid, name, description, skills) VALUES (?1, ?2, ?3, ?4)",
            params![card_id, content.name, content.description, skills_text],
        )?;
        tx.commit()?;
        Ok(CardPut::Stored {
            created: existing.is_none(),
        })
    }

    /// The stored card of `agent`, with its presence.
    pub fn card_get(&self, agent: &AgentId) -> Result<Option<CardRecord>, StoreError> {
        let conn = self.lock();
        let row = conn
            .prepare_cached(
                "SELECT c.json, COALESCE(a.online, 0), a.last_seen_ms
                 FROM cards AS c LEFT JOIN agents AS a ON a.agent = c.agent
                 WHERE c.agent = ?1",
            )?
            .query_row([&agent.as_bytes()[..]], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .optional()?;
        match row {
            None => Ok(None),
            Some((json, online, last_seen)) => Ok(Some(CardRecord {
                agent: *agent,
                json,
                presence: presence_from_sql(online, last_seen)?,
            })),
        }
    }

    /// Withdraws the card of `agent`; `false` if there was none. The highest
    /// seq stays recorded, so older cards stay refused.
    pub fn card_delete(&self, agent: &AgentId) -> Result<bool, StoreError> {
        let conn = self.lock();
        let n = conn.execute(
            "DELETE FROM cards WHERE agent = ?1",
            [&agent.as_bytes()[..]],
        )?;
        Ok(n > 0)
    }

    /// One page of cards matching every filter of `q`. Filters and
    /// pagination are all in one SQL statement (keyset pagination on
    /// (name, agent)), so a page is never short because rows were dropped
    /// after the LIMIT.
    pub fn card_search(&self, q: &SearchQuery) -> Result<SearchPage, StoreError> {
        if q.limit == 0 || q.limit > MAX_SEARCH_LIMIT {
            return Err(StoreError::BadQuery("limit must be between 1 and 100"));
        }
        let mut sql = String::from(
            "SELECT c.agent, c.json, c.name, COALESCE(a.online, 0), a.last_seen_ms
             FROM cards AS c LEFT JOIN agents AS a ON a.agent = c.agent
             WHERE 1",
        );
        let mut args: Vec<Value> = Vec::new();
        if let Some(cap) = q.capability.as_deref().filter(|c| !c.is_empty()) {
            if cap.len() > MAX_SEARCH_CAPABILITY_LEN {
                return Err(StoreError::BadQuery("capability is longer than 256 bytes"));
            }
            args.push(Value::Text(cap.to_owned()));
            sql.push_str(&format!(
                " AND c.id IN (SELECT card_id FROM card_terms WHERE term = ?{})",
                args.len()
            ));
        }
        if let Some(text) = q.text.as_deref() {
            if text.len() > MAX_SEARCH_TEXT_LEN {
                return Err(StoreError::BadQuery("search text is longer than 256 bytes"));
            }
            if let Some(expr) = fts_expression(text) {
                args.push(Value::Text(expr));
                sql.push_str(&format!(
                    " AND c.id IN (SELECT rowid FROM cards_fts WHERE cards_fts MATCH ?{})",
                    args.len()
                ));
            }
        }
        if q.online_only {
            sql.push_str(" AND a.online = 1");
        }
        if let Some(cursor) = q.cursor.as_deref() {
            let (name, agent) = decode_cursor(cursor)?;
            args.push(Value::Text(name));
            let n = args.len();
            args.push(Value::Blob(agent.to_vec()));
            let a = args.len();
            sql.push_str(&format!(
                " AND (c.name COLLATE NOCASE > ?{n}
                       OR (c.name COLLATE NOCASE = ?{n} AND c.agent > ?{a}))"
            ));
        }
        // One more than asked tells whether another page exists.
        args.push(Value::Integer(i64::from(q.limit) + 1));
        sql.push_str(&format!(
            " ORDER BY c.name COLLATE NOCASE, c.agent LIMIT ?{}",
            args.len()
        ));

        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut items = Vec::new();
        let mut last_key: Option<(String, Vec<u8>)> = None;
        let mut more = false;
        while let Some(row) = rows.next()? {
            if items.len() == q.limit as usize {
                more = true;
                break;
            }
            let key: Vec<u8> = row.get(0)?;
            let name: String = row.get(2)?;
            items.push(CardRecord {
                agent: agent_from_sql(&key)?,
                json: row.get(1)?,
                presence: presence_from_sql(row.get(3)?, row.get(4)?)?,
            });
            last_key = Some((name, key));
        }
        let next_cursor = match (more, last_key) {
            (true, Some((name, key))) => Some(encode_cursor(&name, &key)),
            _ => None,
        };
        Ok(SearchPage { items, next_cursor })
    }

    // ----- revocation --------------------------------------------------

    /// Persists a (verified) revocation, withdraws the agent's card and
    /// drops its inbox, in one transaction. Returns `false` if the agent was
    /// already revoked (the first statement is kept).
    pub fn revoke(&self, rev: &Revocation, now_ms: u64) -> Result<bool, StoreError> {
        let agent = rev.agent();
        let key = &agent.as_bytes()[..];
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let inserted = tx.execute(
            "INSERT INTO revocations (agent, revoked_at_ms, statement, stored_ms)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (agent) DO NOTHING",
            params![
                key,
                u64_to_sql(rev.revoked_at_ms()),
                rev.to_json(),
                u64_to_sql(now_ms)
            ],
        )?;
        tx.execute("DELETE FROM cards WHERE agent = ?1", [key])?;
        tx.execute("DELETE FROM inbox WHERE dst = ?1", [key])?;
        tx.commit()?;
        Ok(inserted > 0)
    }

    /// Whether `agent`'s key is revoked.
    pub fn is_revoked(&self, agent: &AgentId) -> Result<bool, StoreError> {
        let conn = self.lock();
        revoked(&conn, agent)
    }

    /// Every revoked agent (to load the relay's refusal set at startup).
    pub fn revoked_all(&self) -> Result<Vec<AgentId>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT agent FROM revocations")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let key: Vec<u8> = row.get(0)?;
            out.push(agent_from_sql(&key)?);
        }
        Ok(out)
    }

    // ----- registry request nonces -------------------------------------

    /// Remembers `(agent, nonce)` of an accepted signed registry request
    /// until `expires_ms`; `false` if it was already remembered (a replay).
    pub fn nonce_insert(
        &self,
        agent: &AgentId,
        nonce: [u8; 16],
        expires_ms: u64,
    ) -> Result<bool, StoreError> {
        let conn = self.lock();
        let n = conn
            .prepare_cached(
                "INSERT INTO registry_nonces (agent, nonce, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (agent, nonce) DO NOTHING",
            )?
            .execute(params![
                &agent.as_bytes()[..],
                &nonce[..],
                u64_to_sql(expires_ms)
            ])?;
        Ok(n > 0)
    }

    /// Forgets nonces that expired before `now_ms`; returns how many.
    pub fn nonce_expire(&self, now_ms: u64) -> Result<u64, StoreError> {
        let conn = self.lock();
        let n = conn.execute(
            "DELETE FROM registry_nonces WHERE expires_ms < ?1",
            [u64_to_sql(now_ms)],
        )?;
        Ok(n as u64)
    }
}

/// Applies every migration the database has not seen yet, each in its own
/// transaction together with its version bump.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(found)
        .map_err(|_| StoreError::Corrupt(format!("negative schema version {found}")))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    Ok(())
}

/// One inbox insert inside the caller's transaction: duplicate check, then
/// the limit check on the trigger-maintained depth, then the insert.
fn push_in(
    conn: &Connection,
    dst: &AgentId,
    src: &AgentId,
    msg_id: u64,
    body: &[u8],
    now_ms: u64,
    limits: Option<&InboxLimits>,
) -> Result<InboxPush, StoreError> {
    let existing: Option<i64> = conn
        .prepare_cached("SELECT id FROM inbox WHERE dst = ?1 AND src = ?2 AND msg_id = ?3")?
        .query_row(
            params![
                &dst.as_bytes()[..],
                &src.as_bytes()[..],
                msg_id_to_sql(msg_id)
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(InboxPush::Duplicate { id });
    }
    let len = body.len() as u64;
    if let Some(limits) = limits {
        let (frames, bytes) = depth(conn, dst)?;
        if frames.saturating_add(1) > limits.max_frames {
            return Ok(InboxPush::Full { by_bytes: false });
        }
        if bytes.saturating_add(len) > limits.max_bytes {
            return Ok(InboxPush::Full { by_bytes: true });
        }
    }
    conn.prepare_cached(
        "INSERT INTO inbox (dst, src, msg_id, body, len, stored_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        &dst.as_bytes()[..],
        &src.as_bytes()[..],
        msg_id_to_sql(msg_id),
        body,
        u64_to_sql(len),
        u64_to_sql(now_ms),
    ])?;
    Ok(InboxPush::Stored {
        id: conn.last_insert_rowid(),
    })
}

fn depth(conn: &Connection, dst: &AgentId) -> Result<(u64, u64), StoreError> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT frames, bytes FROM inbox_depth WHERE dst = ?1")?
        .query_row([&dst.as_bytes()[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok((0, 0)),
        Some((frames, bytes)) => Ok((
            u64_from_sql(frames, "inbox_depth.frames")?,
            u64_from_sql(bytes, "inbox_depth.bytes")?,
        )),
    }
}

fn revoked(conn: &Connection, agent: &AgentId) -> Result<bool, StoreError> {
    let found = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM revocations WHERE agent = ?1)")?
        .query_row([&agent.as_bytes()[..]], |r| r.get(0))?;
    Ok(found)
}

/// Times and counters: saturate rather than wrap (no real value gets near).
fn u64_to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_from_sql(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is negative ({v})")))
}

/// Message ids use all 64 bits: store them bit-for-bit.
fn msg_id_to_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn msg_id_from_sql(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

fn agent_from_sql(bytes: &[u8]) -> Result<AgentId, StoreError> {
    AgentId::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("stored agent id: {e}")))
}

fn presence_from_sql(online: bool, last_seen: Option<i64>) -> Result<Presence, StoreError> {
    Ok(Presence {
        online,
        last_seen_ms: last_seen
            .map(|v| u64_from_sql(v, "agents.last_seen_ms"))
            .transpose()?,
    })
}

/// Turns user text into an FTS5 expression that cannot be a syntax error:
/// every whitespace-separated word becomes a quoted phrase (inner quotes
/// doubled) matched as a prefix, all words ANDed. Words without a letter or
/// digit are dropped, since the tokenizer would make empty phrases of them.
/// `None` when nothing searchable is left.
fn fts_expression(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .take(MAX_SEARCH_TERMS)
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// Opaque cursor: base64url of version ‖ agent key (32) ‖ name (UTF-8).
fn encode_cursor(name: &str, agent: &[u8]) -> String {
    let mut raw = Vec::with_capacity(1 + agent.len() + name.len());
    raw.push(CURSOR_VERSION);
    raw.extend_from_slice(agent);
    raw.extend_from_slice(name.as_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Result<(String, [u8; 32]), StoreError> {
    // A name is at most MAX_CARD_NAME_LEN characters of up to 4 bytes.
    let max_raw = 1 + 32 + 4 * MAX_CARD_NAME_LEN;
    if cursor.len() > max_raw.div_ceil(3) * 4 {
        return Err(StoreError::BadCursor);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::BadCursor)?;
    let (&version, rest) = raw.split_first().ok_or(StoreError::BadCursor)?;
    if version != CURSOR_VERSION || rest.len() < 32 {
        return Err(StoreError::BadCursor);
    }
    let (agent, name) = rest.split_at(32);
    let agent = <[u8; 32]>::try_from(agent).map_err(|_| StoreError::BadCursor)?;
    let name = String::from_utf8(name.to_vec()).map_err(|_| StoreError::BadCursor)?;
    Ok((name, agent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::card::{AgentCard, Skill};
    use mesh_core::Identity;
    use std::collections::BTreeSet;

    const RELAY: &str = "wss://relay.example/v1/ws";

    fn identity(n: u32) -> Identity {
        let mut secret = [7u8; 32];
        secret[..4].copy_from_slice(&n.to_be_bytes());
        Identity::from_secret_bytes(&secret)
    }

    fn agent(n: u32) -> AgentId {
        identity(n).agent_id()
    }

    fn card(id: &Identity, name: &str, seq: u64, skills: Vec<Skill>) -> SignedCard {
        let mut b = AgentCard::builder(id.agent_id(), RELAY, name)
            .description(format!("{name} does things"))
            .issued_at(seq);
        for s in skills {
            b = b.skill(s);
        }
        b.sign(id).unwrap()
    }

    fn limits(max_frames: u64, max_bytes: u64) -> InboxLimits {
        InboxLimits {
            max_frames,
            max_bytes,
        }
    }

    /// A fresh file database (kept alive by the returned guard) and an
    /// in-memory one: every behaviour test runs on both.
    fn stores() -> (tempfile::TempDir, Vec<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let file = Store::open(path.to_str().unwrap()).unwrap();
        let mem = Store::open(":memory:").unwrap();
        (dir, vec![file, mem])
    }

    #[test]
    fn file_database_uses_wal_full_sync_and_foreign_keys() {
        let (_dir, stores) = stores();
        let conn = stores[0].lock();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let path = path.to_str().unwrap();
        drop(Store::open(path).unwrap());
        {
            let conn = Connection::open(path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        match Store::open(path) {
            Err(StoreError::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn inbox_is_bounded_by_count() {
        let (_dir, stores) = stores();
        let (dst, src) = (agent(1), agent(2));
        for s in stores {
            let l = limits(3, 1 << 20);
            for m in 0..3 {
                assert!(matches!(
                    s.inbox_push(&dst, &src, m, b"x", 10, &l).unwrap(),
                    InboxPush::Stored { .. }
                ));
            }
            assert_eq!(
                s.inbox_push(&dst, &src, 3, b"x", 10, &l).unwrap(),
                InboxPush::Full { by_bytes: false }
            );
            assert_eq!(s.inbox_depth(&dst).unwrap(), (3, 3));
            // Another recipient has its own bound.
            assert!(matches!(
                s.inbox_push(&src, &dst, 3, b"x", 10, &l).unwrap(),
                InboxPush::Stored { .. }
            ));
            // Acknowledging one frees a slot.
            assert!(s.inbox_ack(&dst, &src, 0).unwrap());
            assert!(matches!(
                s.inbox_push(&dst, &src, 3, b"x", 10, &l).unwrap(),
                InboxPush::Stored { .. }
            ));
        }
    }

    #[test]
    fn inbox_is_bounded_by_bytes() {
        let (_dir, stores) = stores();
        let (dst, src) = (agent(1), agent(2));
        for s in stores {
            let l = limits(100, 10);
            assert!(matches!(
                s.inbox_push(&dst, &src, 1, &[0; 6], 0, &l).unwrap(),
                InboxPush::Stored { .. }
            ));
            assert_eq!(
                s.inbox_push(&dst, &src, 2, &[0; 5], 0, &l).unwrap(),
                InboxPush::Full { by_bytes: true }
            );
            assert!(matches!(
                s.inbox_push(&dst, &src, 3, &[0; 4], 0, &l).unwrap(),
                InboxPush::Stored { .. }
            ));
            assert_eq!(s.inbox_depth(&dst).unwrap(), (2, 10));
            assert_eq!(
                s.inbox_push(&dst, &src, 4, &[], 0, &l).unwrap(),
                InboxPush::Stored { id: 3 },
                "an empty body fits a full byte budget"
            );
            // A body larger than the whole budget never fits.
            assert_eq!(
                s.inbox_push(&agent(3), &src, 1, &[0; 11], 0, &l).unwrap(),
                InboxPush::Full { by_bytes: true }
            );
        }
    }

    #[test]
    fn inbox_detects_duplicates_even_when_full() {
        let (_dir, stores) = stores();
        let (dst, src) = (agent(1), agent(2));
        for s in stores {
            let l = limits(1, 100);
            let InboxPush::Stored { id } = s.inbox_push(&dst, &src, 9, b"a", 0, &l).unwrap() else {
                panic!("not stored");
            };
            assert_eq!(
                s.inbox_push(&dst, &src, 9, b"a", 0, &l).unwrap(),
                InboxPush::Duplicate { id }
            );
            assert_eq!(
                s.inbox_force_push(&dst, &src, 9, b"a", 0).unwrap(),
                InboxPush::Duplicate { id }
            );
            // Same msg_id from another sender is a different frame.
            assert_eq!(
                s.inbox_force_push(&dst, &agent(3), 9, b"a", 0).unwrap(),
                InboxPush::Stored { id: id + 1 }
            );
            assert_eq!(s.inbox_depth(&dst).unwrap(), (2, 2));
        }
    }

    #[test]
    fn inbox_loads_in_order_and_pages() {
        let (_dir, stores) = stores();
        let dst = agent(1);
        let srcs = [agent(2), agent(3)];
        for s in stores {
            let l = limits(100, 1 << 20);
            // u64::MAX must survive the signed column.
            let ids = [5, u64::MAX, 0, 1 << 63, 7];
            for (i, m) in ids.iter().enumerate() {
                let body = vec![i as u8; i + 1];
                s.inbox_push(&dst, &srcs[i % 2], *m, &body, 100 + i as u64, &l)
                    .unwrap();
            }
            let all = s.inbox_load(&dst, 0, 100).unwrap();
            assert_eq!(all.iter().map(|f| f.msg_id).collect::<Vec<_>>(), ids);
            for (i, f) in all.iter().enumerate() {
                assert_eq!(f.src, srcs[i % 2]);
                assert_eq!(&f.body[..], &vec![i as u8; i + 1][..]);
                assert_eq!(f.stored_ms, 100 + i as u64);
            }
            assert!(all.windows(2).all(|w| w[0].id < w[1].id));
            let first = s.inbox_load(&dst, 0, 2).unwrap();
            let rest = s.inbox_load(&dst, first[1].id, 100).unwrap();
            assert_eq!(first.len() + rest.len(), 5);
            assert_eq!(rest[0].msg_id, 0);
            assert!(s.inbox_load(&agent(9), 0, 10).unwrap().is_empty());
        }
    }

    #[test]
    fn inbox_ids_are_never_reused() {
        let (_dir, stores) = stores();
        let (dst, src) = (agent(1), agent(2));
        for s in stores {
            let l = limits(100, 100);
            let InboxPush::Stored { id } = s.inbox_push(&dst, &src, 1, b"a", 0, &l).unwrap() else {
                panic!()
            };
            assert!(s.inbox_ack(&dst, &src, 1).unwrap());
            let InboxPush::Stored { id: next } = s.inbox_push(&dst, &src, 2, b"b", 0, &l).unwrap()
            else {
                panic!()
            };
            assert!(
                next > id,
                "a reader at after_id={id} must see the new frame"
            );
            assert_eq!(s.inbox_load(&dst, id, 10).unwrap().len(), 1);
        }
    }

    #[test]
    fn inbox_ack_removes_only_the_addressed_frame() {
        let (_dir, stores) = stores();
        let (a, b, c) = (agent(1), agent(2), agent(3));
        for s in stores {
            s.inbox_force_push(&a, &b, 1, b"1", 0).unwrap();
            s.inbox_force_push(&a, &c, 1, b"2", 0).unwrap();
            s.inbox_force_push(&b, &a, 1, b"3", 0).unwrap();
            s.inbox_force_push(&a, &b, 2, b"4", 0).unwrap();
            assert!(s.inbox_ack(&a, &b, 1).unwrap());
            assert!(!s.inbox_ack(&a, &b, 1).unwrap(), "already gone");
            assert!(!s.inbox_ack(&c, &b, 1).unwrap(), "wrong recipient");
            let left: Vec<_> = s
                .inbox_load(&a, 0, 10)
                .unwrap()
                .into_iter()
                .map(|f| (f.src, f.msg_id))
                .collect();
            assert_eq!(left, vec![(c, 1), (b, 2)]);
            assert_eq!(s.inbox_load(&b, 0, 10).unwrap().len(), 1);
            assert_eq!(s.inbox_totals().unwrap(), (3, 3));
        }
    }

    #[test]
    fn inbox_expires_old_frames() {
        let (_dir, stores) = stores();
        let (dst, src) = (agent(1), agent(2));
        for s in stores {
            s.inbox_force_push(&dst, &src, 1, b"old", 1_000).unwrap();
            s.inbox_force_push(&dst, &src, 2, b"edge", 5_000).unwrap();
            s.inbox_force_push(&src, &dst, 3, b"new", 9_000).unwrap();
            assert_eq!(s.inbox_expire(10_000, 5_000).unwrap(), 1);
            assert_eq!(s.inbox_totals().unwrap(), (2, 7));
            assert_eq!(s.inbox_expire(10_000, 5_000).unwrap(), 0);
            assert_eq!(s.inbox_expire(10_000, 0).unwrap(), 2);
            assert_eq!(s.inbox_totals().unwrap(), (0, 0));
            assert_eq!(s.inbox_depth(&dst).unwrap(), (0, 0));
            // A max age beyond the epoch expires nothing.
            s.inbox_force_push(&dst, &src, 4, b"x", 1).unwrap();
            assert_eq!(s.inbox_expire(10, u64::MAX).unwrap(), 0);
        }
    }

    #[test]
    fn inbox_force_push_ignores_limits() {
        let (_dir, stores) = stores();
        let (dst, src) = (agent(1), agent(2));
        for s in stores {
            let l = limits(1, 1);
            s.inbox_push(&dst, &src, 1, b"x", 0, &l).unwrap();
            assert_eq!(
                s.inbox_push(&dst, &src, 2, b"yy", 0, &l).unwrap(),
                InboxPush::Full { by_bytes: false }
            );
            assert!(matches!(
                s.inbox_force_push(&dst, &src, 2, b"yy", 0).unwrap(),
                InboxPush::Stored { .. }
            ));
            assert_eq!(s.inbox_depth(&dst).unwrap(), (2, 3));
        }
    }

    #[test]
    fn inbox_force_push_all_is_one_transaction() {
        let (_dir, stores) = stores();
        let (dst, b, c) = (agent(1), agent(2), agent(3));
        for s in stores {
            s.inbox_force_push(&dst, &b, 1, b"x", 0).unwrap();
            let frames = [(&b, 1u64, &b"x"[..]), (&b, 2, b"yy"), (&c, 1, b"zzz")];
            let out = s.inbox_force_push_all(&dst, frames, 5).unwrap();
            assert!(matches!(out[0], InboxPush::Duplicate { .. }));
            assert!(matches!(out[1], InboxPush::Stored { .. }));
            assert!(matches!(out[2], InboxPush::Stored { .. }));
            assert_eq!(s.inbox_depth(&dst).unwrap(), (3, 6));
        }
    }

    #[test]
    fn inbox_purge_and_totals() {
        let (_dir, stores) = stores();
        let (a, b) = (agent(1), agent(2));
        for s in stores {
            for m in 0..4 {
                s.inbox_force_push(&a, &b, m, b"ab", 0).unwrap();
            }
            s.inbox_force_push(&b, &a, 0, b"abc", 0).unwrap();
            assert_eq!(s.inbox_totals().unwrap(), (5, 11));
            assert_eq!(s.inbox_purge(&a).unwrap(), 4);
            assert_eq!(s.inbox_purge(&a).unwrap(), 0);
            assert_eq!(s.inbox_totals().unwrap(), (1, 3));
            assert_eq!(s.inbox_depth(&a).unwrap(), (0, 0));
        }
    }

    #[test]
    fn state_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let path = path.to_str().unwrap();
        let (dst, src) = (agent(1), agent(2));
        let alice = identity(3);
        let rev_id = identity(4);
        {
            let s = Store::open(path).unwrap();
            s.inbox_push(&dst, &src, 42, b"sealed", 5, &limits(10, 100))
                .unwrap();
            s.presence_set(&src, true, 77).unwrap();
            s.card_put(&card(&alice, "Alice", 10, vec![]), 1).unwrap();
            let rev = Revocation::new(&rev_id, 1, "gone").unwrap();
            s.revoke(&rev, 2).unwrap();
            assert!(s.nonce_insert(&dst, [1; 16], 1_000).unwrap());
            // No checkpoint, no clean close: the WAL alone must carry it.
            std::mem::forget(s);
        }
        let s = Store::open(path).unwrap();
        let frames = s.inbox_load(&dst, 0, 10).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].src, frames[0].msg_id), (src, 42));
        assert_eq!(&frames[0].body[..], b"sealed");
        assert_eq!(s.inbox_depth(&dst).unwrap(), (1, 6));
        assert_eq!(
            s.presence(&src).unwrap(),
            Presence {
                online: true,
                last_seen_ms: Some(77)
            }
        );
        s.presence_reset_all(90).unwrap();
        assert_eq!(
            s.presence(&src).unwrap(),
            Presence {
                online: false,
                last_seen_ms: Some(90)
            }
        );
        assert!(s.card_get(&alice.agent_id()).unwrap().is_some());
        assert!(s.is_revoked(&rev_id.agent_id()).unwrap());
        assert_eq!(s.revoked_all().unwrap(), vec![rev_id.agent_id()]);
        assert!(!s.nonce_insert(&dst, [1; 16], 1_000).unwrap());
        s.checkpoint().unwrap();
    }

    /// Child half of `queued_frames_survive_sigkill`: reports each frame
    /// only after `inbox_push` returned, then waits to be killed. Does
    /// nothing unless started by that test.
    #[test]
    #[ignore]
    fn sigkill_child() {
        let Ok(path) = std::env::var("MESH_STORE_SIGKILL_DB") else {
            return;
        };
        let s = Store::open(&path).unwrap();
        let l = limits(1_000_000, 1 << 40);
        for m in 0..100_000u64 {
            s.inbox_push(&agent(1), &agent(2), m, &[m as u8; 100], m, &l)
                .unwrap();
            println!("queued {m}");
        }
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    /// "Nothing lost": every frame reported as stored is still there after
    /// the process is SIGKILLed in the middle of a stream of pushes.
    #[test]
    fn queued_frames_survive_sigkill() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.db");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::tests::sigkill_child"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env("MESH_STORE_SIGKILL_DB", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reported = 0u64;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            if let Some(m) = line.unwrap().strip_prefix("queued ") {
                reported = m.parse::<u64>().unwrap() + 1;
                if reported == 300 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        assert_eq!(reported, 300, "the child did not get going");
        let s = Store::open(path.to_str().unwrap()).unwrap();
        let frames = s.inbox_load(&agent(1), 0, 200_000).unwrap();
        assert!(
            frames.len() as u64 >= reported,
            "{} < {reported}",
            frames.len()
        );
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.msg_id, i as u64);
            assert_eq!(&f.body[..], &[i as u8; 100][..]);
        }
    }

    #[test]
    fn presence_and_known_agents() {
        let (_dir, stores) = stores();
        let (a, b) = (agent(1), agent(2));
        let carded = identity(3);
        for s in stores {
            assert_eq!(s.presence(&a).unwrap(), Presence::default());
            assert!(!s.is_known(&a).unwrap());
            s.presence_set(&a, true, 10).unwrap();
            assert!(s.is_known(&a).unwrap());
            assert_eq!(
                s.presence(&a).unwrap(),
                Presence {
                    online: true,
                    last_seen_ms: Some(10)
                }
            );
            s.presence_set(&a, false, 20).unwrap();
            assert_eq!(
                s.presence(&a).unwrap(),
                Presence {
                    online: false,
                    last_seen_ms: Some(20)
                }
            );
            s.presence_set(&b, false, 5).unwrap();
            s.presence_set(&a, true, 30).unwrap();
            s.presence_reset_all(40).unwrap();
            assert_eq!(s.presence(&a).unwrap().last_seen_ms, Some(40));
            assert_eq!(s.presence(&b).unwrap().last_seen_ms, Some(5), "was offline");
            assert!(!s.is_known(&carded.agent_id()).unwrap());
            s.card_put(&card(&carded, "C", 1, vec![]), 0).unwrap();
            assert!(s.is_known(&carded.agent_id()).unwrap());
            // A revoked agent is no longer a destination.
            s.revoke(&Revocation::new(&identity(4), 1, "").unwrap(), 0)
                .unwrap();
            s.presence_set(&identity(4).agent_id(), false, 1).unwrap();
            assert!(!s.is_known(&identity(4).agent_id()).unwrap());
        }
    }

    #[test]
    fn presence_serializes_as_the_api_shows_it() {
        let p = Presence {
            online: true,
            last_seen_ms: Some(5),
        };
        assert_eq!(
            serde_json::to_value(p).unwrap(),
            serde_json::json!({"online": true, "lastSeen": 5})
        );
    }

    #[test]
    fn cards_put_get_stale_and_delete() {
        let (_dir, stores) = stores();
        let id = identity(1);
        let a = id.agent_id();
        for s in stores {
            let v1 = card(
                &id,
                "Alpha",
                10,
                vec![Skill::new("echo", "Echo", "says it back")],
            );
            assert_eq!(
                s.card_put(&v1, 0).unwrap(),
                CardPut::Stored { created: true }
            );
            let got = s.card_get(&a).unwrap().unwrap();
            assert_eq!(got.agent, a);
            assert_eq!(got.json, v1.to_json());
            assert_eq!(SignedCard::from_json(&got.json).unwrap(), v1);
            assert_eq!(
                s.card_put(&v1, 0).unwrap(),
                CardPut::Stale { stored_seq: 10 },
                "same seq"
            );
            let v2 = card(&id, "Alpha Two", 20, vec![]);
            assert_eq!(
                s.card_put(&v2, 0).unwrap(),
                CardPut::Stored { created: false }
            );
            assert_eq!(s.card_get(&a).unwrap().unwrap().json, v2.to_json());
            // Rollback to the older card is refused.
            assert_eq!(
                s.card_put(&v1, 0).unwrap(),
                CardPut::Stale { stored_seq: 20 }
            );
            // The replaced card's search terms are gone.
            let q = SearchQuery {
                capability: Some("echo".into()),
                limit: 10,
                ..SearchQuery::default()
            };
            assert!(s.card_search(&q).unwrap().items.is_empty());
            let q = SearchQuery {
                text: Some("two".into()),
                limit: 10,
                ..SearchQuery::default()
            };
            assert_eq!(s.card_search(&q).unwrap().items.len(), 1);

            assert!(s.card_delete(&a).unwrap());
            assert!(!s.card_delete(&a).unwrap());
            assert!(s.card_get(&a).unwrap().is_none());
            assert!(s.card_search(&q).unwrap().items.is_empty(), "fts row gone");
            // A deleted card cannot be brought back by replaying an old one.
            assert_eq!(
                s.card_put(&v2, 0).unwrap(),
                CardPut::Stale { stored_seq: 20 }
            );
            let v3 = card(&id, "Alpha", 30, vec![]);
            assert_eq!(
                s.card_put(&v3, 0).unwrap(),
                CardPut::Stored { created: true }
            );
        }
    }

    /// 57 agents with names, skills, tags and presence spread so that every
    /// filter selects an irregular subset.
    struct Corpus {
        agents: Vec<AgentId>,
        has_cap: Vec<bool>,
        has_text: Vec<bool>,
        online: Vec<bool>,
    }

    fn corpus(s: &Store) -> Corpus {
        let mut c = Corpus {
            agents: vec![],
            has_cap: vec![],
            has_text: vec![],
            online: vec![],
        };
        for i in 0..57u32 {
            let id = identity(1000 + i);
            // Repeated and case-varying names exercise the (name, agent)
            // tie-break of the cursor.
            let name = match i % 5 {
                0 => "agent".to_owned(),
                1 => "Agent".to_owned(),
                2 => format!("Büro {}", i / 3),
                3 => format!("zeta-{i}"),
                _ => format!("a{}", 56 - i),
            };
            let mut skills = vec![Skill::new(
                format!("skill{}", i % 3),
                "Generic",
                "does work",
            )];
            let cap = i % 3 == 0 || i % 7 == 0;
            if i % 7 == 0 {
                skills.push(Skill::new("other", "Other", "misc").with_tags(["skill0"]));
            }
            let text = i % 4 == 1;
            if text {
                skills.push(Skill::new(
                    "tr",
                    "Translator",
                    "translates between languages",
                ));
            }
            s.card_put(&card(&id, &name, 1, skills), 0).unwrap();
            let online = i % 5 < 3;
            s.presence_set(&id.agent_id(), online, 5).unwrap();
            c.agents.push(id.agent_id());
            c.has_cap.push(cap);
            c.has_text.push(text);
            c.online.push(online);
        }
        c
    }

    fn collect_all(s: &Store, mut q: SearchQuery) -> Vec<AgentId> {
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            let page = s.card_search(&q).unwrap();
            assert!(page.items.len() <= q.limit as usize);
            pages += 1;
            assert!(pages < 100, "pagination does not terminate");
            out.extend(page.items.iter().map(|r| r.agent));
            match page.next_cursor {
                Some(c) => {
                    assert_eq!(page.items.len(), q.limit as usize, "short non-final page");
                    q.cursor = Some(c);
                }
                None => return out,
            }
        }
    }

    #[test]
    fn search_pages_through_every_filter_combination() {
        let (_dir, stores) = stores();
        for s in stores {
            let c = corpus(&s);
            for mask in 0..8u8 {
                let (cap, text, online) = (mask & 1 != 0, mask & 2 != 0, mask & 4 != 0);
                let q = SearchQuery {
                    capability: cap.then(|| "skill0".to_owned()),
                    text: text.then(|| "TRANSL".to_owned()),
                    online_only: online,
                    limit: 10,
                    cursor: None,
                };
                let got = collect_all(&s, q);
                let unique: BTreeSet<_> = got.iter().copied().collect();
                assert_eq!(unique.len(), got.len(), "duplicates for mask {mask}");
                let want: BTreeSet<_> = (0..c.agents.len())
                    .filter(|&i| {
                        (!cap || c.has_cap[i])
                            && (!text || c.has_text[i])
                            && (!online || c.online[i])
                    })
                    .map(|i| c.agents[i])
                    .collect();
                assert!(!want.is_empty());
                assert_eq!(unique, want, "mask {mask}");
            }
        }
    }

    #[test]
    fn search_orders_by_name_and_reports_presence() {
        let (_dir, stores) = stores();
        for s in stores {
            corpus(&s);
            let q = SearchQuery {
                limit: 100,
                ..SearchQuery::default()
            };
            let page = s.card_search(&q).unwrap();
            assert_eq!(page.items.len(), 57);
            assert!(page.next_cursor.is_none());
            let names: Vec<String> = page
                .items
                .iter()
                .map(|r| {
                    SignedCard::from_json(&r.json)
                        .unwrap()
                        .card()
                        .name
                        .to_ascii_lowercase()
                })
                .collect();
            assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");
            assert!(page
                .items
                .iter()
                .all(|r| r.presence.last_seen_ms == Some(5)));
            // Exactly `limit` matches: one page, no cursor.
            let q = SearchQuery {
                online_only: true,
                limit: 35,
                ..SearchQuery::default()
            };
            let page = s.card_search(&q).unwrap();
            assert_eq!(page.items.len(), 35);
            assert!(page.next_cursor.is_none());
            assert!(page.items.iter().all(|r| r.presence.online));
        }
    }

    #[test]
    fn search_by_skill_id_and_by_tag() {
        let (_dir, stores) = stores();
        let (x, y) = (identity(1), identity(2));
        for s in stores {
            s.card_put(
                &card(
                    &x,
                    "X",
                    1,
                    vec![Skill::new("summarize", "Sum", "d").with_tags(["nlp"])],
                ),
                0,
            )
            .unwrap();
            s.card_put(
                &card(
                    &y,
                    "Y",
                    1,
                    vec![Skill::new("nlp", "N", "d").with_tags(["summarize.v2"])],
                ),
                0,
            )
            .unwrap();
            let find = |cap: &str| {
                let q = SearchQuery {
                    capability: Some(cap.to_owned()),
                    limit: 10,
                    ..SearchQuery::default()
                };
                let mut v: Vec<_> = s
                    .card_search(&q)
                    .unwrap()
                    .items
                    .iter()
                    .map(|r| r.agent)
                    .collect();
                v.sort();
                v
            };
            let mut both = vec![x.agent_id(), y.agent_id()];
            both.sort();
            assert_eq!(find("nlp"), both, "id of one, tag of the other");
            assert_eq!(find("summarize"), vec![x.agent_id()]);
            assert_eq!(find("summarize.v2"), vec![y.agent_id()]);
            assert!(find("summ").is_empty(), "capability is exact");
            assert!(find("NLP").is_empty(), "capability is exact");
            // Empty capability means no filter.
            assert_eq!(find("").len(), 2);
        }
    }

    #[test]
    fn search_by_text() {
        let (_dir, stores) = stores();
        let (x, y) = (identity(1), identity(2));
        for s in stores {
            let mut xc = AgentCard::builder(x.agent_id(), RELAY, "Weather Oracle")
                .description("Forecasts for any city")
                .issued_at(1);
            xc = xc.skill(
                Skill::new("forecast", "Forecast", "tomorrow's weather").with_tags(["météo"]),
            );
            s.card_put(&xc.sign(&x).unwrap(), 0).unwrap();
            s.card_put(
                &card(
                    &y,
                    "Poet",
                    1,
                    vec![Skill::new("haiku", "Haiku", "writes poems")],
                ),
                0,
            )
            .unwrap();
            let find = |t: &str| {
                let q = SearchQuery {
                    text: Some(t.to_owned()),
                    limit: 10,
                    ..SearchQuery::default()
                };
                s.card_search(&q)
                    .unwrap()
                    .items
                    .iter()
                    .map(|r| r.agent)
                    .collect::<Vec<_>>()
            };
            assert_eq!(find("weather"), vec![x.agent_id()], "name");
            assert_eq!(
                find("forecasts city"),
                vec![x.agent_id()],
                "description, AND"
            );
            assert_eq!(find("poems"), vec![y.agent_id()], "skill description");
            assert_eq!(find("meteo"), vec![x.agent_id()], "tag, diacritics folded");
            assert_eq!(find("hai"), vec![y.agent_id()], "prefix");
            assert!(find("weather poems").is_empty(), "all words must match");
            assert_eq!(find("").len(), 2);
            assert_eq!(find("   ").len(), 2);
        }
    }

    #[test]
    fn search_text_cannot_inject_fts_syntax() {
        let (_dir, stores) = stores();
        let x = identity(1);
        for s in stores {
            s.card_put(&card(&x, "Near Or Not", 1, vec![]), 0).unwrap();
            for t in [
                "\"",
                "*",
                "NEAR(",
                "OR",
                "-",
                "AND",
                "NOT",
                "\"unterminated",
                "a OR b",
                "name:x",
                "^start",
                "(",
                ")",
                "a*b",
                "-x",
                "+",
                "{name}: x",
                "NEAR(a b, 2)",
                "\u{0301}",
                "x\"y\"z",
                "\0",
                "🦀",
                "a:b:c",
                ".",
                "col:",
                "''",
            ] {
                let q = SearchQuery {
                    text: Some(t.to_owned()),
                    limit: 10,
                    ..SearchQuery::default()
                };
                s.card_search(&q)
                    .unwrap_or_else(|e| panic!("text {t:?} failed: {e}"));
            }
            let q = SearchQuery {
                text: Some("NEAR( OR".to_owned()),
                limit: 10,
                ..SearchQuery::default()
            };
            assert_eq!(
                s.card_search(&q).unwrap().items.len(),
                1,
                "words, not operators"
            );
        }
    }

    #[test]
    fn search_rejects_bad_cursors_and_limits() {
        let (_dir, stores) = stores();
        for s in stores {
            for cursor in [
                "!!",
                "",
                "AQ",
                &URL_SAFE_NO_PAD.encode([2u8; 40]),
                &"A".repeat(2000),
            ] {
                let q = SearchQuery {
                    limit: 10,
                    cursor: Some(cursor.to_owned()),
                    ..SearchQuery::default()
                };
                assert!(
                    matches!(s.card_search(&q), Err(StoreError::BadCursor)),
                    "{cursor:?}"
                );
            }
            // A cursor with invalid UTF-8 in the name part.
            let mut raw = vec![CURSOR_VERSION];
            raw.extend_from_slice(&[0; 32]);
            raw.push(0xff);
            let q = SearchQuery {
                limit: 10,
                cursor: Some(URL_SAFE_NO_PAD.encode(raw)),
                ..SearchQuery::default()
            };
            assert!(matches!(s.card_search(&q), Err(StoreError::BadCursor)));
            for limit in [0, 101] {
                let q = SearchQuery {
                    limit,
                    ..SearchQuery::default()
                };
                assert!(matches!(s.card_search(&q), Err(StoreError::BadQuery(_))));
            }
            let q = SearchQuery {
                text: Some("x".repeat(300)),
                limit: 10,
                ..SearchQuery::default()
            };
            assert!(matches!(s.card_search(&q), Err(StoreError::BadQuery(_))));
        }
    }

    #[test]
    fn revocation_removes_card_and_inbox_and_blocks_cards() {
        let (_dir, stores) = stores();
        let victim = identity(1);
        let v = victim.agent_id();
        let other = agent(2);
        for s in stores {
            s.card_put(
                &card(&victim, "V", 1, vec![Skill::new("echo", "E", "d")]),
                0,
            )
            .unwrap();
            s.inbox_force_push(&v, &other, 1, b"for v", 0).unwrap();
            s.inbox_force_push(&other, &v, 1, b"from v", 0).unwrap();
            assert!(!s.is_revoked(&v).unwrap());
            let rev = Revocation::new(&victim, 100, "key leaked").unwrap();
            assert!(s.revoke(&rev, 200).unwrap());
            assert!(!s.revoke(&rev, 300).unwrap(), "idempotent");
            assert!(s.is_revoked(&v).unwrap());
            assert!(!s.is_revoked(&other).unwrap());
            assert!(s.card_get(&v).unwrap().is_none());
            assert_eq!(s.inbox_depth(&v).unwrap(), (0, 0));
            assert_eq!(s.inbox_depth(&other).unwrap(), (1, 6));
            let q = SearchQuery {
                capability: Some("echo".into()),
                limit: 10,
                ..SearchQuery::default()
            };
            assert!(s.card_search(&q).unwrap().items.is_empty());
            assert_eq!(
                s.card_put(&card(&victim, "V", 99, vec![]), 0).unwrap(),
                CardPut::Revoked
            );
            assert_eq!(s.revoked_all().unwrap(), vec![v]);
        }
    }

    #[test]
    fn nonces_are_single_use_until_they_expire() {
        let (_dir, stores) = stores();
        let (a, b) = (agent(1), agent(2));
        for s in stores {
            assert!(s.nonce_insert(&a, [1; 16], 100).unwrap());
            assert!(!s.nonce_insert(&a, [1; 16], 100).unwrap());
            assert!(s.nonce_insert(&b, [1; 16], 100).unwrap(), "per agent");
            assert!(s.nonce_insert(&a, [2; 16], 300).unwrap());
            assert_eq!(s.nonce_expire(100).unwrap(), 0, "valid until expires_ms");
            assert_eq!(s.nonce_expire(200).unwrap(), 2);
            assert!(!s.nonce_insert(&a, [2; 16], 300).unwrap());
            assert!(s.nonce_insert(&a, [1; 16], 400).unwrap());
        }
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let s = Store::open(":memory:").unwrap();
        let (dst, src) = (agent(1), agent(2));
        s.inbox_force_push(&dst, &src, 1, b"x", 0).unwrap();
        s.revoke(&Revocation::new(&identity(3), 1, "").unwrap(), 0)
            .unwrap();
        {
            let conn = s.lock();
            // The identity point: 32 bytes, but of small order, so never a
            // valid agent id.
            let mut bad = [0u8; 32];
            bad[0] = 1;
            assert!(AgentId::from_bytes(&bad).is_err());
            conn.execute("UPDATE inbox SET src = ?1", [&bad[..]])
                .unwrap();
            conn.execute("UPDATE revocations SET agent = ?1", [&bad[..]])
                .unwrap();
        }
        assert!(matches!(
            s.inbox_load(&dst, 0, 10),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(s.revoked_all(), Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn call_runs_on_the_blocking_pool_and_survives_panics() {
        let s = Store::open(":memory:").unwrap();
        let a = agent(1);
        s.call(move |s| s.presence_set(&a, true, 1)).await.unwrap();
        let err = s
            .call(|s| -> Result<(), StoreError> {
                let _guard = s.lock();
                panic!("boom");
            })
            .await;
        assert!(matches!(err, Err(StoreError::Join(_))));
        // The poisoned lock is recovered.
        assert!(s.call(move |s| s.presence(&a)).await.unwrap().online);
    }
}
