//! The events a kiosk emits, their identity, and the rules a valid event obeys.
//!
//! Enum variants are **append-only**: postcard encodes a variant by its index,
//! so a new modality or status is added at the end and never reorders the
//! others. A gateway that does not know a newer variant refuses the event
//! with a clear reason (it goes to the dead-letter topic), it never guesses.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::UtcMillis;

/// Longest `site_id` or `kiosk_id`.
pub const MAX_ID_LEN: usize = 32;
/// Longest `patient_name`, as in the prototype's `VARCHAR(100)`.
pub const MAX_NAME_LEN: usize = 100;
/// Oldest accepted age.
pub const MAX_AGE: u8 = 120;

/// Where an event comes from and its place in that kiosk's sequence.
///
/// `seq` is strictly increasing per kiosk and never reused, also across
/// restarts; `{kiosk_id}-{seq}` is the event's fleet-wide identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The hospital site, e.g. `site-a`.
    pub site_id: String,
    /// The kiosk, unique across the fleet, e.g. `kiosk-01`.
    pub kiosk_id: String,
    /// Position in the kiosk's sequence, starting at 1.
    pub seq: u64,
    /// When the kiosk created the event.
    pub created_at: UtcMillis,
}

impl Identity {
    /// The fleet-wide event id, `{kiosk_id}-{seq}`.
    pub fn event_id(&self) -> String {
        format!("{}-{}", self.kiosk_id, self.seq)
    }
}

/// Scheduled or emergency patient (the prototype's `patient_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PatientType {
    /// Walk-in emergency, served before scheduled patients.
    Emergency,
    /// Scheduled appointment.
    Scheduled,
}

impl PatientType {
    /// `Emergency` when `is_emergency`, else `Scheduled` (the two fields agree).
    pub fn from_emergency(is_emergency: bool) -> PatientType {
        if is_emergency {
            PatientType::Emergency
        } else {
            PatientType::Scheduled
        }
    }
}

/// The service a patient queues for. Append new variants at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Modality {
    /// A doctor's consultation.
    Consultation,
    /// Magnetic resonance imaging.
    #[serde(rename = "MRI")]
    Mri,
    /// Computed tomography.
    #[serde(rename = "CT")]
    Ct,
}

impl Modality {
    /// Every modality, in wire order.
    pub const ALL: [Modality; 3] = [Modality::Consultation, Modality::Mri, Modality::Ct];

    /// The name used in JSON, Kafka keys and MySQL (`Consultation`, `MRI`, `CT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Consultation => "Consultation",
            Modality::Mri => "MRI",
            Modality::Ct => "CT",
        }
    }

    /// Position in [`Modality::ALL`]; stable, used for feature one-hot codes.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parse the name used in JSON and MySQL.
    pub fn parse(name: &str) -> Option<Modality> {
        Modality::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A patient's status after check-in. Append new variants at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Called in: the wait is over.
    #[serde(rename = "WITH_DOCTOR")]
    WithDoctor,
    /// The exam is finished.
    #[serde(rename = "COMPLETED")]
    Completed,
    /// The patient left without being seen.
    #[serde(rename = "LEFT")]
    Left,
}

impl Status {
    /// The name used in JSON and MySQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::WithDoctor => "WITH_DOCTOR",
            Status::Completed => "COMPLETED",
            Status::Left => "LEFT",
        }
    }
}

/// A patient checked in at a kiosk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    /// 8 lowercase hex characters.
    pub patient_id: String,
    /// Display name, at most 100 characters.
    pub patient_name: String,
    /// When the patient checked in.
    pub arrival_time: UtcMillis,
    /// Emergency or scheduled.
    pub patient_type: PatientType,
    /// The queue the patient joins.
    pub modality: Modality,
    /// Same fact as `patient_type == Emergency`, kept for the prototype's readers.
    pub is_emergency: bool,
    /// Age in years, 0-120.
    pub age: u8,
    /// Whether the exam uses a contrast agent (longer exams).
    pub with_contrast: bool,
}

/// A change in a checked-in patient's status.
///
/// It carries the patient's `modality` so that it is keyed, partitioned and
/// ordered with the arrival it belongs to (see the crate docs on the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The patient, as in their [`Arrival`].
    pub patient_id: String,
    /// The patient's queue, as in their [`Arrival`].
    pub modality: Modality,
    /// The new status.
    pub status: Status,
    /// When the change happened.
    pub changed_at: UtcMillis,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    /// A check-in.
    Arrival(Arrival),
    /// A status change of a checked-in patient.
    StatusChange(StatusChange),
}

impl EventBody {
    /// `arrival` or `status_change`, the record's `event_type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            EventBody::Arrival(_) => "arrival",
            EventBody::StatusChange(_) => "status_change",
        }
    }

    /// The queue this event belongs to.
    pub fn modality(&self) -> Modality {
        match self {
            EventBody::Arrival(a) => a.modality,
            EventBody::StatusChange(s) => s.modality,
        }
    }

    /// The patient this event is about.
    pub fn patient_id(&self) -> &str {
        match self {
            EventBody::Arrival(a) => &a.patient_id,
            EventBody::StatusChange(s) => &s.patient_id,
        }
    }
}

/// One event: identity plus body. The unit of everything in the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Who emitted it and where it sits in that kiosk's sequence.
    pub identity: Identity,
    /// What happened.
    pub body: EventBody,
}

/// Why an event breaks the contract. The `reason()` code is what dead-letter
/// headers and metrics labels carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    /// `site_id` or `kiosk_id` is empty, too long, or has characters outside `[A-Za-z0-9_-]`.
    #[error("{field} {value:?} is not 1-32 characters of [A-Za-z0-9_-]")]
    BadId {
        /// Which id.
        field: &'static str,
        /// The offending value (truncated).
        value: String,
    },
    /// `seq` is 0.
    #[error("seq must be at least 1")]
    ZeroSeq,
    /// `patient_id` is not 8 lowercase hex characters.
    #[error("patient_id {0:?} is not 8 lowercase hex characters")]
    BadPatientId(String),
    /// `patient_name` is empty or too long.
    #[error("patient_name must be 1-100 characters, got {0}")]
    BadName(usize),
    /// `age` is over 120.
    #[error("age {0} is outside 0-120")]
    BadAge(u8),
    /// `is_emergency` disagrees with `patient_type`.
    #[error("is_emergency={is_emergency} contradicts patient_type={patient_type:?}")]
    EmergencyMismatch {
        /// The flag.
        is_emergency: bool,
        /// The type.
        patient_type: PatientType,
    },
    /// A time lies outside 2000-2200.
    #[error("{field} {value} is outside 2000-01-01..2200-01-01")]
    BadTime {
        /// Which time.
        field: &'static str,
        /// Its value.
        value: UtcMillis,
    },
}

impl InvalidEvent {
    /// A short, stable code for headers and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidEvent::BadId { .. } => "bad_id",
            InvalidEvent::ZeroSeq => "zero_seq",
            InvalidEvent::BadPatientId(_) => "bad_patient_id",
            InvalidEvent::BadName(_) => "bad_name",
            InvalidEvent::BadAge(_) => "bad_age",
            InvalidEvent::EmergencyMismatch { .. } => "emergency_mismatch",
            InvalidEvent::BadTime { .. } => "bad_time",
        }
    }
}

/// Whether `id` is a valid site or kiosk id: 1-32 of `[A-Za-z0-9_-]`.
/// These ids appear in MQTT topics, so `/`, `+` and `#` must never occur.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `id` is 8 lowercase hex characters.
pub fn is_valid_patient_id(id: &str) -> bool {
    id.len() == 8 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_time(field: &'static str, value: UtcMillis) -> Result<(), InvalidEvent> {
    if value.is_plausible() {
        Ok(())
    } else {
        Err(InvalidEvent::BadTime { field, value })
    }
}

impl Event {
    /// The fleet-wide event id, `{kiosk_id}-{seq}`.
    pub fn event_id(&self) -> String {
        self.identity.event_id()
    }

    /// Check every field against the contract.
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        let id = &self.identity;
        for (field, value) in [("site_id", &id.site_id), ("kiosk_id", &id.kiosk_id)] {
            if !is_valid_id(value) {
                return Err(InvalidEvent::BadId {
                    field,
                    value: value.chars().take(40).collect(),
                });
            }
        }
        if id.seq == 0 {
            return Err(InvalidEvent::ZeroSeq);
        }
        check_time("created_at", id.created_at)?;
        let patient_id = self.body.patient_id();
        if !is_valid_patient_id(patient_id) {
            return Err(InvalidEvent::BadPatientId(
                patient_id.chars().take(16).collect(),
            ));
        }
        match &self.body {
            EventBody::Arrival(a) => {
                let name_len = a.patient_name.chars().count();
                if name_len == 0 || name_len > MAX_NAME_LEN {
                    return Err(InvalidEvent::BadName(name_len));
                }
                if a.age > MAX_AGE {
                    return Err(InvalidEvent::BadAge(a.age));
                }
                if a.is_emergency != (a.patient_type == PatientType::Emergency) {
                    return Err(InvalidEvent::EmergencyMismatch {
                        is_emergency: a.is_emergency,
                        patient_type: a.patient_type,
                    });
                }
                check_time("arrival_time", a.arrival_time)
            }
            EventBody::StatusChange(s) => check_time("changed_at", s.changed_at),
        }
    }
}

/// Example events for tests, docs and golden fixtures.
pub mod examples {
    use super::*;

    /// A valid emergency MRI arrival at `site-a`/`kiosk-01`, seq 1.
    pub fn arrival() -> Event {
        let t = UtcMillis::from_parts(2026, 12, 4, 9, 30, 0, 250);
        Event {
            identity: Identity {
                site_id: "site-a".into(),
                kiosk_id: "kiosk-01".into(),
                seq: 1,
                created_at: t,
            },
            body: EventBody::Arrival(Arrival {
                patient_id: "0a1b2c3d".into(),
                patient_name: "Ada Lovelace".into(),
                arrival_time: t,
                patient_type: PatientType::Emergency,
                modality: Modality::Mri,
                is_emergency: true,
                age: 36,
                with_contrast: true,
            }),
        }
    }

    /// The same patient called in 17.5 minutes later, seq 2.
    pub fn status_change() -> Event {
        let t = UtcMillis::from_parts(2026, 12, 4, 9, 47, 30, 250);
        Event {
            identity: Identity {
                site_id: "site-a".into(),
                kiosk_id: "kiosk-01".into(),
                seq: 2,
                created_at: t,
            },
            body: EventBody::StatusChange(StatusChange {
                patient_id: "0a1b2c3d".into(),
                modality: Modality::Mri,
                status: Status::WithDoctor,
                changed_at: t,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_valid() {
        assert_eq!(examples::arrival().validate(), Ok(()));
        assert_eq!(examples::status_change().validate(), Ok(()));
        assert_eq!(examples::arrival().event_id(), "kiosk-01-1");
    }

    #[test]
    fn each_rule_is_enforced() {
        let mut e = examples::arrival();
        e.identity.kiosk_id = "kiosk/01".into();
        assert_eq!(e.validate().map_err(|e| e.reason()), Err("bad_id"));

        let mut e = examples::arrival();
        e.identity.seq = 0;
        assert_eq!(e.validate(), Err(InvalidEvent::ZeroSeq));

        let mut e = examples::arrival();
        if let EventBody::Arrival(a) = &mut e.body {
            a.patient_id = "0A1B2C3D".into();
        }
        assert_eq!(e.validate().map_err(|e| e.reason()), Err("bad_patient_id"));

        let mut e = examples::arrival();
        if let EventBody::Arrival(a) = &mut e.body {
            a.age = 121;
        }
        assert_eq!(e.validate(), Err(InvalidEvent::BadAge(121)));

        let mut e = examples::arrival();
        if let EventBody::Arrival(a) = &mut e.body {
            a.is_emergency = false;
        }
        assert_eq!(
            e.validate().map_err(|e| e.reason()),
            Err("emergency_mismatch")
        );

        let mut e = examples::arrival();
        if let EventBody::Arrival(a) = &mut e.body {
            a.patient_name = "x".repeat(101);
        }
        assert_eq!(e.validate(), Err(InvalidEvent::BadName(101)));

        let mut e = examples::status_change();
        if let EventBody::StatusChange(s) = &mut e.body {
            s.changed_at = UtcMillis(0);
        }
        assert_eq!(e.validate().map_err(|e| e.reason()), Err("bad_time"));
    }

    #[test]
    fn modality_names_round_trip() {
        for m in Modality::ALL {
            assert_eq!(Modality::parse(m.as_str()), Some(m));
            assert_eq!(Modality::ALL[m.index()], m);
        }
        assert_eq!(Modality::parse("X-ray"), None);
    }
}
