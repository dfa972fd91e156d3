//! The MQTT event payload: a versioned, postcard-encoded batch of events.
//!
//! ```text
//! byte 0      format version (currently 1)
//! bytes 1..   postcard(BatchV1 { events: Vec<Event> })
//! ```
//!
//! The version byte sits outside postcard so that a gateway can name an
//! unknown version precisely instead of reporting garbage. Decoding never
//! panics: malformed bytes, trailing bytes and unknown versions are errors.

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// The batch format this build writes.
pub const FORMAT_VERSION: u8 = 1;

/// Why a payload could not be decoded. `reason()` is the stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("empty payload")]
    Empty,
    /// A version byte this build does not know.
    #[error("unknown batch format version {0} (this build reads version {FORMAT_VERSION})")]
    UnknownVersion(u8),
    /// The postcard body does not decode as a batch.
    #[error("malformed batch: {0}")]
    Malformed(String),
    /// The batch decoded but bytes were left over.
    #[error("malformed batch: {0} trailing bytes")]
    TrailingBytes(usize),
}

impl DecodeError {
    /// A short, stable code for dead-letter headers and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::UnknownVersion(_) => "unknown_version",
            DecodeError::Malformed(_) | DecodeError::TrailingBytes(_) => "malformed",
        }
    }
}

#[derive(Serialize)]
struct BatchRef<'a> {
    events: &'a [Event],
}

#[derive(Deserialize)]
struct BatchV1 {
    events: Vec<Event>,
}

/// Encode events as one MQTT payload.
pub fn encode_batch(events: &[Event]) -> Vec<u8> {
    let out = vec![FORMAT_VERSION];
    // postcard fails only on sequences of unknown length, which the contract
    // types do not have; no input can reach that path.
    postcard::to_extend(&BatchRef { events }, out)
        .expect("postcard encodes contract types into a Vec infallibly")
}

/// Decode one MQTT payload into its events.
pub fn decode_batch(payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let (&version, body) = payload.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let (batch, rest): (BatchV1, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(batch.events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::examples;
    use rand::{RngExt, SeedableRng};

    fn golden_events() -> Vec<Event> {
        vec![examples::arrival(), examples::status_change()]
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Hex digits of a fixture, without `#` comments and whitespace.
    fn fixture_hex(text: &str) -> String {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.chars().filter(|c| c.is_ascii_hexdigit()))
            .collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = fixture_hex(text)
            .bytes()
            .filter(|b| b.is_ascii_hexdigit())
            .map(|b| (b as char).to_digit(16).unwrap() as u8)
            .collect();
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    const GOLDEN_V1: &str = include_str!("../fixtures/batch_v1.hex");

    #[test]
    fn golden_v1_bytes_decode_to_the_examples() {
        let bytes = unhex(GOLDEN_V1);
        assert_eq!(decode_batch(&bytes), Ok(golden_events()));
    }

    #[test]
    fn encoder_still_writes_the_golden_bytes() {
        // If this fails, the wire format changed: bump FORMAT_VERSION and keep
        // a decoder for the old version rather than editing the fixture.
        assert_eq!(hex(&encode_batch(&golden_events())), fixture_hex(GOLDEN_V1));
    }

    #[test]
    fn round_trip_many_sizes() {
        for n in [0usize, 1, 2, 100, 1000] {
            let events: Vec<Event> = (0..n)
                .map(|i| {
                    let mut e = examples::arrival();
                    e.identity.seq = i as u64 + 1;
                    e
                })
                .collect();
            assert_eq!(decode_batch(&encode_batch(&events)), Ok(events));
        }
    }

    #[test]
    fn unknown_version_and_trailing_bytes_are_named() {
        let mut bytes = encode_batch(&golden_events());
        bytes[0] = 7;
        assert_eq!(decode_batch(&bytes), Err(DecodeError::UnknownVersion(7)));
        let mut bytes = encode_batch(&golden_events());
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(decode_batch(&bytes), Err(DecodeError::TrailingBytes(2)));
        assert_eq!(decode_batch(&[]), Err(DecodeError::Empty));
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let golden = encode_batch(&golden_events());
        for i in 0..200_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                let len = rng.random_range(0..256);
                let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                if let Some(first) = b.first_mut() {
                    *first = FORMAT_VERSION;
                }
                b
            } else {
                let mut b = golden.clone();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(1..b.len());
                    b[at] = rng.random();
                }
                b.truncate(rng.random_range(1..=b.len()));
                b
            };
            // Whatever decodes must also re-encode; nothing may panic.
            if let Ok(events) = decode_batch(&bytes) {
                let _ = encode_batch(&events);
            }
        }
    }
}
