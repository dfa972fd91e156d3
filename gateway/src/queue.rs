//! Waiting-queue state per (site, modality), built from the event stream.
//! Pure: the processor feeds it Kafka records in partition order; the
//! training-data command feeds it the simulation's events. Both then ask
//! for a [`QueueSnapshot`] at each arrival, so the model is trained on
//! exactly the state it will see in production.
//!
//! * an arrival joins its queue (emergencies ahead of scheduled patients);
//! * `WITH_DOCTOR` moves the patient from waiting to in service;
//! * `COMPLETED` frees the room; `LEFT` removes a waiting patient;
//! * a status that arrives before its arrival is parked and applied when
//!   the arrival comes.

use std::collections::{BTreeMap, HashMap};

use contract::{Arrival, Modality, Status, StatusChange, UtcMillis};

/// Rooms or scanners per modality, in [`Modality::ALL`] order.
pub type Rooms = [u32; 3];

/// Weight of the newest observation in the running means.
const EWMA_ALPHA: f64 = 0.1;

/// What the queue looked like when a patient arrived (before they joined).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueueSnapshot {
    /// Patients who will be called before this one (for an emergency, only
    /// the emergencies already waiting).
    pub ahead: u32,
    /// Contrast patients among those ahead (longer exams).
    pub contrast_ahead: u32,
    /// All patients waiting.
    pub waiting: u32,
    /// Emergencies waiting.
    pub emergencies_waiting: u32,
    /// Patients being examined.
    pub in_service: u32,
    /// Rooms or scanners of the modality.
    pub rooms: u32,
    /// Running mean of recent waits in this queue, minutes.
    pub recent_wait_minutes: f64,
    /// Running mean of recent exam durations in this queue, minutes.
    pub recent_exam_minutes: f64,
    /// Expected exam minutes of the patients ahead (contrast counted), per room.
    pub work_ahead_minutes: f64,
    /// Expected minutes until a room frees (0 when one is free now).
    pub room_free_in_minutes: f64,
}

#[derive(Debug, Clone)]
struct Waiting {
    contrast: bool,
    emergency: bool,
}

/// One queue: a modality at a site.
#[derive(Debug, Clone)]
pub struct Queue {
    rooms: u32,
    /// Ordered by (priority, arrival time, patient id): the calling order.
    waiting: BTreeMap<(u8, i64, String), Waiting>,
    /// patient id -> key in `waiting`.
    index: HashMap<String, (u8, i64)>,
    /// patient id -> (called-at, contrast), for patients in service.
    in_service: HashMap<String, (UtcMillis, bool)>,
    /// Waiting patients by [emergency][contrast]: a snapshot in O(1), not
    /// O(queue length) per arrival.
    counts: [[u32; 2]; 2],
    modality: Modality,
    recent_wait: f64,
    recent_exam: f64,
}

impl Queue {
    fn new(modality: Modality, rooms: u32) -> Queue {
        Queue {
            rooms,
            waiting: BTreeMap::new(),
            index: HashMap::new(),
            in_service: HashMap::new(),
            counts: [[0; 2]; 2],
            modality,
            recent_wait: 0.0,
            recent_exam: typical_exam_minutes(modality),
        }
    }

    fn snapshot_for(&self, emergency: bool, now: UtcMillis) -> QueueSnapshot {
        let mut s = QueueSnapshot {
            waiting: self.waiting.len() as u32,
            in_service: self.in_service.len() as u32,
            rooms: self.rooms,
            recent_wait_minutes: self.recent_wait,
            recent_exam_minutes: self.recent_exam,
            ..QueueSnapshot::default()
        };
        let [scheduled, emergencies] = self.counts;
        s.emergencies_waiting = emergencies[0] + emergencies[1];
        let [plain, contrast] = if emergency {
            emergencies
        } else {
            [scheduled[0] + emergencies[0], scheduled[1] + emergencies[1]]
        };
        s.ahead = plain + contrast;
        s.contrast_ahead = contrast;
        s.work_ahead_minutes = f64::from(plain) * expected_exam_minutes(self.modality, false)
            + f64::from(contrast) * expected_exam_minutes(self.modality, true);
        s.work_ahead_minutes /= f64::from(self.rooms.max(1));
        if self.in_service.len() as u32 >= self.rooms {
            s.room_free_in_minutes = self
                .in_service
                .values()
                .map(|(called, contrast)| {
                    (expected_exam_minutes(self.modality, *contrast) - now.minutes_since(*called))
                        .max(0.0)
                })
                .fold(f64::INFINITY, f64::min);
            if !s.room_free_in_minutes.is_finite() {
                s.room_free_in_minutes = 0.0;
            }
        }
        s
    }

    fn join(&mut self, a: &Arrival) {
        if self.index.contains_key(&a.patient_id) || self.in_service.contains_key(&a.patient_id) {
            return; // a replayed arrival
        }
        let priority = if a.is_emergency { 0 } else { 1 };
        let key = (priority, a.arrival_time.0, a.patient_id.clone());
        self.index
            .insert(a.patient_id.clone(), (priority, a.arrival_time.0));
        self.waiting.insert(
            key,
            Waiting {
                contrast: a.with_contrast,
                emergency: a.is_emergency,
            },
        );
        self.counts[usize::from(a.is_emergency)][usize::from(a.with_contrast)] += 1;
    }

    /// Remove a waiting patient; returns when they arrived and whether
    /// their exam uses contrast.
    fn leave_waiting(&mut self, patient_id: &str) -> Option<(UtcMillis, bool)> {
        let (priority, at) = self.index.remove(patient_id)?;
        let w = self
            .waiting
            .remove(&(priority, at, patient_id.to_string()))?;
        let n = &mut self.counts[usize::from(w.emergency)][usize::from(w.contrast)];
        *n = n.saturating_sub(1);
        Some((UtcMillis(at), w.contrast))
    }

    /// Apply a status; returns false if the patient is unknown here.
    fn apply(&mut self, s: &StatusChange) -> bool {
        match s.status {
            Status::WithDoctor => match self.leave_waiting(&s.patient_id) {
                Some((arrived, contrast)) => {
                    let wait = s.changed_at.minutes_since(arrived).max(0.0);
                    self.recent_wait += EWMA_ALPHA * (wait - self.recent_wait);
                    self.in_service
                        .insert(s.patient_id.clone(), (s.changed_at, contrast));
                    true
                }
                None => self.in_service.contains_key(&s.patient_id),
            },
            Status::Completed => match self.in_service.remove(&s.patient_id) {
                Some((called, _)) => {
                    let exam = s.changed_at.minutes_since(called).max(0.0);
                    self.recent_exam += EWMA_ALPHA * (exam - self.recent_exam);
                    true
                }
                None => false,
            },
            Status::Left => self.leave_waiting(&s.patient_id).is_some(),
        }
    }
}

/// Expected exam minutes of a modality with or without contrast: a prior
/// from the department's realistic durations (consultation 10-20 min,
/// CT 15-30, MRI 30-60, contrast longer).
pub fn expected_exam_minutes(m: Modality, contrast: bool) -> f64 {
    match (m, contrast) {
        (Modality::Consultation, _) => 15.7,
        (Modality::Ct, false) => 18.8,
        (Modality::Ct, true) => 26.2,
        (Modality::Mri, false) => 39.8,
        (Modality::Mri, true) => 54.4,
    }
}

/// Typical exam minutes of a modality, before any observation (the
/// expected durations weighted by the prototype's contrast shares).
pub fn typical_exam_minutes(m: Modality) -> f64 {
    match m {
        Modality::Consultation => 15.5,
        Modality::Mri => 43.0,
        Modality::Ct => 20.5,
    }
}

/// Every queue of every site a processor owns.
#[derive(Debug, Clone)]
pub struct QueueBook {
    rooms: Rooms,
    queues: HashMap<(String, Modality), Queue>,
    /// Statuses seen before their arrival, by (site, patient id).
    parked: HashMap<(String, String), Vec<StatusChange>>,
}

impl QueueBook {
    /// An empty book; `rooms` is the capacity of each modality at every site.
    pub fn new(rooms: Rooms) -> QueueBook {
        QueueBook {
            rooms,
            queues: HashMap::new(),
            parked: HashMap::new(),
        }
    }

    fn queue(&mut self, site: &str, m: Modality) -> &mut Queue {
        let rooms = self.rooms[m.index()];
        self.queues
            .entry((site.to_string(), m))
            .or_insert_with(|| Queue::new(m, rooms))
    }

    /// The state an arriving patient finds, then the patient joins the queue.
    pub fn arrive(&mut self, site: &str, a: &Arrival) -> QueueSnapshot {
        let q = self.queue(site, a.modality);
        let snapshot = q.snapshot_for(a.is_emergency, a.arrival_time);
        q.join(a);
        if let Some(statuses) = self
            .parked
            .remove(&(site.to_string(), a.patient_id.clone()))
        {
            for s in statuses {
                self.status(site, &s);
            }
        }
        snapshot
    }

    /// Apply a status change; one for an unknown patient is parked.
    pub fn status(&mut self, site: &str, s: &StatusChange) {
        if !self.queue(site, s.modality).apply(s) {
            self.parked
                .entry((site.to_string(), s.patient_id.clone()))
                .or_default()
                .push(s.clone());
        }
    }

    /// Patients waiting in a queue.
    pub fn waiting(&self, site: &str, m: Modality) -> usize {
        self.queues
            .get(&(site.to_string(), m))
            .map_or(0, |q| q.waiting.len())
    }

    /// Statuses parked for arrivals not seen yet.
    pub fn parked(&self) -> usize {
        self.parked.values().map(Vec::len).sum()
    }

    /// Drop every queue of a site and modality (a partition was revoked).
    pub fn forget(&mut self, site: &str, m: Modality) {
        self.queues.remove(&(site.to_string(), m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::PatientType;

    fn t(min: i64) -> UtcMillis {
        UtcMillis::from_parts(2026, 12, 7, 9, 0, 0, 0).plus_ms(min * 60_000)
    }

    fn arrival(id: &str, emergency: bool, contrast: bool, at: i64) -> Arrival {
        Arrival {
            patient_id: id.into(),
            patient_name: "P".into(),
            arrival_time: t(at),
            patient_type: PatientType::from_emergency(emergency),
            modality: Modality::Mri,
            is_emergency: emergency,
            age: 40,
            with_contrast: contrast,
        }
    }

    fn status(id: &str, s: Status, at: i64) -> StatusChange {
        StatusChange {
            patient_id: id.into(),
            modality: Modality::Mri,
            status: s,
            changed_at: t(at),
        }
    }

    #[test]
    fn an_emergency_behind_three_scheduled_has_none_ahead() {
        let mut book = QueueBook::new([2, 1, 1]);
        for (i, id) in ["00000001", "00000002", "00000003"].iter().enumerate() {
            book.arrive("s", &arrival(id, false, i == 0, i as i64));
        }
        let e = book.arrive("s", &arrival("0000000e", true, false, 5));
        assert_eq!((e.ahead, e.waiting, e.emergencies_waiting), (0, 3, 0));
        let s = book.arrive("s", &arrival("00000004", false, false, 6));
        assert_eq!(
            (s.ahead, s.contrast_ahead, s.emergencies_waiting),
            (4, 1, 1)
        );
        assert_eq!(s.rooms, 1);
        let e2 = book.arrive("s", &arrival("0000000f", true, true, 7));
        assert_eq!(e2.ahead, 1);
    }

    #[test]
    fn statuses_move_patients_and_update_running_means() {
        let mut book = QueueBook::new([2, 1, 1]);
        book.arrive("s", &arrival("00000001", false, false, 0));
        book.arrive("s", &arrival("00000002", false, false, 1));
        book.status("s", &status("00000001", Status::WithDoctor, 20));
        let snap = book.arrive("s", &arrival("00000003", false, false, 21));
        assert_eq!((snap.ahead, snap.in_service), (1, 1));
        assert!((snap.recent_wait_minutes - 2.0).abs() < 1e-9); // 0.1 * 20
        book.status("s", &status("00000002", Status::Left, 30));
        book.status("s", &status("00000001", Status::Completed, 60));
        let snap = book.arrive("s", &arrival("00000004", false, false, 61));
        assert_eq!((snap.ahead, snap.in_service), (1, 0));
        assert_eq!(book.waiting("s", Modality::Mri), 2);
        // Other sites and modalities are separate queues.
        assert_eq!(book.waiting("t", Modality::Mri), 0);
    }

    #[test]
    fn a_status_before_its_arrival_is_parked_then_applied() {
        let mut book = QueueBook::new([2, 1, 1]);
        book.status("s", &status("00000009", Status::WithDoctor, 10));
        assert_eq!(book.parked(), 1);
        book.arrive("s", &arrival("00000009", false, false, 0));
        assert_eq!(book.parked(), 0);
        assert_eq!(book.waiting("s", Modality::Mri), 0);
        let snap = book.arrive("s", &arrival("00000010", false, false, 11));
        assert_eq!(snap.in_service, 1);
    }

    #[test]
    fn replayed_arrivals_do_not_double_count() {
        let mut book = QueueBook::new([2, 1, 1]);
        let a = arrival("00000001", false, false, 0);
        book.arrive("s", &a);
        book.arrive("s", &a);
        assert_eq!(book.waiting("s", Modality::Mri), 1);
    }
}
