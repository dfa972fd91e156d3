//! Validation of one MQTT message from a kiosk. Pure: bytes in, verdict out.
//!
//! A message yields the events to produce, the seq ranges to acknowledge
//! to its kiosk, and dead letters for everything refused:
//!
//! | input                              | reason                | dead-letter value        | acked? |
//! |------------------------------------|-----------------------|--------------------------|--------|
//! | payload over the size limit        | `oversize`            | first 64 KiB of payload  | no     |
//! | topic is not a kiosk events topic  | `bad_topic`           | raw payload              | no     |
//! | empty / unknown version / garbage  | `empty`, `unknown_version`, `malformed` | raw payload | no |
//! | event claims another site or kiosk | `identity_mismatch`   | the event as JSON        | no     |
//! | event breaks a field rule          | e.g. `bad_age`        | the event as JSON        | yes    |
//!
//! An event that breaks a field rule but belongs to the kiosk is acked, so
//! the kiosk does not resend it forever; it is never silently dropped.

use contract::mqtt::{parse_events_topic, ranges_of, SeqRange};
use contract::wire::decode_batch;
use contract::Event;

/// Largest dead-letter value for an oversize payload.
pub const OVERSIZE_SAMPLE: usize = 64 * 1024;

/// A refused input, bound for the dead-letter topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Stable reason code.
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
    /// The refused bytes (see the table above).
    pub value: Vec<u8>,
    /// The event id, when known.
    pub event_id: Option<String>,
}

/// What to do with one MQTT message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// `(site_id, kiosk_id)` from the topic, when it is an events topic.
    pub kiosk: Option<(String, String)>,
    /// Valid events to produce.
    pub events: Vec<Event>,
    /// Seq ranges to acknowledge once everything is durable.
    pub ack: Vec<SeqRange>,
    /// Refused inputs.
    pub dead: Vec<DeadLetter>,
    /// Events found in the payload (valid or not).
    pub decoded: usize,
}

/// Judge one message.
pub fn check_message(topic: &str, payload: &[u8], max_bytes: usize) -> Verdict {
    let mut v = Verdict::default();
    let raw = |reason, detail: String, value: &[u8]| DeadLetter {
        reason,
        detail,
        value: value.to_vec(),
        event_id: None,
    };
    if payload.len() > max_bytes {
        v.dead.push(raw(
            "oversize",
            format!(
                "payload of {} bytes exceeds the limit of {max_bytes}",
                payload.len()
            ),
            &payload[..payload.len().min(OVERSIZE_SAMPLE)],
        ));
        return v;
    }
    let Some((site, kiosk)) = parse_events_topic(topic) else {
        v.dead.push(raw(
            "bad_topic",
            format!("{topic:?} is not a kiosk events topic"),
            payload,
        ));
        return v;
    };
    v.kiosk = Some((site.to_string(), kiosk.to_string()));
    let events = match decode_batch(payload) {
        Ok(events) => events,
        Err(e) => {
            v.dead.push(raw(e.reason(), e.to_string(), payload));
            return v;
        }
    };
    v.decoded = events.len();
    let mut acked = Vec::with_capacity(events.len());
    for event in events {
        let id = &event.identity;
        if id.site_id != site || id.kiosk_id != kiosk {
            v.dead.push(DeadLetter {
                reason: "identity_mismatch",
                detail: format!(
                    "event {}/{} seq {} published on the topic of {site}/{kiosk}",
                    id.site_id, id.kiosk_id, id.seq
                ),
                value: contract::record::to_json(&event),
                event_id: Some(event.event_id()),
            });
            continue;
        }
        if id.seq == 0 {
            v.dead.push(DeadLetter {
                reason: "zero_seq",
                detail: "seq must be at least 1".into(),
                value: contract::record::to_json(&event),
                event_id: None,
            });
            continue;
        }
        acked.push(id.seq);
        match event.validate() {
            Ok(()) => v.events.push(event),
            Err(e) => v.dead.push(DeadLetter {
                reason: e.reason(),
                detail: e.to_string(),
                value: contract::record::to_json(&event),
                event_id: Some(event.event_id()),
            }),
        }
    }
    v.ack = ranges_of(acked);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::event::examples;
    use contract::wire::encode_batch;
    use contract::EventBody;

    const TOPIC: &str = "hospital/site-a/kiosk/kiosk-01/events";

    #[test]
    fn a_valid_batch_is_produced_and_acked() {
        let batch = vec![examples::arrival(), examples::status_change()];
        let v = check_message(TOPIC, &encode_batch(&batch), 1 << 20);
        assert_eq!(v.events, batch);
        assert_eq!(v.ack, vec![SeqRange::new(1, 2)]);
        assert!(v.dead.is_empty());
        assert_eq!(v.kiosk, Some(("site-a".into(), "kiosk-01".into())));
    }

    #[test]
    fn batch_level_refusals() {
        let ok = encode_batch(&[examples::arrival()]);
        let v = check_message(TOPIC, &ok, 10);
        assert_eq!((v.dead[0].reason, v.ack.len()), ("oversize", 0));
        let v = check_message("hospital/site-a/kiosk/kiosk-01/other", &ok, 1 << 20);
        assert_eq!(v.dead[0].reason, "bad_topic");
        let v = check_message(TOPIC, b"\x01garbage!", 1 << 20);
        assert_eq!(
            (v.dead[0].reason, v.dead[0].value.as_slice()),
            ("malformed", &b"\x01garbage!"[..])
        );
        let mut future = ok.clone();
        future[0] = 9;
        let v = check_message(TOPIC, &future, 1 << 20);
        assert_eq!(v.dead[0].reason, "unknown_version");
        assert!(v.events.is_empty() && v.ack.is_empty());
    }

    #[test]
    fn bad_events_are_dead_lettered_and_the_rest_go_through() {
        let good1 = examples::arrival();
        let mut impostor = examples::arrival();
        impostor.identity.kiosk_id = "kiosk-02".into();
        impostor.identity.seq = 2;
        let mut bad_age = examples::arrival();
        bad_age.identity.seq = 3;
        if let EventBody::Arrival(a) = &mut bad_age.body {
            a.age = 200;
        }
        let mut good2 = examples::status_change();
        good2.identity.seq = 4;
        let batch = vec![good1.clone(), impostor, bad_age, good2.clone()];
        let v = check_message(TOPIC, &encode_batch(&batch), 1 << 20);
        assert_eq!(v.events, vec![good1, good2]);
        let reasons: Vec<_> = v.dead.iter().map(|d| d.reason).collect();
        assert_eq!(reasons, vec!["identity_mismatch", "bad_age"]);
        // The impostor's seq is not acked for this kiosk; the bad-age one is.
        assert_eq!(v.ack, vec![SeqRange::new(1, 1), SeqRange::new(3, 4)]);
        assert_eq!(v.dead[0].event_id.as_deref(), Some("kiosk-02-2"));
    }
}
