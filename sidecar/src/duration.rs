//! LiteLLM's duration syntax, for a key's `duration` and every `budget_duration`
//! (`litellm/litellm_core_utils/duration_parser.py`).
//!
//! A duration is `<digits><unit>` with unit `s`, `m`, `h`, `d`, `w` or `mo`, or one of the
//! words `hourly` (1h), `daily` (24h), `weekly` (7d), `monthly` (30d). LiteLLM matches
//! only a prefix (`re.match`), so it reads `30days` as 30 d but also `10ms` as 10 minutes;
//! Switchyard requires the whole text to match and refuses the rest with a 400 instead
//! of guessing. Lengths are LiteLLM's `duration_in_seconds`; budget resets are
//! `get_next_standardized_reset_time` in UTC with resets at midnight.

use crate::time::{civil_from_days, days_from_civil, days_in_month};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duration {
    pub value: u32,
    pub unit: Unit,
}

/// Longest duration accepted: far beyond any real key lifetime, small enough that every
/// derived timestamp stays a valid date.
const MAX_SECONDS: i64 = 100 * 366 * 86_400;

/// Parses a duration; `Err` carries the message for the API's 400.
pub fn parse(text: &str) -> Result<Duration, String> {
    let normal = match text.trim().to_ascii_lowercase().as_str() {
        "hourly" => "1h".to_owned(),
        "daily" => "24h".to_owned(),
        "weekly" => "7d".to_owned(),
        "monthly" => "30d".to_owned(),
        _ => text.to_owned(),
    };
    let digits = normal.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = normal.split_at(digits);
    let bad = || {
        format!("invalid duration {text:?}: use <number><unit> with unit s, m, h, d, w or mo (e.g. \"30s\", \"30m\", \"30h\", \"30d\", \"1w\", \"1mo\")")
    };
    if num.is_empty() {
        return Err(bad());
    }
    let unit = match unit {
        "s" => Unit::Second,
        "m" => Unit::Minute,
        "h" => Unit::Hour,
        "d" => Unit::Day,
        "w" => Unit::Week,
        "mo" => Unit::Month,
        _ => return Err(bad()),
    };
    let value: u32 = num.parse().map_err(|_| format!("invalid duration {text:?}: the number is too large"))?;
    let d = Duration { value, unit };
    if d.fixed_seconds().is_some_and(|s| s > MAX_SECONDS) || (unit == Unit::Month && value > 1200) {
        return Err(format!("invalid duration {text:?}: longer than 100 years"));
    }
    Ok(d)
}

impl Duration {
    /// Seconds for every unit but months (whose length depends on the date).
    fn fixed_seconds(self) -> Option<i64> {
        let v = i64::from(self.value);
        Some(match self.unit {
            Unit::Second => v,
            Unit::Minute => v * 60,
            Unit::Hour => v * 3600,
            Unit::Day => v * 86_400,
            Unit::Week => v * 604_800,
            Unit::Month => return None,
        })
    }

    /// LiteLLM's `duration_in_seconds` from `now` (unix seconds, UTC): fixed for
    /// s/m/h/d/w; `Nmo` is the same day and time N calendar months later, the day
    /// clamped to the target month's last.
    pub fn seconds_from(self, now: i64) -> i64 {
        if let Some(s) = self.fixed_seconds() {
            return s;
        }
        let days = now.div_euclid(86_400);
        let tod = now.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let total = i64::from(m) - 1 + i64::from(self.value);
        let ty = y + total.div_euclid(12);
        let tm = (total.rem_euclid(12) + 1) as u32;
        let td = d.min(days_in_month(ty, tm));
        days_from_civil(ty, tm, td) * 86_400 + tod - now
    }

    /// LiteLLM's `get_next_standardized_reset_time(duration, now, "UTC")` with midnight
    /// resets: `1d` next midnight, `7d`/`1w` next Monday, `30d`/`1mo` the 1st of next
    /// month, other `Nd`/`Nw` today's midnight + N days, `Nh`/`Nm`/`Ns` the next multiple
    /// within the day (LiteLLM's arithmetic, overflow into the next day included).
    /// `Err` for `Nmo` with N ≠ 1, which LiteLLM refuses too.
    pub fn next_reset(self, now: i64) -> Result<i64, String> {
        let v = i64::from(self.value);
        let midnight = now.div_euclid(86_400) * 86_400;
        let tod = now - midnight;
        let (hour, minute, second) = (tod / 3600, (tod / 60) % 60, tod % 60);
        let days = |n: i64| -> i64 {
            match n {
                0 => now,
                1 => midnight + 86_400,
                7 => {
                    // 1970-01-01 was a Thursday: weekday() (Monday 0) = (days + 3) % 7.
                    let weekday = (now.div_euclid(86_400) + 3).rem_euclid(7);
                    let monday = midnight + ((7 - weekday) % 7) * 86_400;
                    if monday <= now {
                        monday + 7 * 86_400
                    } else {
                        monday
                    }
                }
                30 => first_of_next_month(now),
                _ => midnight + n * 86_400,
            }
        };
        let next_in_day = |current: i64, whole: i64| -> i64 {
            if current % v != 0 { current + v - current % v } else { current + v }.min(whole)
        };
        Ok(match self.unit {
            Unit::Day => days(v),
            Unit::Week => days(v * 7),
            Unit::Month if self.value == 1 => first_of_next_month(now),
            Unit::Month => return Err(format!("budget resets support only 1mo, not {}mo", self.value)),
            _ if v == 0 => now,
            Unit::Hour => {
                let next = next_in_day(hour, i64::MAX);
                if next >= 24 {
                    midnight + 86_400 + (next % 24) * 3600
                } else {
                    midnight + next * 3600
                }
            }
            Unit::Minute => {
                let next = next_in_day(minute, i64::MAX);
                let h = hour + next / 60;
                let mi = next % 60;
                if h >= 24 {
                    midnight + 86_400 + (h % 24) * 3600 + mi * 60
                } else {
                    midnight + h * 3600 + mi * 60
                }
            }
            Unit::Second => {
                let next = next_in_day(second, i64::MAX);
                let s = next % 60;
                let mi_total = minute + next / 60;
                let h = hour + mi_total / 60;
                let mi = mi_total % 60;
                let within = (h % 24) * 3600 + mi * 60 + s;
                if h >= 24 {
                    midnight + 86_400 + within
                } else {
                    midnight + within
                }
            }
        })
    }
}

/// The 1st of the month after `now`'s, 00:00 UTC (LiteLLM's monthly reset: the 1st of this
/// month at midnight has always passed unless it is exactly now).
fn first_of_next_month(now: i64) -> i64 {
    let (y, m, _) = civil_from_days(now.div_euclid(86_400));
    let this = days_from_civil(y, m, 1) * 86_400;
    if this > now {
        return this;
    }
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(ny, nm, 1) * 86_400
}

/// `budget_duration` values that mean "never resets" (LiteLLM: `""`, `"none"`, `"null"`).
pub fn is_no_reset(text: &str) -> bool {
    matches!(text.trim().to_ascii_lowercase().as_str(), "" | "none" | "null")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{iso8601, parse_timestamp};

    fn at(text: &str) -> i64 {
        parse_timestamp(text).unwrap_or(i64::MIN)
    }

    #[test]
    fn lengths_match_litellm_duration_in_seconds() {
        // GOVERNANCE.md §1.4, checked with LiteLLM 1.106.2.
        for (text, secs) in [("30s", 30), ("30m", 1800), ("30h", 108_000), ("30d", 2_592_000), ("1w", 604_800)] {
            assert_eq!(parse(text).map(|d| d.seconds_from(0)), Ok(secs), "{text}");
        }
        assert_eq!(parse("hourly").map(|d| d.seconds_from(0)), Ok(3600));
        assert_eq!(parse("Daily").map(|d| d.seconds_from(0)), Ok(86_400));
        assert_eq!(parse("weekly").map(|d| d.seconds_from(0)), Ok(604_800));
        assert_eq!(parse("monthly").map(|d| d.seconds_from(0)), Ok(2_592_000));
        assert_eq!(parse("0s").map(|d| d.seconds_from(0)), Ok(0));
    }

    #[test]
    fn months_are_calendar_months() {
        let jan31 = at("2026-01-31T10:00:00Z");
        assert_eq!(parse("1mo").map(|d| iso8601(jan31 + d.seconds_from(jan31))), Ok("2026-02-28T10:00:00Z".into()));
        let nov = at("2026-11-25T15:30:00Z");
        assert_eq!(parse("2mo").map(|d| iso8601(nov + d.seconds_from(nov))), Ok("2027-01-25T15:30:00Z".into()));
        assert_eq!(parse("12mo").map(|d| iso8601(nov + d.seconds_from(nov))), Ok("2027-11-25T15:30:00Z".into()));
    }

    #[test]
    fn resets_match_litellm_standardized_reset_time() {
        // GOVERNANCE.md §1.4: from Wed 2026-11-25 15:30Z, checked with LiteLLM's parser.
        let now = at("2026-11-25T15:30:00Z");
        for (text, expected) in [
            ("1d", "2026-11-26T00:00:00Z"),
            ("7d", "2026-11-30T00:00:00Z"),
            ("1w", "2026-11-30T00:00:00Z"),
            ("30d", "2026-12-01T00:00:00Z"),
            ("1mo", "2026-12-01T00:00:00Z"),
            ("2h", "2026-11-25T16:00:00Z"),
            ("15m", "2026-11-25T15:45:00Z"),
            ("10d", "2026-12-05T00:00:00Z"),
            ("7s", "2026-11-25T15:30:07Z"),
            ("5h", "2026-11-25T20:00:00Z"),
            ("30h", "2026-11-26T06:00:00Z"),
        ] {
            let got = parse(text).and_then(|d| d.next_reset(now)).map(iso8601);
            assert_eq!(got, Ok(expected.to_owned()), "{text}");
        }
        assert!(parse("2mo").and_then(|d| d.next_reset(now)).is_err());
        let late = at("2026-12-31T23:50:00Z");
        assert_eq!(parse("1mo").and_then(|d| d.next_reset(late)).map(iso8601), Ok("2027-01-01T00:00:00Z".into()));
        assert_eq!(parse("15m").and_then(|d| d.next_reset(late)).map(iso8601), Ok("2027-01-01T00:00:00Z".into()));
    }

    #[test]
    fn refuses_what_litellm_would_guess_at() {
        for bad in [
            "",
            "30",
            "30x",
            "x30s",
            "1.5h",
            "-1d",
            "30days",
            "10ms",
            " 30s",
            "30S",
            "99999999999d",
            "1300mo",
            "5000000w",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_reset_words() {
        assert!(is_no_reset("") && is_no_reset("None") && is_no_reset("null"));
        assert!(!is_no_reset("1d"));
    }
}
