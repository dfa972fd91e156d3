//! The processor's storage: one small interface, two databases.
//!
//! ```text
//! patients        the prototype dashboard's table (same column names and
//!                 meaning) + identity, model and true-wait columns
//! status_events   every status event once (the source of patients' status,
//!                 so order and replays do not matter)
//! event_ledger    every event once, by (kiosk_id, seq): the dedupe ledger
//! kiosk_progress  per kiosk: highest contiguous seq stored, gaps above it
//! schema_migrations
//! ```
//!
//! Every write is idempotent: arrivals are inserted once by their unique
//! `event_id`, statuses go to their own table keyed by `event_id`, and a
//! patient's status, call time and true wait depend only on the set of its
//! stored status events (earliest call, earliest completion, any departure:
//! [`StatusFold`]). A new arrival's row is recounted from all its stored
//! status events (a status may come first); MySQL merges each later batch's
//! fold into the row, SQLite recounts every touched patient. Replaying any
//! batch, in any order, leaves the same rows.
//!
//! | implementation     | used by |
//! |--------------------|---------|
//! | [`mysql::MysqlStore`]  | `gateway process` (production), the demo with `[demo] database = "external"` |
//! | [`sqlite::SqliteStore`] | the demo's embedded database (one file, same tables) |
//!
//! [`Database`] names which one to open; the processor's database thread
//! ([`crate::store_worker`]) only sees [`Storage`].

pub mod mysql;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::PathBuf;

use contract::config::MysqlConfig;
use contract::{Arrival, Event, Modality, PatientType, Status, StatusChange, UtcMillis};

use crate::progress::{Next, Progress};
use crate::queue::{QueueBook, Rooms};

/// The schema version this build writes. Both implementations hold one
/// migration per version (their arrays have this length), so they move in
/// lockstep.
pub const SCHEMA_VERSION: usize = 1;

/// Predicted wait and arrival time by (site, patient id).
pub type WaitingPredictions = BTreeMap<(String, String), (f32, UtcMillis)>;

/// A kiosk's progress after a write: (site, kiosk, progress).
pub type KioskProgress = (String, String, Progress);

/// Database failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server could not be reached or the connection broke: retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused a statement (schema, permissions, data): do not retry blindly.
    #[error("database refused: {0}")]
    Refused(String),
    /// The database is newer than this build.
    #[error("database schema version {found} is newer than this build's {expected}")]
    TooNew {
        /// Found version.
        found: usize,
        /// This build's version.
        expected: usize,
    },
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// An arrival to store, with its prediction.
#[derive(Debug, Clone)]
pub struct ArrivalRow {
    /// The event (identity + arrival).
    pub event: Event,
    /// Predicted wait, minutes.
    pub predicted_wait_minutes: f32,
}

/// One batch, ready to write.
#[derive(Debug, Clone, Default)]
pub struct WritePlan {
    /// Arrivals with predictions.
    pub arrivals: Vec<ArrivalRow>,
    /// Status events.
    pub statuses: Vec<Event>,
    /// The model version of the predictions.
    pub model_version: String,
}

impl WritePlan {
    /// Events in the plan.
    pub fn len(&self) -> usize {
        self.arrivals.len() + self.statuses.len()
    }

    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every event of the plan, arrivals first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.arrivals
            .iter()
            .map(|a| &a.event)
            .chain(self.statuses.iter())
    }
}

/// The events of `plan` a store still has to write: those above their
/// kiosk's contiguous seq (everything at or below it is stored), each
/// (kiosk, seq) once, in plan order.
pub fn above_progress<'a>(
    plan: &'a WritePlan,
    progress: &BTreeMap<(String, String), Progress>,
) -> Vec<&'a Event> {
    let contiguous: std::collections::HashMap<(&str, &str), u64> = progress
        .iter()
        .map(|((site, kiosk), p)| ((site.as_str(), kiosk.as_str()), p.contiguous))
        .collect();
    let mut seen = std::collections::HashSet::new();
    plan.events()
        .filter(|e| {
            let id = &e.identity;
            let below = contiguous
                .get(&(id.site_id.as_str(), id.kiosk_id.as_str()))
                .copied()
                .unwrap_or(0);
            id.seq > below && seen.insert((id.kiosk_id.as_str(), id.seq))
        })
        .collect()
}

/// What a batch's status events say about one patient: the earliest call,
/// the earliest completion, whether the patient left. Each is monotone
/// (a call time only moves earlier, a departure never un-happens), so a
/// patient row updated with the fold of each batch in turn ends where a
/// recount of all its status events would: order and replays do not matter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusFold {
    /// Earliest `WITH_DOCTOR` time.
    pub called: Option<UtcMillis>,
    /// Earliest `COMPLETED` time.
    pub completed: Option<UtcMillis>,
    /// Any `LEFT`.
    pub left: bool,
}

impl StatusFold {
    /// Fold one status change in.
    pub fn add(&mut self, s: &StatusChange) {
        let earliest = |slot: &mut Option<UtcMillis>| {
            *slot = Some(slot.map_or(s.changed_at, |t| t.min(s.changed_at)));
        };
        match s.status {
            Status::WithDoctor => earliest(&mut self.called),
            Status::Completed => earliest(&mut self.completed),
            Status::Left => self.left = true,
        }
    }
}

/// The status folds of `events` by (site, patient), skipping patients in
/// `skip` (those whose row is recounted from all its status events anyway).
pub fn fold_statuses<'a>(
    events: &[&'a Event],
    skip: &std::collections::BTreeSet<(&str, &str)>,
) -> BTreeMap<(&'a str, &'a str), StatusFold> {
    let mut folds: BTreeMap<(&str, &str), StatusFold> = BTreeMap::new();
    for e in events {
        if let contract::EventBody::StatusChange(s) = &e.body {
            let key = (e.identity.site_id.as_str(), s.patient_id.as_str());
            if !skip.contains(&key) {
                folds.entry(key).or_default().add(s);
            }
        }
    }
    folds
}

/// The seqs of `events`, by (site, kiosk): what [`settle_progress`] takes.
pub fn seqs_by_kiosk<'a>(events: &[&'a Event]) -> BTreeMap<(&'a str, &'a str), Vec<u64>> {
    let mut by_kiosk: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
    for e in events {
        by_kiosk
            .entry((e.identity.site_id.as_str(), e.identity.kiosk_id.as_str()))
            .or_default()
            .push(e.identity.seq);
    }
    by_kiosk
}

/// Bring a kiosk's progress up to date after this transaction stored
/// `new_seqs` (never stored before): `window(after)` reads up to
/// [`crate::progress::WINDOW`] stored seqs above `after`, ascending, when
/// the progress needs them.
pub fn settle_progress<E>(
    p: &mut Progress,
    new_seqs: &[u64],
    mut window: impl FnMut(u64) -> Result<Vec<u64>, E>,
) -> Result<(), E> {
    let mut next = p.add(new_seqs);
    while next == Next::ReadWindow {
        next = p.scan(&window(p.contiguous)?);
    }
    Ok(())
}

/// What the database holds for one kiosk: the reconciliation's input,
/// counted from the rows themselves (not from any counter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KioskRows {
    /// The kiosk.
    pub kiosk_id: String,
    /// Rows in `patients` and `status_events` from this kiosk.
    pub rows: u64,
    /// Distinct event ids among them.
    pub distinct_events: u64,
    /// Distinct seqs among them.
    pub distinct_seqs: u64,
    /// Highest seq stored.
    pub max_seq: u64,
}

/// What a dashboard shows, read from the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dashboard {
    /// Patients waiting, by modality.
    pub waiting: BTreeMap<String, u64>,
    /// Patients with a doctor, by modality.
    pub with_doctor: BTreeMap<String, u64>,
    /// The most recently called patients: (modality, predicted, true wait), minutes.
    pub recent_waits: Vec<(String, f32, f32)>,
    /// Patients with a true wait, and the mean absolute error of their predictions.
    pub checked: u64,
    /// Mean absolute error, minutes (0 when nothing is checked).
    pub mean_abs_error: f64,
}

/// The processor's storage. Implementations keep every write idempotent
/// and each `write` in one transaction.
pub trait Storage: Send {
    /// The schema version of the database.
    fn schema_version(&mut self) -> Result<usize, StoreError>;
    /// Write one batch in one transaction; returns the kiosks' progress.
    fn write(&mut self, plan: &WritePlan) -> Result<Vec<KioskProgress>, StoreError>;
    /// Rebuild the queue state from the patients still waiting or in service.
    fn rebuild(&mut self, rooms: Rooms) -> Result<QueueBook, StoreError>;
    /// Predicted waits and arrival times of patients still waiting.
    fn waiting_predictions(&mut self) -> Result<WaitingPredictions, StoreError>;
    /// A kiosk's recorded progress.
    fn progress(&mut self, site: &str, kiosk: &str) -> Result<Option<Progress>, StoreError>;
    /// Row counts of the given kiosks (kiosks without rows are absent).
    fn kiosk_rows(&mut self, kiosks: &[String]) -> Result<Vec<KioskRows>, StoreError>;
    /// The dashboard's figures over the given kiosks' patients.
    fn dashboard(&mut self, kiosks: &[String], recent: usize) -> Result<Dashboard, StoreError>;
}

/// Which database the processor writes.
#[derive(Debug, Clone)]
pub enum Database {
    /// A MySQL or MariaDB server.
    Mysql(MysqlConfig),
    /// An SQLite file (created if missing).
    Sqlite(PathBuf),
}

impl Database {
    /// Connect (creating and migrating the schema as needed).
    pub fn open(&self) -> Result<Box<dyn Storage>, StoreError> {
        Ok(match self {
            Database::Mysql(cfg) => Box::new(mysql::MysqlStore::connect(cfg)?),
            Database::Sqlite(path) => Box::new(sqlite::SqliteStore::open(path)?),
        })
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Mysql(c) => {
                write!(f, "mysql://{}@{}:{}/{}", c.user, c.host, c.port, c.database)
            }
            Database::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
        }
    }
}

/// A patient still waiting or in service, as read back for a rebuild.
#[derive(Debug, Clone)]
pub struct OpenPatient {
    /// Site.
    pub site: String,
    /// Patient id.
    pub patient_id: String,
    /// Modality.
    pub modality: Modality,
    /// Emergency.
    pub emergency: bool,
    /// With contrast.
    pub with_contrast: bool,
    /// Arrival time.
    pub arrived: UtcMillis,
    /// Call time, when the patient is with a doctor.
    pub called: Option<UtcMillis>,
}

/// The queue state of the given open patients, in arrival order.
pub fn book_from(rooms: Rooms, patients: impl IntoIterator<Item = OpenPatient>) -> QueueBook {
    let mut book = QueueBook::new(rooms);
    for p in patients {
        let arrival = Arrival {
            patient_id: p.patient_id.clone(),
            patient_name: String::new(),
            arrival_time: p.arrived,
            patient_type: PatientType::from_emergency(p.emergency),
            modality: p.modality,
            is_emergency: p.emergency,
            age: 0,
            with_contrast: p.with_contrast,
        };
        book.arrive(&p.site, &arrival);
        if let Some(called) = p.called {
            book.status(
                &p.site,
                &StatusChange {
                    patient_id: p.patient_id,
                    modality: p.modality,
                    status: Status::WithDoctor,
                    changed_at: called,
                },
            );
        }
    }
    book
}

/// `patient_type` column text.
pub fn patient_type(t: PatientType) -> &'static str {
    match t {
        PatientType::Emergency => "Emergency",
        PatientType::Scheduled => "Scheduled",
    }
}

/// `YYYY-MM-DD HH:MM:SS.fff`, the text of a DATETIME(3).
pub fn datetime_text(t: UtcMillis) -> String {
    let (y, mo, d, h, mi, s, ms) = t.to_parts();
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}")
}

/// Parse [`datetime_text`] (milliseconds optional).
pub fn parse_datetime_text(text: &str) -> Option<UtcMillis> {
    format!("{}Z", text.trim().replacen(' ', "T", 1))
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(patient: &str, seq: u64, status: Status, minute: u32) -> Event {
        let mut e = contract::event::examples::status_change();
        e.identity.seq = seq;
        if let contract::EventBody::StatusChange(s) = &mut e.body {
            s.patient_id = patient.into();
            s.status = status;
            s.changed_at = UtcMillis::from_parts(2026, 12, 4, 10, minute, 0, 0);
        }
        e
    }

    #[test]
    fn status_folds_keep_the_earliest_times_whatever_the_order_and_skip_recounted_patients() {
        let events = [
            status("00000001", 2, Status::Completed, 40),
            status("00000001", 3, Status::WithDoctor, 20),
            status("00000001", 4, Status::WithDoctor, 25),
            status("00000002", 5, Status::Left, 30),
            status("00000003", 6, Status::WithDoctor, 10),
        ];
        let mut refs: Vec<&Event> = events.iter().collect();
        let skip = std::collections::BTreeSet::from([("site-a", "00000003")]);
        let at = |m| Some(UtcMillis::from_parts(2026, 12, 4, 10, m, 0, 0));
        let want = BTreeMap::from([
            (
                ("site-a", "00000001"),
                StatusFold {
                    called: at(20),
                    completed: at(40),
                    left: false,
                },
            ),
            (
                ("site-a", "00000002"),
                StatusFold {
                    called: None,
                    completed: None,
                    left: true,
                },
            ),
        ]);
        assert_eq!(fold_statuses(&refs, &skip), want);
        refs.reverse();
        assert_eq!(fold_statuses(&refs, &skip), want, "order does not matter");
        refs.extend(events.iter());
        assert_eq!(fold_statuses(&refs, &skip), want, "replays do not matter");
    }

    #[test]
    fn datetime_text_round_trips() {
        let t: UtcMillis = "2026-12-04T21:05:09.042Z".parse().unwrap();
        assert_eq!(datetime_text(t), "2026-12-04 21:05:09.042");
        assert_eq!(parse_datetime_text(&datetime_text(t)), Some(t));
        assert_eq!(
            parse_datetime_text("2026-12-04 21:05:09"),
            Some("2026-12-04T21:05:09Z".parse().unwrap())
        );
        assert_eq!(parse_datetime_text("yesterday"), None);
    }
}
