//! The durable outbox: a SQLite database holding every event from the moment
//! it is accepted until the gateway acknowledges it as durable in Kafka.
//!
//! ```text
//! events(seq INTEGER PRIMARY KEY, created_at INTEGER, body BLOB)   postcard EventBody
//! drops(first, last, dropped_at, reason)                           seqs the cap cost
//! meta(key TEXT PRIMARY KEY, value)                                site_id, kiosk_id, next_seq, counters
//! PRAGMA user_version                                              schema version
//! ```
//!
//! * `next_seq` is stored in `meta` and advanced in the same transaction as
//!   the rows, so a seq is never reused, also after a crash.
//! * The identity (site, kiosk) is fixed when the outbox is created; opening
//!   it with another identity is refused, so stored events are never sent
//!   under a name they were not created with.
//! * Several connections (writer, forwarder, status) share one [`Backlog`]
//!   counter so the cap can be enforced without counting rows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use contract::config::{FullPolicy, OutboxConfig};
use contract::mqtt::{ranges_of, SeqRange};
use contract::{Event, EventBody, Identity, UtcMillis};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;

/// Forward migrations: `MIGRATIONS[v]` takes a database from version `v` to `v + 1`.
const MIGRATIONS: [&str; 2] = [
    // 0 -> 1: the first released layout.
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, created_at INTEGER NOT NULL, body BLOB NOT NULL);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT;",
    // 1 -> 2: record the seq ranges the outbox cap cost, for reconciliation.
    "CREATE TABLE drops (first INTEGER NOT NULL, last INTEGER NOT NULL,
                         dropped_at INTEGER NOT NULL, reason TEXT NOT NULL);",
];

/// What can go wrong with the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// SQLite failed.
    #[error("outbox {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is not a usable outbox; it was renamed so nothing is lost.
    #[error("outbox {path} is corrupt or unreadable ({detail}); it was moved to {moved_to}. \
             Inspect it, then start a fresh outbox with `agent init --next-seq N`, N above its last seq")]
    Corrupt {
        /// The database file.
        path: String,
        /// What SQLite said.
        detail: String,
        /// Where it now is.
        moved_to: String,
    },
    /// A corrupt outbox was moved aside earlier and no new one was created.
    #[error(
        "outbox {path} is missing but {corrupt} exists from an earlier failure; \
             start a fresh outbox with `agent init --next-seq N` (N above the last seq used)"
    )]
    NeedsInit {
        /// The database file.
        path: String,
        /// The moved-aside file.
        corrupt: String,
    },
    /// `agent init` found an outbox already there.
    #[error("outbox {0} already exists; refusing to replace it")]
    AlreadyExists(String),
    /// The outbox was written by a newer agent.
    #[error("outbox {path} has schema version {found}, newer than this agent's {SCHEMA_VERSION}")]
    TooNew {
        /// The database file.
        path: String,
        /// Its version.
        found: i64,
    },
    /// The outbox belongs to another kiosk.
    #[error(
        "outbox {path} belongs to {site}/{kiosk}, not the configured {want_site}/{want_kiosk}"
    )]
    WrongIdentity {
        /// The database file.
        path: String,
        /// Stored site.
        site: String,
        /// Stored kiosk.
        kiosk: String,
        /// Configured site.
        want_site: String,
        /// Configured kiosk.
        want_kiosk: String,
    },
    /// A stored row does not decode.
    #[error("outbox {path}: row seq {seq} does not decode: {detail}")]
    BadRow {
        /// The database file.
        path: String,
        /// The row.
        seq: u64,
        /// postcard's message.
        detail: String,
    },
    /// Creating the directory failed.
    #[error("cannot create outbox directory for {path}: {source}")]
    Dir {
        /// The database file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Events stored and not yet acknowledged, shared by all connections of one outbox.
#[derive(Debug, Default)]
pub struct Backlog(AtomicU64);

impl Backlog {
    /// Current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The outcome of one group commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    /// Seqs given to the accepted events, in input order; `None` = refused (cap, reject_new).
    pub seqs: Vec<Option<u64>>,
    /// Seqs deleted to make room (cap, drop_oldest).
    pub dropped: Vec<SeqRange>,
}

/// A snapshot of the outbox's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events stored and not acknowledged.
    pub backlog: u64,
    /// Creation time of the oldest of them.
    pub oldest_created_at: Option<UtcMillis>,
    /// Seq of the next event.
    pub next_seq: u64,
    /// Highest seq acknowledged.
    pub last_acked_seq: u64,
    /// Events acknowledged since the outbox was created.
    pub acked_events: u64,
    /// Events deleted by the cap (drop_oldest).
    pub dropped_events: u64,
    /// The most recent dropped ranges (at most 20).
    pub dropped_ranges: Vec<SeqRange>,
    /// Check-ins refused by the cap (reject_new).
    pub rejected_checkins: u64,
    /// Database size in bytes.
    pub db_bytes: u64,
}

/// One connection to an outbox.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    site_id: String,
    kiosk_id: String,
    cfg: OutboxConfig,
    backlog: Arc<Backlog>,
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

impl Outbox {
    /// Open (creating or migrating) the outbox of kiosk `site_id`/`kiosk_id`.
    pub fn open(cfg: &OutboxConfig, site_id: &str, kiosk_id: &str) -> Result<Outbox, OutboxError> {
        Self::open_with(cfg, site_id, kiosk_id, None)
    }

    /// Create a fresh outbox whose first seq is `next_seq` (after a corrupt one
    /// was moved aside). Refuses if an outbox already exists.
    pub fn init(
        cfg: &OutboxConfig,
        site_id: &str,
        kiosk_id: &str,
        next_seq: u64,
    ) -> Result<Outbox, OutboxError> {
        let path = PathBuf::from(&cfg.path);
        if path.exists() {
            return Err(OutboxError::AlreadyExists(cfg.path.clone()));
        }
        Self::open_with(cfg, site_id, kiosk_id, Some(next_seq.max(1)))
    }

    fn open_with(
        cfg: &OutboxConfig,
        site_id: &str,
        kiosk_id: &str,
        init_seq: Option<u64>,
    ) -> Result<Outbox, OutboxError> {
        let path = PathBuf::from(&cfg.path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir {
                path: cfg.path.clone(),
                source,
            })?;
        }
        if !path.exists() && init_seq.is_none() {
            if let Some(corrupt) = find_corrupt_sibling(&path) {
                return Err(OutboxError::NeedsInit {
                    path: cfg.path.clone(),
                    corrupt,
                });
            }
        }
        match Self::try_open(&path, cfg, site_id, kiosk_id, init_seq) {
            Err(OutboxError::Sqlite { source, .. }) if is_corruption(&source) => {
                let moved_to = move_aside(&path);
                log::error!(
                    "outbox {} is corrupt ({source}); moved to {moved_to}",
                    cfg.path
                );
                Err(OutboxError::Corrupt {
                    path: cfg.path.clone(),
                    detail: source.to_string(),
                    moved_to,
                })
            }
            other => other,
        }
    }

    fn try_open(
        path: &Path,
        cfg: &OutboxConfig,
        site_id: &str,
        kiosk_id: &str,
        init_seq: Option<u64>,
    ) -> Result<Outbox, OutboxError> {
        let sql = |source| OutboxError::Sqlite {
            path: cfg.path.clone(),
            source,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", cfg.synchronous.as_pragma())
            .map_err(sql)?;
        // Integrity of the header and schema: a quick check catches files
        // that are not databases or are badly damaged before we rely on them.
        let quick: String = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(sql)?;
        if quick != "ok" {
            return Err(sql(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(quick),
            )));
        }
        migrate(&mut conn, init_seq, site_id, kiosk_id).map_err(|e| match e {
            MigrateError::Sqlite(source) => sql(source),
            MigrateError::TooNew(found) => OutboxError::TooNew {
                path: cfg.path.clone(),
                found,
            },
        })?;
        let stored_site: String = meta_get(&conn, "site_id").map_err(sql)?;
        let stored_kiosk: String = meta_get(&conn, "kiosk_id").map_err(sql)?;
        if stored_site != site_id || stored_kiosk != kiosk_id {
            return Err(OutboxError::WrongIdentity {
                path: cfg.path.clone(),
                site: stored_site,
                kiosk: stored_kiosk,
                want_site: site_id.to_string(),
                want_kiosk: kiosk_id.to_string(),
            });
        }
        let count: i64 = conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .map_err(sql)?;
        let backlog = Arc::new(Backlog(AtomicU64::new(count.max(0) as u64)));
        Ok(Outbox {
            conn,
            path: path.to_path_buf(),
            site_id: site_id.to_string(),
            kiosk_id: kiosk_id.to_string(),
            cfg: cfg.clone(),
            backlog,
        })
    }

    /// Another connection to the same outbox, sharing the backlog counter.
    pub fn another_connection(&self) -> Result<Outbox, OutboxError> {
        let sql = |source| OutboxError::Sqlite {
            path: self.cfg.path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sql)?;
        conn.pragma_update(None, "synchronous", self.cfg.synchronous.as_pragma())
            .map_err(sql)?;
        Ok(Outbox {
            conn,
            path: self.path.clone(),
            site_id: self.site_id.clone(),
            kiosk_id: self.kiosk_id.clone(),
            cfg: self.cfg.clone(),
            backlog: Arc::clone(&self.backlog),
        })
    }

    /// The shared backlog counter.
    pub fn backlog(&self) -> Arc<Backlog> {
        Arc::clone(&self.backlog)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> OutboxError {
        OutboxError::Sqlite {
            path: self.cfg.path.clone(),
            source,
        }
    }

    fn db_bytes(&self) -> Result<u64, rusqlite::Error> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size).max(0) as u64)
    }

    /// Commit events in one transaction (a group commit), applying the cap.
    /// Returns the seq given to each, or `None` for those the cap refused.
    pub fn append(&mut self, items: &[(UtcMillis, EventBody)]) -> Result<Appended, OutboxError> {
        self.append_inner(items).map_err(|e| self.err(e))
    }

    fn append_inner(
        &mut self,
        items: &[(UtcMillis, EventBody)],
    ) -> Result<Appended, rusqlite::Error> {
        let mut out = Appended::default();
        if items.is_empty() {
            return Ok(out);
        }
        let backlog = self.backlog.get();
        let bytes_full = self.db_bytes()? >= self.cfg.max_bytes;
        let room = if bytes_full {
            0
        } else {
            self.cfg.max_events.saturating_sub(backlog)
        };
        let wanted = items.len() as u64;
        let (accept, to_drop) = match self.cfg.full_policy {
            FullPolicy::RejectNew => (wanted.min(room), 0),
            FullPolicy::DropOldest if bytes_full => (wanted, wanted.min(backlog)),
            FullPolicy::DropOldest => (wanted, wanted.saturating_sub(room).min(backlog)),
        };
        let now = UtcMillis::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut next_seq: u64 = meta_u64(&tx, "next_seq")?;
        if to_drop > 0 {
            let seqs: Vec<u64> = {
                let mut stmt =
                    tx.prepare_cached("DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?1) RETURNING seq")?;
                let rows = stmt.query_map([to_drop as i64], |r| r.get::<_, i64>(0))?;
                rows.map(|r| r.map(|s| s as u64))
                    .collect::<Result<_, _>>()?
            };
            out.dropped = ranges_of(seqs.iter().copied());
            for r in &out.dropped {
                tx.execute(
                    "INSERT INTO drops (first, last, dropped_at, reason) VALUES (?1, ?2, ?3, 'outbox_full')",
                    params![r.first as i64, r.last as i64, now.0],
                )?;
            }
            meta_add(&tx, "dropped_events", seqs.len() as i64)?;
            self.backlog
                .0
                .fetch_sub(seqs.len() as u64, Ordering::Relaxed);
        }
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO events (seq, created_at, body) VALUES (?1, ?2, ?3)")?;
            let mut buf = Vec::with_capacity(128);
            for (i, (created_at, body)) in items.iter().enumerate() {
                if (i as u64) < accept {
                    buf.clear();
                    let bytes = postcard::to_extend(body, std::mem::take(&mut buf))
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    insert.execute(params![next_seq as i64, created_at.0, &bytes])?;
                    buf = bytes;
                    out.seqs.push(Some(next_seq));
                    next_seq += 1;
                } else {
                    out.seqs.push(None);
                }
            }
        }
        let refused = wanted - accept;
        if refused > 0 {
            meta_add(&tx, "rejected_checkins", refused as i64)?;
        }
        meta_set(&tx, "next_seq", next_seq as i64)?;
        tx.commit()?;
        self.backlog.0.fetch_add(accept, Ordering::Relaxed);
        Ok(out)
    }

    /// Up to `limit` stored events with seq at or after `from`, oldest first.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<Event>, OutboxError> {
        self.read(
            "SELECT seq, created_at, body FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            from,
            limit as u64,
        )
    }

    /// Stored events with seq in `range`, oldest first.
    pub fn read_range(&self, range: SeqRange) -> Result<Vec<Event>, OutboxError> {
        self.read(
            "SELECT seq, created_at, body FROM events WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
            range.first,
            range.last,
        )
    }

    fn read(&self, sql: &str, a: u64, b: u64) -> Result<Vec<Event>, OutboxError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![a as i64, b as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, created_at, body) = row.map_err(|e| self.err(e))?;
            out.push(self.decode(seq, created_at, &body)?);
        }
        Ok(out)
    }

    fn decode(&self, seq: u64, created_at: i64, body: &[u8]) -> Result<Event, OutboxError> {
        let body: EventBody = postcard::from_bytes(body).map_err(|e| OutboxError::BadRow {
            path: self.cfg.path.clone(),
            seq,
            detail: e.to_string(),
        })?;
        Ok(Event {
            identity: Identity {
                site_id: self.site_id.clone(),
                kiosk_id: self.kiosk_id.clone(),
                seq,
                created_at: UtcMillis(created_at),
            },
            body,
        })
    }

    /// Delete acknowledged seqs. Returns how many rows were deleted (0 for a
    /// duplicate or stale ack). `last_acked_seq` becomes the highest seq an
    /// ack actually deleted, so a stale or bogus range cannot move it.
    pub fn delete_acked(&mut self, ranges: &[SeqRange]) -> Result<u64, OutboxError> {
        let run = |conn: &mut Connection| -> Result<u64, rusqlite::Error> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut deleted = 0u64;
            let mut highest = 0u64;
            {
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM events WHERE seq BETWEEN ?1 AND ?2 RETURNING seq",
                )?;
                for r in ranges {
                    let seqs = stmt.query_map(params![r.first as i64, r.last as i64], |row| {
                        row.get::<_, i64>(0)
                    })?;
                    for seq in seqs {
                        deleted += 1;
                        highest = highest.max(seq? as u64);
                    }
                }
            }
            let last = meta_u64(&tx, "last_acked_seq")?;
            if highest > last {
                meta_set(&tx, "last_acked_seq", highest as i64)?;
            }
            if deleted > 0 {
                meta_add(&tx, "acked_events", deleted as i64)?;
            }
            tx.commit()?;
            Ok(deleted)
        };
        let deleted = run(&mut self.conn).map_err(|e| self.err(e))?;
        self.backlog.0.fetch_sub(deleted, Ordering::Relaxed);
        Ok(deleted)
    }

    /// A snapshot of counters and backlog.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let q = || -> Result<OutboxStats, rusqlite::Error> {
            let oldest: Option<i64> = self
                .conn
                .query_row(
                    "SELECT created_at FROM events ORDER BY seq LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let mut stmt = self
                .conn
                .prepare_cached("SELECT first, last FROM drops ORDER BY rowid DESC LIMIT 20")?;
            let mut dropped_ranges: Vec<SeqRange> = stmt
                .query_map([], |r| {
                    Ok(SeqRange::new(
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            dropped_ranges.reverse();
            Ok(OutboxStats {
                backlog: self.backlog.get(),
                oldest_created_at: oldest.map(UtcMillis),
                next_seq: meta_u64(&self.conn, "next_seq")?,
                last_acked_seq: meta_u64(&self.conn, "last_acked_seq")?,
                acked_events: meta_u64(&self.conn, "acked_events")?,
                dropped_events: meta_u64(&self.conn, "dropped_events")?,
                dropped_ranges,
                rejected_checkins: meta_u64(&self.conn, "rejected_checkins")?,
                db_bytes: self.db_bytes()?,
            })
        };
        q().map_err(|e| self.err(e))
    }

    /// Every dropped range, oldest first.
    pub fn all_dropped_ranges(&self) -> Result<Vec<SeqRange>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT first, last FROM drops ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SeqRange::new(
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Visit every stored event in seq order, `chunk` rows per read.
    pub fn for_each_stored(
        &self,
        chunk: usize,
        mut visit: impl FnMut(&Event) -> std::io::Result<()>,
    ) -> Result<u64, ExportError> {
        let mut from = 0;
        let mut n = 0;
        loop {
            let events = self.read_from(from, chunk)?;
            let Some(last) = events.last() else {
                return Ok(n);
            };
            from = last.identity.seq + 1;
            for e in &events {
                visit(e)?;
                n += 1;
            }
        }
    }
}

/// Failure while exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// Writing the file failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

enum MigrateError {
    Sqlite(rusqlite::Error),
    TooNew(i64),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

fn migrate(
    conn: &mut Connection,
    init_seq: Option<u64>,
    site_id: &str,
    kiosk_id: &str,
) -> Result<(), MigrateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(MigrateError::TooNew(version));
    }
    for v in version..SCHEMA_VERSION {
        tx.execute_batch(MIGRATIONS[v as usize])?;
        if v == 0 {
            let first = init_seq.unwrap_or(1) as i64;
            let mut ins = tx.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")?;
            ins.execute(params!["site_id", site_id])?;
            ins.execute(params!["kiosk_id", kiosk_id])?;
            for (k, val) in [
                ("next_seq", first),
                ("last_acked_seq", first - 1),
                ("acked_events", 0),
                ("dropped_events", 0),
                ("rejected_checkins", 0),
            ] {
                ins.execute(params![k, val])?;
            }
        }
        log::info!("outbox schema migrated from version {v} to {}", v + 1);
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

fn meta_get<T: rusqlite::types::FromSql>(conn: &Connection, key: &str) -> rusqlite::Result<T> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
}

fn meta_u64(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    meta_get::<i64>(conn, key).map(|v| v.max(0) as u64)
}

fn meta_set(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE key = ?1")?
        .execute(params![key, value])
        .map(|_| ())
}

fn meta_add(conn: &Connection, key: &str, delta: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = value + ?2 WHERE key = ?1")?
        .execute(params![key, delta])
        .map(|_| ())
}

fn find_corrupt_sibling(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().to_string();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|f| f.starts_with(&format!("{name}.corrupt-")))
        .map(|f| dir.join(f).display().to_string())
}

fn move_aside(path: &Path) -> String {
    let stamp = UtcMillis::now().0;
    let target = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", target.display()));
            if let Err(e) = std::fs::rename(&from, &to) {
                log::error!("cannot move {} aside: {e}", from.display());
            }
        }
    }
    target.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::event::examples;

    fn cfg(dir: &Path) -> OutboxConfig {
        OutboxConfig {
            path: dir.join("outbox.db").display().to_string(),
            ..OutboxConfig::default()
        }
    }

    fn body() -> (UtcMillis, EventBody) {
        (UtcMillis::now(), examples::arrival().body)
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ktk-outbox-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn seqs_survive_reopen_and_acks_delete_exactly_their_ranges() {
        let dir = tmp();
        let c = cfg(&dir);
        {
            let mut o = Outbox::open(&c, "s", "k").unwrap();
            let a = o.append(&vec![body(); 10]).unwrap();
            assert_eq!(a.seqs, (1..=10).map(Some).collect::<Vec<_>>());
            assert_eq!(o.delete_acked(&[SeqRange::new(4, 6)]).unwrap(), 3);
            assert_eq!(o.delete_acked(&[SeqRange::new(4, 6)]).unwrap(), 0);
        }
        let mut o = Outbox::open(&c, "s", "k").unwrap();
        assert_eq!(o.backlog().get(), 7);
        let a = o.append(&[body()]).unwrap();
        assert_eq!(a.seqs, vec![Some(11)]);
        let seqs: Vec<u64> = o
            .read_from(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.identity.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 7, 8, 9, 10, 11]);
        let s = o.stats().unwrap();
        assert_eq!((s.backlog, s.next_seq, s.last_acked_seq), (8, 12, 6));
        let ev = &o.read_range(SeqRange::new(7, 7)).unwrap()[0];
        assert_eq!(ev.identity.kiosk_id, "k");
        assert_eq!(ev.body, examples::arrival().body);
        // All acked: next seq still does not restart.
        o.delete_acked(&[SeqRange::new(1, 11)]).unwrap();
        drop(o);
        let mut o = Outbox::open(&c, "s", "k").unwrap();
        assert_eq!(o.append(&[body()]).unwrap().seqs, vec![Some(12)]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn another_identity_is_refused() {
        let dir = tmp();
        let c = cfg(&dir);
        drop(Outbox::open(&c, "s", "k").unwrap());
        let err = Outbox::open(&c, "s", "other").err().unwrap().to_string();
        assert!(err.contains("belongs to s/k"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn reject_new_refuses_and_counts() {
        let dir = tmp();
        let c = OutboxConfig {
            max_events: 5,
            ..cfg(&dir)
        };
        let mut o = Outbox::open(&c, "s", "k").unwrap();
        let a = o.append(&vec![body(); 8]).unwrap();
        assert_eq!(a.seqs.iter().flatten().count(), 5);
        assert_eq!(a.seqs[5..], [None, None, None]);
        let s = o.stats().unwrap();
        assert_eq!(
            (s.rejected_checkins, s.next_seq, s.dropped_events),
            (3, 6, 0)
        );
        o.delete_acked(&[SeqRange::new(1, 2)]).unwrap();
        let a = o.append(&vec![body(); 3]).unwrap();
        assert_eq!(a.seqs, vec![Some(6), Some(7), None]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn drop_oldest_records_exact_ranges() {
        let dir = tmp();
        let c = OutboxConfig {
            max_events: 5,
            full_policy: FullPolicy::DropOldest,
            ..cfg(&dir)
        };
        let mut o = Outbox::open(&c, "s", "k").unwrap();
        o.append(&vec![body(); 5]).unwrap();
        o.delete_acked(&[SeqRange::new(2, 2)]).unwrap();
        // Backlog 4 (1,3,4,5), room 1; 4 new events need 3 dropped: 1,3,4.
        let a = o.append(&vec![body(); 4]).unwrap();
        assert_eq!(a.seqs, vec![Some(6), Some(7), Some(8), Some(9)]);
        assert_eq!(a.dropped, vec![SeqRange::new(1, 1), SeqRange::new(3, 4)]);
        let s = o.stats().unwrap();
        assert_eq!(s.dropped_events, 3);
        assert_eq!(s.dropped_ranges, a.dropped);
        assert_eq!(s.backlog, 5);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_init_is_required() {
        let dir = tmp();
        let c = cfg(&dir);
        std::fs::write(&c.path, b"this is not a sqlite database, just bytes ....................................................................................").unwrap();
        let err = Outbox::open(&c, "s", "k").err().unwrap();
        assert!(matches!(err, OutboxError::Corrupt { .. }), "{err}");
        assert!(!Path::new(&c.path).exists());
        assert!(find_corrupt_sibling(Path::new(&c.path)).is_some());
        let err = Outbox::open(&c, "s", "k").err().unwrap();
        assert!(matches!(err, OutboxError::NeedsInit { .. }), "{err}");
        let mut o = Outbox::init(&c, "s", "k", 5000).unwrap();
        assert_eq!(o.append(&[body()]).unwrap().seqs, vec![Some(5000)]);
        std::fs::remove_dir_all(dir).ok();
    }
}
