//! Rate limits from Envoy's shared data: requests and tokens per minute and requests in
//! flight, per key, team, user and model per key, held across every worker of an Envoy
//! process by compare-and-swap.
//!
//! Each limited entity has one shared-data entry (`sy:e:<kind>:<id>`, a bounded key space:
//! one entry per entity the sidecar knows), holding the current minute's counts and the
//! deadlines of the requests in flight. Windows are wall-clock minutes (`now / 60 s`), so
//! every worker and replica agrees on them. A request is admitted only if every one of its
//! entities has room; taking room is a CAS write per entity, undone for the ones already
//! taken when a later one refuses. When the request ends, its slots are freed and its token
//! count corrected by the real usage. A slot whose request vanished (a VM that trapped)
//! frees itself at its deadline, so no leaked counter can lock a key.
//!
//! Bounds, per Envoy process: requests per minute and requests in flight are never
//! over-admitted; tokens per minute are admitted on the request's estimated input tokens,
//! so a minute may end over its limit by the tokens of requests already admitted (their
//! output, and any underestimate), and a request refused for tokens costs no room.

use crate::error::{GatewayError, RateLimit};
use crate::host::{Host, Stored};

/// One limited entity of a request, and its limits (`None`: not limited that way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// `api_key`, `team`, `user`, `end_user`, `model_per_key`: named in the 429.
    pub entity: &'static str,
    /// The shared-data key of its state.
    pub key: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u64>,
}

impl Limited {
    pub fn new(entity: &'static str, id: &str, rpm: Option<u64>, tpm: Option<u64>, parallel: Option<u64>) -> Self {
        Limited { entity, key: format!("sy:e:{entity}:{id}"), rpm, tpm, parallel }
    }

    pub fn limits_anything(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.parallel.is_some()
    }
}

/// An entity's state: the minute it counts, its requests and tokens in that minute, and
/// the deadlines (ms) of its requests in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub window: u64,
    pub requests: u64,
    pub tokens: u64,
    pub in_flight: Vec<u64>,
}

const WINDOW_MS: u64 = 60_000;
/// More in-flight deadlines than any limit allows are never stored.
const MAX_SLOTS: usize = 4096;

impl State {
    pub fn decode(bytes: &[u8]) -> State {
        let number = |i: usize| bytes.get(i * 8..i * 8 + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
        let (Some(window), Some(requests), Some(tokens)) = (number(0), number(1), number(2)) else {
            return State::default();
        };
        let in_flight = (3..).map_while(number).take(MAX_SLOTS).collect();
        State { window, requests, tokens, in_flight }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + 8 * self.in_flight.len());
        for n in [self.window, self.requests, self.tokens].into_iter().chain(self.in_flight.iter().copied()) {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// The state as of `now_ms`: a new minute starts from zero; expired slots are gone.
    pub fn at(mut self, now_ms: u64) -> State {
        let window = now_ms / WINDOW_MS;
        if self.window != window {
            self.window = window;
            self.requests = 0;
            self.tokens = 0;
        }
        self.in_flight.retain(|&deadline| deadline > now_ms);
        self
    }

    /// Takes room for one request of `tokens` (estimated), or says which limit refuses.
    pub fn take(&mut self, limits: &Limited, tokens: u64, deadline_ms: u64) -> Result<(), &'static str> {
        if limits.rpm.is_some_and(|rpm| self.requests >= rpm) {
            return Err("requests");
        }
        // A request is refused only if the minute is already full: one that fits partly is
        // admitted (its tokens are only an estimate).
        if limits.tpm.is_some_and(|tpm| self.tokens >= tpm || (self.tokens > 0 && self.tokens + tokens > tpm)) {
            return Err("tokens");
        }
        if limits.parallel.is_some_and(|p| self.in_flight.len() as u64 >= p) {
            return Err("max_parallel_requests");
        }
        self.requests += 1;
        self.tokens = self.tokens.saturating_add(tokens);
        if limits.parallel.is_some() && self.in_flight.len() < MAX_SLOTS {
            self.in_flight.push(deadline_ms);
        }
        Ok(())
    }
}

/// Room taken for a request in one entity: enough to give it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub key: String,
    pub window: u64,
    pub tokens: u64,
    /// The deadline of its in-flight slot, if the entity limits requests in flight.
    pub slot: Option<u64>,
    /// What remains after this request, for the `x-ratelimit-remaining-*` headers:
    /// (requests limit, requests left, tokens limit, tokens left).
    pub remaining: (Option<u64>, u64, Option<u64>, u64),
}

/// How many times a contended CAS write is retried before the request is refused as
/// if limited (never admitted unchecked).
const CAS_ATTEMPTS: usize = 16;

/// Admits a request in every entity, or in none: the error names the entity and limit
/// that refused, with the seconds until the minute resets.
pub fn admit(
    host: &dyn Host,
    entities: &[Limited],
    tokens: u64,
    now_ms: u64,
    slot_ttl_ms: u64,
) -> Result<Vec<Taken>, GatewayError> {
    let mut taken = Vec::with_capacity(entities.len());
    for limits in entities.iter().filter(|l| l.limits_anything()) {
        match take_one(host, limits, tokens, now_ms, now_ms.saturating_add(slot_ttl_ms)) {
            Ok(t) => taken.push(t),
            Err(err) => {
                release(host, &taken, None, now_ms);
                return Err(err);
            }
        }
    }
    Ok(taken)
}

fn take_one(host: &dyn Host, limits: &Limited, tokens: u64, now_ms: u64, deadline: u64) -> Result<Taken, GatewayError> {
    let refused = |limit_type: &'static str, limit: u64| {
        // Slots free when requests end: suggest a second; windows reset on the minute.
        let reset_secs =
            if limit_type == "max_parallel_requests" { 1 } else { (WINDOW_MS - now_ms % WINDOW_MS).div_ceil(1000) };
        GatewayError::RateLimited(RateLimit { entity: limits.entity, limit_type, limit, reset_secs })
    };
    for _ in 0..CAS_ATTEMPTS {
        let shared = host.shared_data(&limits.key).map_err(unavailable)?;
        let mut state = State::decode(shared.value.as_deref().unwrap_or_default()).at(now_ms);
        if let Err(limit_type) = state.take(limits, tokens, deadline) {
            let limit = match limit_type {
                "requests" => limits.rpm,
                "tokens" => limits.tpm,
                _ => limits.parallel,
            };
            return Err(refused(limit_type, limit.unwrap_or(0)));
        }
        if host.set_shared_data(&limits.key, &state.encode(), Some(shared.cas)).map_err(unavailable)? == Stored::Yes {
            return Ok(Taken {
                key: limits.key.clone(),
                window: state.window,
                tokens,
                slot: limits.parallel.map(|_| deadline),
                remaining: (
                    limits.rpm,
                    limits.rpm.map_or(0, |l| l.saturating_sub(state.requests)),
                    limits.tpm,
                    limits.tpm.map_or(0, |l| l.saturating_sub(state.tokens)),
                ),
            });
        }
    }
    log::warn!("switchyard: rate-limit state of {} too contended; request refused", limits.entity);
    Err(refused("requests", limits.rpm.unwrap_or(0)))
}

fn unavailable(e: crate::host::HostError) -> GatewayError {
    log::error!("switchyard: rate-limit state unreadable: {e}");
    GatewayError::Unavailable {
        message: "The gateway cannot check its rate limits right now.".into(),
        retry_after_secs: 1,
    }
}

/// The request ended: free its slots, and move its token count from the estimate to
/// `actual_tokens` when known (within the same minute only; a past minute is closed).
pub fn release(host: &dyn Host, taken: &[Taken], actual_tokens: Option<u64>, now_ms: u64) {
    for t in taken {
        if t.slot.is_none() && actual_tokens.is_none_or(|a| a == t.tokens) {
            continue;
        }
        for _ in 0..CAS_ATTEMPTS {
            let Ok(shared) = host.shared_data(&t.key) else { break };
            let mut state = State::decode(shared.value.as_deref().unwrap_or_default());
            if let Some(slot) = t.slot {
                if let Some(i) = state.in_flight.iter().position(|&d| d == slot) {
                    state.in_flight.swap_remove(i);
                }
            }
            if state.window == t.window {
                if let Some(actual) = actual_tokens {
                    state.tokens = state.tokens.saturating_sub(t.tokens).saturating_add(actual);
                }
            }
            let state = state.at(now_ms);
            match host.set_shared_data(&t.key, &state.encode(), Some(shared.cas)) {
                Ok(Stored::Yes) | Err(_) => break,
                Ok(Stored::CasMismatch) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, FakeShared};
    use proptest::prelude::*;
    use std::rc::Rc;

    fn key(rpm: Option<u64>, tpm: Option<u64>, parallel: Option<u64>) -> Limited {
        Limited::new("api_key", "abc", rpm, tpm, parallel)
    }

    #[test]
    fn requests_per_minute_hold_and_reset_on_the_minute() {
        let host = FakeHost::default();
        let limits = [key(Some(2), None, None)];
        assert!(admit(&host, &limits, 10, 1_000, 600_000).is_ok());
        assert!(admit(&host, &limits, 10, 2_000, 600_000).is_ok());
        let err = admit(&host, &limits, 10, 59_500, 600_000).unwrap_err();
        assert_eq!(err.status(), 429);
        assert_eq!(err.headers()[0], ("retry-after", "1".to_string()));
        let GatewayError::RateLimited(r) = err else { panic!() };
        assert_eq!((r.entity, r.limit_type, r.limit), ("api_key", "requests", 2));
        assert!(admit(&host, &limits, 10, 60_000, 600_000).is_ok(), "a new minute");
    }

    #[test]
    fn parallel_slots_free_on_release_or_at_their_deadline() {
        let host = FakeHost::default();
        let limits = [key(None, None, Some(1))];
        let first = admit(&host, &limits, 0, 1_000, 5_000).unwrap();
        let err = admit(&host, &limits, 0, 2_000, 5_000).unwrap_err();
        assert!(matches!(&err, GatewayError::RateLimited(r) if r.limit_type == "max_parallel_requests"));
        release(&host, &first, None, 3_000);
        let leaked = admit(&host, &limits, 0, 3_000, 5_000).unwrap();
        assert_eq!(leaked[0].slot, Some(8_000));
        // Never released: refused until its deadline, then free again.
        assert!(admit(&host, &limits, 0, 7_999, 5_000).is_err());
        assert!(admit(&host, &limits, 0, 8_001, 5_000).is_ok());
    }

    #[test]
    fn tokens_per_minute_use_the_estimate_then_the_real_usage() {
        let host = FakeHost::default();
        let limits = [key(None, Some(1000), None)];
        let a = admit(&host, &limits, 600, 1_000, 60_000).unwrap();
        assert_eq!(a[0].remaining, (None, 0, Some(1000), 400));
        assert!(admit(&host, &limits, 500, 1_100, 60_000).is_err(), "would exceed the minute");
        release(&host, &a, Some(100), 1_200);
        let b = admit(&host, &limits, 500, 1_300, 60_000).unwrap();
        assert_eq!(b[0].remaining.3, 400);
        // Correction in a later minute leaves the new minute alone.
        release(&host, &b, Some(5_000), 61_000);
        let state = State::decode(&host.shared.data.borrow()["sy:e:api_key:abc"].0);
        assert_eq!((state.window, state.tokens), (1, 0));
    }

    #[test]
    fn all_or_nothing_across_entities() {
        let host = FakeHost::default();
        let team = Limited::new("team", "t", Some(1), None, Some(5));
        let k = key(None, None, Some(5));
        assert!(admit(&host, &[k.clone(), team.clone()], 0, 1_000, 60_000).is_ok());
        let err = admit(&host, &[k.clone(), team.clone()], 0, 1_100, 60_000).unwrap_err();
        assert!(matches!(err, GatewayError::RateLimited(r) if r.entity == "team"));
        let state = State::decode(&host.shared.data.borrow()[&k.key].0);
        assert_eq!((state.requests, state.in_flight.len()), (2, 1), "the key's slot was given back");
        // Unlimited entities cost no host call.
        let host = FakeHost::default();
        assert_eq!(admit(&host, &[Limited::new("user", "u", None, None, None)], 0, 0, 0).unwrap(), vec![]);
        assert_eq!(host.shared_calls.get(), 0);
    }

    #[test]
    fn workers_share_the_state() {
        let shared = Rc::new(FakeShared::default());
        let a = FakeHost { shared: Rc::clone(&shared), ..FakeHost::default() };
        let b = FakeHost { shared, ..FakeHost::default() };
        let limits = [key(Some(3), None, None)];
        for host in [&a, &b, &a] {
            assert!(admit(host, &limits, 0, 1_000, 0).is_ok());
        }
        assert!(admit(&b, &limits, 0, 1_000, 0).is_err());
    }

    proptest! {
        #[test]
        fn state_round_trips_and_never_goes_negative(
            window in any::<u64>(), requests in any::<u64>(), tokens in any::<u64>(),
            slots in proptest::collection::vec(any::<u64>(), 0..20),
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let state = State { window, requests, tokens, in_flight: slots };
            prop_assert_eq!(State::decode(&state.encode()), state);
            let _ = State::decode(&bytes).at(0);
        }

        /// However requests arrive and end, admitted requests never exceed the limits, and
        /// slots are conserved: every admitted request holds one until released.
        #[test]
        fn limits_are_never_exceeded(ops in proptest::collection::vec((0u64..200_000, any::<bool>(), 0u64..300), 1..80)) {
            let host = FakeHost::default();
            let limits = [key(Some(5), Some(600), Some(3))];
            let mut held: Vec<Vec<Taken>> = Vec::new();
            let mut now = 0;
            for (step, end_one, tokens) in ops {
                now += step % 5_000;
                if end_one && !held.is_empty() {
                    let t = held.remove(0);
                    release(&host, &t, Some(tokens), now);
                } else if let Ok(t) = admit(&host, &limits, tokens, now, 1_000_000) {
                    held.push(t);
                }
                let state = State::decode(&host.shared.data.borrow().get("sy:e:api_key:abc").map(|v| v.0.clone()).unwrap_or_default());
                let state = state.at(now);
                prop_assert!(state.requests <= 5);
                prop_assert!(state.in_flight.len() <= 3);
                prop_assert_eq!(state.in_flight.len(), held.len());
            }
        }
    }
}
