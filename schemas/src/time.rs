//! Timestamps and dates as the SPEC reads them: RFC 3339 with a zone, stored as UTC
//! microseconds; dates as UTC calendar dates (days since the Unix epoch for Arrow).

use chrono::{DateTime, NaiveDate, Utc};

/// Parses an ISO-8601/RFC 3339 timestamp that carries a zone (`Z` or an offset) into
/// microseconds since the epoch, UTC. A timestamp without a zone is rejected.
pub fn parse_timestamp_micros(s: &str) -> Option<i64> {
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    Some(dt.with_timezone(&Utc).timestamp_micros())
}

/// A date field: `YYYY-MM-DD`, or an RFC 3339 timestamp whose UTC date is taken.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    parse_timestamp_micros(s).and_then(micros_to_date)
}

pub fn micros_to_date(us: i64) -> Option<NaiveDate> {
    DateTime::<Utc>::from_timestamp_micros(us).map(|d| d.date_naive())
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => unreachable!(),
};

/// Days since 1970-01-01, the representation of Arrow's `Date32`.
pub fn date_to_days(d: NaiveDate) -> i32 {
    // Any NaiveDate fits: chrono's range is about ±262,000 years.
    (d - EPOCH).num_days() as i32
}

pub fn days_to_date(days: i32) -> Option<NaiveDate> {
    EPOCH.checked_add_signed(chrono::Duration::days(i64::from(days)))
}

/// A day number as `YYYY-MM-DD`, as chrono writes its date (empty if it is no date).
pub fn date_text(days: i32) -> String {
    let mut out = Vec::with_capacity(10);
    push_date(days, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends [`date_text`] to `out`: by arithmetic for years 0 to 9999 (what a hot path
/// meets), by chrono otherwise.
pub fn push_date(days: i32, out: &mut Vec<u8>) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        let (y, m, d) = (y as u32, m as u8, d as u8);
        out.extend_from_slice(&[
            b'0' + (y / 1000) as u8,
            b'0' + (y / 100 % 10) as u8,
            b'0' + (y / 10 % 10) as u8,
            b'0' + (y % 10) as u8,
            b'-',
            b'0' + m / 10,
            b'0' + m % 10,
            b'-',
            b'0' + d / 10,
            b'0' + d % 10,
        ]);
    } else if let Some(d) = days_to_date(days) {
        out.extend_from_slice(d.to_string().as_bytes());
    }
}

/// The proleptic Gregorian year, month and day of a day number (days since
/// 1970-01-01), by Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i32) -> (i64, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// Midnight UTC of a date, in microseconds.
pub fn date_to_micros(d: NaiveDate) -> i64 {
    i64::from(date_to_days(d)) * 86_400_000_000
}

pub fn format_micros(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| us.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_chrono_writes_them() {
        // Days of years -1 to 10000 (every seventh, so every weekday of every month
        // comes by), and beyond.
        for days in (-719_893..=2_932_897)
            .step_by(7)
            .chain([-800_000, 3_000_000])
        {
            let chrono = days_to_date(days).map(|d| d.to_string());
            assert_eq!(Some(date_text(days)), chrono, "{days}");
        }
        assert_eq!(date_text(20_271), "2025-07-02");
        assert_eq!(date_text(i32::MAX), "");
    }

    #[test]
    fn offset_moves_the_utc_date() {
        let us = parse_timestamp_micros("2025-08-01T01:30:00+02:00").unwrap();
        assert_eq!(micros_to_date(us).unwrap().to_string(), "2025-07-31");
    }

    #[test]
    fn fractional_seconds_are_kept() {
        let a = parse_timestamp_micros("2025-08-01T00:00:00.123456Z").unwrap();
        let b = parse_timestamp_micros("2025-08-01T00:00:00Z").unwrap();
        assert_eq!(a - b, 123_456);
    }

    #[test]
    fn no_zone_is_rejected() {
        assert_eq!(parse_timestamp_micros("2025-08-01T00:00:00"), None);
        assert_eq!(parse_timestamp_micros("yesterday"), None);
    }

    #[test]
    fn dates_round_trip_through_days() {
        let d = parse_date("2025-07-02").unwrap();
        assert_eq!(days_to_date(date_to_days(d)), Some(d));
        assert_eq!(date_to_days(parse_date("1970-01-02").unwrap()), 1);
        assert_eq!(parse_date("2025-13-01"), None);
    }
}
