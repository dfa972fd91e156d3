//! The demo's live view: a snapshot of the pipeline rendered as text.
//! Pure: the demo gathers a [`Snapshot`] each second and prints
//! [`render`]'s output (redrawing the screen on a terminal).

use std::fmt::Write as _;
use std::time::Duration;

use crate::store::Dashboard;

/// Counters summed over the pipeline, each a stage's output so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Check-ins committed to the kiosks' outboxes.
    pub generated: u64,
    /// Events the kiosks published to the broker (resends included).
    pub published: u64,
    /// Events the bridge produced to Kafka (acks=all).
    pub produced: u64,
    /// Events acknowledged back to the kiosks (they leave the outboxes).
    pub acked: u64,
    /// Events the processor wrote to the database (replays included).
    pub stored: u64,
}

impl Totals {
    /// Per-second rates between two readings `dt` apart.
    pub fn rates(&self, before: &Totals, dt: Duration) -> [f64; 5] {
        let s = dt.as_secs_f64().max(1e-3);
        let r = |now: u64, then: u64| now.saturating_sub(then) as f64 / s;
        [
            r(self.generated, before.generated),
            r(self.published, before.published),
            r(self.produced, before.produced),
            r(self.acked, before.acked),
            r(self.stored, before.stored),
        ]
    }
}

/// One kiosk's line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KioskLine {
    /// Kiosk id.
    pub kiosk_id: String,
    /// Connected to the broker.
    pub connected: bool,
    /// Check-ins committed so far.
    pub generated: u64,
    /// Events stored in the outbox and not yet acknowledged.
    pub backlog: u64,
    /// Age of the oldest unacknowledged event.
    pub oldest_age: Option<Duration>,
}

/// Where the demo is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Kiosks check patients in; the link is up.
    Running,
    /// The link is cut; `Some(left)` when it comes back on a schedule.
    Outage(Option<Duration>),
    /// Check-ins stopped; waiting for every event to reach the database.
    Draining,
}

/// Everything one frame shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Since the demo started.
    pub elapsed: Duration,
    /// How long check-ins go on (None = until Ctrl-C).
    pub duration: Option<Duration>,
    /// Where the demo is.
    pub phase: Phase,
    /// Per kiosk.
    pub kiosks: Vec<KioskLine>,
    /// Totals now.
    pub totals: Totals,
    /// Per-second rates over the last interval, in [`Totals`] order.
    pub rates: [f64; 5],
    /// From the database.
    pub dashboard: Dashboard,
    /// Time the last outage's backlog took to drain, once drained.
    pub drained_in: Option<Duration>,
    /// Services in use, e.g. "MQTT embedded rumqttd 127.0.0.1:40411".
    pub services: Vec<String>,
    /// A line about the last failure to read the database, if any.
    pub db_note: Option<String>,
}

/// Modalities in display order.
const MODALITIES: [&str; 3] = ["Consultation", "MRI", "CT"];

/// Render one frame.
pub fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    let phase = match s.phase {
        Phase::Running => "running".to_string(),
        Phase::Outage(Some(left)) => format!(
            "OUTAGE: kiosks cut off from the broker, {}s left",
            left.as_secs()
        ),
        Phase::Outage(None) => {
            "OUTAGE: kiosks cut off from the broker (Enter to restore)".to_string()
        }
        Phase::Draining => "check-ins stopped, draining to the database".to_string(),
    };
    let of = s
        .duration
        .map(|d| format!(" / {}s", d.as_secs()))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "kiosk-to-Kafka demo   t={}s{of}   {phase}",
        s.elapsed.as_secs()
    );
    for line in &s.services {
        let _ = writeln!(o, "  {line}");
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<16} {:>5} {:>10} {:>9} {:>12}",
        "kiosk", "link", "checked-in", "backlog", "oldest unack"
    );
    for k in &s.kiosks {
        let age = k
            .oldest_age
            .map(|a| format!("{:.1}s", a.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "{:<16} {:>5} {:>10} {:>9} {:>12}",
            k.kiosk_id,
            if k.connected { "up" } else { "DOWN" },
            k.generated,
            k.backlog,
            age
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "{:<28} {:>10} {:>10}", "stage", "events/s", "total");
    let t = &s.totals;
    for (i, (name, total)) in [
        ("kiosk outboxes (committed)", t.generated),
        ("published to MQTT", t.published),
        ("produced to Kafka (acks=all)", t.produced),
        ("acked back to kiosks", t.acked),
        ("written to the database", t.stored),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = writeln!(o, "{name:<28} {:>10.1} {total:>10}", s.rates[i]);
    }
    let _ = writeln!(o);
    let d = &s.dashboard;
    let _ = write!(o, "waiting / with doctor:");
    for m in MODALITIES {
        let _ = write!(
            o,
            "  {m} {}/{}",
            d.waiting.get(m).copied().unwrap_or(0),
            d.with_doctor.get(m).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(o);
    let _ = write!(o, "recent waits (predicted -> true, min):");
    if d.recent_waits.is_empty() {
        let _ = write!(o, " none yet");
    }
    for (m, predicted, actual) in &d.recent_waits {
        let _ = write!(o, "  {m} {predicted:.0}->{actual:.0}");
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "model: mean absolute error {:.1} min over {} patients called",
        d.mean_abs_error, d.checked
    );
    if let Some(drained) = s.drained_in {
        let _ = writeln!(
            o,
            "last outage: backlog drained {:.1}s after the link returned",
            drained.as_secs_f64()
        );
    }
    if let Some(note) = &s.db_note {
        let _ = writeln!(o, "database: {note}");
    }
    o
}

/// A one-line summary for logs (when the output is not a terminal).
pub fn summary_line(s: &Snapshot) -> String {
    let backlog: u64 = s.kiosks.iter().map(|k| k.backlog).sum();
    let oldest = s
        .kiosks
        .iter()
        .filter_map(|k| k.oldest_age)
        .max()
        .map(|a| format!("{:.1}s", a.as_secs_f64()))
        .unwrap_or_else(|| "-".into());
    let phase = match s.phase {
        Phase::Running => "running",
        Phase::Outage(_) => "OUTAGE",
        Phase::Draining => "draining",
    };
    format!(
        "t={}s {phase}: checked-in {} (+{:.0}/s), backlog {backlog} (oldest {oldest}), kafka {} (+{:.0}/s), db {} (+{:.0}/s), MAE {:.1} min over {}",
        s.elapsed.as_secs(),
        s.totals.generated,
        s.rates[0],
        s.totals.produced,
        s.rates[2],
        s.totals.stored,
        s.rates[4],
        s.dashboard.mean_abs_error,
        s.dashboard.checked
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut dashboard = Dashboard::default();
        dashboard.waiting.insert("MRI".into(), 3);
        dashboard.with_doctor.insert("MRI".into(), 2);
        dashboard.recent_waits = vec![("CT".into(), 12.0, 17.4)];
        dashboard.checked = 9;
        dashboard.mean_abs_error = 6.25;
        Snapshot {
            elapsed: Duration::from_secs(27),
            duration: Some(Duration::from_secs(60)),
            phase: Phase::Outage(Some(Duration::from_secs(8))),
            kiosks: vec![KioskLine {
                kiosk_id: "north-1".into(),
                connected: false,
                generated: 120,
                backlog: 40,
                oldest_age: Some(Duration::from_millis(7_300)),
            }],
            totals: Totals {
                generated: 120,
                published: 90,
                produced: 80,
                acked: 80,
                stored: 80,
            },
            rates: [4.0, 0.0, 0.0, 0.0, 0.0],
            dashboard,
            drained_in: Some(Duration::from_millis(2_500)),
            services: vec!["MQTT embedded".into()],
            db_note: None,
        }
    }

    #[test]
    fn a_frame_shows_kiosks_stages_queues_and_waits() {
        let text = render(&snapshot());
        for needle in [
            "t=27s / 60s",
            "OUTAGE",
            "8s left",
            "north-1",
            "DOWN",
            "7.3s",
            "produced to Kafka (acks=all)",
            "MRI 3/2",
            "CT 12->17",
            "mean absolute error 6.2 min over 9",
            "drained 2.5s",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
        let line = summary_line(&snapshot());
        assert!(line.contains("backlog 40 (oldest 7.3s)"), "{line}");
    }

    #[test]
    fn rates_are_differences_over_the_interval() {
        let before = Totals {
            generated: 10,
            ..Totals::default()
        };
        let now = Totals {
            generated: 30,
            stored: 5,
            ..Totals::default()
        };
        let r = now.rates(&before, Duration::from_millis(500));
        assert_eq!(r, [40.0, 0.0, 0.0, 0.0, 10.0]);
    }
}
