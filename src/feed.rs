//! The sidecar's change feed, followed by one worker at a time per Envoy process: an admin
//! change (block, update, delete) marks the key's shared-data entry as changed, so every
//! worker asks the sidecar again at its next request with that key, within about a poll
//! interval plus a request, instead of trusting its cache for `cache_ttl`.
//!
//! Every worker's downstream root context ticks; the one that wins a lease in shared
//! data (`sy:feed`, compare-and-swap) polls `GET /internal/v1/changes?since=<seq>` and
//! moves the feed's position on. A worker that dies mid-poll loses the lease when it
//! expires, and another takes over. Each Envoy process follows the feed by itself.
//!
//! A process's first poll asks for the changes made since it started (less a minute, for
//! clocks that differ), not just from "now": workers may have cached keys before that
//! poll, and a change made between such a fetch and the poll must still reach them.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::VirtualKeys;
use crate::customers;
use crate::host::{Host, Stored};
use crate::keys::{self, CachedKey};

/// The feed's position and the poll lease, in shared data.
const FEED_KEY: &str = "sy:feed";
/// How often a worker's root context checks whether the feed is due.
pub const TICK_MS: u32 = 250;
/// How long after a poll the next one is due: the bound on how late a change shows.
const POLL_INTERVAL_MS: u64 = 500;
/// How long one worker may hold the poll before another takes it over.
const LEASE_MS: u64 = 3_000;
const PAGE: u32 = 1_000;

/// `sy:feed`: the last change applied (`None` until the first poll), until when the next
/// poll is not due (a lease while one is in flight), and when this process began to follow
/// (its first tick).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FeedState {
    seq: Option<u64>,
    not_before_ms: u64,
    started_ms: u64,
}

/// How much earlier than its start a process's first poll looks (clock differences
/// between the Envoy host and the sidecar's).
const START_MARGIN_SECS: u64 = 60;

impl FeedState {
    fn decode(bytes: Option<&[u8]>) -> FeedState {
        let number =
            |at: usize| bytes.and_then(|b| b.get(at..at + 8)).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
        match (number(0), number(8)) {
            (Some(seq), Some(not_before_ms)) => {
                FeedState { seq: (seq != u64::MAX).then_some(seq), not_before_ms, started_ms: number(16).unwrap_or(0) }
            }
            _ => FeedState { seq: None, not_before_ms: 0, started_ms: 0 },
        }
    }

    fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.seq.unwrap_or(u64::MAX).to_le_bytes());
        out.extend_from_slice(&self.not_before_ms.to_le_bytes());
        out.extend_from_slice(&self.started_ms.to_le_bytes());
        out
    }
}

#[derive(Deserialize)]
struct Page {
    seq: u64,
    latest: u64,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    reset: bool,
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    seq: u64,
    kind: String,
    id: String,
}

/// One worker's part in following the feed: the call it has in flight, if any.
#[derive(Default)]
pub struct FeedFollower {
    in_flight: Option<InFlight>,
}

enum InFlight {
    /// A poll of the change feed from `since` (`None`: this process's first).
    Poll { token: u32, since: Option<u64> },
    /// The end users a poll reported changed, fetched before the feed moves on to `next`
    /// (`more`: at once); `seqs`: each one's change, the version of its deletion if gone.
    Fetch { token: u32, next: u64, more: bool, seqs: Vec<(String, u64)> },
    /// A page of the end users that restrict anything (`crate::customers`).
    Page { token: u32 },
}

impl InFlight {
    fn token(&self) -> u32 {
        match self {
            InFlight::Poll { token, .. } | InFlight::Fetch { token, .. } | InFlight::Page { token } => *token,
        }
    }
}

#[derive(Deserialize)]
struct CustomerPage {
    #[serde(default)]
    customers: Vec<Box<RawValue>>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    missing: Vec<String>,
}

/// The id and version of an end user's record, read from its JSON.
#[derive(Deserialize)]
struct CustomerHead {
    user_id: String,
    #[serde(default)]
    version: u64,
}

impl FeedFollower {
    /// The root context's tick: if the feed is due and this worker wins the lease, poll it
    /// (or, once the position is known and until they are loaded, fetch a page of end users).
    pub fn on_tick(&mut self, host: &dyn Host, vk: &VirtualKeys) {
        if self.in_flight.is_some() {
            return;
        }
        let now_ms = host.now_nanos() / 1_000_000;
        let Ok(shared) = host.shared_data(FEED_KEY) else { return };
        let mut state = FeedState::decode(shared.value.as_deref());
        if shared.value.is_none() {
            state.started_ms = now_ms;
        }
        if state.not_before_ms > now_ms {
            return;
        }
        let claimed = FeedState { not_before_ms: now_ms + LEASE_MS, ..state };
        if host.set_shared_data(FEED_KEY, &claimed.encode(), Some(shared.cas)) != Ok(Stored::Yes) {
            return; // another worker polls this time
        }
        let (path, page) = match (state.seq, state.seq.map(|_| customers::Load::read(host))) {
            (Some(_), Some(customers::Load::NotBegun)) => (format!("/internal/v1/customers?limit={PAGE}"), true),
            (Some(_), Some(customers::Load::After(after))) => {
                let after = after.map(|a| format!("&after={}", percent_encode(&a))).unwrap_or_default();
                (format!("/internal/v1/customers?limit={PAGE}{after}"), true)
            }
            (Some(seq), _) => (format!("/internal/v1/changes?since={seq}&limit={PAGE}"), false),
            (None, _) => (
                format!(
                    "/internal/v1/changes?since_time={}&limit={PAGE}",
                    (state.started_ms / 1000).saturating_sub(START_MARGIN_SECS)
                ),
                false,
            ),
        };
        match call(host, vk, &path) {
            Ok(token) if page => self.in_flight = Some(InFlight::Page { token }),
            Ok(token) => self.in_flight = Some(InFlight::Poll { token, since: state.seq }),
            Err(()) => release(host, None, now_ms + POLL_INTERVAL_MS),
        }
    }

    /// Whether call `token` is this worker's.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.token() == token)
    }

    /// The sidecar answered this worker's call.
    pub fn on_http_call_response(&mut self, host: &dyn Host, vk: &VirtualKeys, token: u32, body_size: usize) {
        let Some(in_flight) = self.in_flight.take_if(|f| f.token() == token) else { return };
        let now_ms = host.now_nanos() / 1_000_000;
        let status = host.http_call_response_headers().ok().and_then(|h| h.get(":status").map(str::to_string));
        let body = match status.as_deref() {
            Some("200") => host.http_call_response_body(body_size).ok(),
            _ => None,
        };
        let Some(body) = body else {
            log::debug!("switchyard: the sidecar did not answer the change feed's call (status {status:?})");
            return release(host, None, now_ms + POLL_INTERVAL_MS);
        };
        match in_flight {
            InFlight::Poll { since, .. } => self.on_poll(host, vk, since, &body, now_ms),
            InFlight::Fetch { next, more, seqs, .. } => {
                let Ok(page) = serde_json::from_slice::<CustomerPage>(&body) else {
                    return release(host, None, now_ms + POLL_INTERVAL_MS);
                };
                store_customers(host, &page.customers);
                for id in &page.missing {
                    if let Some((_, seq)) = seqs.iter().find(|(i, _)| i == id) {
                        customers::store(host, id, *seq, None);
                    }
                }
                release(host, Some(next), if more { 0 } else { now_ms + POLL_INTERVAL_MS });
            }
            InFlight::Page { .. } => {
                let Ok(page) = serde_json::from_slice::<CustomerPage>(&body) else {
                    return release(host, None, now_ms + POLL_INTERVAL_MS);
                };
                store_customers(host, &page.customers);
                match page.next {
                    Some(after) => customers::Load::After(Some(after)).write(host),
                    None => customers::Load::Done.write(host),
                }
                // The next page (or poll) at once.
                release(host, None, 0);
            }
        }
    }

    /// A page of the change feed: mark every changed key; fetch the changed end users
    /// before moving the position on.
    fn on_poll(&mut self, host: &dyn Host, vk: &VirtualKeys, since: Option<u64>, body: &[u8], now_ms: u64) {
        let Ok(page) = serde_json::from_slice::<Page>(body) else {
            return release(host, None, now_ms + POLL_INTERVAL_MS);
        };
        if since.is_some() && page.reset {
            log::warn!(
                "switchyard: the sidecar's change feed restarted (a new database?); cached keys expire by their TTL, \
                 end users are loaded again (restart Envoy to drop end users the new database does not have)"
            );
            customers::Load::After(None).write(host);
        }
        let mut seqs: Vec<(String, u64)> = Vec::new();
        for change in &page.changes {
            match change.kind.as_str() {
                "key" => {
                    let entry = CachedKey::encode_changed(change.seq);
                    if let Err(e) = host.set_shared_data(&keys::cache_key(&change.id), &entry, None) {
                        log::warn!("switchyard: could not mark a changed key: {e}");
                    }
                }
                "customer" if !page.reset => match seqs.iter_mut().find(|(id, _)| *id == change.id) {
                    Some((_, seq)) => *seq = (*seq).max(change.seq),
                    None => seqs.push((change.id.clone(), change.seq)),
                },
                _ => {}
            }
        }
        let next = if page.reset { page.latest } else { page.seq };
        if seqs.is_empty() {
            // A page cut short is followed at once.
            return release(host, Some(next), if page.more { 0 } else { now_ms + POLL_INTERVAL_MS });
        }
        let query: Vec<String> = seqs.iter().map(|(id, _)| format!("id={}", percent_encode(id))).collect();
        match call(host, vk, &format!("/internal/v1/customers?{}", query.join("&"))) {
            Ok(token) => self.in_flight = Some(InFlight::Fetch { token, next, more: page.more, seqs }),
            // The position stays: the next poll reports these changes again.
            Err(()) => release(host, None, now_ms + POLL_INTERVAL_MS),
        }
    }
}

fn call(host: &dyn Host, vk: &VirtualKeys, path: &str) -> Result<u32, ()> {
    let headers = [
        (":method", "GET"),
        (":path", path),
        (":authority", "switchyard-sidecar"),
        ("x-switchyard-internal", vk.internal_secret.as_str()),
    ];
    host.http_call(&vk.sidecar_cluster, &headers, b"", vk.timeout_ms).map_err(|e| {
        log::debug!("switchyard: cannot call the sidecar for the change feed: {e}");
    })
}

fn store_customers(host: &dyn Host, records: &[Box<RawValue>]) {
    for raw in records {
        if let Ok(head) = serde_json::from_str::<CustomerHead>(raw.get()) {
            customers::store(host, &head.user_id, head.version, Some(raw.get().as_bytes()));
        }
    }
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Ends this worker's poll: the new position (never backwards), and when the next is due.
fn release(host: &dyn Host, seq: Option<u64>, not_before_ms: u64) {
    for _ in 0..3 {
        let Ok(shared) = host.shared_data(FEED_KEY) else { return };
        let current = FeedState::decode(shared.value.as_deref());
        let seq = match (current.seq, seq) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let next = FeedState { seq, not_before_ms, ..current };
        if host.set_shared_data(FEED_KEY, &next.encode(), Some(shared.cas)) != Ok(Stored::CasMismatch) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, FakeShared};
    use serde_json::json;
    use std::rc::Rc;

    fn vk() -> VirtualKeys {
        VirtualKeys {
            sidecar_cluster: "switchyard_sidecar".into(),
            internal_secret: "s3cret".into(),
            cache_ttl: 60,
            negative_cache_ttl: 5,
            stale_ttl: 600,
            timeout_ms: 1000,
            parallel_slot_ttl: 900,
            allow_when_sidecar_down: false,
            global_limits: false,
        }
    }

    fn worker(shared: &Rc<FakeShared>, now_ms: u64) -> FakeHost {
        FakeHost { shared: Rc::clone(shared), now_ns: now_ms * 1_000_000, ..FakeHost::default() }
    }

    fn answer(host: &FakeHost, status: u16, body: serde_json::Value) -> usize {
        let bytes = body.to_string().into_bytes();
        let size = bytes.len();
        *host.call_response.borrow_mut() = (vec![(":status".into(), status.to_string())], bytes);
        size
    }

    fn feed(shared: &Rc<FakeShared>) -> FeedState {
        FeedState::decode(shared.data.borrow().get(FEED_KEY).map(|(v, _)| v.as_slice()))
    }

    #[test]
    fn one_worker_polls_and_changed_keys_are_marked() {
        let shared = Rc::new(FakeShared::default());
        let (mut a, mut b) = (FeedFollower::default(), FeedFollower::default());
        let wa = worker(&shared, 100_000);
        let wb = worker(&shared, 100_000);
        a.on_tick(&wa, &vk());
        b.on_tick(&wb, &vk());
        assert_eq!((wa.http_calls.borrow().len(), wb.http_calls.borrow().len()), (1, 0), "one poller");
        let call = wa.http_calls.borrow()[0].clone();
        assert!(call.1.iter().any(|(k, v)| k == ":path" && v == "/internal/v1/changes?since_time=40&limit=1000"));
        assert!(call.1.iter().any(|(k, v)| k == "x-switchyard-internal" && v == "s3cret"));
        // The first poll: the changes since this process began (less a minute), as keys
        // may have been cached before it.
        let size = answer(
            &wa,
            200,
            json!({"seq": 41, "latest": 41, "more": false, "reset": false,
            "changes": [{"seq": 41, "kind": "key", "id": keys::hash("sk-old")}]}),
        );
        a.on_http_call_response(&wa, &vk(), 1, size);
        assert_eq!(feed(&shared), FeedState { seq: Some(41), not_before_ms: 100_500, started_ms: 100_000 });
        let entry = shared.data.borrow().get(&keys::cache_key(&keys::hash("sk-old"))).map(|(v, _)| v.clone()).unwrap();
        assert_eq!(CachedKey::decode(&entry), Some(CachedKey::Changed { seq: 41 }));
        // Not due yet; then due, and B loads the end users first (one page), then polls.
        let early = worker(&shared, 100_400);
        b.on_tick(&early, &vk());
        assert!(early.http_calls.borrow().is_empty());
        let loader = worker(&shared, 100_550);
        b.on_tick(&loader, &vk());
        let calls = loader.http_calls.borrow().clone();
        assert!(calls[0].1.iter().any(|(k, v)| k == ":path" && v == "/internal/v1/customers?limit=1000"));
        let size = answer(
            &loader,
            200,
            json!({"customers": [{"user_id": "acme 1", "blocked": true, "models": [], "version": 40}], "next": null}),
        );
        b.on_http_call_response(&loader, &vk(), 1, size);
        assert_eq!(customers::Load::read(&loader), customers::Load::Done);
        assert!(customers::lookup(&loader, "acme 1").is_some_and(|c| c.blocked));
        let later = worker(&shared, 100_600);
        b.on_tick(&later, &vk());
        let calls = later.http_calls.borrow().clone();
        assert!(calls[0].1.iter().any(|(k, v)| k == ":path" && v == "/internal/v1/changes?since=41&limit=1000"));
        let hash = keys::hash("sk-blocked");
        let size = answer(
            &later,
            200,
            json!({"seq": 43, "latest": 43, "more": false, "reset": false, "changes": [
            {"seq": 42, "kind": "key", "id": hash}, {"seq": 43, "kind": "customer", "id": "u1"}]}),
        );
        b.on_http_call_response(&later, &vk(), 1, size);
        let entry = shared.data.borrow().get(&keys::cache_key(&hash)).map(|(v, _)| v.clone()).unwrap();
        assert_eq!(CachedKey::decode(&entry), Some(CachedKey::Changed { seq: 42 }));
        // The end user the page changed is fetched before the position moves on.
        assert_eq!(feed(&shared).seq, Some(41));
        let fetch = later.http_calls.borrow()[1].clone();
        assert!(fetch.1.iter().any(|(k, v)| k == ":path" && v == "/internal/v1/customers?id=u1"));
        let size = answer(&later, 200, json!({"customers": [], "missing": ["u1"]}));
        b.on_http_call_response(&later, &vk(), 2, size);
        assert_eq!(feed(&shared).seq, Some(43));
    }

    #[test]
    fn changed_end_users_are_fetched_and_deleted_ones_dropped() {
        let shared = Rc::new(FakeShared::default());
        let mut f = FeedFollower::default();
        let w = worker(&shared, 1_000);
        // Position known, end users loaded: a poll.
        shared
            .data
            .borrow_mut()
            .insert(FEED_KEY.into(), (FeedState { seq: Some(10), not_before_ms: 0, started_ms: 1 }.encode(), 1));
        customers::Load::Done.write(&w);
        customers::store(&w, "gone", 3, Some(br#"{"user_id": "gone", "blocked": true, "version": 3}"#));
        f.on_tick(&w, &vk());
        let size = answer(
            &w,
            200,
            json!({"seq": 12, "latest": 12, "more": false, "reset": false, "changes": [
            {"seq": 11, "kind": "customer", "id": "a/b"}, {"seq": 12, "kind": "customer", "id": "gone"}]}),
        );
        f.on_http_call_response(&w, &vk(), 1, size);
        let path = w.http_calls.borrow()[1].1.iter().find(|(k, _)| k == ":path").map(|(_, v)| v.clone()).unwrap();
        assert_eq!(path, "/internal/v1/customers?id=a%2Fb&id=gone");
        // The sidecar failing leaves the position, so the next poll sees them again.
        let size = answer(&w, 503, json!({}));
        f.on_http_call_response(&w, &vk(), 2, size);
        assert_eq!(feed(&shared).seq, Some(10));
        let w = worker(&shared, 2_000);
        f.on_tick(&w, &vk());
        let size = answer(
            &w,
            200,
            json!({"seq": 12, "latest": 12, "more": false, "reset": false, "changes": [
            {"seq": 11, "kind": "customer", "id": "a/b"}, {"seq": 12, "kind": "customer", "id": "gone"}]}),
        );
        f.on_http_call_response(&w, &vk(), 1, size);
        let size = answer(
            &w,
            200,
            json!({"customers": [{"user_id": "a/b", "rpm_limit": 2, "version": 11}], "missing": ["gone"]}),
        );
        f.on_http_call_response(&w, &vk(), 2, size);
        assert_eq!(customers::lookup(&w, "a/b").and_then(|c| c.rpm_limit), Some(2));
        assert_eq!(customers::lookup(&w, "gone"), None);
        assert_eq!(feed(&shared).seq, Some(12));
    }

    #[test]
    fn a_failed_poll_or_a_long_page() {
        let shared = Rc::new(FakeShared::default());
        let mut a = FeedFollower::default();
        let w = worker(&shared, 1_000);
        a.on_tick(&w, &vk());
        let size = answer(&w, 503, json!({}));
        a.on_http_call_response(&w, &vk(), 1, size);
        assert_eq!(feed(&shared), FeedState { seq: None, not_before_ms: 1_500, started_ms: 1_000 }, "retried soon");
        let w = worker(&shared, 1_600);
        a.on_tick(&w, &vk());
        let size = answer(&w, 200, json!({"seq": 5, "latest": 9, "more": true, "reset": false, "changes": []}));
        a.on_http_call_response(&w, &vk(), 1, size);
        assert_eq!(
            feed(&shared),
            FeedState { seq: Some(5), not_before_ms: 0, started_ms: 1_000 },
            "a long page: at once"
        );
        // A lease held by a worker that died expires.
        let shared = Rc::new(FakeShared::default());
        let mut dead = FeedFollower::default();
        dead.on_tick(&worker(&shared, 1_000), &vk());
        let mut other = FeedFollower::default();
        let soon = worker(&shared, 3_999);
        other.on_tick(&soon, &vk());
        assert!(soon.http_calls.borrow().is_empty());
        let after = worker(&shared, 4_001);
        other.on_tick(&after, &vk());
        assert_eq!(after.http_calls.borrow().len(), 1);
    }

    #[test]
    fn state_round_trips() {
        for state in [
            FeedState { seq: None, not_before_ms: 5, started_ms: 3 },
            FeedState { seq: Some(0), not_before_ms: 0, started_ms: 0 },
        ] {
            assert_eq!(FeedState::decode(Some(&state.encode())), state);
        }
        assert_eq!(FeedState::decode(Some(b"bad")), FeedState { seq: None, not_before_ms: 0, started_ms: 0 });
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::fuzz_config())]
        /// Whatever the sidecar answers the feed's calls (a poll, a page of end users, a
        /// fetch of changed ones), the follower never panics and always gives the lease back.
        #[test]
        fn any_answer_to_the_feed_is_handled(
            answers in proptest::collection::vec((proptest::sample::select(vec![200u16, 500]), crate::testing::arb_json()), 1..6),
        ) {
            let shared = Rc::new(FakeShared::default());
            let mut f = FeedFollower::default();
            let mut now = 10_000;
            for (status, body) in answers {
                let w = worker(&shared, now);
                f.on_tick(&w, &vk());
                let size = answer(&w, status, body);
                let token = w.http_calls.borrow().len() as u32;
                f.on_http_call_response(&w, &vk(), token, size);
                if f.in_flight.is_none() {
                    proptest::prop_assert!(feed(&shared).not_before_ms <= now + POLL_INTERVAL_MS);
                }
                now += LEASE_MS + 1;
            }
        }
    }
}
