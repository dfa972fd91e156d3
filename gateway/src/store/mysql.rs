//! MySQL (and MariaDB) storage of the processor: versioned migrations,
//! multi-row statements, one transaction per batch. See [`crate::store`]
//! for the tables and why every write is idempotent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use contract::config::MysqlConfig;
use contract::mqtt::SeqRange;
use contract::{Arrival, Event, EventBody, Modality, StatusChange, UtcMillis};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, Transaction, TxOpts, Value};

use super::{
    above_progress, book_from, fold_statuses, patient_type, seqs_by_kiosk, settle_progress,
    Dashboard, KioskProgress, KioskRows, OpenPatient, StatusFold, Storage, StoreError,
    WaitingPredictions, WritePlan, SCHEMA_VERSION,
};
use crate::progress::{Progress, WINDOW};
use crate::queue::{QueueBook, Rooms};

/// Schema versions, applied in order; never edited once released.
const MIGRATIONS: [&str; SCHEMA_VERSION] = [
    // 1: the first released schema.
    "CREATE TABLE IF NOT EXISTS patients (
        id INT AUTO_INCREMENT PRIMARY KEY,
        patient_id VARCHAR(50),
        patient_name VARCHAR(100),
        arrival_time DATETIME(3),
        patient_type VARCHAR(20),
        modality VARCHAR(20),
        predicted_wait_minutes FLOAT,
        elapsed_wait_minutes FLOAT DEFAULT 0.0,
        status VARCHAR(20) DEFAULT 'WAITING',
        is_alerted TINYINT(1) DEFAULT 0,
        event_id VARCHAR(80) NOT NULL,
        site_id VARCHAR(32) NOT NULL,
        kiosk_id VARCHAR(32) NOT NULL,
        seq BIGINT UNSIGNED NOT NULL,
        is_emergency TINYINT(1),
        age TINYINT UNSIGNED,
        with_contrast TINYINT(1),
        called_at DATETIME(3) NULL,
        completed_at DATETIME(3) NULL,
        actual_wait_minutes FLOAT NULL,
        model_version VARCHAR(64),
        ingested_at DATETIME(3) NOT NULL,
        UNIQUE KEY uq_patients_event (event_id),
        KEY ix_patients_site_patient (site_id, patient_id),
        KEY ix_patients_status (status)
     ) ENGINE=InnoDB;
     CREATE TABLE IF NOT EXISTS status_events (
        event_id VARCHAR(80) PRIMARY KEY,
        site_id VARCHAR(32) NOT NULL,
        kiosk_id VARCHAR(32) NOT NULL,
        seq BIGINT UNSIGNED NOT NULL,
        patient_id VARCHAR(50) NOT NULL,
        modality VARCHAR(20) NOT NULL,
        status VARCHAR(20) NOT NULL,
        changed_at DATETIME(3) NOT NULL,
        ingested_at DATETIME(3) NOT NULL,
        KEY ix_status_events_patient (site_id, patient_id)
     ) ENGINE=InnoDB;
     CREATE TABLE IF NOT EXISTS event_ledger (
        kiosk_id VARCHAR(32) NOT NULL,
        seq BIGINT UNSIGNED NOT NULL,
        site_id VARCHAR(32) NOT NULL,
        event_type VARCHAR(20) NOT NULL,
        created_at DATETIME(3) NOT NULL,
        ingested_at DATETIME(3) NOT NULL,
        PRIMARY KEY (kiosk_id, seq)
     ) ENGINE=InnoDB;
     CREATE TABLE IF NOT EXISTS kiosk_progress (
        site_id VARCHAR(32) NOT NULL,
        kiosk_id VARCHAR(32) NOT NULL,
        contiguous_seq BIGINT UNSIGNED NOT NULL,
        max_seq BIGINT UNSIGNED NOT NULL,
        missing BIGINT UNSIGNED NOT NULL,
        gaps TEXT NOT NULL,
        updated_at DATETIME(3) NOT NULL,
        PRIMARY KEY (site_id, kiosk_id)
     ) ENGINE=InnoDB;",
];

/// Most rows per multi-row statement.
const CHUNK: usize = 512;

/// Split `items` into chunks whose lengths are powers of two, largest
/// first (700 rows: 512, 128, 32, 16, 8, 4). A multi-row statement's text
/// depends on its row count, and each new text is a new server-side
/// prepare; with these sizes a connection prepares each statement at most
/// ten times, ever, and then reuses it from its statement cache.
fn chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = rest.len().min(CHUNK);
        let size = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let (head, tail) = rest.split_at(size);
        rest = tail;
        Some(head)
    })
}

impl From<mysql::Error> for StoreError {
    fn from(e: mysql::Error) -> Self {
        match &e {
            mysql::Error::MySqlError(m) if ![1205, 1213, 2006, 2013].contains(&m.code) => {
                StoreError::Refused(e.to_string())
            }
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// A DATETIME(3) value.
pub fn datetime(t: UtcMillis) -> Value {
    let (y, mo, d, h, mi, s, ms) = t.to_parts();
    Value::Date(
        y as u16,
        mo as u8,
        d as u8,
        h as u8,
        mi as u8,
        s as u8,
        ms * 1000,
    )
}

fn from_datetime(v: &Value) -> Option<UtcMillis> {
    match v {
        Value::Date(y, mo, d, h, mi, s, us) => Some(UtcMillis::from_parts(
            i64::from(*y),
            u32::from(*mo),
            u32::from(*d),
            u32::from(*h),
            u32::from(*mi),
            u32::from(*s),
            us / 1000,
        )),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|t| format!("{}Z", t.replacen(' ', "T", 1)).parse().ok()),
        _ => None,
    }
}

/// Connection options: UTC session, the configured database.
pub fn opts(cfg: &MysqlConfig, with_db: bool) -> Opts {
    let b = OptsBuilder::new()
        .ip_or_hostname(Some(cfg.host.clone()))
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(cfg.password.get().map(str::to_string))
        .tcp_connect_timeout(Some(std::time::Duration::from_secs(5)))
        // Room for every (statement, chunk size) pair `write` uses.
        .stmt_cache_size(Some(128))
        .read_timeout(Some(std::time::Duration::from_secs(60)))
        .write_timeout(Some(std::time::Duration::from_secs(60)))
        .init(vec![
            "SET time_zone = '+00:00'",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        ]);
    let b = if with_db {
        b.db_name(Some(cfg.database.clone()))
    } else {
        b
    };
    Opts::from(b)
}

/// A connection to the processor's database.
pub struct MysqlStore {
    conn: Conn,
}

impl MysqlStore {
    /// Connect, creating the database if missing, and migrate the schema.
    pub fn connect(cfg: &MysqlConfig) -> Result<MysqlStore, StoreError> {
        {
            let mut admin = Conn::new(opts(cfg, false))?;
            admin.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{}`", cfg.database))?;
        }
        let mut conn = Conn::new(opts(cfg, true))?;
        migrate(&mut conn)?;
        Ok(MysqlStore { conn })
    }

    /// The underlying connection (for reports and tests).
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl Storage for MysqlStore {
    /// The schema version of the database.
    fn schema_version(&mut self) -> Result<usize, StoreError> {
        let v: Option<u64> = self
            .conn
            .query_first("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")?;
        Ok(v.unwrap_or(0) as usize)
    }

    /// Write one batch in one transaction; returns the kiosks' progress.
    fn write(&mut self, plan: &WritePlan) -> Result<Vec<KioskProgress>, StoreError> {
        let t0 = std::time::Instant::now();
        let mut tx = self.conn.start_transaction(TxOpts::default())?;
        // 1. Lock the batch's kiosks' progress rows (creating missing ones),
        //    in key order, so processors writing the same kiosk take turns
        //    and never deadlock on these rows. Taking turns from the first
        //    statement also means two transactions that could store the
        //    same event (a partition handed from one member to another
        //    replays what its old owner had not committed offsets for)
        //    never overlap, so the ledger's verdict of what is new, which
        //    the progress count trusts, and a new arrival's recount never
        //    race another writer. Locking only at the end, to let writers
        //    overlap, was tried and measured no faster here (BENCHMARKS.md).
        let kiosks: BTreeSet<(&str, &str)> = plan
            .events()
            .map(|e| (e.identity.site_id.as_str(), e.identity.kiosk_id.as_str()))
            .collect();
        let mut progress = BTreeMap::new();
        let kiosks: Vec<(&str, &str)> = kiosks.into_iter().collect();
        for chunk in chunks(&kiosks) {
            let params = pair_params(chunk);
            tx.exec_drop(
                format!(
                    "INSERT INTO kiosk_progress (site_id, kiosk_id, contiguous_seq, max_seq, missing, gaps, updated_at)
                     VALUES {} ON DUPLICATE KEY UPDATE kiosk_id = kiosk_id",
                    placeholders(chunk.len(), "(?, ?, 0, 0, 0, '[]', UTC_TIMESTAMP(3))")
                ),
                params.clone(),
            )?;
            let rows: Vec<(String, String, u64, u64, u64)> = tx.exec(
                format!(
                    "SELECT site_id, kiosk_id, contiguous_seq, max_seq, missing FROM kiosk_progress
                     WHERE (site_id, kiosk_id) IN ({}) FOR UPDATE",
                    placeholders(chunk.len(), "(?, ?)")
                ),
                params,
            )?;
            for (site, kiosk, contiguous, max_seq, missing) in rows {
                progress.insert(
                    (site, kiosk),
                    Progress {
                        contiguous,
                        max_seq,
                        missing,
                        gaps: Vec::new(),
                    },
                );
            }
        }
        let t1 = t0.elapsed();
        // 2. The ledger decides what is new. Usually everything above the
        //    kiosks' prefixes is; a replay shows as fewer rows inserted than
        //    offered, and only then are the existing ones looked up.
        let mut fresh = above_progress(plan, &progress);
        tx.query_drop("SAVEPOINT ledger")?;
        if insert_ledger(&mut tx, &fresh)? < fresh.len() as u64 {
            tx.query_drop("ROLLBACK TO SAVEPOINT ledger")?;
            let stored = ledger_holds(&mut tx, &fresh)?;
            fresh.retain(|e| !stored.contains(&(e.identity.kiosk_id.clone(), e.identity.seq)));
            insert_ledger(&mut tx, &fresh)?;
        }
        let t2 = t0.elapsed();
        // 3. Rows of the new events.
        let predicted: HashMap<(&str, u64), f32> = plan
            .arrivals
            .iter()
            .map(|a| {
                (
                    (a.event.identity.kiosk_id.as_str(), a.event.identity.seq),
                    a.predicted_wait_minutes,
                )
            })
            .collect();
        let arrivals: Vec<(&Event, &Arrival, f32)> = fresh
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Arrival(a) => Some((
                    *e,
                    a,
                    predicted
                        .get(&(e.identity.kiosk_id.as_str(), e.identity.seq))
                        .copied()
                        .unwrap_or(0.0),
                )),
                EventBody::StatusChange(_) => None,
            })
            .collect();
        for chunk in chunks(&arrivals) {
            let mut params = Vec::with_capacity(chunk.len() * 14);
            for (e, a, predicted) in chunk {
                let id = &e.identity;
                params.extend([
                    Value::from(&a.patient_id),
                    Value::from(&a.patient_name),
                    datetime(a.arrival_time),
                    Value::from(patient_type(a.patient_type)),
                    Value::from(a.modality.as_str()),
                    Value::from(*predicted),
                    Value::from(e.event_id()),
                    Value::from(&id.site_id),
                    Value::from(&id.kiosk_id),
                    Value::from(id.seq),
                    Value::from(a.is_emergency),
                    Value::from(a.age),
                    Value::from(a.with_contrast),
                    Value::from(&plan.model_version),
                ]);
            }
            tx.exec_drop(
                format!(
                    "INSERT INTO patients (patient_id, patient_name, arrival_time, patient_type, modality,
                        predicted_wait_minutes, event_id, site_id, kiosk_id, seq, is_emergency, age,
                        with_contrast, model_version, ingested_at) VALUES {}
                     ON DUPLICATE KEY UPDATE id = id",
                    placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(3))")
                ),
                params,
            )?;
        }
        let statuses: Vec<(&Event, &StatusChange)> = fresh
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::StatusChange(s) => Some((*e, s)),
                EventBody::Arrival(_) => None,
            })
            .collect();
        for chunk in chunks(&statuses) {
            let mut params = Vec::with_capacity(chunk.len() * 8);
            for (e, s) in chunk {
                params.extend([
                    Value::from(e.event_id()),
                    Value::from(&e.identity.site_id),
                    Value::from(&e.identity.kiosk_id),
                    Value::from(e.identity.seq),
                    Value::from(&s.patient_id),
                    Value::from(s.modality.as_str()),
                    Value::from(s.status.as_str()),
                    datetime(s.changed_at),
                ]);
            }
            tx.exec_drop(
                format!(
                    "INSERT INTO status_events (event_id, site_id, kiosk_id, seq, patient_id, modality,
                        status, changed_at, ingested_at) VALUES {}
                     ON DUPLICATE KEY UPDATE event_id = event_id",
                    placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(3))")
                ),
                params,
            )?;
        }
        let t3 = t0.elapsed();
        // 4. Status, call time and true wait. A patient whose arrival is new
        //    here is recounted from all its stored status events (some may
        //    have come before it); every other patient a status touched
        //    takes this batch's fold, which ends where a recount would.
        let arrived: BTreeSet<(&str, &str)> = fresh
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Arrival(a) => Some((e.identity.site_id.as_str(), a.patient_id.as_str())),
                EventBody::StatusChange(_) => None,
            })
            .collect();
        let arrived_patients: Vec<(&str, &str)> = arrived.iter().copied().collect();
        for chunk in chunks(&arrived_patients) {
            recount_statuses(&mut tx, chunk)?;
        }
        let folds: Vec<((&str, &str), StatusFold)> =
            fold_statuses(&fresh, &arrived).into_iter().collect();
        for chunk in chunks(&folds) {
            apply_status_folds(&mut tx, chunk)?;
        }
        let t4 = t0.elapsed();
        // 5. Progress: exact from the new seqs, reading the ledger only
        //    where the prefix may grow or gaps remain.
        let new_seqs = seqs_by_kiosk(&fresh);
        let mut out = Vec::with_capacity(progress.len());
        for ((site, kiosk), mut p) in progress {
            let new = new_seqs
                .get(&(site.as_str(), kiosk.as_str()))
                .map_or(&[][..], Vec::as_slice);
            settle_progress(&mut p, new, |after| {
                tx.exec::<u64, _, _>(
                    format!("SELECT seq FROM event_ledger WHERE kiosk_id = ? AND seq > ? ORDER BY seq LIMIT {WINDOW}"),
                    (&kiosk, after),
                )
            })?;
            out.push((site, kiosk, p));
        }
        for chunk in chunks(&out) {
            let mut params = Vec::with_capacity(chunk.len() * 6);
            for (site, kiosk, p) in chunk {
                params.extend([
                    Value::from(site),
                    Value::from(kiosk),
                    Value::from(p.contiguous),
                    Value::from(p.max_seq),
                    Value::from(p.missing),
                    Value::from(serde_json::to_string(&p.gaps).unwrap_or_else(|_| "[]".into())),
                ]);
            }
            tx.exec_drop(
                format!(
                    "INSERT INTO kiosk_progress (site_id, kiosk_id, contiguous_seq, max_seq, missing, gaps, updated_at)
                     VALUES {} ON DUPLICATE KEY UPDATE contiguous_seq = VALUES(contiguous_seq),
                        max_seq = VALUES(max_seq), missing = VALUES(missing), gaps = VALUES(gaps),
                        updated_at = VALUES(updated_at)",
                    placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(3))")
                ),
                params,
            )?;
        }
        let t5 = t0.elapsed();
        tx.commit()?;
        log::debug!(
            "batch of {} events ({} new) written in {:.1} ms: progress lock {:.1}, ledger {:.1}, \
             rows {:.1}, statuses {:.1}, progress {:.1}, commit {:.1}",
            plan.len(),
            fresh.len(),
            ms(t0.elapsed()),
            ms(t1),
            ms(t2 - t1),
            ms(t3 - t2),
            ms(t4 - t3),
            ms(t5 - t4),
            ms(t0.elapsed() - t5)
        );
        Ok(out)
    }

    fn rebuild(&mut self, rooms: Rooms) -> Result<QueueBook, StoreError> {
        let rows: Vec<mysql::Row> = self.conn.query(
            "SELECT site_id, patient_id, modality, is_emergency, with_contrast, arrival_time, status, called_at
             FROM patients WHERE status IN ('WAITING', 'WITH_DOCTOR') ORDER BY arrival_time, id",
        )?;
        let open = rows.into_iter().filter_map(|row| {
            let get = |i: usize| row.as_ref(i).cloned().unwrap_or(Value::NULL);
            let site = mysql::from_value_opt::<String>(get(0)).ok()?;
            let patient_id = mysql::from_value_opt::<String>(get(1)).ok()?;
            let modality = Modality::parse(&mysql::from_value_opt::<String>(get(2)).ok()?)?;
            let with_doctor =
                mysql::from_value_opt::<String>(get(6)).as_deref() == Ok("WITH_DOCTOR");
            Some(OpenPatient {
                site,
                patient_id,
                modality,
                emergency: mysql::from_value_opt::<bool>(get(3)).unwrap_or(false),
                with_contrast: mysql::from_value_opt::<bool>(get(4)).unwrap_or(false),
                arrived: from_datetime(&get(5))?,
                called: if with_doctor {
                    from_datetime(&get(7))
                } else {
                    None
                },
            })
        });
        Ok(book_from(rooms, open))
    }

    /// Predicted waits and arrival times of patients still waiting.
    fn waiting_predictions(&mut self) -> Result<WaitingPredictions, StoreError> {
        let rows: Vec<(String, String, Option<f32>, Value)> = self.conn.query(
            "SELECT site_id, patient_id, predicted_wait_minutes, arrival_time FROM patients WHERE status = 'WAITING'",
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, p, w, at)| Some(((s, p), (w?, from_datetime(&at)?))))
            .collect())
    }

    /// A kiosk's recorded progress.
    fn progress(&mut self, site: &str, kiosk: &str) -> Result<Option<Progress>, StoreError> {
        let row: Option<(u64, u64, u64, String)> = self.conn.exec_first(
            "SELECT contiguous_seq, max_seq, missing, gaps FROM kiosk_progress WHERE site_id = ? AND kiosk_id = ?",
            (site, kiosk),
        )?;
        Ok(row.map(|(contiguous, max_seq, missing, gaps)| Progress {
            contiguous,
            max_seq,
            missing,
            gaps: serde_json::from_str::<Vec<SeqRange>>(&gaps).unwrap_or_default(),
        }))
    }

    fn kiosk_rows(&mut self, kiosks: &[String]) -> Result<Vec<KioskRows>, StoreError> {
        if kiosks.is_empty() {
            return Ok(Vec::new());
        }
        let marks = placeholders(kiosks.len(), "?");
        let params: Vec<Value> = kiosks
            .iter()
            .chain(kiosks.iter())
            .map(Value::from)
            .collect();
        let rows: Vec<(String, u64, u64, u64, Option<u64>)> = self.conn.exec(
            format!(
                "SELECT kiosk_id, COUNT(*), COUNT(DISTINCT event_id), COUNT(DISTINCT seq), MAX(seq) FROM (
                    SELECT kiosk_id, event_id, seq FROM patients WHERE kiosk_id IN ({marks})
                    UNION ALL
                    SELECT kiosk_id, event_id, seq FROM status_events WHERE kiosk_id IN ({marks})) t
                 GROUP BY kiosk_id ORDER BY kiosk_id"
            ),
            params,
        )?;
        Ok(rows
            .into_iter()
            .map(
                |(kiosk_id, rows, distinct_events, distinct_seqs, max_seq)| KioskRows {
                    kiosk_id,
                    rows,
                    distinct_events,
                    distinct_seqs,
                    max_seq: max_seq.unwrap_or(0),
                },
            )
            .collect())
    }

    fn dashboard(&mut self, kiosks: &[String], recent: usize) -> Result<Dashboard, StoreError> {
        let mut d = Dashboard::default();
        if kiosks.is_empty() {
            return Ok(d);
        }
        let marks = placeholders(kiosks.len(), "?");
        let params = || kiosks.iter().map(Value::from).collect::<Vec<Value>>();
        let open: Vec<(String, String, u64)> = self.conn.exec(
            format!(
                "SELECT status, modality, COUNT(*) FROM patients
                 WHERE kiosk_id IN ({marks}) AND status IN ('WAITING', 'WITH_DOCTOR')
                 GROUP BY status, modality"
            ),
            params(),
        )?;
        for (status, modality, n) in open {
            let into = if status == "WAITING" {
                &mut d.waiting
            } else {
                &mut d.with_doctor
            };
            into.insert(modality, n);
        }
        let mut p = params();
        p.push(Value::from(recent as u64));
        d.recent_waits = self.conn.exec(
            format!(
                "SELECT modality, predicted_wait_minutes, actual_wait_minutes FROM patients
                 WHERE kiosk_id IN ({marks}) AND actual_wait_minutes IS NOT NULL
                 ORDER BY called_at DESC, id DESC LIMIT ?"
            ),
            p,
        )?;
        let checked: Option<(u64, Option<f64>)> = self.conn.exec_first(
            format!(
                "SELECT COUNT(*), AVG(ABS(predicted_wait_minutes - actual_wait_minutes)) FROM patients
                 WHERE kiosk_id IN ({marks}) AND actual_wait_minutes IS NOT NULL"
            ),
            params(),
        )?;
        if let Some((n, mae)) = checked {
            d.checked = n;
            d.mean_abs_error = mae.unwrap_or(0.0);
        }
        Ok(d)
    }
}

/// Merge status folds into patient rows: `source` yields one row per
/// (site_id, patient_id) with the fold's `called`, `completed` (earliest
/// times, NULL if none) and `gone` (any departure). Each new time is the
/// earlier of the stored and the folded one, so merging is idempotent and
/// merging into a fresh row equals a recount; for the same reason it does
/// not matter whether MariaDB's multi-table UPDATE reads a column before or
/// after its own assignment. A patient without a row is untouched (its
/// arrival's recount will see the stored statuses).
fn merge_folds(
    tx: &mut Transaction<'_>,
    source: &str,
    params: Vec<Value>,
) -> Result<(), StoreError> {
    const CALLED: &str = "LEAST(COALESCE(s.called, p.called_at), COALESCE(p.called_at, s.called))";
    const COMPLETED: &str =
        "LEAST(COALESCE(s.completed, p.completed_at), COALESCE(p.completed_at, s.completed))";
    tx.exec_drop(
        format!(
            "UPDATE patients p JOIN ({source}) s
             ON p.site_id = s.site_id AND p.patient_id = s.patient_id
             SET p.called_at = {CALLED},
                 p.completed_at = {COMPLETED},
                 p.status = CASE WHEN {COMPLETED} IS NOT NULL THEN 'COMPLETED'
                                 WHEN {CALLED} IS NOT NULL THEN 'WITH_DOCTOR'
                                 WHEN s.gone OR p.status = 'LEFT' THEN 'LEFT' ELSE 'WAITING' END,
                 p.actual_wait_minutes =
                      TIMESTAMPDIFF(MICROSECOND, p.arrival_time, {CALLED}) / 60000000,
                 p.elapsed_wait_minutes = COALESCE(
                      TIMESTAMPDIFF(MICROSECOND, p.arrival_time, {CALLED}) / 60000000,
                      p.elapsed_wait_minutes)"
        ),
        params,
    )?;
    Ok(())
}

/// Recount the given (site, patient)s' statuses from all their stored
/// status events (the fold of `status_events`, merged).
fn recount_statuses(tx: &mut Transaction<'_>, patients: &[(&str, &str)]) -> Result<(), StoreError> {
    let params = pair_params(patients);
    let source = format!(
        "SELECT site_id, patient_id,
                MIN(CASE WHEN status = 'WITH_DOCTOR' THEN changed_at END) AS called,
                MIN(CASE WHEN status = 'COMPLETED' THEN changed_at END) AS completed,
                MAX(status = 'LEFT') AS gone
         FROM status_events WHERE (site_id, patient_id) IN ({})
         GROUP BY site_id, patient_id",
        placeholders(patients.len(), "(?, ?)")
    );
    merge_folds(tx, &source, params)
}

/// Merge a batch's own status folds into their patients' rows.
fn apply_status_folds(
    tx: &mut Transaction<'_>,
    folds: &[((&str, &str), StatusFold)],
) -> Result<(), StoreError> {
    let mut params = Vec::with_capacity(folds.len() * 5);
    for ((site, patient), f) in folds {
        params.extend([
            Value::from(*site),
            Value::from(*patient),
            f.called.map_or(Value::NULL, datetime),
            f.completed.map_or(Value::NULL, datetime),
            Value::from(f.left),
        ]);
    }
    let source = format!(
        "SELECT ? AS site_id, ? AS patient_id, CAST(? AS DATETIME(3)) AS called, \
         CAST(? AS DATETIME(3)) AS completed, ? AS gone{}",
        " UNION ALL SELECT ?, ?, CAST(? AS DATETIME(3)), CAST(? AS DATETIME(3)), ?"
            .repeat(folds.len().saturating_sub(1))
    );
    merge_folds(tx, &source, params)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Insert the ledger rows of `events`; returns the rows inserted.
fn insert_ledger(tx: &mut Transaction<'_>, events: &[&Event]) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for chunk in chunks(events) {
        let mut params = Vec::with_capacity(chunk.len() * 5);
        for e in chunk {
            params.extend([
                Value::from(&e.identity.kiosk_id),
                Value::from(e.identity.seq),
                Value::from(&e.identity.site_id),
                Value::from(e.body.event_type()),
                datetime(e.identity.created_at),
            ]);
        }
        tx.exec_drop(
            format!(
                "INSERT IGNORE INTO event_ledger (kiosk_id, seq, site_id, event_type, created_at, ingested_at) VALUES {}",
                placeholders(chunk.len(), "(?, ?, ?, ?, ?, UTC_TIMESTAMP(3))")
            ),
            params,
        )?;
        inserted += tx.affected_rows();
    }
    Ok(inserted)
}

/// Which of `events` the ledger already holds, as (kiosk, seq).
fn ledger_holds(
    tx: &mut Transaction<'_>,
    events: &[&Event],
) -> Result<HashSet<(String, u64)>, StoreError> {
    let mut held = HashSet::new();
    for chunk in chunks(events) {
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|e| {
                [
                    Value::from(&e.identity.kiosk_id),
                    Value::from(e.identity.seq),
                ]
            })
            .collect();
        let rows: Vec<(String, u64)> = tx.exec(
            format!(
                "SELECT kiosk_id, seq FROM event_ledger WHERE (kiosk_id, seq) IN ({})",
                placeholders(chunk.len(), "(?, ?)")
            ),
            params,
        )?;
        held.extend(rows);
    }
    Ok(held)
}

/// The parameters of a `(a, b) IN ((?, ?), ...)` list.
fn pair_params(pairs: &[(&str, &str)]) -> Vec<Value> {
    pairs
        .iter()
        .flat_map(|(a, b)| [Value::from(*a), Value::from(*b)])
        .collect()
}

/// `n` copies of `one`, comma-separated. Every value is a bound parameter:
/// besides quoting, this keeps MariaDB from rewriting a long `IN` list of
/// literals (1,000 values or more, `in_predicate_conversion_threshold`)
/// into a subquery, which on `status_events` became a full scan: 4.7 s for
/// 512 (site, patient) pairs as literals, 23 ms as parameters (measured on
/// the processor bench's database, 200,000 events).
fn placeholders(n: usize, one: &str) -> String {
    vec![one; n].join(", ")
}

/// Apply missing migrations, each in order and recorded; never drops data.
fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INT PRIMARY KEY, applied_at DATETIME(3) NOT NULL) ENGINE=InnoDB",
    )?;
    // One processor migrates at a time.
    let _: Option<i64> = conn.query_first("SELECT GET_LOCK('ktk_migrations', 60)")?;
    let result = (|| {
        let current: Option<u64> =
            conn.query_first("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")?;
        let current = current.unwrap_or(0) as usize;
        if current > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: current,
                expected: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                conn.query_drop(statement)?;
            }
            conn.exec_drop(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, UTC_TIMESTAMP(3))",
                (i + 1,),
            )?;
            log::info!("database schema migrated to version {}", i + 1);
        }
        Ok(())
    })();
    let _: Option<i64> = conn.query_first("SELECT RELEASE_LOCK('ktk_migrations')")?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_largest_first_and_cover_everything() {
        let items: Vec<u32> = (0..2000).collect();
        let sizes: Vec<usize> = chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![512, 512, 512, 256, 128, 64, 16]);
        let back: Vec<u32> = chunks(&items).flatten().copied().collect();
        assert_eq!(back, items);
        assert_eq!(
            chunks(&items[..700]).map(<[u32]>::len).collect::<Vec<_>>(),
            vec![512, 128, 32, 16, 8, 4]
        );
        assert_eq!(chunks(&items[..0]).count(), 0);
        assert_eq!(
            chunks(&items[..1]).map(<[u32]>::len).collect::<Vec<_>>(),
            vec![1]
        );
    }
}
