//! The spend ledger's filter half: one record per request that reached a provider's
//! route, batched to the sidecar (`POST /internal/v1/spend`, docs/ledger.md) and kept
//! until the sidecar acknowledges a durable commit.
//!
//! Each worker keeps its own records in its VM and its root context's tick sends them,
//! a batch at a time. Nothing is added to the request path: building the record is VM
//! work in `on_log`, and no host call (a shared queue to one owner would cost an enqueue
//! and a cross-thread wake-up of the owner per request). A record leaves the buffer only
//! when the sidecar answered 200 for its batch, which it does after its transaction
//! committed; a batch whose answer was lost is sent again, and the sidecar inserts each
//! id once, so a record is never lost to a sidecar or database outage and never doubled.
//! What a worker holds is lost only with its VM (Envoy killed, or the VM trapped): at most
//! the records of its last flush interval plus those waiting while the sidecar was away.
//! A worker holds at most `MAX_PENDING` records; past that, the oldest are dropped and
//! counted (`switchyard.ledger.dropped`) rather than growing Envoy's memory without bound.

use std::cell::RefCell;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::config::VirtualKeys;
use crate::host::Host;
use crate::usage::Usage;

/// Records one worker keeps while the sidecar cannot take them (about 500 bytes each).
pub const MAX_PENDING: usize = 100_000;
/// Records per batch (the sidecar takes up to 1000).
const BATCH: usize = 500;
/// Waits between failed batches: doubling from the first, up to the last.
const BACKOFF_MS: (u64, u64) = (250, 5_000);

/// The longest client-chosen text a record carries (`client_request_id`, `end_user`): the
/// sidecar keeps 256 bytes of it, and a batch must stay far below its 4 MiB.
pub const MAX_CLIENT_TEXT: usize = 256;

/// `text` cut to [`MAX_CLIENT_TEXT`] bytes, at a character boundary.
pub fn client_text(text: &str) -> String {
    let mut end = text.len().min(MAX_CLIENT_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_string()
}

/// One request, as the ledger keeps it (docs/ledger.md: the contract with the sidecar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The gateway's own id for the request (see [`new_id`]), never a client's.
    pub id: String,
    /// The client's `x-request-id`, kept to correlate.
    pub client_request_id: Option<String>,
    pub key_hash: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub end_user: Option<String>,
    pub model_group: String,
    /// The answering attempt's provider and model (the last one a provider answered).
    pub provider: Option<&'static str>,
    pub model: Option<String>,
    pub operation: &'static str,
    /// The status the client got; 0: it went away before an answer.
    pub status: u16,
    pub stream: bool,
    /// Every attempt's usage together.
    pub usage: Usage,
    pub cost_nano: u64,
    /// Some of the usage is the gateway's estimate (a cut stream, a client gone).
    pub estimated: bool,
    pub attempts: u32,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// What the sidecar says of a batch.
#[derive(Debug, Default, Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    inserted: u64,
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    rejected: Vec<serde_json::Value>,
}

/// One worker's records on their way to the sidecar.
#[derive(Default)]
pub struct Ledger {
    /// Serialised records, oldest first; the first `in_flight` are in the batch sent.
    pending: VecDeque<Vec<u8>>,
    in_flight: Option<(u32, usize)>,
    /// No batch before this time (after a failure).
    retry_at_ms: u64,
    backoff_ms: u64,
    /// Records dropped because the buffer was full, since the last report.
    dropped: u64,
    /// Records the next batch may hold: halved when the sidecar refused a batch as too
    /// large or unreadable, back to [`BATCH`] once one is taken.
    batch: usize,
}

thread_local! {
    /// This worker's ledger buffer (one VM per worker).
    pub static LEDGER: RefCell<Ledger> = RefCell::new(Ledger::default());
    /// The VM's id prefix (random, chosen once) and its counter.
    static IDS: RefCell<(u64, u64)> = RefCell::new((random_u64(), 0));
}

/// A fresh id: 64 random bits chosen once per VM, then a counter, as 32 hex digits.
/// Unique across workers, processes and restarts unless two VMs draw the same 64 bits.
pub fn new_id() -> String {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        ids.1 = ids.1.wrapping_add(1);
        format!("{:016x}{:016x}", ids.0, ids.1)
    })
}

/// 64 random bits from the standard library's per-thread hash keys, which it draws
/// from the system's entropy (WASI `random_get` in the VM; Envoy implements it).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5357_4954_4348_5944);
    hasher.finish()
}

impl Ledger {
    /// Keeps a record until the sidecar has it.
    pub fn add(&mut self, record: &Record) {
        let Ok(bytes) = serde_json::to_vec(record) else { return };
        if self.pending.len() >= MAX_PENDING {
            // The oldest not in flight goes.
            let at = self.in_flight.map_or(0, |(_, n)| n);
            if self.pending.remove(at).is_some() {
                self.dropped += 1;
            }
        }
        self.pending.push_back(bytes);
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The root context's tick: sends the next batch, unless one is in flight or the
    /// last failed too recently.
    pub fn on_tick(&mut self, host: &dyn Host, vk: &VirtualKeys) {
        if self.dropped > 0 {
            log::warn!("switchyard: ledger buffer full; {} oldest records dropped", self.dropped);
            host.count_by("switchyard.ledger.dropped", self.dropped);
            self.dropped = 0;
        }
        if self.in_flight.is_some() || self.pending.is_empty() {
            return;
        }
        let now_ms = host.now_nanos() / 1_000_000;
        if now_ms < self.retry_at_ms {
            return;
        }
        let count = self.pending.len().min(self.batch_size());
        let mut body = Vec::with_capacity(count * 512 + 16);
        body.extend_from_slice(b"{\"records\":[");
        for (i, record) in self.pending.iter().take(count).enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(record);
        }
        body.extend_from_slice(b"]}");
        let headers = [
            (":method", "POST"),
            (":path", "/internal/v1/spend"),
            (":authority", "switchyard-sidecar"),
            ("content-type", "application/json"),
            ("x-switchyard-internal", vk.internal_secret.as_str()),
        ];
        match host.http_call(&vk.sidecar_cluster, &headers, &body, vk.timeout_ms.max(2_000)) {
            Ok(token) => self.in_flight = Some((token, count)),
            Err(e) => {
                log::debug!("switchyard: cannot send the ledger's batch: {e}");
                self.failed(now_ms);
            }
        }
    }

    fn batch_size(&self) -> usize {
        if self.batch == 0 {
            BATCH
        } else {
            self.batch
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.is_some_and(|(t, _)| t == token)
    }

    /// The sidecar answered a batch: on 200 its records are done; otherwise they stay
    /// and go again after a pause.
    pub fn on_http_call_response(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        let Some((_, count)) = self.in_flight.take_if(|(t, _)| *t == token) else { return };
        let now_ms = host.now_nanos() / 1_000_000;
        let status = host.http_call_response_headers().ok().and_then(|h| h.get(":status").map(str::to_string));
        match status.as_deref() {
            Some("200") => {}
            // Too large, or unreadable as a batch: never better for being sent again as
            // it is. Halve it until the one record at fault is alone, then drop that one.
            Some("400" | "413") if count > 1 => {
                self.batch = count / 2;
                return;
            }
            Some(refused @ ("400" | "413")) => {
                log::error!("switchyard: the sidecar refused a ledger record (status {refused}); dropped");
                host.count("switchyard.ledger.rejected");
                self.pending.pop_front();
                self.batch = 0;
                return;
            }
            _ => {
                log::debug!("switchyard: the sidecar did not take the ledger's batch (status {status:?})");
                return self.failed(now_ms);
            }
        }
        let answer: BatchAnswer = host
            .http_call_response_body(body_size)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if !answer.rejected.is_empty() {
            // Never sent again: a record the sidecar cannot read will not improve.
            log::error!("switchyard: the sidecar rejected {} ledger records", answer.rejected.len());
            host.count_by("switchyard.ledger.rejected", answer.rejected.len() as u64);
        }
        log::debug!("switchyard: ledger batch: {} inserted, {} already there", answer.inserted, answer.duplicates);
        self.pending.drain(..count.min(self.pending.len()));
        self.batch = 0;
        self.backoff_ms = 0;
        self.retry_at_ms = 0;
    }

    fn failed(&mut self, now_ms: u64) {
        self.backoff_ms = (self.backoff_ms * 2).clamp(BACKOFF_MS.0, BACKOFF_MS.1);
        self.retry_at_ms = now_ms + self.backoff_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;

    fn vk() -> VirtualKeys {
        VirtualKeys {
            sidecar_cluster: "sidecar".into(),
            internal_secret: "s3cret".into(),
            cache_ttl: 60,
            negative_cache_ttl: 5,
            stale_ttl: 600,
            timeout_ms: 500,
            parallel_slot_ttl: 900,
            allow_when_sidecar_down: false,
            global_limits: false,
        }
    }

    fn record(n: u64) -> Record {
        Record {
            id: format!("{n:032x}"),
            client_request_id: None,
            key_hash: None,
            team_id: None,
            user_id: None,
            end_user: None,
            model_group: "demo".into(),
            provider: Some("openai"),
            model: None,
            operation: "chat",
            status: 200,
            stream: false,
            usage: Usage { input: n, ..Usage::default() },
            cost_nano: n,
            estimated: false,
            attempts: 1,
            start_ms: 1,
            end_ms: 2,
        }
    }

    fn sent_ids(host: &FakeHost, call: usize) -> Vec<String> {
        let body: serde_json::Value = serde_json::from_slice(&host.http_calls.borrow()[call].2).unwrap();
        body["records"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    }

    fn answer(host: &FakeHost, status: &str, body: &str) {
        *host.call_response.borrow_mut() = (vec![(":status".into(), status.into())], body.as_bytes().to_vec());
    }

    #[test]
    fn records_stay_until_the_sidecar_acknowledges_them_and_failures_back_off() {
        let mut host = FakeHost { now_ns: 1_000_000_000, ..FakeHost::default() };
        let mut ledger = Ledger::default();
        ledger.on_tick(&host, &vk());
        assert!(host.http_calls.borrow().is_empty(), "nothing to send");
        for n in 0..(BATCH as u64 + 3) {
            ledger.add(&record(n));
        }
        ledger.on_tick(&host, &vk());
        let (cluster, headers, _, _) = host.http_calls.borrow()[0].clone();
        assert_eq!(cluster, "sidecar");
        assert!(headers.contains(&(":path".into(), "/internal/v1/spend".into())));
        assert!(headers.contains(&("x-switchyard-internal".into(), "s3cret".into())));
        assert_eq!(sent_ids(&host, 0).len(), BATCH);
        ledger.on_tick(&host, &vk());
        assert_eq!(host.http_calls.borrow().len(), 1, "one batch in flight at a time");

        // The sidecar is down: the batch stays, and goes again after a pause.
        answer(&host, "503", "");
        ledger.on_http_call_response(&host, 1, 0);
        assert_eq!(ledger.pending(), BATCH + 3);
        ledger.on_tick(&host, &vk());
        assert_eq!(host.http_calls.borrow().len(), 1, "backing off");
        host.now_ns += 300_000_000;
        ledger.on_tick(&host, &vk());
        assert_eq!(sent_ids(&host, 1), sent_ids(&host, 0), "the same records again");

        // Acknowledged: those records are done, the rest go next.
        answer(&host, "200", r#"{"inserted":500,"duplicates":0,"rejected":[]}"#);
        ledger.on_http_call_response(&host, 2, 64);
        assert_eq!(ledger.pending(), 3);
        ledger.on_tick(&host, &vk());
        assert_eq!(
            sent_ids(&host, 2),
            (BATCH as u64..BATCH as u64 + 3).map(|n| format!("{n:032x}")).collect::<Vec<_>>()
        );
        // An answer to a call that is not the ledger's changes nothing.
        ledger.on_http_call_response(&host, 99, 0);
        assert_eq!(ledger.pending(), 3);
    }

    #[test]
    fn a_batch_refused_as_too_large_is_halved_down_to_the_record_at_fault() {
        let host = FakeHost::default();
        let mut ledger = Ledger::default();
        for n in 0..4 {
            ledger.add(&record(n));
        }
        let mut sizes = Vec::new();
        // The sidecar refuses any batch holding record 0, until it is alone; then dropped.
        for call in 1..=4 {
            ledger.on_tick(&host, &vk());
            let ids = sent_ids(&host, call - 1);
            sizes.push(ids.len());
            let status = if ids.contains(&format!("{:032x}", 0)) { "413" } else { "200" };
            answer(&host, status, r#"{"inserted":1}"#);
            ledger.on_http_call_response(&host, call as u32, 14);
        }
        assert_eq!(sizes, [4, 2, 1, 3], "halved, the bad record dropped, the rest in a full batch again");
        assert_eq!(ledger.pending(), 0);
        assert_eq!(host.counters.borrow().get("switchyard.ledger.rejected"), Some(&1));
    }

    #[test]
    fn client_text_is_cut_at_a_character_boundary() {
        assert_eq!(client_text("short"), "short");
        let long = "é".repeat(200); // 400 bytes
        let cut = client_text(&long);
        assert!(cut.len() <= MAX_CLIENT_TEXT && cut.len() >= MAX_CLIENT_TEXT - 1 && long.starts_with(&cut));
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_them() {
        let host = FakeHost::default();
        let mut ledger = Ledger::default();
        for n in 0..(MAX_PENDING as u64 + 2) {
            ledger.add(&record(n));
        }
        assert_eq!(ledger.pending(), MAX_PENDING);
        ledger.on_tick(&host, &vk());
        assert_eq!(host.counters.borrow().get("switchyard.ledger.dropped"), Some(&2));
        assert_eq!(sent_ids(&host, 0).first().map(String::as_str), Some(format!("{:032x}", 2).as_str()));
    }

    #[test]
    fn ids_are_unique_and_32_hex_digits() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a[..16], b[..16], "one VM prefix, then a counter");
    }
}
