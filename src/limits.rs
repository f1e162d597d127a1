//! Rate limits from Envoy's shared data: requests and tokens per minute and requests in
//! flight, per key, team, user and model per key, held across every worker of an Envoy
//! process by compare-and-swap, and (scope `global`) across Envoy processes by window
//! grants from the sidecar.
//!
//! Each limited entity has one shared-data entry (`sy:rl:<kind>:<id>`, a bounded key space:
//! one entry per entity the sidecar knows), holding the current minute's counts and the
//! deadlines of the requests in flight. Windows are wall-clock minutes (`now / 60 s`), so
//! every worker and replica agrees on them. A request is admitted only if every one of its
//! entities has room; taking room is a CAS write per entity, undone for the ones already
//! taken when a later one refuses. When the request ends, its slots are freed and its token
//! count corrected by the real usage. A slot whose request vanished (a VM that trapped)
//! frees itself at its deadline, so no leaked counter can lock a key.
//!
//! In global scope a process counts, besides, what the sidecar has granted it of each
//! entity's minute (`sidecar/src/store/grants.rs`): a request that would go past the grant
//! is not admitted yet; the caller asks the sidecar for more ([`Admission::Ask`]), applies
//! the answer ([`apply_grants`]) and admits again. A minute the sidecar says is spent is
//! refused locally, with no further callout, until the minute ends. If the sidecar cannot
//! answer, the entity is held per process for a few seconds ([`hold_locally`]).
//!
//! Bounds (README, "Rate limits"): per Envoy process, requests per minute and requests in
//! flight are never over-admitted; tokens per minute are admitted on the request's
//! estimated input tokens, so a minute may end over its limit by the tokens of requests
//! already admitted (their output, and any underestimate), and a request refused for tokens
//! costs no room. Across processes (global scope), the same, while the sidecar answers.

use serde::{Deserialize, Serialize};

use crate::error::{GatewayError, RateLimit};
use crate::host::{Host, Stored};

/// One limited entity of a request, and its limits (`None`: not limited that way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// `api_key`, `team`, `user`, `end_user`, `model_per_key`: named in the 429.
    pub entity: &'static str,
    pub id: String,
    /// The shared-data key of its state.
    pub key: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u64>,
}

/// The shared-data key prefix of an entity's state (the state's layout is part of it).
pub const STATE_PREFIX: &str = "sy:rl:";

impl Limited {
    pub fn new(entity: &'static str, id: &str, rpm: Option<u64>, tpm: Option<u64>, parallel: Option<u64>) -> Self {
        Limited { entity, id: id.to_string(), key: format!("{STATE_PREFIX}{entity}:{id}"), rpm, tpm, parallel }
    }

    pub fn limits_anything(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.parallel.is_some()
    }
}

/// How admission uses window grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grants {
    /// Limits held by this process alone (scope `process`, or the sidecar cannot grant).
    Unused,
    /// Within what the sidecar granted; ask for more when it runs out.
    MayAsk,
    /// Within what the sidecar granted, which has just been asked for: running out refuses.
    Final,
}

/// An entity's state: the minute it counts, its requests and tokens in that minute, what
/// the sidecar granted this process of the minute (and of the whole limit, to every
/// process), whether the sidecar said the minute is spent, until when the entity is held
/// per process because the sidecar could not answer, and the deadlines (ms) of its
/// requests in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub window: u64,
    pub requests: u64,
    pub tokens: u64,
    pub granted_requests: u64,
    pub granted_tokens: u64,
    pub pool_requests: u64,
    pub pool_tokens: u64,
    /// [`SPENT_REQUESTS`] | [`SPENT_TOKENS`].
    pub spent: u64,
    pub local_until_ms: u64,
    pub in_flight: Vec<u64>,
}

pub const SPENT_REQUESTS: u64 = 1;
pub const SPENT_TOKENS: u64 = 2;
const HEADER_WORDS: usize = 9;
const WINDOW_MS: u64 = 60_000;
/// More in-flight deadlines than any limit allows are never stored.
const MAX_SLOTS: usize = 4096;
/// How long an entity is held per process after the sidecar failed to grant.
pub const LOCAL_HOLD_MS: u64 = 5_000;

/// Why an entity did not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A limit refuses: `requests`, `tokens` or `max_parallel_requests`.
    Limit(&'static str),
    /// The grant is used up: the sidecar is to be asked for at least this much more.
    Ask { requests: u64, tokens: u64 },
}

impl State {
    pub fn decode(bytes: &[u8]) -> State {
        let number = |i: usize| bytes.get(i * 8..i * 8 + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
        let mut header = [0u64; HEADER_WORDS];
        for (i, word) in header.iter_mut().enumerate() {
            match number(i) {
                Some(n) => *word = n,
                None => return State::default(),
            }
        }
        let [window, requests, tokens, granted_requests, granted_tokens, pool_requests, pool_tokens, spent, local_until_ms] =
            header;
        let in_flight = (HEADER_WORDS..).map_while(number).take(MAX_SLOTS).collect();
        State {
            window,
            requests,
            tokens,
            granted_requests,
            granted_tokens,
            pool_requests,
            pool_tokens,
            spent,
            local_until_ms,
            in_flight,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let header = [
            self.window,
            self.requests,
            self.tokens,
            self.granted_requests,
            self.granted_tokens,
            self.pool_requests,
            self.pool_tokens,
            self.spent,
            self.local_until_ms,
        ];
        let mut out = Vec::with_capacity(8 * (HEADER_WORDS + self.in_flight.len()));
        for n in header.into_iter().chain(self.in_flight.iter().copied()) {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// The state as of `now_ms`: a new minute starts from zero; expired slots are gone.
    pub fn at(mut self, now_ms: u64) -> State {
        let window = now_ms / WINDOW_MS;
        if self.window != window {
            let (local_until_ms, in_flight) = (self.local_until_ms, std::mem::take(&mut self.in_flight));
            self = State { window, local_until_ms, in_flight, ..State::default() };
        }
        self.in_flight.retain(|&deadline| deadline > now_ms);
        self
    }

    /// Takes room for one request of `tokens` (estimated), or says why not.
    pub fn take(
        &mut self,
        limits: &Limited,
        tokens: u64,
        deadline_ms: u64,
        now_ms: u64,
        grants: Grants,
    ) -> Result<(), Refusal> {
        // A request is refused only if the minute is already full: one that fits partly is
        // admitted (its tokens are only an estimate).
        let over_tokens = |limit: u64| self.tokens >= limit || (self.tokens > 0 && self.tokens + tokens > limit);
        if limits.rpm.is_some_and(|rpm| self.requests >= rpm) {
            return Err(Refusal::Limit("requests"));
        }
        if limits.tpm.is_some_and(over_tokens) {
            return Err(Refusal::Limit("tokens"));
        }
        if limits.parallel.is_some_and(|p| self.in_flight.len() as u64 >= p) {
            return Err(Refusal::Limit("max_parallel_requests"));
        }
        if grants != Grants::Unused && now_ms >= self.local_until_ms {
            let mut ask = (0, 0);
            if limits.rpm.is_some() && self.requests >= self.granted_requests {
                if grants == Grants::Final || self.spent & SPENT_REQUESTS != 0 {
                    return Err(Refusal::Limit("requests"));
                }
                ask.0 = self.requests + 1 - self.granted_requests;
            }
            if limits.tpm.is_some() && over_tokens(self.granted_tokens) {
                if grants == Grants::Final || self.spent & SPENT_TOKENS != 0 {
                    return Err(Refusal::Limit("tokens"));
                }
                ask.1 = self.tokens.saturating_add(tokens).saturating_sub(self.granted_tokens).max(1);
            }
            if ask != (0, 0) {
                return Err(Refusal::Ask { requests: ask.0, tokens: ask.1 });
            }
        }
        self.requests += 1;
        self.tokens = self.tokens.saturating_add(tokens);
        if limits.parallel.is_some() && self.in_flight.len() < MAX_SLOTS {
            self.in_flight.push(deadline_ms);
        }
        Ok(())
    }

    /// What is left of `limit` this minute for a request admitted now: of this process's
    /// grant plus what the sidecar has not granted anyone yet (global), or of the limit.
    fn left(limit: Option<u64>, used: u64, granted: u64, pool: u64, global: bool) -> u64 {
        let Some(limit) = limit else { return 0 };
        let local = limit.saturating_sub(used);
        if global {
            local.min(limit.saturating_sub(pool).saturating_add(granted.saturating_sub(used)))
        } else {
            local
        }
    }
}

/// Room taken for a request in one entity: enough to give it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub entity: &'static str,
    pub key: String,
    pub window: u64,
    pub tokens: u64,
    /// The deadline of its in-flight slot, if the entity limits requests in flight.
    pub slot: Option<u64>,
    /// What remains after this request, for the `x-ratelimit-remaining-*` headers:
    /// (requests limit, requests left, tokens limit, tokens left).
    pub remaining: (Option<u64>, u64, Option<u64>, u64),
}

/// An ask for more of an entity's minute, as the sidecar's `POST /internal/v1/grants`
/// takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ask {
    pub kind: &'static str,
    pub id: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub need_requests: u64,
    pub want_requests: u64,
    pub need_tokens: u64,
    pub want_tokens: u64,
    #[serde(skip)]
    pub key: String,
}

/// How much of a limit a process asks for at once beyond its need: a tenth (so a process
/// asks about ten times a minute at full rate, and a grant it leaves unused is small).
const GRANT_FRACTION: u64 = 10;

impl Ask {
    fn new(limits: &Limited, requests: u64, tokens: u64) -> Ask {
        let share = |limit: Option<u64>, need: u64| {
            if need == 0 {
                0
            } else {
                need.max(limit.unwrap_or(0) / GRANT_FRACTION)
            }
        };
        Ask {
            kind: limits.entity,
            id: limits.id.clone(),
            rpm: limits.rpm,
            tpm: limits.tpm,
            need_requests: requests,
            want_requests: share(limits.rpm, requests),
            need_tokens: tokens,
            want_tokens: share(limits.tpm, tokens),
            key: limits.key.clone(),
        }
    }
}

/// The sidecar's answer to one ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Granted {
    pub requests: u64,
    pub tokens: u64,
    /// How much of the minute is out to every process, after this grant.
    pub granted_requests: u64,
    pub granted_tokens: u64,
}

/// The sidecar's whole answer.
#[derive(Debug, Deserialize)]
pub struct GrantAnswer {
    pub window: u64,
    pub grants: Vec<Granted>,
}

/// The body of a grant callout for `asks` in the minute of `now_ms`.
pub fn grant_request(asks: &[Ask], now_ms: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"window": now_ms / WINDOW_MS, "asks": asks})).unwrap_or_default()
}

/// What admission decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted(Vec<Taken>),
    /// Nothing is taken yet: these entities need more of their minute granted first.
    Ask(Vec<Ask>),
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
    grants: Grants,
) -> Result<Admission, GatewayError> {
    let mut taken = Vec::with_capacity(entities.len());
    let mut asks = Vec::new();
    let deadline = now_ms.saturating_add(slot_ttl_ms);
    for limits in entities.iter().filter(|l| l.limits_anything()) {
        // Once one entity must ask, the rest are only checked (and asked about together).
        match take_one(host, limits, tokens, now_ms, deadline, grants, asks.is_empty()) {
            Ok(Some(t)) => taken.push(t),
            Ok(None) => {}
            Err(Taking::Ask(ask)) => {
                undo(host, &std::mem::take(&mut taken), now_ms);
                asks.push(*ask);
            }
            Err(Taking::Refused(err)) => {
                undo(host, &taken, now_ms);
                return Err(err);
            }
        }
    }
    if asks.is_empty() {
        Ok(Admission::Admitted(taken))
    } else {
        Ok(Admission::Ask(asks))
    }
}

enum Taking {
    Ask(Box<Ask>),
    Refused(GatewayError),
}

/// Takes room in one entity (`write`), or only checks that it has some.
fn take_one(
    host: &dyn Host,
    limits: &Limited,
    tokens: u64,
    now_ms: u64,
    deadline: u64,
    grants: Grants,
    write: bool,
) -> Result<Option<Taken>, Taking> {
    let refused = |limit_type: &'static str| {
        let limit = match limit_type {
            "requests" => limits.rpm,
            "tokens" => limits.tpm,
            _ => limits.parallel,
        };
        // Slots free when requests end: suggest a second; windows reset on the minute.
        let reset_secs =
            if limit_type == "max_parallel_requests" { 1 } else { (WINDOW_MS - now_ms % WINDOW_MS).div_ceil(1000) };
        Taking::Refused(GatewayError::RateLimited(RateLimit {
            entity: limits.entity,
            limit_type,
            limit: limit.unwrap_or(0),
            reset_secs,
        }))
    };
    for _ in 0..CAS_ATTEMPTS {
        let shared = host.shared_data(&limits.key).map_err(|e| Taking::Refused(unavailable(e)))?;
        let mut state = State::decode(shared.value.as_deref().unwrap_or_default()).at(now_ms);
        match state.take(limits, tokens, deadline, now_ms, grants) {
            Ok(()) => {}
            Err(Refusal::Limit(limit_type)) => return Err(refused(limit_type)),
            Err(Refusal::Ask { requests, tokens }) => {
                return Err(Taking::Ask(Box::new(Ask::new(limits, requests, tokens))))
            }
        }
        if !write {
            return Ok(None);
        }
        let stored = host.set_shared_data(&limits.key, &state.encode(), Some(shared.cas));
        if stored.map_err(|e| Taking::Refused(unavailable(e)))? == Stored::Yes {
            let global = grants != Grants::Unused && now_ms >= state.local_until_ms;
            return Ok(Some(Taken {
                entity: limits.entity,
                key: limits.key.clone(),
                window: state.window,
                tokens,
                slot: limits.parallel.map(|_| deadline),
                remaining: (
                    limits.rpm,
                    State::left(limits.rpm, state.requests, state.granted_requests, state.pool_requests, global),
                    limits.tpm,
                    State::left(limits.tpm, state.tokens, state.granted_tokens, state.pool_tokens, global),
                ),
            }));
        }
    }
    log::warn!("switchyard: rate-limit state of {} too contended; request refused", limits.entity);
    Err(refused("requests"))
}

fn unavailable(e: crate::host::HostError) -> GatewayError {
    log::error!("switchyard: rate-limit state unreadable: {e}");
    GatewayError::Unavailable {
        message: "The gateway cannot check its rate limits right now.".into(),
        retry_after_secs: 1,
    }
}

/// Changes one entity's state by CAS (a few attempts; a failure to write is logged).
fn update(host: &dyn Host, key: &str, now_ms: u64, change: impl Fn(&mut State)) {
    for _ in 0..CAS_ATTEMPTS {
        let Ok(shared) = host.shared_data(key) else { return };
        let mut state = State::decode(shared.value.as_deref().unwrap_or_default()).at(now_ms);
        change(&mut state);
        match host.set_shared_data(key, &state.encode(), Some(shared.cas)) {
            Ok(Stored::Yes) => return,
            Ok(Stored::CasMismatch) => continue,
            Err(e) => {
                log::warn!("switchyard: could not update the rate-limit state: {e}");
                return;
            }
        }
    }
}

/// Gives back everything a request took (it was not admitted after all).
fn undo(host: &dyn Host, taken: &[Taken], now_ms: u64) {
    for t in taken {
        update(host, &t.key, now_ms, |state| {
            free_slot(state, t.slot);
            if state.window == t.window {
                state.requests = state.requests.saturating_sub(1);
                state.tokens = state.tokens.saturating_sub(t.tokens);
            }
        });
    }
}

fn free_slot(state: &mut State, slot: Option<u64>) {
    if let Some(i) = slot.and_then(|slot| state.in_flight.iter().position(|&d| d == slot)) {
        state.in_flight.swap_remove(i);
    }
}

/// The request ended: free its slots, and move its token count from the estimate to
/// `actual_tokens` when known (within the same minute only; a past minute is closed).
pub fn release(host: &dyn Host, taken: &[Taken], actual_tokens: Option<u64>, now_ms: u64) {
    for t in taken {
        if t.slot.is_none() && actual_tokens.is_none_or(|a| a == t.tokens) {
            continue;
        }
        update(host, &t.key, now_ms, |state| {
            free_slot(state, t.slot);
            if let (Some(actual), true) = (actual_tokens, state.window == t.window) {
                state.tokens = state.tokens.saturating_sub(t.tokens).saturating_add(actual);
            }
        });
    }
}

/// The sidecar answered `asks` for the minute `window`: add what it granted (an answer for
/// a minute that has passed is dropped), and remember which minutes it says are spent.
pub fn apply_grants(host: &dyn Host, asks: &[Ask], answer: &GrantAnswer, now_ms: u64) {
    for (ask, g) in asks.iter().zip(&answer.grants) {
        update(host, &ask.key, now_ms, |state| {
            if state.window != answer.window {
                return;
            }
            state.granted_requests = state.granted_requests.saturating_add(g.requests);
            state.granted_tokens = state.granted_tokens.saturating_add(g.tokens);
            state.pool_requests = state.pool_requests.max(g.granted_requests);
            state.pool_tokens = state.pool_tokens.max(g.granted_tokens);
            if g.requests < ask.need_requests {
                state.spent |= SPENT_REQUESTS;
            }
            if g.tokens < ask.need_tokens {
                state.spent |= SPENT_TOKENS;
            }
        });
    }
}

/// The sidecar could not grant: hold these entities per process for a few seconds (no
/// request waits on a sidecar that is down more than once per entity in that time).
pub fn hold_locally(host: &dyn Host, asks: &[Ask], now_ms: u64) {
    for ask in asks {
        update(host, &ask.key, now_ms, |state| state.local_until_ms = now_ms + LOCAL_HOLD_MS);
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

    /// Admission in process scope.
    fn admit(
        host: &dyn Host,
        entities: &[Limited],
        tokens: u64,
        now_ms: u64,
        slot_ttl_ms: u64,
    ) -> Result<Vec<Taken>, GatewayError> {
        match super::admit(host, entities, tokens, now_ms, slot_ttl_ms, Grants::Unused)? {
            Admission::Admitted(taken) => Ok(taken),
            Admission::Ask(asks) => panic!("process scope asked for grants: {asks:?}"),
        }
    }

    fn state(host: &FakeHost, key: &str) -> State {
        State::decode(&host.shared.data.borrow().get(key).map(|v| v.0.clone()).unwrap_or_default())
    }

    /// The sidecar's grant rule (sidecar/src/store/grants.rs), over one pool per entity.
    #[derive(Default)]
    struct Sidecar {
        out: std::cell::RefCell<std::collections::HashMap<(String, u64), (u64, u64)>>,
    }

    impl Sidecar {
        fn amount(limit: Option<u64>, used: u64, need: u64, want: u64) -> u64 {
            let Some(limit) = limit else { return 0 };
            let remaining = limit.saturating_sub(used);
            need.max(want.min(remaining.div_ceil(2))).min(remaining)
        }

        fn grant(&self, asks: &[Ask], now_ms: u64) -> GrantAnswer {
            let window = now_ms / 60_000;
            let mut out = self.out.borrow_mut();
            let grants = asks
                .iter()
                .map(|a| {
                    let row = out.entry((a.key.clone(), window)).or_default();
                    let requests = Self::amount(a.rpm, row.0, a.need_requests, a.want_requests);
                    let tokens = Self::amount(a.tpm, row.1, a.need_tokens, a.want_tokens);
                    *row = (row.0 + requests, row.1 + tokens);
                    Granted { requests, tokens, granted_requests: row.0, granted_tokens: row.1 }
                })
                .collect();
            GrantAnswer { window, grants }
        }

        /// Admission as the downstream filter runs it in global scope: ask, apply, admit
        /// again (twice at most), then refuse.
        fn admit(
            &self,
            host: &dyn Host,
            entities: &[Limited],
            tokens: u64,
            now_ms: u64,
        ) -> Result<Vec<Taken>, GatewayError> {
            for grants in [Grants::MayAsk, Grants::MayAsk, Grants::Final] {
                match super::admit(host, entities, tokens, now_ms, 600_000, grants)? {
                    Admission::Admitted(taken) => return Ok(taken),
                    Admission::Ask(asks) => apply_grants(host, &asks, &self.grant(&asks, now_ms), now_ms),
                }
            }
            panic!("a final admission never asks")
        }
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
        let state = state(&host, "sy:rl:api_key:abc");
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
        let state = state(&host, &k.key);
        assert_eq!((state.requests, state.in_flight.len()), (1, 1), "the key's room was given back");
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

    #[test]
    fn global_scope_asks_for_a_grant_then_admits_within_it() {
        let host = FakeHost::default();
        let limits = [key(Some(100), Some(10_000), None), Limited::new("team", "t", None, None, Some(20))];
        let Admission::Ask(asks) = super::admit(&host, &limits, 50, 1_000, 60_000, Grants::MayAsk).unwrap() else {
            panic!("no grant yet")
        };
        assert_eq!(asks.len(), 1, "the team limits nothing the sidecar grants");
        let a = &asks[0];
        assert_eq!((a.kind, a.id.as_str(), a.rpm, a.tpm), ("api_key", "abc", Some(100), Some(10_000)));
        assert_eq!((a.need_requests, a.want_requests, a.need_tokens, a.want_tokens), (1, 10, 50, 1000));
        let body: serde_json::Value = serde_json::from_slice(&grant_request(&asks, 1_000)).unwrap();
        assert_eq!(body["window"], 0);
        assert_eq!(body["asks"][0]["kind"], "api_key");
        assert!(body["asks"][0].get("key").is_none(), "the shared-data key stays in the filter");
        assert_eq!(state(&host, "sy:rl:team:t").in_flight.len(), 0, "nothing was taken while asking");
        let answer = GrantAnswer {
            window: 0,
            grants: vec![Granted { requests: 10, tokens: 1000, granted_requests: 30, granted_tokens: 4000 }],
        };
        apply_grants(&host, &asks, &answer, 1_100);
        let Admission::Admitted(taken) = super::admit(&host, &limits, 50, 1_200, 60_000, Grants::Final).unwrap() else {
            panic!("within the grant")
        };
        // Left: 100 - 30 not granted to anyone + 9 of ours; tokens 10000 - 4000 + 950.
        assert_eq!(taken[0].remaining, (Some(100), 79, Some(10_000), 6950));
        assert_eq!(state(&host, "sy:rl:team:t").in_flight.len(), 1);
        // Nine more fit in the grant without asking; the eleventh asks again.
        for _ in 0..9 {
            assert!(matches!(
                super::admit(&host, &limits, 50, 1_300, 60_000, Grants::MayAsk),
                Ok(Admission::Admitted(_))
            ));
        }
        let limits = [key(Some(100), Some(10_000), None)];
        assert!(matches!(super::admit(&host, &limits, 50, 1_400, 60_000, Grants::MayAsk), Ok(Admission::Ask(_))));
        let err = super::admit(&host, &limits, 50, 1_400, 60_000, Grants::Final).unwrap_err();
        assert!(matches!(err, GatewayError::RateLimited(r) if r.limit_type == "requests" && r.limit == 100));
    }

    #[test]
    fn a_spent_minute_is_refused_without_asking_until_it_ends() {
        let host = FakeHost::default();
        let limits = [key(Some(10), None, None)];
        let Ok(Admission::Ask(asks)) = super::admit(&host, &limits, 0, 1_000, 60_000, Grants::MayAsk) else { panic!() };
        let spent = GrantAnswer {
            window: 0,
            grants: vec![Granted { requests: 0, tokens: 0, granted_requests: 10, granted_tokens: 0 }],
        };
        apply_grants(&host, &asks, &spent, 1_000);
        let err = super::admit(&host, &limits, 0, 2_000, 60_000, Grants::MayAsk).unwrap_err();
        assert!(matches!(err, GatewayError::RateLimited(r) if r.limit_type == "requests" && r.reset_secs == 58));
        // A grant for a minute that has passed is dropped; the new minute asks afresh.
        apply_grants(
            &host,
            &asks,
            &GrantAnswer {
                window: 0,
                grants: vec![Granted { requests: 5, tokens: 0, granted_requests: 5, granted_tokens: 0 }],
            },
            60_500,
        );
        assert_eq!(state(&host, "sy:rl:api_key:abc").granted_requests, 0);
        assert!(matches!(super::admit(&host, &limits, 0, 60_500, 60_000, Grants::MayAsk), Ok(Admission::Ask(_))));
    }

    #[test]
    fn a_sidecar_that_cannot_grant_leaves_the_entity_held_per_process_for_a_while() {
        let host = FakeHost::default();
        let limits = [key(Some(2), None, None)];
        let Ok(Admission::Ask(asks)) = super::admit(&host, &limits, 0, 1_000, 60_000, Grants::MayAsk) else { panic!() };
        hold_locally(&host, &asks, 1_000);
        for now in [1_000, 1_500] {
            assert!(matches!(super::admit(&host, &limits, 0, now, 60_000, Grants::MayAsk), Ok(Admission::Admitted(_))));
        }
        assert!(
            super::admit(&host, &limits, 0, 2_000, 60_000, Grants::MayAsk).is_err(),
            "the process still holds the limit"
        );
        // Back to grants after the hold: what was admitted meanwhile is asked for too.
        let state = state(&host, "sy:rl:api_key:abc");
        assert_eq!((state.requests, state.local_until_ms), (2, 1_000 + LOCAL_HOLD_MS));
    }

    #[test]
    fn grants_cost_host_calls_only_when_asked() {
        let host = FakeHost::default();
        let limits = [key(Some(1000), None, None)];
        let sidecar = Sidecar::default();
        sidecar.admit(&host, &limits, 0, 1_000).unwrap();
        let before = host.shared_calls.get();
        sidecar.admit(&host, &limits, 0, 1_001).unwrap();
        assert_eq!(host.shared_calls.get() - before, 2, "one read and one write, as in process scope");
    }

    proptest! {
        /// Several Envoy processes (each its own shared data) behind one sidecar: however
        /// requests arrive, across them no minute admits more than the limit, and a
        /// process alone gets all of it.
        #[test]
        fn global_limits_hold_across_processes(ops in proptest::collection::vec((0usize..3, 0u64..3_000, 0u64..200), 1..300), rpm in 1u64..60) {
            let sidecar = Sidecar::default();
            let processes: Vec<FakeHost> = (0..3).map(|_| FakeHost::default()).collect();
            let limits = [key(Some(rpm), Some(5_000), None)];
            let mut now = 0;
            let mut admitted: std::collections::HashMap<u64, (u64, u64)> = Default::default();
            for (p, step, tokens) in ops {
                now += step;
                if let Ok(_t) = sidecar.admit(&processes[p], &limits, tokens, now) {
                    let w = admitted.entry(now / 60_000).or_default();
                    w.0 += 1;
                    w.1 += tokens;
                }
            }
            for (window, (requests, tokens)) in admitted {
                prop_assert!(requests <= rpm, "window {window}: {requests} > {rpm}");
                // Tokens: admitted on the estimate, a request that fits partly goes in.
                prop_assert!(tokens < 5_000 + 3 * 200, "window {window}: {tokens} tokens");
            }
        }

        #[test]
        fn one_process_gets_the_whole_limit(rpm in 1u64..200) {
            let sidecar = Sidecar::default();
            let host = FakeHost::default();
            let limits = [key(Some(rpm), None, None)];
            let admitted = (0..rpm + 5).filter(|i| sidecar.admit(&host, &limits, 0, 1_000 + i).is_ok()).count() as u64;
            prop_assert_eq!(admitted, rpm);
        }

        #[test]
        fn state_round_trips_and_never_goes_negative(
            window in any::<u64>(), requests in any::<u64>(), tokens in any::<u64>(),
            slots in proptest::collection::vec(any::<u64>(), 0..20),
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let state = State { window, requests, tokens, granted_requests: tokens / 3, granted_tokens: window / 7,
                                pool_requests: requests / 5, pool_tokens: 11, spent: 3, local_until_ms: 99, in_flight: slots };
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
                let state = state(&host, "sy:rl:api_key:abc").at(now);
                prop_assert!(state.requests <= 5);
                prop_assert!(state.in_flight.len() <= 3);
                prop_assert_eq!(state.in_flight.len(), held.len());
            }
        }
    }
}
