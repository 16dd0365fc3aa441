//! Timestamps and dates as the SPEC reads them: RFC 3339 with a zone, stored as UTC
//! microseconds; dates as UTC calendar dates (days since the Unix epoch for Arrow).

use chrono::{DateTime, NaiveDate, Utc};

/// Parses an ISO-8601/RFC 3339 timestamp that carries a zone (`Z` or an offset) into
/// microseconds since the epoch, UTC. A timestamp without a zone is rejected.
pub fn parse_timestamp_micros(s: &str) -> Option<i64> {
    if let Some(us) = utc_seconds_micros(s.as_bytes()) {
        return Some(us);
    }
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    Some(dt.with_timezone(&Utc).timestamp_micros())
}

/// The common form, `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, UTC), read by arithmetic:
/// `None` for anything else, which chrono then reads (or rejects). A leap second
/// (`:60`) is left to chrono too.
fn utc_seconds_micros(b: &[u8]) -> Option<i64> {
    let [
        y0,
        y1,
        y2,
        y3,
        b'-',
        mo0,
        mo1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        mi0,
        mi1,
        b':',
        s0,
        s1,
        b'Z',
    ] = *b
    else {
        return None;
    };
    let digit = |c: u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
    let two = |a: u8, b: u8| Some(digit(a)? * 10 + digit(b)?);
    let year = two(y0, y1)? * 100 + two(y2, y3)?;
    let (month, day) = (two(mo0, mo1)?, two(d0, d1)?);
    let (hour, minute, second) = (two(h0, h1)?, two(mi0, mi1)?, two(s0, s1)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date, by Howard Hinnant's
/// `days_from_civil` (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

/// Microseconds in a day (UTC days: no leap seconds).
pub const MICROS_PER_DAY: i64 = 86_400_000_000;
/// `date_to_days` of chrono's first and last dates (a test holds them equal).
const FIRST_DAY: i64 = -96_465_292;
const LAST_DAY: i64 = 95_026_236;

/// `micros_to_date(us).map(date_to_days)` without building the date: the day number of
/// the UTC date of `us`, `None` where chrono has no date, as there. Every kept event
/// takes this path; a division is cheaper than building a calendar date to count its
/// days.
pub fn micros_to_days(us: i64) -> Option<i32> {
    let days = us.div_euclid(MICROS_PER_DAY);
    (FIRST_DAY..=LAST_DAY)
        .contains(&days)
        .then_some(days as i32)
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
    i64::from(date_to_days(d)) * MICROS_PER_DAY
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

    /// The arithmetic path gives chrono's answer wherever it answers, and leaves every
    /// other text to chrono.
    fn same_as_chrono(text: &str) {
        let chrono = DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|d| d.with_timezone(&Utc).timestamp_micros());
        assert_eq!(parse_timestamp_micros(text), chrono, "{text}");
        if let Some(us) = utc_seconds_micros(text.as_bytes()) {
            assert_eq!(Some(us), chrono, "{text}");
        }
    }

    #[test]
    fn whole_utc_seconds_are_read_as_chrono_reads_them() {
        for text in [
            "2025-08-17T01:55:00Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "0000-03-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2024-02-29T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2100-02-29T12:00:00Z",
            "2000-02-29T12:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-00-10T00:00:00Z",
            "2025-13-10T00:00:00Z",
            "2025-01-00T00:00:00Z",
            "2025-01-10T24:00:00Z",
            "2025-01-10T23:60:00Z",
            "2016-12-31T23:59:60Z",
            "2025-01-10t10:00:00Z",
            "2025-01-10T10:00:00z",
            "2025-01-10 10:00:00Z",
            "2025-01-10T10:00:00+00:00",
            "2025-01-10T10:00:0aZ",
            "+025-01-10T10:00:00Z",
        ] {
            same_as_chrono(text);
        }
        // Every day of four years around a century leap rule, at a few times.
        for days in 10_900..12_400 {
            let date = date_text(days);
            for time in ["00:00:00", "13:07:59", "23:59:59"] {
                same_as_chrono(&format!("{date}T{time}Z"));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_timestamp_shape_is_read_as_chrono_reads_it(
            y in 0u32..10_000, mo in 0u32..14, d in 0u32..33,
            h in 0u32..26, mi in 0u32..62, s in 0u32..62,
        ) {
            same_as_chrono(&format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"));
        }
    }

    /// The day numbers of the dates `micros_to_date` reads, edges included: the
    /// epoch, days before it (division rounds down), chrono's first and last days and
    /// the times just outside them, and the ends of `i64`.
    #[test]
    fn micros_to_days_is_the_day_number_of_micros_to_date() {
        assert_eq!(FIRST_DAY, i64::from(date_to_days(NaiveDate::MIN)));
        assert_eq!(LAST_DAY, i64::from(date_to_days(NaiveDate::MAX)));
        let mut cases = vec![i64::MIN, i64::MAX, 0, -1, 1, -MICROS_PER_DAY - 1];
        for day in [-1, 0, 1, 20_300, FIRST_DAY, LAST_DAY, LAST_DAY + 1] {
            let start = day * MICROS_PER_DAY;
            cases.extend([start - 1, start, start + 1, start + MICROS_PER_DAY - 1]);
        }
        for us in cases {
            assert_eq!(
                micros_to_days(us),
                micros_to_date(us).map(date_to_days),
                "{us}"
            );
        }
        assert_eq!(micros_to_days(-1), Some(-1));
        assert_eq!(
            micros_to_days(LAST_DAY * MICROS_PER_DAY + MICROS_PER_DAY),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn any_time_has_the_day_number_of_its_date(us in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(micros_to_days(us), micros_to_date(us).map(date_to_days));
        }
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
