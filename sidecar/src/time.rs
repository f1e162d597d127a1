//! Time as the store keeps it (unix seconds, UTC) and as LiteLLM shows it (ISO 8601).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Unix seconds → `2026-11-25T15:30:00Z`. Years outside 0–9999 are clamped so the text
/// is always a valid ISO 8601 date (pydantic parses it).
pub fn iso8601(secs: i64) -> String {
    let secs = secs.clamp(-62_167_219_200, 253_402_300_799);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Parses the timestamps LiteLLM exports and clients send: `2026-11-25T15:30:00Z`,
/// `2026-11-25T15:30:00.123456+00:00`, `2026-11-25 15:30:00+00` (PostgreSQL's text form),
/// `2026-11-25T15:30:00` (naive = UTC, as LiteLLM assumes), `2026-11-25`. Fractions are
/// dropped. Returns unix seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = t.get(from..from + len)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let y = num(0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let mo = u32::try_from(num(5, 2)?).ok()?;
    let d = u32::try_from(num(8, 2)?).ok()?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    let mut i = 10;
    if let Some(&sep) = b.get(10) {
        if sep != b'T' && sep != b't' && sep != b' ' {
            return None;
        }
        let h = num(11, 2)?;
        if b.get(13) != Some(&b':') {
            return None;
        }
        let mi = num(14, 2)?;
        let (s, next) = if b.get(16) == Some(&b':') { (num(17, 2)?, 19) } else { (0, 16) };
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + s;
        i = next;
        if b.get(i) == Some(&b'.') {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
    }
    match b.get(i) {
        None => Some(secs),
        Some(b'Z' | b'z') if i + 1 == b.len() => Some(secs),
        Some(&sign @ (b'+' | b'-')) => {
            let rest = t.get(i + 1..)?;
            let digits: String = rest.chars().filter(|c| *c != ':').collect();
            if digits.len() != 2 && digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let hh: i64 = digits.get(0..2)?.parse().ok()?;
            let mm: i64 = digits.get(2..).filter(|s| !s.is_empty()).map_or(Some(0), |s| s.parse().ok())?;
            let off = hh * 3600 + mm * 60;
            Some(if sign == b'+' { secs - off } else { secs + off })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_795_620_600, "2026-11-25T15:30:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
        ] {
            assert_eq!(iso8601(secs), text);
            assert_eq!(parse_timestamp(text), Some(secs));
        }
    }

    #[test]
    fn parses_litellm_and_postgres_forms() {
        let base = parse_timestamp("2026-11-25T15:30:00Z");
        assert!(base.is_some());
        for text in [
            "2026-11-25T15:30:00",
            "2026-11-25T15:30:00.123456+00:00",
            "2026-11-25 15:30:00+00",
            "2026-11-25T16:30:00+01:00",
            "2026-11-25T10:30:00-0500",
        ] {
            assert_eq!(parse_timestamp(text), base, "{text}");
        }
        assert_eq!(parse_timestamp("2026-11-25"), parse_timestamp("2026-11-25T00:00:00Z"));
        for bad in ["", "2026-13-01", "2026-02-30", "tomorrow", "2026-11-25T25:00:00", "2026-11-25Tx"] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
