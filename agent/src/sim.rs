//! Reception simulation: a discrete-event model of a department's arrivals
//! and service, deterministic for a given seed. Pure: no clock, no I/O.
//!
//! * Arrivals are a non-homogeneous Poisson process (sampled by thinning)
//!   whose hourly profile is busiest 09:00-17:00 and whose daily mean is
//!   `arrivals_per_hour`.
//! * Each modality has a number of rooms or scanners. Exam durations are
//!   log-normal per modality (median ~15 min consultation, ~20 min CT,
//!   ~40 min MRI; contrast adds time). Emergencies are served first, FIFO
//!   within a priority.
//! * A share of patients leave after waiting past their patience.
//!
//! [`Reception::next_event`] returns the events in simulated-time order:
//! `Arrival`, then `StatusChange`s `WITH_DOCTOR`, `COMPLETED` or `LEFT`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use contract::config::SimulationConfig;
use contract::{Arrival, EventBody, Modality, PatientType, Status, StatusChange, UtcMillis};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Normal};

/// Relative arrival intensity per hour of day (UTC), mean 1.0 over the day.
pub const HOURLY_PROFILE: [f64; 24] = [
    0.25, 0.2, 0.2, 0.2, 0.25, 0.35, 0.6, 1.0, 1.4, 1.75, 1.8, 1.75, 1.55, 1.6, 1.75, 1.7, 1.55,
    1.2, 0.9, 0.7, 0.55, 0.45, 0.35, 0.3,
];

fn profile_mean() -> f64 {
    HOURLY_PROFILE.iter().sum::<f64>() / 24.0
}

/// Median exam minutes without and with contrast, per modality.
pub fn median_exam_minutes(modality: Modality, with_contrast: bool) -> f64 {
    match (modality, with_contrast) {
        (Modality::Consultation, _) => 15.0,
        (Modality::Ct, false) => 18.0,
        (Modality::Ct, true) => 25.0,
        (Modality::Mri, false) => 38.0,
        (Modality::Mri, true) => 52.0,
    }
}

/// Spread (sigma of the underlying normal) of exam durations.
pub const EXAM_SIGMA: f64 = 0.3;

/// Mean exam minutes (of the log-normal) for a modality's mix.
pub fn mean_exam_minutes(modality: Modality, with_contrast: bool) -> f64 {
    median_exam_minutes(modality, with_contrast) * (EXAM_SIGMA * EXAM_SIGMA / 2.0).exp()
}

const FIRST_NAMES: [&str; 24] = [
    "Ada", "Alan", "Amira", "Ben", "Chen", "Clara", "David", "Elena", "Farah", "George", "Hana",
    "Ivan", "Jonas", "Kofi", "Lena", "Maria", "Noah", "Olga", "Pedro", "Priya", "Sam", "Sofia",
    "Tomas", "Yusuf",
];
const LAST_NAMES: [&str; 24] = [
    "Adams", "Baker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
    "Kowalski", "Larsen", "Moreau", "Nguyen", "Okafor", "Patel", "Quinn", "Rossi", "Schmidt",
    "Tanaka", "Umar", "Varga", "Weber", "Zhang",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pending {
    NextArrival,
    ExamDone { patient: u64 },
    PatienceOver { patient: u64 },
}

struct Patient {
    id: String,
    modality: Modality,
    emergency: bool,
    contrast: bool,
    arrived: UtcMillis,
    leaves_if_waiting: bool,
}

/// Rooms and waiting line of one modality.
struct Department {
    rooms: u32,
    busy: u32,
    /// Waiting patients: emergencies first, FIFO within each.
    emergencies: VecDeque<u64>,
    scheduled: VecDeque<u64>,
}

/// The simulated reception of one kiosk's department.
pub struct Reception {
    cfg: SimulationConfig,
    rng: StdRng,
    now: UtcMillis,
    agenda: BinaryHeap<Reverse<(UtcMillis, u64, Pending)>>,
    tiebreak: u64,
    patients: HashMap<u64, Patient>,
    next_patient: u64,
    departments: [Department; 3],
    ready: VecDeque<(UtcMillis, EventBody)>,
    max_rate_per_ms: f64,
    base_rate_per_ms: f64,
}

impl Reception {
    /// A reception starting at `start` with the given settings and seed.
    pub fn new(cfg: &SimulationConfig, seed: u64, start: UtcMillis) -> Reception {
        let base_rate_per_ms = cfg.arrivals_per_hour / 3_600_000.0 / profile_mean();
        let max_profile = HOURLY_PROFILE.iter().cloned().fold(0.0, f64::max);
        let dept = |rooms| Department {
            rooms,
            busy: 0,
            emergencies: VecDeque::new(),
            scheduled: VecDeque::new(),
        };
        let mut r = Reception {
            cfg: cfg.clone(),
            rng: StdRng::seed_from_u64(seed),
            now: start,
            agenda: BinaryHeap::new(),
            tiebreak: 0,
            patients: HashMap::new(),
            next_patient: 0,
            departments: [
                dept(cfg.rooms_consultation),
                dept(cfg.rooms_mri),
                dept(cfg.rooms_ct),
            ],
            ready: VecDeque::new(),
            max_rate_per_ms: base_rate_per_ms * max_profile,
            base_rate_per_ms,
        };
        r.schedule_next_arrival();
        r
    }

    /// Current simulated time.
    pub fn now(&self) -> UtcMillis {
        self.now
    }

    /// Patients waiting (not yet called) per modality, in [`Modality::ALL`] order.
    pub fn waiting(&self) -> [usize; 3] {
        let mut out = [0; 3];
        for (o, d) in out.iter_mut().zip(&self.departments) {
            *o = d.emergencies.len() + d.scheduled.len();
        }
        out
    }

    /// The next event in simulated-time order, with its simulated time.
    /// Returns `None` only if no arrivals can ever happen (rate 0, empty agenda).
    pub fn next_event(&mut self) -> Option<(UtcMillis, EventBody)> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Some(ev);
            }
            let Reverse((at, _, what)) = self.agenda.pop()?;
            self.now = at;
            match what {
                Pending::NextArrival => self.on_arrival_candidate(),
                Pending::ExamDone { patient } => self.on_exam_done(patient),
                Pending::PatienceOver { patient } => self.on_patience_over(patient),
            }
        }
    }

    fn push(&mut self, at: UtcMillis, what: Pending) {
        self.tiebreak += 1;
        self.agenda.push(Reverse((at, self.tiebreak, what)));
    }

    fn schedule_next_arrival(&mut self) {
        if self.max_rate_per_ms <= 0.0 {
            return;
        }
        let gap = Exp::new(self.max_rate_per_ms)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(f64::MAX);
        let at = self.now.plus_ms(gap.ceil().min(1e15) as i64);
        self.push(at, Pending::NextArrival);
    }

    fn on_arrival_candidate(&mut self) {
        // Thinning: accept with the ratio of the current rate to the maximum.
        let rate = self.base_rate_per_ms * HOURLY_PROFILE[self.now.hour() as usize];
        if self.rng.random::<f64>() * self.max_rate_per_ms < rate {
            self.admit();
        }
        self.schedule_next_arrival();
    }

    fn admit(&mut self) {
        let emergency = self.rng.random::<f64>() < self.cfg.emergency_share;
        let modality = if emergency {
            Modality::ALL[self.rng.random_range(0..Modality::ALL.len())]
        } else {
            let u: f64 = self.rng.random();
            if u < 0.5 {
                Modality::Consultation
            } else if u < 0.8 {
                Modality::Mri
            } else {
                Modality::Ct
            }
        };
        let contrast = self.rng.random::<f64>() < if emergency { 0.5 } else { 0.3 };
        let age = Normal::new(45.0, 15.0)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(45.0_f64)
            .round()
            .clamp(0.0, 100.0) as u8;
        let id = format!("{:08x}", self.rng.random::<u32>());
        let name = format!(
            "{} {}",
            FIRST_NAMES[self.rng.random_range(0..FIRST_NAMES.len())],
            LAST_NAMES[self.rng.random_range(0..LAST_NAMES.len())]
        );
        let leaves_if_waiting = !emergency && self.rng.random::<f64>() < self.cfg.leave_probability;
        let key = self.next_patient;
        self.next_patient += 1;
        self.ready.push_back((
            self.now,
            EventBody::Arrival(Arrival {
                patient_id: id.clone(),
                patient_name: name,
                arrival_time: self.now,
                patient_type: PatientType::from_emergency(emergency),
                modality,
                is_emergency: emergency,
                age,
                with_contrast: contrast,
            }),
        ));
        self.patients.insert(
            key,
            Patient {
                id,
                modality,
                emergency,
                contrast,
                arrived: self.now,
                leaves_if_waiting,
            },
        );
        let dept = &mut self.departments[modality.index()];
        if emergency {
            dept.emergencies.push_back(key);
        } else {
            dept.scheduled.push_back(key);
        }
        if leaves_if_waiting {
            let patience = (self.cfg.patience_minutes * 60_000.0) as i64;
            self.push(
                self.now.plus_ms(patience),
                Pending::PatienceOver { patient: key },
            );
        }
        self.call_next(modality);
    }

    /// Fill free rooms of a modality from its waiting line.
    fn call_next(&mut self, modality: Modality) {
        loop {
            let dept = &mut self.departments[modality.index()];
            if dept.busy >= dept.rooms {
                return;
            }
            let Some(key) = dept
                .emergencies
                .pop_front()
                .or_else(|| dept.scheduled.pop_front())
            else {
                return;
            };
            dept.busy += 1;
            let Some(p) = self.patients.get(&key) else {
                continue;
            };
            let median = median_exam_minutes(p.modality, p.contrast);
            let minutes = LogNormal::new(median.ln(), EXAM_SIGMA)
                .map(|d| d.sample(&mut self.rng))
                .unwrap_or(median);
            let change = status(p, Status::WithDoctor, self.now);
            self.ready.push_back((self.now, change));
            self.push(
                self.now.plus_ms((minutes * 60_000.0) as i64),
                Pending::ExamDone { patient: key },
            );
        }
    }

    fn on_exam_done(&mut self, key: u64) {
        let Some(p) = self.patients.remove(&key) else {
            return;
        };
        self.ready
            .push_back((self.now, status(&p, Status::Completed, self.now)));
        let dept = &mut self.departments[p.modality.index()];
        dept.busy = dept.busy.saturating_sub(1);
        self.call_next(p.modality);
    }

    fn on_patience_over(&mut self, key: u64) {
        let Some(p) = self.patients.get(&key) else {
            return;
        };
        let dept = &mut self.departments[p.modality.index()];
        let Some(pos) = dept.scheduled.iter().position(|k| *k == key) else {
            return; // already called in
        };
        dept.scheduled.remove(pos);
        if let Some(p) = self.patients.remove(&key) {
            debug_assert!(p.leaves_if_waiting && !p.emergency);
            debug_assert!(self.now >= p.arrived);
            self.ready
                .push_back((self.now, status(&p, Status::Left, self.now)));
        }
    }
}

fn status(p: &Patient, status: Status, at: UtcMillis) -> EventBody {
    EventBody::StatusChange(StatusChange {
        patient_id: p.id.clone(),
        modality: p.modality,
        status,
        changed_at: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> UtcMillis {
        UtcMillis::from_parts(2026, 12, 7, 0, 0, 0, 0)
    }

    fn run_days(cfg: &SimulationConfig, seed: u64, days: i64) -> Vec<(UtcMillis, EventBody)> {
        let end = start().plus_ms(days * 86_400_000);
        let mut r = Reception::new(cfg, seed, start());
        let mut out = Vec::new();
        while let Some(ev) = r.next_event() {
            if ev.0 >= end {
                break;
            }
            out.push(ev);
        }
        out
    }

    #[test]
    fn same_seed_same_stream() {
        let cfg = SimulationConfig::default();
        assert_eq!(run_days(&cfg, 7, 2), run_days(&cfg, 7, 2));
        assert_ne!(run_days(&cfg, 7, 2), run_days(&cfg, 8, 2));
    }

    #[test]
    fn events_are_time_ordered_and_valid() {
        let events = run_days(&SimulationConfig::default(), 1, 3);
        assert!(events.windows(2).all(|w| w[0].0 <= w[1].0));
        for (t, body) in &events {
            let e = contract::Event {
                identity: contract::Identity {
                    site_id: "s".into(),
                    kiosk_id: "k".into(),
                    seq: 1,
                    created_at: *t,
                },
                body: body.clone(),
            };
            assert_eq!(e.validate(), Ok(()));
        }
    }

    #[test]
    fn proportions_match_the_prototype() {
        let cfg = SimulationConfig {
            arrivals_per_hour: 40.0,
            rooms_consultation: 50,
            rooms_mri: 50,
            rooms_ct: 50,
            ..SimulationConfig::default()
        };
        let arrivals: Vec<Arrival> = run_days(&cfg, 3, 20)
            .into_iter()
            .filter_map(|(_, b)| match b {
                EventBody::Arrival(a) => Some(a),
                _ => None,
            })
            .collect();
        let n = arrivals.len() as f64;
        // 40/h over 20 days = 19,200 expected.
        assert!((n - 19_200.0).abs() < 600.0, "{n}");
        let share = |f: &dyn Fn(&Arrival) -> bool| arrivals.iter().filter(|a| f(a)).count() as f64;
        assert!((share(&|a| a.is_emergency) / n - 0.2).abs() < 0.015);
        let sched = share(&|a| !a.is_emergency);
        let mri = share(&|a| !a.is_emergency && a.modality == Modality::Mri);
        assert!((mri / sched - 0.3).abs() < 0.02);
        let contrast = share(&|a| a.is_emergency && a.with_contrast);
        assert!((contrast / share(&|a| a.is_emergency) - 0.5).abs() < 0.04);
        let mean_age = arrivals.iter().map(|a| f64::from(a.age)).sum::<f64>() / n;
        assert!((mean_age - 45.0).abs() < 1.0, "{mean_age}");
        // Busier in the day than at night.
        let day = share(&|a| (9..17).contains(&a.arrival_time.hour()));
        let night = share(&|a| a.arrival_time.hour() < 6);
        assert!(day / 8.0 > 4.0 * night / 6.0, "{day} {night}");
    }

    #[test]
    fn every_patient_is_called_or_leaves_and_emergencies_go_first() {
        let events = run_days(&SimulationConfig::default(), 5, 10);
        let mut arrived: HashMap<String, (UtcMillis, bool)> = HashMap::new();
        let mut waits_em = Vec::new();
        let mut waits_sched = Vec::new();
        let mut left = 0;
        for (t, b) in &events {
            match b {
                EventBody::Arrival(a) => {
                    arrived.insert(a.patient_id.clone(), (*t, a.is_emergency));
                }
                EventBody::StatusChange(s) => {
                    let (at, em) = arrived[&s.patient_id];
                    match s.status {
                        Status::WithDoctor if em => waits_em.push(t.minutes_since(at)),
                        Status::WithDoctor => waits_sched.push(t.minutes_since(at)),
                        Status::Left => {
                            assert!(!em);
                            left += 1
                        }
                        Status::Completed => {}
                    }
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&waits_em) < mean(&waits_sched));
        assert!(left > 0 && (left as f64) < 0.2 * arrived.len() as f64);
        assert!(mean(&waits_sched) > 1.0, "queues should form");
    }
}
