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
