//! Rate-limit window grants: how several Envoy processes hold one limit together.
//!
//! Each Envoy process counts its own requests and tokens in shared data (exact across its
//! workers), but only up to what the sidecar has *granted* it for the current wall-clock
//! minute. When a process runs out, it asks for more; the grant comes out of the entity's
//! row in `rate_windows` (one per entity per minute), in one transaction that locks the
//! row, so processes behind any number of sidecars sharing one database never receive
//! more than the limit between them.
//!
//! How much is handed out at once is a trade between callouts and fairness: a process
//! asks for what its request needs and what it would like (a tenth of the limit); it
//! receives what it would like while plenty remains, half of what remains near the end
//! (never less than it needs while anything remains), and nothing once the minute is
//! spent. A grant a process does not use by the minute's end is lost, so the limit can be
//! under-used by at most the last grant each other process holds (see the README).

use serde::{Deserialize, Serialize};

/// One entity's ask, in one window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantAsk {
    /// `api_key`, `team`, `user`, `end_user`, `model_per_key`.
    pub kind: String,
    pub id: String,
    /// The entity's limits as the asking process knows them (`None`: not limited).
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    #[serde(default)]
    pub need_requests: i64,
    #[serde(default)]
    pub want_requests: i64,
    #[serde(default)]
    pub need_tokens: i64,
    #[serde(default)]
    pub want_tokens: i64,
}

/// What an ask received, and how much of the window is handed out in all (after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub requests: i64,
    pub tokens: i64,
    pub granted_requests: i64,
    pub granted_tokens: i64,
}

/// How much of `limit` to hand out to an ask for `need` (at least) and `want` (ideally),
/// when `used` is already out.
pub fn amount(limit: Option<i64>, used: i64, need: i64, want: i64) -> i64 {
    let (need, want) = (need.max(0), want.max(0));
    let Some(limit) = limit else { return need.max(want) };
    let remaining = limit.saturating_sub(used).max(0);
    need.max(want.min((remaining + 1) / 2)).min(remaining)
}

impl GrantAsk {
    /// The grant for this ask against a row holding `(requests, tokens)` already out.
    pub fn grant(&self, out: (i64, i64)) -> Grant {
        let requests =
            if self.rpm.is_some() { amount(self.rpm, out.0, self.need_requests, self.want_requests) } else { 0 };
        let tokens = if self.tpm.is_some() { amount(self.tpm, out.1, self.need_tokens, self.want_tokens) } else { 0 };
        Grant {
            requests,
            tokens,
            granted_requests: out.0.saturating_add(requests),
            granted_tokens: out.1.saturating_add(tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        // (limit, used, need, want) → granted
        let cases = [
            (Some(100), 0, 1, 10, 10),
            (Some(100), 85, 1, 10, 8),
            (Some(100), 97, 1, 10, 2),
            (Some(100), 99, 1, 10, 1),
            (Some(100), 100, 1, 10, 0),
            (Some(100), 150, 1, 10, 0),
            (Some(1), 0, 1, 1, 1),
            (Some(1000), 990, 300, 100, 10),
            (Some(1000), 0, 300, 100, 300),
            (None, 5, 1, 10, 10),
            (Some(10), 0, -4, -1, 0),
        ];
        for (limit, used, need, want, expected) in cases {
            assert_eq!(amount(limit, used, need, want), expected, "{limit:?} {used} {need} {want}");
        }
    }

    #[test]
    fn never_more_than_the_limit() {
        for limit in [1, 2, 7, 10, 100, 1000] {
            for want in [0, 1, 3, limit / 10, limit] {
                let mut used = 0;
                for _ in 0..10_000 {
                    let g = amount(Some(limit), used, 1, want);
                    if g == 0 {
                        break;
                    }
                    used += g;
                }
                assert_eq!(used, limit, "the whole limit is handed out, never more ({limit}, {want})");
            }
        }
    }
}
