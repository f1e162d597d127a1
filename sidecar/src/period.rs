//! Budget periods: which period of an entity's `budget_duration` an instant falls in,
//! derived from the duration and the moment it took effect, never stored by a job
//! (GOVERNANCE.md §6). The rules, with LiteLLM citations, are `docs/budgets.md`.
//!
//! LiteLLM 1.106.2 stores one `budget_reset_at` per entity: set to
//! `get_next_standardized_reset_time(duration, now)` when the duration is set, and, each
//! time its reset job finds it passed, `spend` is zeroed and `budget_reset_at` set again
//! from the job's clock (`reset_budget_job.py` `_reset_budget_common`). The periods it
//! produces are therefore a chain: the moment the duration took effect (the *anchor*),
//! then `r1 = next(anchor)` (or a reset time the caller pinned), then `r2 = next(r1)`, …
//! — `next` being [`Duration::next_reset`], LiteLLM's function exactly. A period is
//! `[r_k, r_(k+1))`: its end is LiteLLM's `budget_reset_at`, its start the previous reset
//! boundary (LiteLLM implies it: that is when its job zeroed the spend), and the first
//! period starts at the anchor. Switchyard computes the chain's period containing any
//! instant in O(1), as if the reset job ran exactly on time.
//!
//! For `1d`, `7d`/`1w`, `30d`/`1mo` and the `Nh`/`Nm`/`Ns` that divide their day, hour or
//! minute, the chain after the first reset is the calendar's boundaries themselves
//! (midnights, Mondays, 1sts, multiples), whatever the anchor. Other `Nd` (`10d`) chain
//! from the first reset: `midnight(anchor) + N days`, then every N days, as LiteLLM's
//! job does (its function alone, `midnight(now) + N days`, would move the reset every
//! day). Durations that do not divide the day follow LiteLLM's arithmetic wherever it
//! leads (`5h`: 01:00, 05:00, 10:00, 15:00, 20:00; `30h`: every day at 06:00; `90m`:
//! every hour at :30).

use crate::duration::{Duration, Unit};
use crate::time::{civil_from_days, days_from_civil};

pub const DAY: i64 = 86_400;

/// A budget's reset schedule: the duration, the moment it took effect, and the first
/// reset after that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    duration: Duration,
    anchor: i64,
    first_reset: i64,
}

/// The steady shape of a chain after its first resets (see [`steady_prev`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Every midnight.
    Midnight,
    /// Every Monday, 00:00.
    Monday,
    /// Every 1st of a month, 00:00.
    MonthFirst,
    /// Every `step` seconds from the chain's point.
    Linear(i64),
    /// In every cycle of `cycle` seconds (a day, an hour, a minute) of `unit`-second
    /// units, the points `o, v, 2v, …, last` (in units): multiples of `v` and the
    /// overflow of the previous cycle's last multiple.
    Pattern { cycle: i64, unit: i64, v: i64, o: i64, last: i64 },
    /// One point a day, its time of day advancing by `delta` seconds (mod a day) a day.
    Drift(i64),
}

fn pattern(cycle: i64, unit: i64, v: i64) -> Shape {
    let n = cycle / unit;
    let k = (n + v - 1) / v;
    Shape::Pattern { cycle, unit, v, o: k * v - n, last: (k - 1) * v }
}

fn shape(d: Duration) -> Shape {
    let v = i64::from(d.value.max(1));
    match d.unit {
        Unit::Day | Unit::Week => {
            let days = if d.unit == Unit::Week { v * 7 } else { v };
            match days {
                1 => Shape::Midnight,
                7 => Shape::Monday,
                30 => Shape::MonthFirst,
                n => Shape::Linear(n * DAY),
            }
        }
        Unit::Month => Shape::MonthFirst,
        Unit::Hour if v < 24 => pattern(DAY, 3600, v),
        // `next_hour = v` ≥ 24: the next day at `v % 24`, whatever the hour now.
        Unit::Hour => Shape::Drift(0),
        Unit::Minute if v < 60 => pattern(3600, 60, v),
        // `next_minute = v`: `v / 60` hours later at minute `v % 60`; within two days
        // the carry is real time, so the chain steps `v / 60` hours.
        Unit::Minute if v < 1440 => Shape::Linear((v / 60) * 3600),
        // `v / 60` ≥ 24 hours: LiteLLM carries one day only, at hour `(h + v/60) % 24`.
        Unit::Minute => Shape::Drift(((v / 60) % 24) * 3600),
        Unit::Second if v < 60 => pattern(60, 1, v),
        Unit::Second if v < DAY => Shape::Linear((v / 60) * 60),
        Unit::Second => Shape::Drift(((v / 60) % 1440) * 60),
    }
}

/// The largest point ≤ `t` of the steady chain through `s` (`s ≤ t`, `s` a reset
/// LiteLLM's `next` produced).
fn steady_prev(shape: Shape, s: i64, t: i64) -> i64 {
    let day = t.div_euclid(DAY);
    match shape {
        Shape::Midnight => day * DAY,
        Shape::Monday => {
            // 1970-01-01 was a Thursday: weekday (Monday 0) = (days + 3) mod 7.
            (day - (day + 3).rem_euclid(7)) * DAY
        }
        Shape::MonthFirst => {
            let (y, m, _) = civil_from_days(day);
            days_from_civil(y, m, 1) * DAY
        }
        Shape::Linear(step) => s + (t - s).div_euclid(step) * step,
        Shape::Pattern { cycle, unit, v, o, last } => {
            let start = t.div_euclid(cycle) * cycle;
            let x = (t - start) / unit;
            let k = x / v;
            if k >= 1 {
                start + k * v * unit
            } else if o <= x {
                start + o * unit
            } else {
                start - cycle + last * unit
            }
        }
        Shape::Drift(delta) => {
            let k = day - s.div_euclid(DAY);
            let tod = s.rem_euclid(DAY);
            let here = day * DAY + (tod + k * delta).rem_euclid(DAY);
            if here <= t {
                here
            } else {
                (day - 1) * DAY + (tod + (k - 1) * delta).rem_euclid(DAY)
            }
        }
    }
}

/// LiteLLM's next reset after `x` for a duration that can reset (value ≥ 1, months 1).
fn next(d: Duration, x: i64) -> i64 {
    d.next_reset(x).unwrap_or(x + DAY).max(x + 1)
}

/// A duration as a schedule's: 0 counts as 1 (the API refuses a zero duration, as LiteLLM
/// 1.106.2 does; an imported one would reset on every job run in LiteLLM); `Nmo` with
/// N ≠ 1 cannot reset (LiteLLM raises) and is `None`.
fn resettable(d: Duration) -> Option<Duration> {
    if d.unit == Unit::Month && d.value > 1 {
        return None;
    }
    Some(Duration { value: d.value.max(1), unit: d.unit })
}

impl Schedule {
    /// A schedule that took effect at `anchor` (unix seconds); `first_reset` is a reset
    /// time pinned by the caller (LiteLLM's `budget_reset_at` given to `/budget/new`,
    /// `/customer/new`, or imported), used when it is after the anchor; otherwise the
    /// first reset is `next(anchor)`. `None` when the duration cannot reset.
    pub fn new(duration: Duration, anchor: i64, first_reset: Option<i64>) -> Option<Schedule> {
        let duration = resettable(duration)?;
        let first_reset = first_reset.filter(|r| *r > anchor).unwrap_or_else(|| next(duration, anchor));
        Some(Schedule { duration, anchor, first_reset })
    }

    /// From a stored `budget_duration` text; `None` for "never resets" and for text that
    /// is not a resettable duration.
    pub fn from_text(text: &str, anchor: i64, first_reset: Option<i64>) -> Option<Schedule> {
        if crate::duration::is_no_reset(text) {
            return None;
        }
        Schedule::new(crate::duration::parse(text).ok()?, anchor, first_reset)
    }

    pub fn anchor(&self) -> i64 {
        self.anchor
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The period `[start, end)` (unix seconds) containing `t`; `None` before the anchor
    /// (an instant before the duration took effect belongs to no period of it).
    pub fn period(&self, t: i64) -> Option<(i64, i64)> {
        if t < self.anchor {
            return None;
        }
        let p1 = self.first_reset;
        if t < p1 {
            return Some((self.anchor, p1));
        }
        let p2 = next(self.duration, p1);
        if t < p2 {
            return Some((p1, p2));
        }
        let start = steady_prev(shape(self.duration), p2, t);
        Some((start, next(self.duration, start)))
    }

    /// The period containing `t_ms` (unix milliseconds), in milliseconds. Resets fall on
    /// whole seconds, so the second of `t_ms` decides.
    pub fn period_ms(&self, t_ms: i64) -> Option<(i64, i64)> {
        self.period(t_ms.div_euclid(1000)).map(|(s, e)| (s * 1000, e * 1000))
    }

    /// The current period at `now` (seconds), also when `now` is a little before the
    /// anchor (another sidecar's clock set it): then the first period.
    pub fn current(&self, now: i64) -> (i64, i64) {
        self.period(now.max(self.anchor)).unwrap_or((self.anchor, self.first_reset))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::duration::parse;
    use crate::time::{iso8601, parse_timestamp};
    use proptest::prelude::*;

    fn at(text: &str) -> i64 {
        parse_timestamp(text).unwrap()
    }

    fn sched(d: &str, anchor: &str) -> Schedule {
        Schedule::from_text(d, at(anchor), None).unwrap()
    }

    fn show(p: Option<(i64, i64)>) -> Option<(String, String)> {
        p.map(|(s, e)| (iso8601(s), iso8601(e)))
    }

    fn want(s: &str, e: &str) -> Option<(String, String)> {
        Some((s.to_owned(), e.to_owned()))
    }

    /// The chain by iteration: the reference the closed forms are checked against.
    fn brute(s: &Schedule, t: i64) -> Option<(i64, i64)> {
        if t < s.anchor {
            return None;
        }
        let (mut a, mut b) = (s.anchor, s.first_reset);
        while b <= t {
            a = b;
            b = next(s.duration, a);
        }
        Some((a, b))
    }

    #[test]
    fn calendar_periods() {
        // Anchored Wed 2026-11-25 15:30Z (GOVERNANCE.md §1.4's instant).
        let s = sched("1d", "2026-11-25T15:30:00Z");
        assert_eq!(show(s.period(at("2026-11-25T15:30:00Z"))), want("2026-11-25T15:30:00Z", "2026-11-26T00:00:00Z"));
        assert_eq!(show(s.period(at("2026-11-27T13:00:00Z"))), want("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"));
        assert_eq!(s.period(at("2026-11-25T15:29:59Z")), None);
        let s = sched("7d", "2026-11-25T15:30:00Z");
        assert_eq!(show(s.period(at("2026-12-09T10:00:00Z"))), want("2026-12-07T00:00:00Z", "2026-12-14T00:00:00Z"));
        let s = sched("1mo", "2026-11-25T15:30:00Z");
        assert_eq!(show(s.period(at("2027-02-28T23:59:59Z"))), want("2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z"));
        let s = sched("30d", "2026-12-31T23:50:00Z");
        assert_eq!(show(s.period(at("2026-12-31T23:55:00Z"))), want("2026-12-31T23:50:00Z", "2027-01-01T00:00:00Z"));
        assert_eq!(show(s.period(at("2027-01-01T00:00:00Z"))), want("2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z"));
    }

    #[test]
    fn other_day_counts_chain_from_the_first_reset() {
        // 10d from Wed 15:30: LiteLLM sets 12-05 00:00, then its job 12-15, 12-25, …
        let s = sched("10d", "2026-11-25T15:30:00Z");
        assert_eq!(show(s.period(at("2026-11-30T00:00:00Z"))), want("2026-11-25T15:30:00Z", "2026-12-05T00:00:00Z"));
        assert_eq!(show(s.period(at("2026-12-20T08:00:00Z"))), want("2026-12-15T00:00:00Z", "2026-12-25T00:00:00Z"));
        let s = sched("2w", "2026-11-25T15:30:00Z");
        assert_eq!(show(s.period(at("2026-12-10T00:00:00Z"))), want("2026-12-09T00:00:00Z", "2026-12-23T00:00:00Z"));
    }

    #[test]
    fn sub_day_periods_follow_litellm_arithmetic() {
        let s = sched("5h", "2026-11-25T15:30:00Z");
        assert_eq!(show(s.period(at("2026-11-25T17:00:00Z"))), want("2026-11-25T15:30:00Z", "2026-11-25T20:00:00Z"));
        // 20:00 → 01:00 (25 % 24), not 00:00; then 05:00.
        assert_eq!(show(s.period(at("2026-11-26T00:30:00Z"))), want("2026-11-25T20:00:00Z", "2026-11-26T01:00:00Z"));
        assert_eq!(show(s.period(at("2026-11-27T03:00:00Z"))), want("2026-11-27T01:00:00Z", "2026-11-27T05:00:00Z"));
        let s = sched("30h", "2026-11-25T15:30:00Z");
        assert_eq!(show(s.period(at("2026-11-28T07:00:00Z"))), want("2026-11-28T06:00:00Z", "2026-11-29T06:00:00Z"));
        let s = sched("15m", "2026-11-25T15:31:10Z");
        assert_eq!(show(s.period(at("2026-11-25T18:07:00Z"))), want("2026-11-25T18:00:00Z", "2026-11-25T18:15:00Z"));
        let s = sched("90m", "2026-11-25T15:31:10Z");
        assert_eq!(show(s.period(at("2026-11-26T02:00:00Z"))), want("2026-11-26T01:30:00Z", "2026-11-26T02:30:00Z"));
        let s = sched("7s", "2026-11-25T15:31:10Z");
        assert_eq!(show(s.period(at("2026-11-25T15:32:03Z"))), want("2026-11-25T15:32:03Z", "2026-11-25T15:32:07Z"));
    }

    #[test]
    fn pinned_first_reset_and_lifetime() {
        let pinned = at("2026-11-27T12:00:00Z");
        let s = Schedule::new(parse("1d").unwrap(), at("2026-11-25T15:30:00Z"), Some(pinned)).unwrap();
        assert_eq!(show(s.period(at("2026-11-27T11:00:00Z"))), want("2026-11-25T15:30:00Z", "2026-11-27T12:00:00Z"));
        assert_eq!(show(s.period(at("2026-11-27T13:00:00Z"))), want("2026-11-27T12:00:00Z", "2026-11-28T00:00:00Z"));
        // A pinned time not after the anchor is LiteLLM's "due now": next(anchor).
        let s = Schedule::new(parse("1d").unwrap(), at("2026-11-25T15:30:00Z"), Some(0)).unwrap();
        assert_eq!(s.first_reset, at("2026-11-26T00:00:00Z"));
        for never in ["", "none", "null", "None", "2mo", "nonsense"] {
            assert!(Schedule::from_text(never, 0, None).is_none(), "{never}");
        }
        // Zero counts as one unit.
        assert_eq!(sched("0d", "2026-11-25T15:30:00Z"), sched("1d", "2026-11-25T15:30:00Z"));
        assert_eq!(
            s.period_ms(at("2026-11-26T00:00:00Z") * 1000 - 1).map(|p| p.1),
            Some(at("2026-11-26T00:00:00Z") * 1000)
        );
    }

    fn any_duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (1u32..=180).prop_map(|v| Duration { value: v, unit: Unit::Second }),
            (1u32..=3000).prop_map(|v| Duration { value: v, unit: Unit::Minute }),
            (1u32..=200).prop_map(|v| Duration { value: v, unit: Unit::Hour }),
            (1u32..=100).prop_map(|v| Duration { value: v, unit: Unit::Day }),
            (1u32..=8).prop_map(|v| Duration { value: v, unit: Unit::Week }),
            Just(Duration { value: 1, unit: Unit::Month }),
            prop::sample::select(vec![60u32, 120, 150, 1440, 1500, 2880, 3600, 86_400, 90_000, 200_000])
                .prop_map(|v| Duration { value: v, unit: Unit::Second }),
        ]
    }

    /// About how long a period of `d` is, in seconds (months: 31 days).
    fn span(d: Duration) -> i64 {
        let v = i64::from(d.value);
        match d.unit {
            Unit::Second => v,
            Unit::Minute => v * 60,
            Unit::Hour => v * 3600,
            Unit::Day => v * DAY,
            Unit::Week => v * 7 * DAY,
            Unit::Month => 31 * DAY,
        }
    }

    /// An instant from 2020 to 2040, on whole seconds.
    fn any_time() -> impl Strategy<Value = i64> {
        1_577_836_800i64..2_208_988_800
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        /// start ≤ t < end; the end is LiteLLM's next reset after the start; the closed
        /// form equals iterating LiteLLM's function from the anchor.
        #[test]
        fn the_period_contains_t_and_matches_the_chain(d in any_duration(), anchor in any_time(),
                                                       ahead in 0i64..100_000_000_000, pin in proptest::option::of(0i64..400_000)) {
            let s = Schedule::new(d, anchor, pin.map(|p| anchor + p)).unwrap();
            // Far enough for the steady state, near enough to iterate (a few thousand steps).
            let t = anchor + ahead % (span(d) * 3000);
            let got = s.period(t);
            let (start, end) = got.unwrap();
            prop_assert!(start <= t && t < end, "{d:?} {anchor} {t}: {start}..{end}");
            prop_assert_eq!(got, brute(&s, t), "{:?} anchor {} t {}", d, anchor, t);
            if start > s.anchor {
                prop_assert_eq!(end, next(s.duration, start));
            }
        }

        /// Periods never go back: a later instant's period starts no earlier, and the
        /// periods of a schedule tile time (one ends where the next starts).
        #[test]
        fn periods_are_monotone_and_tile(d in any_duration(), anchor in any_time(), a in 0i64..5_000_000, b in 0i64..5_000_000) {
            let s = Schedule::new(d, anchor, None).unwrap();
            let (t1, t2) = (anchor + a.min(b), anchor + a.max(b));
            let (p1, p2) = (s.period(t1).unwrap(), s.period(t2).unwrap());
            prop_assert!(p1.0 <= p2.0 && p1.1 <= p2.1);
            let after = s.period(p1.1).unwrap();
            prop_assert_eq!(after.0, p1.1);
            prop_assert!(s.period(anchor - 1).is_none());
        }
    }

    #[test]
    fn far_from_the_anchor_is_still_exact() {
        // Decades of 1-second periods, computed without walking them.
        let s = sched("1s", "2020-01-01T00:00:00.5Z");
        let t = at("2039-06-01T12:34:56Z");
        assert_eq!(s.period(t), Some((t, t + 1)));
        let s = sched("1500m", "2021-03-04T05:06:07Z");
        let t = at("2031-03-04T05:06:07Z");
        assert_eq!(s.period(t), brute(&s, t));
    }
}
