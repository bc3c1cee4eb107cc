//! The `time:` placeholder (Ditto's `ImmutableTimePlaceholder`):
//! `now` / `now_epoch_millis`, optionally followed by an offset `+1h` / `-30m` and/or a truncation `[h]`,
//! e.g. `time:now-2d[d]`, `time:now_epoch_millis[h]`, `time:now+4h[m]`.
//!
//! Offset units (Ditto's `DittoDuration`): `ms`, `s`, no unit (= seconds), `m`, `h`, `d`, `w`.
//! Truncation units: `ms`, `s`, `m`, `h`, `d`, `w` (Monday), `mo` (first day of month), `y` (first day of year).
//! Ditto truncates weeks, months and years in the JVM's default zone; here it is always UTC.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeDelta, Utc};

const NOW: &str = "now";
const NOW_EPOCH_MILLIS: &str = "now_epoch_millis";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truncation {
    Fixed(i64),
    Week,
    Month,
    Year,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeSpec {
    epoch_millis: bool,
    offset_millis: i64,
    truncation: Option<Truncation>,
}

const MILLIS_SECOND: i64 = 1_000;
const MILLIS_MINUTE: i64 = 60 * MILLIS_SECOND;
const MILLIS_HOUR: i64 = 60 * MILLIS_MINUTE;
const MILLIS_DAY: i64 = 24 * MILLIS_HOUR;
const MILLIS_WEEK: i64 = 7 * MILLIS_DAY;

fn offset_unit_millis(unit: &str) -> Option<i64> {
    match unit {
        "ms" => Some(1),
        "s" | "" => Some(MILLIS_SECOND),
        "m" => Some(MILLIS_MINUTE),
        "h" => Some(MILLIS_HOUR),
        "d" => Some(MILLIS_DAY),
        "w" => Some(MILLIS_WEEK),
        _ => None,
    }
}

fn truncation_unit(unit: &str) -> Option<Truncation> {
    match unit {
        "ms" => Some(Truncation::Fixed(1)),
        "s" => Some(Truncation::Fixed(MILLIS_SECOND)),
        "m" => Some(Truncation::Fixed(MILLIS_MINUTE)),
        "h" => Some(Truncation::Fixed(MILLIS_HOUR)),
        "d" => Some(Truncation::Fixed(MILLIS_DAY)),
        "w" => Some(Truncation::Week),
        "mo" => Some(Truncation::Month),
        "y" => Some(Truncation::Year),
        _ => None,
    }
}

/// Parses a `time:` placeholder name; `None` if Ditto's `TimePlaceholder.supports` would reject it.
pub(crate) fn parse(name: &str) -> Option<TimeSpec> {
    let (epoch_millis, suffix) = if let Some(suffix) = name.strip_prefix(NOW_EPOCH_MILLIS) {
        (true, suffix)
    } else {
        (false, name.strip_prefix(NOW)?)
    };
    let (range, truncation) = match suffix.find('[') {
        Some(open) => {
            let unit = suffix[open + 1..].strip_suffix(']')?;
            (&suffix[..open], Some(truncation_unit(unit)?))
        }
        None => (suffix, None),
    };
    let offset_millis = if range.is_empty() {
        0
    } else {
        let (negative, duration) = match range.as_bytes()[0] {
            b'+' => (false, &range[1..]),
            b'-' => (true, &range[1..]),
            _ => return None,
        };
        let amount_text = duration.strip_prefix('+').unwrap_or(duration);
        let digits = amount_text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let amount: i64 = amount_text[..digits].parse().ok()?;
        let millis = amount.checked_mul(offset_unit_millis(&amount_text[digits..])?)?;
        if negative { -millis } else { millis }
    };
    Some(TimeSpec {
        epoch_millis,
        offset_millis,
        truncation,
    })
}

/// Resolves a `time:` placeholder name against `now`; `None` if the name is invalid or the time overflows.
pub(crate) fn resolve(name: &str, now: DateTime<Utc>) -> Option<String> {
    let spec = parse(name)?;
    let shifted = now.checked_add_signed(TimeDelta::try_milliseconds(spec.offset_millis)?)?;
    let instant = match spec.truncation {
        None => shifted,
        Some(truncation) => truncate(shifted, truncation)?,
    };
    Some(if spec.epoch_millis {
        instant.timestamp_millis().to_string()
    } else {
        // like java.time.Instant.toString(): fraction only if not zero, in groups of 3 digits
        instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    })
}

fn truncate(instant: DateTime<Utc>, truncation: Truncation) -> Option<DateTime<Utc>> {
    let start_of_day = |date: NaiveDate| date.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    match truncation {
        Truncation::Fixed(unit) => {
            let millis = instant.timestamp_millis();
            DateTime::from_timestamp_millis(millis - millis.rem_euclid(unit))
        }
        Truncation::Week => {
            let date = instant.date_naive();
            let back = i64::from(date.weekday().num_days_from_monday());
            start_of_day(date.checked_sub_signed(TimeDelta::try_days(back)?)?)
        }
        Truncation::Month => start_of_day(instant.date_naive().with_day(1)?),
        Truncation::Year => start_of_day(NaiveDate::from_ymd_opt(instant.year(), 1, 1)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    // 2024-05-16 is a Thursday
    const NOW_TEXT: &str = "2024-05-16T13:47:25.123456789Z";

    #[test]
    fn plain() {
        assert_eq!(
            resolve("now", at(NOW_TEXT)).unwrap(),
            "2024-05-16T13:47:25.123456789Z"
        );
        assert_eq!(
            resolve("now", at("2024-05-16T13:47:25Z")).unwrap(),
            "2024-05-16T13:47:25Z"
        );
        assert_eq!(
            resolve("now", at("2024-05-16T13:47:25.120Z")).unwrap(),
            "2024-05-16T13:47:25.120Z"
        );
        assert_eq!(
            resolve("now_epoch_millis", at("1970-01-01T00:00:01.5Z")).unwrap(),
            "1500"
        );
    }

    #[test]
    fn offsets() {
        let now = at(NOW_TEXT);
        assert_eq!(
            resolve("now+1h", now).unwrap(),
            "2024-05-16T14:47:25.123456789Z"
        );
        assert_eq!(
            resolve("now-30m", now).unwrap(),
            "2024-05-16T13:17:25.123456789Z"
        );
        assert_eq!(
            resolve("now-2d", now).unwrap(),
            "2024-05-14T13:47:25.123456789Z"
        );
        assert_eq!(
            resolve("now+1w", now).unwrap(),
            "2024-05-23T13:47:25.123456789Z"
        );
        assert_eq!(
            resolve("now-45s", now).unwrap(),
            "2024-05-16T13:46:40.123456789Z"
        );
        assert_eq!(
            resolve("now-45", now).unwrap(),
            "2024-05-16T13:46:40.123456789Z"
        );
        assert_eq!(
            resolve("now+500ms", now).unwrap(),
            "2024-05-16T13:47:25.623456789Z"
        );
        let epoch = at("1970-01-01T00:00:00Z");
        assert_eq!(resolve("now_epoch_millis+1d", epoch).unwrap(), "86400000");
        assert_eq!(resolve("now_epoch_millis-25m", epoch).unwrap(), "-1500000");
    }

    #[test]
    fn truncations() {
        let now = at(NOW_TEXT);
        assert_eq!(resolve("now[ms]", now).unwrap(), "2024-05-16T13:47:25.123Z");
        assert_eq!(resolve("now[s]", now).unwrap(), "2024-05-16T13:47:25Z");
        assert_eq!(resolve("now[m]", now).unwrap(), "2024-05-16T13:47:00Z");
        assert_eq!(resolve("now[h]", now).unwrap(), "2024-05-16T13:00:00Z");
        assert_eq!(resolve("now[d]", now).unwrap(), "2024-05-16T00:00:00Z");
        assert_eq!(resolve("now[w]", now).unwrap(), "2024-05-13T00:00:00Z");
        assert_eq!(resolve("now[mo]", now).unwrap(), "2024-05-01T00:00:00Z");
        assert_eq!(resolve("now[y]", now).unwrap(), "2024-01-01T00:00:00Z");
        assert_eq!(resolve("now-2d[d]", now).unwrap(), "2024-05-14T00:00:00Z");
        assert_eq!(resolve("now+4h[m]", now).unwrap(), "2024-05-16T17:47:00Z");
        assert_eq!(resolve("now+30d[mo]", now).unwrap(), "2024-06-01T00:00:00Z");
        assert_eq!(
            resolve("now_epoch_millis[h]", at("1970-01-01T01:59:59.999Z")).unwrap(),
            "3600000"
        );
    }

    #[test]
    fn invalid_names() {
        for name in [
            "",
            "today",
            "now1h",
            "now+",
            "now+h",
            "now+1x",
            "now+1mo",
            "now[",
            "now[x]",
            "now[h",
            "now+1h[]",
            "now-1h[h]x",
            "now+-1h",
            "now+99999999999999999999h",
            "nowepoch",
        ] {
            assert!(parse(name).is_none(), "{name}");
        }
        assert!(parse("now++1h").is_some());
        assert!(resolve("now+9223372036854775s", at(NOW_TEXT)).is_none());
    }
}
