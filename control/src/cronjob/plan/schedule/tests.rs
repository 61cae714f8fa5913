#![allow(clippy::unwrap_used)]

use jiff::tz::TimeZone;
use jiff::Zoned;

use super::*;

fn at(text: &str, zone: &str) -> Zoned {
    text.parse::<jiff::civil::DateTime>().unwrap().to_zoned(TimeZone::get(zone).unwrap()).unwrap()
}

fn utc(text: &str) -> Zoned {
    at(text, "UTC")
}

fn next(spec: &str, from: &Zoned) -> Option<Zoned> {
    Schedule::parse(spec).unwrap_or_else(|err| panic!("{spec}: {err}")).next_after(from)
}

#[test]
fn next_activation_table_in_utc() {
    // Each row: schedule, start, expected next activation (None: never within five years).
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("*/15 * * * *", "2025-01-01T10:07:30", Some("2025-01-01T10:15:00")),
        ("*/15 * * * *", "2025-01-01T10:45:00", Some("2025-01-01T11:00:00")),
        ("0 * * * *", "2025-01-01T10:00:00", Some("2025-01-01T11:00:00")),
        ("5/20 * * * *", "2025-01-01T10:06:00", Some("2025-01-01T10:25:00")),
        ("0 9-17/4 * * *", "2025-01-01T13:00:00", Some("2025-01-01T17:00:00")),
        ("0 9-17/4 * * *", "2025-01-01T17:00:00", Some("2025-01-02T09:00:00")),
        ("0 0 1,15 * *", "2025-01-02T00:00:00", Some("2025-01-15T00:00:00")),
        ("0 0 31 * *", "2025-04-01T00:00:00", Some("2025-05-31T00:00:00")),
        ("0 0 29 2 *", "2025-01-01T00:00:00", Some("2028-02-29T00:00:00")),
        ("0 0 30 2 *", "2025-01-01T00:00:00", None),
        ("0 12 * JAN,jul *", "2025-02-01T00:00:00", Some("2025-07-01T12:00:00")),
        ("30 8 * * mon-FRI", "2025-01-03T09:00:00", Some("2025-01-06T08:30:00")),
        ("0 0 * * SUN", "2025-01-01T00:00:00", Some("2025-01-05T00:00:00")),
        ("0 0 * * 0", "2025-01-01T00:00:00", Some("2025-01-05T00:00:00")),
        ("0 0 ? * 6", "2025-01-01T00:00:00", Some("2025-01-04T00:00:00")),
        // Both days restricted: either matches (Friday the 3rd comes before the 13th).
        ("0 0 13 * FRI", "2025-01-01T00:00:00", Some("2025-01-03T00:00:00")),
        ("0 0 13 * FRI", "2025-01-10T12:00:00", Some("2025-01-13T00:00:00")),
        // A day-of-week star means "any": only the day of month restricts.
        ("0 0 13 * *", "2025-01-01T00:00:00", Some("2025-01-13T00:00:00")),
        // `*/2` is no star: the OR rule applies (odd days, or Mondays).
        ("0 0 */2 * MON", "2025-01-03T12:00:00", Some("2025-01-05T00:00:00")),
        ("0 0 */2 * MON", "2025-01-05T12:00:00", Some("2025-01-06T00:00:00")),
        // `*/1` keeps the star: Mondays only.
        ("0 0 */1 * MON", "2025-01-01T00:00:00", Some("2025-01-06T00:00:00")),
        ("@yearly", "2025-06-01T00:00:00", Some("2026-01-01T00:00:00")),
        ("@annually", "2025-12-31T23:59:59", Some("2026-01-01T00:00:00")),
        ("@monthly", "2025-01-31T10:00:00", Some("2025-02-01T00:00:00")),
        ("@weekly", "2025-01-01T00:00:00", Some("2025-01-05T00:00:00")),
        ("@daily", "2025-01-01T00:00:00", Some("2025-01-02T00:00:00")),
        ("@midnight", "2025-01-01T23:59:00", Some("2025-01-02T00:00:00")),
        ("@hourly", "2025-01-01T10:59:59.9", Some("2025-01-01T11:00:00")),
        ("@every 90m", "2025-01-01T10:00:30.5", Some("2025-01-01T11:30:30")),
        ("@every 1h30m", "2025-01-01T10:00:30", Some("2025-01-01T11:30:30")),
        ("@every 500ms", "2025-01-01T10:00:30", Some("2025-01-01T10:00:31")),
        ("@every 1.5s", "2025-01-01T10:00:30", Some("2025-01-01T10:00:31")),
    ];
    for (spec, from, expected) in cases {
        let got = next(spec, &utc(from));
        let expected = expected.map(utc);
        assert_eq!(got, expected, "{spec} after {from}");
    }
}

#[test]
fn europe_berlin_daylight_saving_table() {
    // 2025-03-30 02:00 CET jumps to 03:00 CEST; 2025-10-26 03:00 CEST falls back to 02:00 CET.
    // Each row: schedule, start (Berlin wall time), expected next activation as a UTC instant.
    let cases: &[(&str, &str, &str)] = &[
        // 02:30 does not exist on the spring day: that day is skipped.
        ("30 2 * * *", "2025-03-29T03:00:00", "2025-03-31T00:30:00"),
        ("0 3 * * *", "2025-03-30T00:00:00", "2025-03-30T01:00:00"),
        // Hourly runs one real hour apart across the gap.
        ("0 * * * *", "2025-03-30T01:30:00", "2025-03-30T01:00:00"),
        ("0 0 * * *", "2025-03-29T12:00:00", "2025-03-29T23:00:00"),
        ("0 0 * * *", "2025-03-30T12:00:00", "2025-03-30T22:00:00"),
        // 02:30 happens twice on the autumn day; both fire.
        ("30 2 * * *", "2025-10-26T00:00:00", "2025-10-26T00:30:00"),
        ("0 12 * * *", "2025-10-26T00:00:00", "2025-10-26T11:00:00"),
    ];
    for (spec, from, expected) in cases {
        let got = next(spec, &at(from, "Europe/Berlin")).unwrap();
        assert_eq!(got.time_zone(), &TimeZone::get("Europe/Berlin").unwrap());
        assert_eq!(got.timestamp(), utc(expected).timestamp(), "{spec} after {from}");
    }

    let first =
        utc("2025-10-26T00:30:00").timestamp().to_zoned(TimeZone::get("Europe/Berlin").unwrap());
    let second = next("30 2 * * *", &first).unwrap();
    assert_eq!(second.timestamp(), utc("2025-10-26T01:30:00").timestamp(), "02:30 CET");
    let third = next("30 2 * * *", &second).unwrap();
    assert_eq!(third.timestamp(), utc("2025-10-27T01:30:00").timestamp());
}

#[test]
fn parse_errors_table() {
    let cases: &[(&str, ScheduleError)] = &[
        ("", ScheduleError::Empty),
        ("* * * *", ScheduleError::FieldCount { found: 4, fields: "* * * *".into() }),
        ("0 0 * * * *", ScheduleError::FieldCount { found: 6, fields: "0 0 * * * *".into() }),
        ("TZ=UTC 0 * * * *", ScheduleError::TimeZoneInSchedule),
        ("CRON_TZ=Europe/Berlin 0 * * * *", ScheduleError::TimeZoneInSchedule),
        ("@reboot", ScheduleError::UnknownDescriptor("@reboot".into())),
        ("60 * * * *", ScheduleError::AboveMaximum { end: 60, max: 59, expression: "60".into() }),
        ("* 24 * * *", ScheduleError::AboveMaximum { end: 24, max: 23, expression: "24".into() }),
        ("* * 0 * *", ScheduleError::BelowMinimum { start: 0, min: 1, expression: "0".into() }),
        ("* * * 13 *", ScheduleError::AboveMaximum { end: 13, max: 12, expression: "13".into() }),
        // robfig/cron v3 allows 0-6 for the day of week: 7 is not Sunday.
        ("* * * * 7", ScheduleError::AboveMaximum { end: 7, max: 6, expression: "7".into() }),
        (
            "5-2 * * * *",
            ScheduleError::StartAfterEnd { start: 5, end: 2, expression: "5-2".into() },
        ),
        ("*/0 * * * *", ScheduleError::ZeroStep("*/0".into())),
        ("1-2-3 * * * *", ScheduleError::TooManyHyphens("1-2-3".into())),
        ("1/2/3 * * * *", ScheduleError::TooManySlashes("1/2/3".into())),
        ("x * * * *", ScheduleError::NotANumber("x".into())),
        ("1,,2 * * * *", ScheduleError::NotANumber("".into())),
        ("* * * FOO *", ScheduleError::NotANumber("FOO".into())),
        ("*/x * * * *", ScheduleError::NotANumber("x".into())),
    ];
    for (spec, expected) in cases {
        assert_eq!(Schedule::parse(spec).as_ref(), Err(expected), "{spec:?}");
    }
    for spec in ["@every", "@every 5", "@every 1x", "@every -"] {
        let result = Schedule::parse(spec);
        assert!(
            matches!(
                result,
                Err(ScheduleError::InvalidDuration { .. } | ScheduleError::UnknownDescriptor(_))
            ),
            "{spec}: {result:?}"
        );
    }
    assert_eq!(
        ScheduleError::TimeZoneInSchedule.to_string(),
        "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    );
    assert_eq!(
        Schedule::parse("* * * *").unwrap_err().to_string(),
        "expected exactly 5 fields, found 4: [* * * *]"
    );
}

#[test]
fn ranges_and_steps_set_the_expected_minutes() {
    // Each row: minute field, the minutes of one hour it fires at.
    let cases: &[(&str, &[i8])] = &[
        ("*/20", &[0, 20, 40]),
        ("?/30", &[0, 30]),
        ("10-15/2", &[10, 12, 14]),
        ("50/4", &[50, 54, 58]),
        ("7", &[7]),
        ("1,3-4,58-59", &[1, 3, 4, 58, 59]),
        ("0-59/59", &[0, 59]),
    ];
    for (field, minutes) in cases {
        let spec = format!("{field} * * * *");
        let mut t = utc("2025-01-01T09:59:59");
        let mut seen = Vec::new();
        loop {
            t = next(&spec, &t).unwrap();
            if t.hour() != 10 {
                break;
            }
            seen.push(t.minute());
        }
        assert_eq!(&seen, minutes, "{spec}");
    }
}

#[test]
fn whitespace_and_case_are_tolerated() {
    let a = Schedule::parse("0  12\t* jan MON").unwrap();
    let b = Schedule::parse("0 12 * JAN mon").unwrap();
    assert_eq!(a, b);
}
