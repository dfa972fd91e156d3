//! UTC timestamps with millisecond precision, and their ISO 8601 text form.
//!
//! Every time in the contract is a [`UtcMillis`]: milliseconds since the Unix
//! epoch, UTC. On the wire (postcard) it is an `i64`; in Kafka JSON it is the
//! text `YYYY-MM-DDTHH:MM:SS.mmmZ`, which Python's `datetime.fromisoformat`
//! (3.11+) and MySQL both read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UtcMillis(pub i64);

/// Earliest time the contract accepts (2000-01-01T00:00:00Z).
pub const MIN_VALID: UtcMillis = UtcMillis(946_684_800_000);
/// Latest time the contract accepts (2200-01-01T00:00:00Z).
pub const MAX_VALID: UtcMillis = UtcMillis(7_258_118_400_000);

/// A timestamp text that is not `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTC timestamp {text:?}: expected YYYY-MM-DDTHH:MM:SS.mmmZ")]
pub struct ParseTimeError {
    text: String,
}

const MS_PER_DAY: i64 = 86_400_000;

impl UtcMillis {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UtcMillis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Build from a calendar date and time of day (UTC).
    pub fn from_parts(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> Self {
        let days = days_from_civil(y, mo, d);
        UtcMillis(
            days * MS_PER_DAY
                + i64::from(h) * 3_600_000
                + i64::from(mi) * 60_000
                + i64::from(s) * 1000
                + i64::from(ms),
        )
    }

    /// Calendar date and time of day (UTC): `(year, month, day, hour, minute, second, millisecond)`.
    pub fn to_parts(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let (y, mo, d) = civil_from_days(self.0.div_euclid(MS_PER_DAY));
        let rem = self.0.rem_euclid(MS_PER_DAY);
        (
            y,
            mo,
            d,
            (rem / 3_600_000) as u32,
            (rem / 60_000 % 60) as u32,
            (rem / 1000 % 60) as u32,
            (rem % 1000) as u32,
        )
    }

    /// Whether the time lies in the range the contract accepts.
    pub fn is_plausible(self) -> bool {
        (MIN_VALID..=MAX_VALID).contains(&self)
    }

    /// Hour of day, 0-23 (UTC).
    pub fn hour(self) -> u32 {
        (self.0.rem_euclid(MS_PER_DAY) / 3_600_000) as u32
    }

    /// Day of week, 0 = Monday ... 6 = Sunday.
    pub fn weekday(self) -> u32 {
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        ((self.0.div_euclid(MS_PER_DAY) + 3).rem_euclid(7)) as u32
    }

    /// Whole days since the epoch.
    pub fn day_number(self) -> i64 {
        self.0.div_euclid(MS_PER_DAY)
    }

    /// Minutes from `earlier` to `self` (negative if `self` is earlier).
    pub fn minutes_since(self, earlier: UtcMillis) -> f64 {
        (self.0 - earlier.0) as f64 / 60_000.0
    }

    /// `self` plus a number of milliseconds.
    pub fn plus_ms(self, ms: i64) -> Self {
        UtcMillis(self.0.saturating_add(ms))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Calendar date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for UtcMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d) = civil_from_days(self.0.div_euclid(MS_PER_DAY));
        let rem = self.0.rem_euclid(MS_PER_DAY);
        let (h, mi, s, ms) = (
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60,
            rem % 1000,
        );
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }
}

impl FromStr for UtcMillis {
    type Err = ParseTimeError;

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (also `+00:00` for `Z`, and a
    /// space for `T`). Fractions beyond milliseconds are truncated.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseTimeError {
            text: text.chars().take(64).collect(),
        };
        let b = text.as_bytes();
        if b.len() < 20 || !text.is_ascii() {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, ParseTimeError> {
            let s = &text[r];
            if s.bytes().all(|c| c.is_ascii_digit()) {
                s.parse().map_err(|_| err())
            } else {
                Err(err())
            }
        };
        if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
            return Err(err());
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(err());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut i = 19;
        let mut ms = 0u32;
        if b[i] == b'.' {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return Err(err());
            }
            let frac = &text[start..end.min(start + 3)];
            ms = frac.parse::<u32>().map_err(|_| err())? * 10u32.pow(3 - frac.len() as u32);
            i = end;
        }
        match &text[i..] {
            "Z" | "+00:00" => {}
            _ => return Err(err()),
        }
        let max_day = days_in_month(i64::from(y), mo);
        if !(1..=12).contains(&mo) || d == 0 || d > max_day || h > 23 || mi > 59 || s > 59 {
            return Err(err());
        }
        Ok(UtcMillis::from_parts(i64::from(y), mo, d, h, mi, s, ms))
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// Serde helper: a `UtcMillis` as ISO 8601 text (used by the Kafka JSON record).
pub mod iso {
    use super::*;

    /// Serialize as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn serialize<S: Serializer>(t: &UtcMillis, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    /// Deserialize from ISO 8601 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UtcMillis, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for UtcMillis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for UtcMillis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i64::deserialize(d).map(UtcMillis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        let t = UtcMillis::from_parts(2026, 12, 4, 16, 1, 2, 345);
        assert_eq!(t.to_string(), "2026-12-04T16:01:02.345Z");
        assert_eq!(t.to_parts(), (2026, 12, 4, 16, 1, 2, 345));
        assert_eq!("2026-12-04T16:01:02.345Z".parse::<UtcMillis>(), Ok(t));
        assert_eq!(UtcMillis(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            "2024-02-29 23:59:59Z"
                .parse::<UtcMillis>()
                .map(|t| t.to_string()),
            Ok("2024-02-29T23:59:59.000Z".to_string())
        );
        assert_eq!(
            "2024-02-29T23:59:59.123456+00:00".parse::<UtcMillis>(),
            Ok(UtcMillis::from_parts(2024, 2, 29, 23, 59, 59, 123))
        );
    }

    #[test]
    fn round_trips_every_day_for_centuries() {
        let mut t = UtcMillis::from_parts(1999, 1, 1, 0, 0, 0, 0);
        while t < MAX_VALID {
            assert_eq!(t.to_string().parse::<UtcMillis>(), Ok(t), "{t}");
            t = t.plus_ms(MS_PER_DAY + 3_723_456);
        }
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-12-04T24:00:00Z",
            "2026-12-04T16:01:02",
            "2026-12-04T16:01:02+01:00",
            "2026-12-04T16:01:02.Z",
            "２０２６-12-04T16:01:02Z",
            "abcd-ef-ghTij:kl:mnZ",
        ] {
            assert!(bad.parse::<UtcMillis>().is_err(), "{bad}");
        }
    }

    #[test]
    fn calendar_fields() {
        // 2026-12-04 is a Friday.
        let t = UtcMillis::from_parts(2026, 12, 4, 9, 30, 0, 0);
        assert_eq!(t.weekday(), 4);
        assert_eq!(t.hour(), 9);
        assert_eq!(UtcMillis(0).weekday(), 3);
    }
}
