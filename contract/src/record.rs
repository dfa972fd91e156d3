//! The Kafka record: one event per record, JSON value, key and headers.
//!
//! ```text
//! topic    hospital_arrivals (configurable)
//! key      "{site_id}/{modality}"         e.g. "site-a/MRI"
//! headers  event_id        "{kiosk_id}-{seq}"
//!          schema_version  "1"
//!          event_type      "arrival" | "status_change"
//!          content-type    "application/json"
//! value    JSON, flat, field names as below
//! ```
//!
//! The key puts every event of one waiting queue (a site's modality) in one
//! partition, in order, so one consumer owns that queue's state; a status
//! change carries its patient's modality for exactly that reason.
//!
//! Arrival value (the prototype's field names, plus identity):
//! `{"schema_version":1,"event_id":"kiosk-01-1","event_type":"arrival",
//!   "site_id":"site-a","kiosk_id":"kiosk-01","seq":1,
//!   "created_at":"2026-12-04T09:30:00.250Z","patient_id":"0a1b2c3d",
//!   "patient_name":"Ada Lovelace","arrival_time":"2026-12-04T09:30:00.250Z",
//!   "patient_type":"Emergency","modality":"MRI","is_emergency":true,
//!   "age":36,"with_contrast":true}`
//!
//! Status change value: identity fields, then `patient_id`, `modality`,
//! `status` (`WITH_DOCTOR` | `COMPLETED` | `LEFT`) and `changed_at`.

use serde::{Deserialize, Serialize};

use crate::event::{
    Arrival, Event, EventBody, Identity, InvalidEvent, Modality, PatientType, Status, StatusChange,
};
use crate::time::{iso, UtcMillis};

/// Version of the JSON value layout; also sent in the `schema_version` header.
pub const SCHEMA_VERSION: u32 = 1;

/// Header names of event records.
pub mod header {
    /// `{kiosk_id}-{seq}`.
    pub const EVENT_ID: &str = "event_id";
    /// [`super::SCHEMA_VERSION`] as decimal text.
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// `arrival` or `status_change`.
    pub const EVENT_TYPE: &str = "event_type";
    /// Always `application/json`.
    pub const CONTENT_TYPE: &str = "content-type";
}

/// Header names of dead-letter records (the value is the raw input bytes).
pub mod dlq_header {
    /// Stable reason code, e.g. `malformed`, `identity_mismatch`, `bad_age`.
    pub const REASON: &str = "dlq.reason";
    /// Human-readable detail.
    pub const DETAIL: &str = "dlq.detail";
    /// Where the input came from: an MQTT topic, or `topic/partition/offset`.
    pub const SOURCE: &str = "dlq.source";
    /// Which component refused it: `bridge` or `processor`.
    pub const STAGE: &str = "dlq.stage";
    /// The event id, when the input decoded far enough to have one.
    pub const EVENT_ID: &str = "event_id";
}

#[derive(Serialize, Deserialize)]
struct RecordJson {
    schema_version: u32,
    event_id: String,
    site_id: String,
    kiosk_id: String,
    seq: u64,
    #[serde(with = "iso")]
    created_at: UtcMillis,
    #[serde(flatten)]
    body: BodyJson,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "event_type", rename_all = "snake_case")]
enum BodyJson {
    Arrival {
        patient_id: String,
        patient_name: String,
        #[serde(with = "iso")]
        arrival_time: UtcMillis,
        patient_type: PatientType,
        modality: Modality,
        is_emergency: bool,
        age: u8,
        with_contrast: bool,
    },
    StatusChange {
        patient_id: String,
        modality: Modality,
        status: Status,
        #[serde(with = "iso")]
        changed_at: UtcMillis,
    },
}

/// Why a Kafka record value is not a contract event.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON, or not the contract's shape.
    #[error("record is not a contract event: {0}")]
    Json(#[from] serde_json::Error),
    /// A newer or older layout than this build reads.
    #[error("unknown schema_version {0} (this build reads {SCHEMA_VERSION})")]
    UnknownSchema(u32),
    /// `event_id` is not `{kiosk_id}-{seq}`.
    #[error("event_id {event_id:?} does not match kiosk_id and seq ({expected:?})")]
    EventIdMismatch {
        /// As found.
        event_id: String,
        /// As it should be.
        expected: String,
    },
    /// Well-formed but breaks a field rule.
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
}

impl RecordError {
    /// A short, stable code for dead-letter headers and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::Json(_) => "malformed",
            RecordError::UnknownSchema(_) => "unknown_version",
            RecordError::EventIdMismatch { .. } => "event_id_mismatch",
            RecordError::Invalid(e) => e.reason(),
        }
    }
}

/// The record key: `{site_id}/{modality}`.
pub fn record_key(event: &Event) -> String {
    format!("{}/{}", event.identity.site_id, event.body.modality())
}

/// The record headers, in order.
pub fn record_headers(event: &Event) -> [(&'static str, String); 4] {
    [
        (header::EVENT_ID, event.event_id()),
        (header::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
        (header::EVENT_TYPE, event.body.event_type().to_string()),
        (header::CONTENT_TYPE, "application/json".to_string()),
    ]
}

/// The record value: the event as flat JSON.
pub fn to_json(event: &Event) -> Vec<u8> {
    let id = &event.identity;
    let body = match &event.body {
        EventBody::Arrival(a) => BodyJson::Arrival {
            patient_id: a.patient_id.clone(),
            patient_name: a.patient_name.clone(),
            arrival_time: a.arrival_time,
            patient_type: a.patient_type,
            modality: a.modality,
            is_emergency: a.is_emergency,
            age: a.age,
            with_contrast: a.with_contrast,
        },
        EventBody::StatusChange(s) => BodyJson::StatusChange {
            patient_id: s.patient_id.clone(),
            modality: s.modality,
            status: s.status,
            changed_at: s.changed_at,
        },
    };
    let json = RecordJson {
        schema_version: SCHEMA_VERSION,
        event_id: id.event_id(),
        site_id: id.site_id.clone(),
        kiosk_id: id.kiosk_id.clone(),
        seq: id.seq,
        created_at: id.created_at,
        body,
    };
    serde_json::to_vec(&json).expect("contract records serialize to JSON infallibly")
}

/// Parse and validate a record value.
pub fn from_json(value: &[u8]) -> Result<Event, RecordError> {
    let json: RecordJson = serde_json::from_slice(value)?;
    if json.schema_version != SCHEMA_VERSION {
        return Err(RecordError::UnknownSchema(json.schema_version));
    }
    let identity = Identity {
        site_id: json.site_id,
        kiosk_id: json.kiosk_id,
        seq: json.seq,
        created_at: json.created_at,
    };
    let expected = identity.event_id();
    if json.event_id != expected {
        return Err(RecordError::EventIdMismatch {
            event_id: json.event_id,
            expected,
        });
    }
    let body = match json.body {
        BodyJson::Arrival {
            patient_id,
            patient_name,
            arrival_time,
            patient_type,
            modality,
            is_emergency,
            age,
            with_contrast,
        } => EventBody::Arrival(Arrival {
            patient_id,
            patient_name,
            arrival_time,
            patient_type,
            modality,
            is_emergency,
            age,
            with_contrast,
        }),
        BodyJson::StatusChange {
            patient_id,
            modality,
            status,
            changed_at,
        } => EventBody::StatusChange(StatusChange {
            patient_id,
            modality,
            status,
            changed_at,
        }),
    };
    let event = Event { identity, body };
    event.validate()?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::examples;

    #[test]
    fn arrival_json_has_exactly_the_contract_fields() {
        let v: serde_json::Value = serde_json::from_slice(&to_json(&examples::arrival())).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "age",
                "arrival_time",
                "created_at",
                "event_id",
                "event_type",
                "is_emergency",
                "kiosk_id",
                "modality",
                "patient_id",
                "patient_name",
                "patient_type",
                "schema_version",
                "seq",
                "site_id",
                "with_contrast"
            ]
        );
        assert_eq!(v["arrival_time"], "2026-12-04T09:30:00.250Z");
        assert_eq!(v["modality"], "MRI");
        assert_eq!(v["patient_type"], "Emergency");
        assert_eq!(v["event_type"], "arrival");
        assert_eq!(v["event_id"], "kiosk-01-1");
        assert_eq!(v["age"], 36);
    }

    #[test]
    fn status_json_fields() {
        let v: serde_json::Value =
            serde_json::from_slice(&to_json(&examples::status_change())).unwrap();
        assert_eq!(v["event_type"], "status_change");
        assert_eq!(v["status"], "WITH_DOCTOR");
        assert_eq!(v["changed_at"], "2026-12-04T09:47:30.250Z");
        assert_eq!(v["modality"], "MRI");
    }

    #[test]
    fn json_round_trips() {
        for e in [examples::arrival(), examples::status_change()] {
            assert_eq!(from_json(&to_json(&e)).unwrap(), e);
        }
    }

    #[test]
    fn key_and_headers() {
        let e = examples::arrival();
        assert_eq!(record_key(&e), "site-a/MRI");
        let h = record_headers(&e);
        assert_eq!(h[0], ("event_id", "kiosk-01-1".to_string()));
        assert_eq!(h[1], ("schema_version", "1".to_string()));
        assert_eq!(h[2], ("event_type", "arrival".to_string()));
    }

    #[test]
    fn refuses_bad_records_with_reasons() {
        assert_eq!(
            from_json(b"\xff garbage").unwrap_err().reason(),
            "malformed"
        );
        let mut v: serde_json::Value =
            serde_json::from_slice(&to_json(&examples::arrival())).unwrap();
        v["event_id"] = "kiosk-02-1".into();
        let err = from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.reason(), "event_id_mismatch");
        v["event_id"] = "kiosk-01-1".into();
        v["schema_version"] = 2.into();
        let err = from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.reason(), "unknown_version");
        v["schema_version"] = 1.into();
        v["age"] = 130.into();
        let err = from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.reason(), "bad_age");
        v["age"] = 30.into();
        v["modality"] = "X-ray".into();
        let err = from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.reason(), "malformed");
    }
}
