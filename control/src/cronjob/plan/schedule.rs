//! Parses a CronJob's `spec.schedule` and finds its next activation, as the `robfig/cron/v3`
//! standard parser that Kubernetes uses does.
//!
//! A schedule is five whitespace-separated fields (minute, hour, day of month, month, day of
//! week), each a comma-separated list of `*`/`?`, a number or name, a range `a-b`, optionally with
//! a step `/n` (`a/n` means `a-max/n`), or one of the macros `@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every <duration>`.
//!
//! Invariants:
//! - Activations always fall on a whole minute (second 0) for field schedules; `@every` keeps
//!   the seconds of the time it counts from, as robfig's constant-delay schedule does.
//! - When both day of month and day of week are restricted (neither starts with `*` or `?`,
//!   and `*/n` with `n > 1` counts as restricted) a day matches if either matches; otherwise both
//!   must.
//! - Activations are searched in the time zone of the time passed to [`Schedule::next_after`],
//!   walking wall-clock fields exactly as robfig does, so a time skipped by a DST gap never fires
//!   and one repeated by a DST fold may fire twice. No activation more than five years ahead is
//!   found.
//! - A `TZ=`/`CRON_TZ=` prefix is rejected, as Kubernetes validation rejects it for new objects:
//!   the time zone belongs in `spec.timeZone`.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, Zoned};

#[cfg(test)]
mod tests;

/// Bit set on a field written as `*` or `?` (without a step above 1): such a day field does not
/// restrict the day, which switches the day-of-month/day-of-week rule from OR to AND.
const STAR: u64 = 1 << 63;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    /// `@every`: a fixed delay in whole seconds, at least one.
    Every(SignedDuration),
}

/// One bit per allowed value of each field (plus [`STAR`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    day_of_month: u64,
    month: u64,
    day_of_week: u64,
}

/// Why a schedule does not parse; messages follow `robfig/cron/v3`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty spec string")]
    Empty,
    /// Kubernetes rejects `TZ=`/`CRON_TZ=` in new schedules.
    #[error("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")]
    TimeZoneInSchedule,
    #[error("expected exactly 5 fields, found {found}: [{fields}]")]
    FieldCount { found: usize, fields: String },
    #[error("unrecognized descriptor: {0}")]
    UnknownDescriptor(String),
    #[error("failed to parse duration {expression}: {reason}")]
    InvalidDuration { expression: String, reason: String },
    #[error("failed to parse int from {0}: strconv.Atoi: parsing {0:?}: invalid syntax")]
    NotANumber(String),
    #[error("negative number ({value}) not allowed: {expression}")]
    Negative { value: i64, expression: String },
    #[error("too many hyphens: {0}")]
    TooManyHyphens(String),
    #[error("too many slashes: {0}")]
    TooManySlashes(String),
    #[error("beginning of range ({start}) below minimum ({min}): {expression}")]
    BelowMinimum { start: u32, min: u32, expression: String },
    #[error("end of range ({end}) above maximum ({max}): {expression}")]
    AboveMaximum { end: u32, max: u32, expression: String },
    #[error("beginning of range ({start}) beyond end of range ({end}): {expression}")]
    StartAfterEnd { start: u32, end: u32, expression: String },
    #[error("step of range should be a positive number: {0}")]
    ZeroStep(String),
}

/// The allowed values of one field and the names it accepts.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTE: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOUR: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DAY_OF_WEEK: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[("sun", 0), ("mon", 1), ("tue", 2), ("wed", 3), ("thu", 4), ("fri", 5), ("sat", 6)],
};

impl Schedule {
    /// Parses a schedule as Kubernetes' CronJob controller and validation do.
    pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
        if spec.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if spec.contains("TZ") {
            return Err(ScheduleError::TimeZoneInSchedule);
        }
        if spec.starts_with('@') {
            return parse_descriptor(spec);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
            return Err(ScheduleError::FieldCount {
                found: fields.len(),
                fields: fields.join(" "),
            });
        };
        Ok(Schedule {
            kind: Kind::Fields(Fields {
                minute: parse_field(minute, &MINUTE)?,
                hour: parse_field(hour, &HOUR)?,
                day_of_month: parse_field(day_of_month, &DAY_OF_MONTH)?,
                month: parse_field(month, &MONTH)?,
                day_of_week: parse_field(day_of_week, &DAY_OF_WEEK)?,
            }),
        })
    }

    /// Returns the first activation strictly after `t`, in `t`'s time zone, or `None` when there
    /// is none within five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, t: &Zoned) -> Option<Zoned> {
        match &self.kind {
            Kind::Every(delay) => {
                let since_second = SignedDuration::from_nanos(i64::from(t.subsec_nanosecond()));
                t.checked_add(*delay - since_second).ok()
            }
            Kind::Fields(fields) => fields.next_after(t),
        }
    }
}

fn parse_descriptor(spec: &str) -> Result<Schedule, ScheduleError> {
    let all = |bounds: &Bounds| bits(bounds.min, bounds.max, 1) | STAR;
    let fields = |minute, hour, day_of_month, month, day_of_week| {
        Ok(Schedule {
            kind: Kind::Fields(Fields { minute, hour, day_of_month, month, day_of_week }),
        })
    };
    match spec {
        "@yearly" | "@annually" => fields(1, 1, 1 << 1, 1 << 1, all(&DAY_OF_WEEK)),
        "@monthly" => fields(1, 1, 1 << 1, all(&MONTH), all(&DAY_OF_WEEK)),
        "@weekly" => fields(1, 1, all(&DAY_OF_MONTH), all(&MONTH), 1),
        "@daily" | "@midnight" => fields(1, 1, all(&DAY_OF_MONTH), all(&MONTH), all(&DAY_OF_WEEK)),
        "@hourly" => fields(1, all(&HOUR), all(&DAY_OF_MONTH), all(&MONTH), all(&DAY_OF_WEEK)),
        _ => match spec.strip_prefix("@every ") {
            Some(expression) => {
                let delay = parse_go_duration(expression).map_err(|reason| {
                    ScheduleError::InvalidDuration { expression: expression.to_owned(), reason }
                })?;
                // robfig's `Every`: at least a second, rounded down to whole seconds.
                let seconds = delay.as_secs().max(1);
                Ok(Schedule { kind: Kind::Every(SignedDuration::from_secs(seconds)) })
            }
            None => Err(ScheduleError::UnknownDescriptor(spec.to_owned())),
        },
    }
}

/// Parses one field: a comma-separated list of ranges.
fn parse_field(field: &str, bounds: &Bounds) -> Result<u64, ScheduleError> {
    field.split(',').try_fold(0, |acc, range| Ok(acc | parse_range(range, bounds)?))
}

/// Parses `*`, `?`, `n`, `a-b`, each optionally followed by `/step`.
fn parse_range(expression: &str, bounds: &Bounds) -> Result<u64, ScheduleError> {
    let mut range_and_step = expression.split('/');
    let range = range_and_step.next().unwrap_or_default();
    let step = range_and_step.next();
    if range_and_step.next().is_some() {
        return Err(ScheduleError::TooManySlashes(expression.to_owned()));
    }
    let ends: Vec<&str> = range.split('-').collect();
    let single = ends.len() == 1;
    let (start, mut end, mut extra) = if ends[0] == "*" || ends[0] == "?" {
        (bounds.min, bounds.max, STAR)
    } else {
        let start = parse_value(ends[0], bounds)?;
        let end = match ends[..] {
            [_] => start,
            [_, end] => parse_value(end, bounds)?,
            _ => return Err(ScheduleError::TooManyHyphens(expression.to_owned())),
        };
        (start, end, 0)
    };
    let step = match step {
        None => 1,
        Some(step) => {
            let step = parse_number(step)?;
            // "n/step" means "n-max/step".
            if single {
                end = bounds.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
    };
    if start < bounds.min {
        let min = bounds.min;
        return Err(ScheduleError::BelowMinimum { start, min, expression: expression.to_owned() });
    }
    if end > bounds.max {
        let max = bounds.max;
        return Err(ScheduleError::AboveMaximum { end, max, expression: expression.to_owned() });
    }
    if start > end {
        return Err(ScheduleError::StartAfterEnd { start, end, expression: expression.to_owned() });
    }
    if step == 0 {
        return Err(ScheduleError::ZeroStep(expression.to_owned()));
    }
    Ok(bits(start, end, step) | extra)
}

/// Parses a name (case-insensitive) or a non-negative number.
fn parse_value(expression: &str, bounds: &Bounds) -> Result<u32, ScheduleError> {
    let lower = expression.to_ascii_lowercase();
    if let Some((_, value)) = bounds.names.iter().find(|(name, _)| *name == lower) {
        return Ok(*value);
    }
    parse_number(expression)
}

fn parse_number(expression: &str) -> Result<u32, ScheduleError> {
    let value: i64 =
        expression.parse().map_err(|_| ScheduleError::NotANumber(expression.to_owned()))?;
    if value < 0 {
        return Err(ScheduleError::Negative { value, expression: expression.to_owned() });
    }
    // Anything this large is out of every field's bounds; saturate so the bounds check says so.
    Ok(u32::try_from(value).unwrap_or(u32::MAX))
}

/// Returns the bits `start, start + step, …` up to `end` (all within 0..=59).
fn bits(start: u32, end: u32, step: u32) -> u64 {
    (start..=end).step_by(step.max(1) as usize).fold(0, |acc, value| acc | (1u64 << value))
}

/// Parses a Go `time.ParseDuration` string such as `1h30m`, `90s` or `1.5h`.
fn parse_go_duration(text: &str) -> Result<SignedDuration, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per_unit = match unit {
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("time: unknown unit {other:?} in duration {text:?}")),
        };
        total += value * nanos_per_unit;
        rest = after;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    // Truncation to whole nanoseconds is what Go's integer arithmetic yields for sane inputs.
    let nanos = total as i64;
    Ok(SignedDuration::from_nanos(if negative { -nanos } else { nanos }))
}

impl Fields {
    /// robfig's `SpecSchedule.Next`, walking wall-clock fields in `t`'s time zone.
    fn next_after(&self, t: &Zoned) -> Option<Zoned> {
        let tz = t.time_zone().clone();
        // Start at the next whole second.
        let since_second = SignedDuration::from_nanos(i64::from(t.subsec_nanosecond()));
        let mut t = t.checked_add(SignedDuration::from_secs(1) - since_second).ok()?;
        let mut truncated = false;
        let year_limit = t.year() + 5;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while !has(self.month, t.month()) {
                if !truncated {
                    truncated = true;
                    t = go_date(&tz, t.date().first_of_month().to_datetime(Time::midnight()))?;
                }
                t = go_add_date(&t, 1, 0)?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&t) {
                if !truncated {
                    truncated = true;
                    t = go_date(&tz, t.date().to_datetime(Time::midnight()))?;
                }
                t = go_add_date(&t, 0, 1)?;
                // A DST change can move midnight: go back to 00:00 of the intended day.
                let hour = i64::from(t.hour());
                if hour != 0 {
                    let shift = if hour > 12 { 24 - hour } else { -hour };
                    t = t.checked_add(SignedDuration::from_hours(shift)).ok()?;
                }
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while !has(self.hour, t.hour()) {
                if !truncated {
                    truncated = true;
                    let hour = Time::new(t.hour(), 0, 0, 0).ok()?;
                    t = go_date(&tz, t.date().to_datetime(hour))?;
                }
                t = t.checked_add(SignedDuration::from_hours(1)).ok()?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while !has(self.minute, t.minute()) {
                if !truncated {
                    truncated = true;
                    t = truncate(&t, 60)?;
                }
                t = t.checked_add(SignedDuration::from_mins(1)).ok()?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            // Only second 0 is allowed: move to the next minute boundary and check it again.
            if t.second() != 0 {
                t = truncate(&t, 60)?.checked_add(SignedDuration::from_mins(1)).ok()?;
                truncated = true;
                continue 'wrap;
            }
            return Some(t);
        }
    }

    fn day_matches(&self, t: &Zoned) -> bool {
        let day_of_month = has(self.day_of_month, t.day());
        let day_of_week = has(self.day_of_week, t.weekday().to_sunday_zero_offset());
        if self.day_of_month & STAR != 0 || self.day_of_week & STAR != 0 {
            day_of_month && day_of_week
        } else {
            day_of_month || day_of_week
        }
    }
}

fn has(field: u64, value: i8) -> bool {
    u32::try_from(value).is_ok_and(|value| value < 63 && field & (1u64 << value) != 0)
}

/// Go's `time.Date` in `tz`: a wall time in a DST gap or fold resolves to the offset found by
/// looking up the wall time as if it were UTC, corrected once.
fn go_date(tz: &TimeZone, wall: DateTime) -> Option<Zoned> {
    let as_utc = wall.to_zoned(TimeZone::UTC).ok()?.timestamp();
    let guess = tz.to_offset(as_utc);
    let utc = as_utc.checked_sub(SignedDuration::from_secs(i64::from(guess.seconds()))).ok()?;
    let actual = tz.to_offset(utc);
    let instant = if actual == guess {
        utc
    } else {
        as_utc.checked_sub(SignedDuration::from_secs(i64::from(actual.seconds()))).ok()?
    };
    Some(instant.to_zoned(tz.clone()))
}

/// Go's `t.AddDate(0, months, days)`: adds to the wall date, normalizing overflowing days (so
/// January 31 plus a month is March 3 or 2), then resolves the wall time like [`go_date`].
fn go_add_date(t: &Zoned, months: i32, days: i64) -> Option<Zoned> {
    let month_index = i32::from(t.year()) * 12 + i32::from(t.month()) - 1 + months;
    let year = i16::try_from(month_index.div_euclid(12)).ok()?;
    let month = i8::try_from(month_index.rem_euclid(12) + 1).ok()?;
    let first = Date::new(year, month, 1).ok()?;
    let offset = i64::from(t.day()) - 1 + days;
    let date = first.checked_add(Span::new().try_days(offset).ok()?).ok()?;
    go_date(t.time_zone(), date.to_datetime(t.time()))
}

/// Go's `t.Truncate(d)` for whole seconds: rounds the instant down to a multiple of `seconds`.
fn truncate(t: &Zoned, seconds: i64) -> Option<Zoned> {
    let second = t.timestamp().as_second().div_euclid(seconds) * seconds;
    Some(Timestamp::from_second(second).ok()?.to_zoned(t.time_zone().clone()))
}
