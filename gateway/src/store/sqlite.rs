//! SQLite storage of the processor: the same tables as MySQL in one file,
//! for the demo (and anyone who wants the pipeline without a database
//! server). Times are `YYYY-MM-DD HH:MM:SS.fff` text, the form MySQL prints
//! a DATETIME(3) in; WAL and `synchronous = FULL`, so a committed batch
//! survives a crash before the processor commits its offsets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use contract::mqtt::SeqRange;
use contract::{EventBody, Modality};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::{
    above_progress, book_from, datetime_text, parse_datetime_text, patient_type, seqs_by_kiosk,
    settle_progress, Dashboard, KioskProgress, KioskRows, OpenPatient, Storage, StoreError,
    WaitingPredictions, WritePlan, SCHEMA_VERSION,
};
use crate::progress::{Progress, WINDOW};
use crate::queue::{QueueBook, Rooms};

/// Schema versions, applied in order; never edited once released.
const MIGRATIONS: [&str; SCHEMA_VERSION] = [
    // 1: the first released schema (MySQL's version 1 in SQLite's dialect).
    "CREATE TABLE IF NOT EXISTS patients (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        patient_id TEXT,
        patient_name TEXT,
        arrival_time TEXT,
        patient_type TEXT,
        modality TEXT,
        predicted_wait_minutes REAL,
        elapsed_wait_minutes REAL DEFAULT 0.0,
        status TEXT DEFAULT 'WAITING',
        is_alerted INTEGER DEFAULT 0,
        event_id TEXT NOT NULL UNIQUE,
        site_id TEXT NOT NULL,
        kiosk_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        is_emergency INTEGER,
        age INTEGER,
        with_contrast INTEGER,
        called_at TEXT NULL,
        completed_at TEXT NULL,
        actual_wait_minutes REAL NULL,
        model_version TEXT,
        ingested_at TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS ix_patients_site_patient ON patients (site_id, patient_id);
     CREATE INDEX IF NOT EXISTS ix_patients_status ON patients (status);
     CREATE INDEX IF NOT EXISTS ix_patients_kiosk ON patients (kiosk_id, seq);
     CREATE TABLE IF NOT EXISTS status_events (
        event_id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL,
        kiosk_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        patient_id TEXT NOT NULL,
        modality TEXT NOT NULL,
        status TEXT NOT NULL,
        changed_at TEXT NOT NULL,
        ingested_at TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS ix_status_events_patient ON status_events (site_id, patient_id);
     CREATE INDEX IF NOT EXISTS ix_status_events_kiosk ON status_events (kiosk_id, seq);
     CREATE TABLE IF NOT EXISTS event_ledger (
        kiosk_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        site_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        created_at TEXT NOT NULL,
        ingested_at TEXT NOT NULL,
        PRIMARY KEY (kiosk_id, seq)
     );
     CREATE TABLE IF NOT EXISTS kiosk_progress (
        site_id TEXT NOT NULL,
        kiosk_id TEXT NOT NULL,
        contiguous_seq INTEGER NOT NULL,
        max_seq INTEGER NOT NULL,
        missing INTEGER NOT NULL,
        gaps TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (site_id, kiosk_id)
     );",
];

/// The current time as SQL text, computed by SQLite.
const NOW: &str = "strftime('%Y-%m-%d %H:%M:%f', 'now')";

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::CannotOpen,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Refused(e.to_string()),
        }
    }
}

/// A connection to an SQLite file holding the processor's tables.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Open (creating if missing) and migrate.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection (for reports and tests).
    pub fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        let current = current.max(0) as usize;
        if current > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: current,
                expected: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.execute_batch(sql)?;
            tx.execute(
                &format!("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, {NOW})"),
                params![(i + 1) as i64],
            )?;
            log::info!("database schema migrated to version {}", i + 1);
        }
        tx.commit()?;
        Ok(())
    }
}

impl Storage for SqliteStore {
    fn schema_version(&mut self) -> Result<usize, StoreError> {
        let v: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        Ok(v.max(0) as usize)
    }

    fn write(&mut self, plan: &WritePlan) -> Result<Vec<KioskProgress>, StoreError> {
        // IMMEDIATE: the transaction holds the write lock from the start,
        // so writers take turns and the progress read below stays true.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let kiosks: BTreeSet<(&str, &str)> = plan
            .events()
            .map(|e| (e.identity.site_id.as_str(), e.identity.kiosk_id.as_str()))
            .collect();
        let mut progress = BTreeMap::new();
        for (site, kiosk) in kiosks {
            let row: Option<(i64, i64, i64)> = tx
                .query_row(
                    "SELECT contiguous_seq, max_seq, missing FROM kiosk_progress WHERE site_id = ?1 AND kiosk_id = ?2",
                    params![site, kiosk],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let (contiguous, max_seq, missing) = row.unwrap_or_default();
            progress.insert(
                (site.to_string(), kiosk.to_string()),
                Progress {
                    contiguous: contiguous.max(0) as u64,
                    max_seq: max_seq.max(0) as u64,
                    missing: missing.max(0) as u64,
                    gaps: Vec::new(),
                },
            );
        }
        let mut fresh = Vec::new();
        {
            // The ledger decides what is new: a row it ignores was stored before.
            let mut ledger = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO event_ledger (kiosk_id, seq, site_id, event_type, created_at, ingested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, {NOW})"
            ))?;
            for e in above_progress(plan, &progress) {
                let inserted = ledger.execute(params![
                    e.identity.kiosk_id,
                    e.identity.seq as i64,
                    e.identity.site_id,
                    e.body.event_type(),
                    datetime_text(e.identity.created_at),
                ])?;
                if inserted > 0 {
                    fresh.push(e);
                }
            }
            let predicted: HashMap<(&str, u64), f32> = plan
                .arrivals
                .iter()
                .map(|a| {
                    let id = &a.event.identity;
                    ((id.kiosk_id.as_str(), id.seq), a.predicted_wait_minutes)
                })
                .collect();
            let mut patient = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO patients (patient_id, patient_name, arrival_time, patient_type, modality,
                    predicted_wait_minutes, event_id, site_id, kiosk_id, seq, is_emergency, age,
                    with_contrast, model_version, ingested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, {NOW})"
            ))?;
            let mut status = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO status_events (event_id, site_id, kiosk_id, seq, patient_id, modality,
                    status, changed_at, ingested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, {NOW})"
            ))?;
            for e in &fresh {
                let id = &e.identity;
                match &e.body {
                    EventBody::Arrival(a) => {
                        let wait = predicted
                            .get(&(id.kiosk_id.as_str(), id.seq))
                            .copied()
                            .unwrap_or(0.0);
                        patient.execute(params![
                            a.patient_id,
                            a.patient_name,
                            datetime_text(a.arrival_time),
                            patient_type(a.patient_type),
                            a.modality.as_str(),
                            f64::from(wait),
                            e.event_id(),
                            id.site_id,
                            id.kiosk_id,
                            id.seq as i64,
                            a.is_emergency,
                            a.age,
                            a.with_contrast,
                            plan.model_version,
                        ])?;
                    }
                    EventBody::StatusChange(s) => {
                        status.execute(params![
                            e.event_id(),
                            id.site_id,
                            id.kiosk_id,
                            id.seq as i64,
                            s.patient_id,
                            s.modality.as_str(),
                            s.status.as_str(),
                            datetime_text(s.changed_at),
                        ])?;
                    }
                }
            }
            // Recompute status, call time and true wait of every patient a
            // new event touched.
            let touched: BTreeSet<(&str, &str)> = fresh
                .iter()
                .map(|e| (e.identity.site_id.as_str(), e.body.patient_id()))
                .collect();
            let mut recompute = tx.prepare_cached(
                "UPDATE patients SET
                    called_at = s.called,
                    completed_at = s.completed,
                    status = CASE WHEN s.completed IS NOT NULL THEN 'COMPLETED'
                                  WHEN s.called IS NOT NULL THEN 'WITH_DOCTOR'
                                  WHEN s.gone THEN 'LEFT' ELSE 'WAITING' END,
                    actual_wait_minutes = CASE WHEN s.called IS NOT NULL
                         THEN (julianday(s.called) - julianday(patients.arrival_time)) * 1440.0 END,
                    elapsed_wait_minutes = COALESCE(
                         (julianday(s.called) - julianday(patients.arrival_time)) * 1440.0,
                         patients.elapsed_wait_minutes)
                 FROM (SELECT site_id, patient_id,
                              MIN(CASE WHEN status = 'WITH_DOCTOR' THEN changed_at END) AS called,
                              MIN(CASE WHEN status = 'COMPLETED' THEN changed_at END) AS completed,
                              MAX(status = 'LEFT') AS gone
                       FROM status_events WHERE site_id = ?1 AND patient_id = ?2
                       GROUP BY site_id, patient_id) AS s
                 WHERE patients.site_id = s.site_id AND patients.patient_id = s.patient_id",
            )?;
            for (site, patient_id) in touched {
                recompute.execute(params![site, patient_id])?;
            }
        }
        // Progress: exact from the new seqs, reading the ledger only where
        // the prefix may grow or gaps remain.
        let new_seqs = seqs_by_kiosk(&fresh);
        let mut out = Vec::new();
        for ((site, kiosk), mut p) in progress {
            let new = new_seqs
                .get(&(site.as_str(), kiosk.as_str()))
                .map_or(&[][..], Vec::as_slice);
            settle_progress(&mut p, new, |after| {
                let mut q = tx.prepare_cached(&format!(
                    "SELECT seq FROM event_ledger WHERE kiosk_id = ?1 AND seq > ?2 ORDER BY seq LIMIT {WINDOW}"
                ))?;
                let rows = q.query_map(params![kiosk, after as i64], |r| r.get::<_, i64>(0))?;
                rows.map(|r| r.map(|s| s.max(0) as u64))
                    .collect::<Result<Vec<u64>, _>>()
            })?;
            let gaps = serde_json::to_string(&p.gaps).unwrap_or_else(|_| "[]".into());
            tx.execute(
                &format!(
                    "INSERT INTO kiosk_progress (site_id, kiosk_id, contiguous_seq, max_seq, missing, gaps, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, {NOW})
                     ON CONFLICT (site_id, kiosk_id) DO UPDATE SET contiguous_seq = excluded.contiguous_seq,
                        max_seq = excluded.max_seq, missing = excluded.missing, gaps = excluded.gaps,
                        updated_at = excluded.updated_at"
                ),
                params![site, kiosk, p.contiguous as i64, p.max_seq as i64, p.missing as i64, gaps],
            )?;
            out.push((site, kiosk, p));
        }
        tx.commit()?;
        Ok(out)
    }

    fn rebuild(&mut self, rooms: Rooms) -> Result<QueueBook, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT site_id, patient_id, modality, is_emergency, with_contrast, arrival_time, status, called_at
             FROM patients WHERE status IN ('WAITING', 'WITH_DOCTOR') ORDER BY arrival_time, id",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<bool>>(3)?,
                r.get::<_, Option<bool>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut open = Vec::new();
        for row in rows {
            let (site, patient_id, modality, emergency, contrast, arrived, status, called) = row?;
            let (Some(modality), Some(arrived)) =
                (Modality::parse(&modality), parse_datetime_text(&arrived))
            else {
                continue;
            };
            open.push(OpenPatient {
                site,
                patient_id,
                modality,
                emergency: emergency.unwrap_or(false),
                with_contrast: contrast.unwrap_or(false),
                arrived,
                called: if status == "WITH_DOCTOR" {
                    called.as_deref().and_then(parse_datetime_text)
                } else {
                    None
                },
            });
        }
        Ok(book_from(rooms, open))
    }

    fn waiting_predictions(&mut self) -> Result<WaitingPredictions, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT site_id, patient_id, predicted_wait_minutes, arrival_time FROM patients WHERE status = 'WAITING'",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = WaitingPredictions::new();
        for row in rows {
            let (site, patient, wait, arrived) = row?;
            if let (Some(w), Some(at)) = (wait, parse_datetime_text(&arrived)) {
                out.insert((site, patient), (w as f32, at));
            }
        }
        Ok(out)
    }

    fn progress(&mut self, site: &str, kiosk: &str) -> Result<Option<Progress>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT contiguous_seq, max_seq, missing, gaps FROM kiosk_progress WHERE site_id = ?1 AND kiosk_id = ?2",
                params![site, kiosk],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.map(|(contiguous, max_seq, missing, gaps)| Progress {
            contiguous: contiguous.max(0) as u64,
            max_seq: max_seq.max(0) as u64,
            missing: missing.max(0) as u64,
            gaps: serde_json::from_str::<Vec<SeqRange>>(&gaps).unwrap_or_default(),
        }))
    }

    fn kiosk_rows(&mut self, kiosks: &[String]) -> Result<Vec<KioskRows>, StoreError> {
        if kiosks.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; kiosks.len()].join(", ");
        let mut q = self.conn.prepare(&format!(
            "SELECT kiosk_id, COUNT(*), COUNT(DISTINCT event_id), COUNT(DISTINCT seq), MAX(seq) FROM (
                SELECT kiosk_id, event_id, seq FROM patients WHERE kiosk_id IN ({marks})
                UNION ALL
                SELECT kiosk_id, event_id, seq FROM status_events WHERE kiosk_id IN ({marks}))
             GROUP BY kiosk_id ORDER BY kiosk_id"
        ))?;
        let rows = q.query_map(params_from_iter(kiosks.iter().chain(kiosks.iter())), |r| {
            Ok(KioskRows {
                kiosk_id: r.get(0)?,
                rows: r.get::<_, i64>(1)?.max(0) as u64,
                distinct_events: r.get::<_, i64>(2)?.max(0) as u64,
                distinct_seqs: r.get::<_, i64>(3)?.max(0) as u64,
                max_seq: r.get::<_, Option<i64>>(4)?.unwrap_or(0).max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn dashboard(&mut self, kiosks: &[String], recent: usize) -> Result<Dashboard, StoreError> {
        let mut d = Dashboard::default();
        if kiosks.is_empty() {
            return Ok(d);
        }
        let marks = vec!["?"; kiosks.len()].join(", ");
        {
            let mut q = self.conn.prepare(&format!(
                "SELECT status, modality, COUNT(*) FROM patients
                 WHERE kiosk_id IN ({marks}) AND status IN ('WAITING', 'WITH_DOCTOR')
                 GROUP BY status, modality"
            ))?;
            let rows = q.query_map(params_from_iter(kiosks.iter()), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (status, modality, n) = row?;
                let into = if status == "WAITING" {
                    &mut d.waiting
                } else {
                    &mut d.with_doctor
                };
                into.insert(modality, n.max(0) as u64);
            }
        }
        {
            let mut q = self.conn.prepare(&format!(
                "SELECT modality, predicted_wait_minutes, actual_wait_minutes FROM patients
                 WHERE kiosk_id IN ({marks}) AND actual_wait_minutes IS NOT NULL
                 ORDER BY called_at DESC, id DESC LIMIT {recent}"
            ))?;
            let rows = q.query_map(params_from_iter(kiosks.iter()), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, f64>(1)? as f32,
                    r.get::<_, f64>(2)? as f32,
                ))
            })?;
            d.recent_waits = rows.collect::<Result<_, _>>()?;
        }
        let (n, mae): (i64, Option<f64>) = self.conn.query_row(
            &format!(
                "SELECT COUNT(*), AVG(ABS(predicted_wait_minutes - actual_wait_minutes)) FROM patients
                 WHERE kiosk_id IN ({marks}) AND actual_wait_minutes IS NOT NULL"
            ),
            params_from_iter(kiosks.iter()),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        d.checked = n.max(0) as u64;
        d.mean_abs_error = mae.unwrap_or(0.0);
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ArrivalRow;
    use contract::{
        Arrival, Event, EventBody, Identity, PatientType, Status, StatusChange, UtcMillis,
    };

    fn temp_db(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ktk-sqlite-store-{tag}-{}-{}",
            std::process::id(),
            UtcMillis::now().0
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("hospital.db")
    }

    fn identity(kiosk: &str, seq: u64) -> Identity {
        Identity {
            site_id: "north".into(),
            kiosk_id: kiosk.into(),
            seq,
            created_at: UtcMillis(1_700_000_000_000 + seq as i64),
        }
    }

    fn arrival(kiosk: &str, seq: u64, patient: &str, at: UtcMillis) -> ArrivalRow {
        ArrivalRow {
            event: Event {
                identity: identity(kiosk, seq),
                body: EventBody::Arrival(Arrival {
                    patient_id: patient.into(),
                    patient_name: "Ada".into(),
                    arrival_time: at,
                    patient_type: PatientType::Scheduled,
                    modality: Modality::Mri,
                    is_emergency: false,
                    age: 40,
                    with_contrast: true,
                }),
            },
            predicted_wait_minutes: 20.0,
        }
    }

    fn status(kiosk: &str, seq: u64, patient: &str, s: Status, at: UtcMillis) -> Event {
        Event {
            identity: identity(kiosk, seq),
            body: EventBody::StatusChange(StatusChange {
                patient_id: patient.into(),
                modality: Modality::Mri,
                status: s,
                changed_at: at,
            }),
        }
    }

    #[test]
    fn writes_are_idempotent_and_statuses_recompute_the_patient() {
        let path = temp_db("idempotent");
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let t0: UtcMillis = "2026-12-04T08:00:00Z".parse().unwrap();
        let called = UtcMillis(t0.0 + 30 * 60_000);
        let plan = WritePlan {
            arrivals: vec![arrival("k1", 1, "p1", t0), arrival("k1", 2, "p2", t0)],
            statuses: vec![status("k1", 4, "p1", Status::WithDoctor, called)],
            model_version: "test".into(),
        };
        let progress = store.write(&plan).unwrap();
        assert_eq!(progress.len(), 1);
        assert_eq!(progress[0].2.contiguous, 2);
        assert_eq!(progress[0].2.missing, 1);
        // The same batch again, then the missing seq 3: nothing doubles.
        store.write(&plan).unwrap();
        let late = WritePlan {
            arrivals: vec![arrival("k1", 3, "p3", t0)],
            ..WritePlan::default()
        };
        let progress = store.write(&late).unwrap();
        assert_eq!(progress[0].2.contiguous, 4);
        assert_eq!(progress[0].2.missing, 0);
        let rows = store.kiosk_rows(&["k1".into(), "k9".into()]).unwrap();
        assert_eq!(
            rows,
            vec![KioskRows {
                kiosk_id: "k1".into(),
                rows: 4,
                distinct_events: 4,
                distinct_seqs: 4,
                max_seq: 4
            }]
        );
        let d = store.dashboard(&["k1".into()], 5).unwrap();
        assert_eq!(d.waiting.get("MRI"), Some(&2));
        assert_eq!(d.with_doctor.get("MRI"), Some(&1));
        assert_eq!(d.checked, 1);
        assert_eq!(d.recent_waits.len(), 1);
        assert!(
            (d.recent_waits[0].2 - 30.0).abs() < 0.01,
            "{:?}",
            d.recent_waits
        );
        assert!((d.mean_abs_error - 10.0).abs() < 0.01);
        // The queue state comes back from the rows.
        let book = store.rebuild([2, 1, 1]).unwrap();
        assert_eq!(book.waiting("north", Modality::Mri), 2);
        let waiting = store.waiting_predictions().unwrap();
        assert_eq!(waiting.len(), 2);
        assert_eq!(
            store.progress("north", "k1").unwrap().map(|p| p.contiguous),
            Some(4)
        );
        drop(store);
        // Reopening migrates nothing and keeps the rows.
        let mut again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.kiosk_rows(&["k1".into()]).unwrap()[0].rows, 4);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
