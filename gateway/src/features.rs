//! The wait-time model's input: one function, [`features`], used to build
//! training data and to predict in the processor. The order and the version
//! live here and are written next to the model (`models/wait_time.json`);
//! the predictor refuses a model built for another version or width.

use contract::{Arrival, Modality};

use crate::queue::{typical_exam_minutes, QueueSnapshot};

/// Version of the feature layout below. Bump on any change.
pub const FEATURE_VERSION: u32 = 1;

/// Feature names, in model input order.
pub const FEATURE_NAMES: [&str; 18] = [
    "modality_consultation",
    "modality_mri",
    "modality_ct",
    "is_emergency",
    "with_contrast",
    "age_years",
    "hour_sin",
    "hour_cos",
    "is_weekend",
    "ahead",
    "contrast_ahead",
    "rooms",
    "in_service",
    "emergencies_waiting",
    "recent_wait_minutes",
    "work_ahead_minutes",
    "room_free_in_minutes",
    "naive_wait_minutes",
];

/// Number of features.
pub const WIDTH: usize = FEATURE_NAMES.len();

/// One model input row.
pub type Row = [f32; WIDTH];

/// The naive estimate: patients ahead × typical exam time ÷ rooms, minutes.
/// Also the baseline the model card compares against.
pub fn naive_wait_minutes(a: &Arrival, q: &QueueSnapshot) -> f64 {
    f64::from(q.ahead) * typical_exam_minutes(a.modality) / f64::from(q.rooms.max(1))
}

/// The features of an arrival given the queue it found.
pub fn features(a: &Arrival, q: &QueueSnapshot) -> Row {
    let hour = f64::from(a.arrival_time.hour())
        + (a.arrival_time.0.rem_euclid(3_600_000) as f64) / 3_600_000.0;
    let angle = hour / 24.0 * std::f64::consts::TAU;
    let one_hot = |m: Modality| f32::from(u8::from(a.modality == m));
    [
        one_hot(Modality::Consultation),
        one_hot(Modality::Mri),
        one_hot(Modality::Ct),
        f32::from(u8::from(a.is_emergency)),
        f32::from(u8::from(a.with_contrast)),
        f32::from(a.age),
        angle.sin() as f32,
        angle.cos() as f32,
        f32::from(u8::from(a.arrival_time.weekday() >= 5)),
        q.ahead as f32,
        q.contrast_ahead as f32,
        q.rooms as f32,
        q.in_service as f32,
        q.emergencies_waiting as f32,
        q.recent_wait_minutes as f32,
        q.work_ahead_minutes as f32,
        q.room_free_in_minutes as f32,
        naive_wait_minutes(a, q) as f32,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{PatientType, UtcMillis};

    #[test]
    fn layout_of_a_known_arrival() {
        let a = Arrival {
            patient_id: "0000000a".into(),
            patient_name: "P".into(),
            // Saturday 2026-12-05, 06:00 UTC.
            arrival_time: UtcMillis::from_parts(2026, 12, 5, 6, 0, 0, 0),
            patient_type: PatientType::Scheduled,
            modality: Modality::Ct,
            is_emergency: false,
            age: 61,
            with_contrast: true,
        };
        let q = QueueSnapshot {
            ahead: 4,
            contrast_ahead: 1,
            waiting: 4,
            emergencies_waiting: 1,
            in_service: 2,
            rooms: 2,
            recent_wait_minutes: 12.5,
            recent_exam_minutes: 20.0,
            work_ahead_minutes: 30.0,
            room_free_in_minutes: 4.0,
        };
        let f = features(&a, &q);
        assert_eq!(&f[..3], &[0.0, 0.0, 1.0]);
        assert_eq!((f[3], f[4], f[5]), (0.0, 1.0, 61.0));
        assert!(
            (f[6] - 1.0).abs() < 1e-6 && f[7].abs() < 1e-6,
            "06:00 is a quarter turn"
        );
        assert_eq!(f[8], 1.0);
        assert_eq!(&f[9..15], &[4.0, 1.0, 2.0, 2.0, 1.0, 12.5]);
        assert_eq!((f[15], f[16]), (30.0, 4.0));
        assert!((f[17] - 41.0).abs() < 1e-4, "4 x 20.5 / 2");
        assert_eq!(f.len(), WIDTH);
    }
}
