//! The only way the filter logic reaches Envoy. Implemented over raw host calls in
//! `wasm::host` (every failing call becomes a [`HostError`], never a panic) and by
//! [`FakeHost`] for native tests of the per-request state machines.

use std::fmt;

use crate::headers::Headers;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    pub call: &'static str,
    pub status: u32,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "host call {} failed with status {}", self.call, self.status)
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// What a filter callback tells Envoy to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop iteration; Envoy buffers the body until the filter continues (or the
    /// stream ends after a local reply).
    Pause,
}

/// Reads cost far more than writes here: a host call that returns data calls back into
/// the VM to allocate it. So maps are read whole (once) or single values are read, and
/// changes are written one header at a time (cheap).
pub trait Host {
    /// All request headers. Values that are not UTF-8 are converted lossily; the
    /// filter only interprets ASCII headers.
    fn request_headers(&self) -> HostResult<Headers>;
    /// One request header's value (one read, where the whole map is not needed).
    fn request_header(&self, name: &str) -> HostResult<Option<String>>;
    /// Sets one request header. In the downstream filter this makes Envoy pick the
    /// route again (a whole-map write would not).
    fn set_request_header(&self, name: &str, value: &str) -> HostResult<()>;
    fn remove_request_header(&self, name: &str) -> HostResult<()>;
    fn request_body(&self, size: usize) -> HostResult<Vec<u8>>;
    /// Replaces the buffered body, whose current length is `current_size`.
    fn set_request_body(&self, current_size: usize, body: &[u8]) -> HostResult<()>;

    fn response_header(&self, name: &str) -> HostResult<Option<String>>;
    fn set_response_header(&self, name: &str, value: &str) -> HostResult<()>;
    fn remove_response_header(&self, name: &str) -> HostResult<()>;
    fn response_body(&self, size: usize) -> HostResult<Vec<u8>>;
    fn set_response_body(&self, current_size: usize, body: &[u8]) -> HostResult<()>;

    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>>;
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()>;
    /// An environment variable the VM was given (`host_env_keys`).
    fn env(&self, name: &str) -> Option<String>;
    fn now_unix(&self) -> u64;
    /// Adds one to the counter `name` (an Envoy stat, `wasmcustom.<name>`). Counting
    /// never fails a request: a failing host call is logged and ignored.
    fn count(&self, name: &str) {
        self.count_by(name, 1);
    }
    /// Adds `n` to the counter `name`.
    fn count_by(&self, name: &str, n: u64);
    /// Nanoseconds on the host's wall clock (one host call).
    fn now_nanos(&self) -> u64;

    // --- What governance needs: callouts to the sidecar, Envoy's process-wide shared
    // data and queues, the root context's timer.

    /// Starts an HTTP call to the Envoy cluster `cluster` (`:method`, `:path` and
    /// `:authority` among `headers`); its answer is delivered to the calling context's
    /// `on_http_call_response` with the returned token. A request waiting for it stays
    /// paused until [`Host::resume_request`].
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u32) -> HostResult<u32>;
    /// The headers of the callout answer being delivered (`:status` among them).
    fn http_call_response_headers(&self) -> HostResult<Headers>;
    fn http_call_response_body(&self, size: usize) -> HostResult<Vec<u8>>;
    /// Lets a request paused for a callout continue to the next filter.
    fn resume_request(&self) -> HostResult<()>;
    /// A value of Envoy's process-wide shared data (one store for every worker's VM with
    /// this `vm_id`) and its CAS number.
    fn shared_data(&self, key: &str) -> HostResult<SharedValue>;
    /// Stores `value` under `key` if its CAS number is still `cas` (`Some(0)`, the CAS of
    /// an entry read as missing: only if it is still missing; `None`: unconditionally);
    /// [`Stored::CasMismatch`] when another writer came first.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> HostResult<Stored>;
    /// Makes this (root) context the one consumer of the shared queue `name`.
    fn register_queue(&self, name: &str) -> HostResult<u32>;
    /// The queue `name` of the VMs `vm_id`, once its consumer registered it.
    fn resolve_queue(&self, vm_id: &str, name: &str) -> HostResult<Option<u32>>;
    fn enqueue(&self, queue: u32, item: &[u8]) -> HostResult<()>;
    fn dequeue(&self, queue: u32) -> HostResult<Option<Vec<u8>>>;
    /// Calls the root context's `on_tick` every `period_ms` (0 stops it).
    fn set_tick_period(&self, period_ms: u32) -> HostResult<()>;
}

/// A shared-data value (`None`: never set) and the CAS number to write it back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedValue {
    pub value: Option<Vec<u8>>,
    pub cas: u32,
}

/// The CAS number a write carries to mean "only if the entry is still absent".
///
/// Envoy's shared data (proxy-wasm-cpp-host `src/shared_data.cc`, `SharedData::set`)
/// compares a non-zero CAS with an existing entry's only, creates a missing entry whatever
/// the CAS, and writes unconditionally under CAS 0; a missing entry reads as CAS 0. Writing
/// that 0 back would let two workers that both found an entry missing both "win", the
/// second overwriting the first (an RPM limit admitted one request too many in a test
/// through Envoy). A write-back of a missing entry's CAS therefore goes out as this value:
/// a missing entry is still created, an entry another worker created meanwhile refuses it.
/// Envoy's one CAS counter would have to stand at exactly this value for it to match.
pub const CREATE_IF_ABSENT: u32 = u32::MAX;

/// The CAS number sent to the host for a write made with `cas` (see [`Host::set_shared_data`]).
pub fn wire_cas(cas: Option<u32>) -> u32 {
    match cas {
        None => 0,
        Some(0) => CREATE_IF_ABSENT,
        Some(cas) => cas,
    }
}

/// What a conditional shared-data write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Yes,
    /// Another writer changed the value since it was read: read again and retry.
    CasMismatch,
}

#[cfg(test)]
pub use fake::{FakeHost, FakeShared};

#[cfg(test)]
mod fake {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::{BTreeMap, VecDeque};
    use std::rc::Rc;

    /// Envoy's process-wide shared data and queues, in memory: several [`FakeHost`]s
    /// (workers) may hold one, as every worker's VM sees the same store in Envoy.
    #[derive(Default)]
    pub struct FakeShared {
        pub data: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
        /// Like Envoy's: one counter for every write, never 0.
        next_cas: Cell<u32>,
        pub queues: RefCell<BTreeMap<String, (u32, VecDeque<Vec<u8>>)>>,
    }

    /// One HTTP call the filter started: (cluster, headers, body, timeout).
    pub type RecordedCall = (String, Vec<(String, String)>, Vec<u8>, u32);

    /// An in-memory Envoy: headers, bodies and properties the test sets up, and a
    /// record of the local reply, if any.
    #[derive(Default)]
    pub struct FakeHost {
        pub request_headers: RefCell<Vec<(String, String)>>,
        pub request_body: RefCell<Vec<u8>>,
        pub response_headers: RefCell<Vec<(String, String)>>,
        pub response_body: RefCell<Vec<u8>>,
        pub properties: BTreeMap<String, Vec<u8>>,
        pub env: BTreeMap<String, String>,
        pub local_reply: RefCell<Option<(u16, Vec<(String, String)>, Vec<u8>)>>,
        pub now: u64,
        /// Header reads (whole maps or single values): the expensive host calls.
        pub header_reads: std::cell::Cell<usize>,
        pub request_header_removals: std::cell::Cell<usize>,
        pub counters: RefCell<BTreeMap<String, u64>>,
        pub now_ns: u64,
        pub shared: Rc<FakeShared>,
        /// Shared-data reads and writes: host calls admission pays for.
        pub shared_calls: Cell<usize>,
        pub http_calls: RefCell<Vec<RecordedCall>>,
        /// The callout answer the test delivers: headers and body.
        pub call_response: RefCell<(Vec<(String, String)>, Vec<u8>)>,
        /// How often the request was resumed after a callout.
        pub resumed: Cell<usize>,
        pub tick_period: Cell<Option<u32>>,
    }

    impl FakeHost {
        pub fn with_request(headers: &[(&str, &str)], body: &[u8]) -> Self {
            let host = FakeHost::default();
            *host.request_headers.borrow_mut() = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            *host.request_body.borrow_mut() = body.to_vec();
            host
        }

        pub fn request_header(&self, name: &str) -> Option<String> {
            self.request_headers.borrow().iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        }

        pub fn response_header_value(&self, name: &str) -> Option<String> {
            self.response_headers.borrow().iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        }

        pub fn header_reads(&self) -> usize {
            self.header_reads.get()
        }

        pub fn reply(&self) -> Option<(u16, serde_json::Value)> {
            self.local_reply
                .borrow()
                .as_ref()
                .map(|(status, _, body)| (*status, serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)))
        }
    }

    impl Host for FakeHost {
        fn request_headers(&self) -> HostResult<Headers> {
            self.header_reads.set(self.header_reads.get() + 1);
            Ok(Headers::new(self.request_headers.borrow().clone()))
        }
        fn request_header(&self, name: &str) -> HostResult<Option<String>> {
            self.header_reads.set(self.header_reads.get() + 1);
            Ok(FakeHost::request_header(self, name))
        }
        fn set_request_header(&self, name: &str, value: &str) -> HostResult<()> {
            let mut headers = self.request_headers.borrow_mut();
            headers.retain(|(k, _)| k != name);
            headers.push((name.to_string(), value.to_string()));
            Ok(())
        }
        fn remove_request_header(&self, name: &str) -> HostResult<()> {
            self.request_header_removals.set(self.request_header_removals.get() + 1);
            self.request_headers.borrow_mut().retain(|(k, _)| k != name);
            Ok(())
        }
        fn request_body(&self, size: usize) -> HostResult<Vec<u8>> {
            let body = self.request_body.borrow();
            Ok(body.get(..size.min(body.len())).unwrap_or_default().to_vec())
        }
        fn set_request_body(&self, _current_size: usize, body: &[u8]) -> HostResult<()> {
            *self.request_body.borrow_mut() = body.to_vec();
            Ok(())
        }
        fn response_header(&self, name: &str) -> HostResult<Option<String>> {
            self.header_reads.set(self.header_reads.get() + 1);
            Ok(self.response_header_value(name))
        }
        fn set_response_header(&self, name: &str, value: &str) -> HostResult<()> {
            let mut headers = self.response_headers.borrow_mut();
            headers.retain(|(k, _)| k != name);
            headers.push((name.to_string(), value.to_string()));
            Ok(())
        }
        fn remove_response_header(&self, name: &str) -> HostResult<()> {
            self.response_headers.borrow_mut().retain(|(k, _)| k != name);
            Ok(())
        }
        fn response_body(&self, size: usize) -> HostResult<Vec<u8>> {
            let body = self.response_body.borrow();
            Ok(body.get(..size.min(body.len())).unwrap_or_default().to_vec())
        }
        fn set_response_body(&self, _current_size: usize, body: &[u8]) -> HostResult<()> {
            *self.response_body.borrow_mut() = body.to_vec();
            Ok(())
        }
        fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
            Ok(self.properties.get(&path.join(".")).cloned())
        }
        fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
            let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            *self.local_reply.borrow_mut() = Some((status, headers, body.to_vec()));
            Ok(())
        }
        fn env(&self, name: &str) -> Option<String> {
            self.env.get(name).cloned()
        }
        fn now_unix(&self) -> u64 {
            self.now
        }
        fn count_by(&self, name: &str, n: u64) {
            *self.counters.borrow_mut().entry(name.to_string()).or_default() += n;
        }
        fn now_nanos(&self) -> u64 {
            self.now_ns
        }
        fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u32) -> HostResult<u32> {
            let mut calls = self.http_calls.borrow_mut();
            let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            calls.push((cluster.to_string(), headers, body.to_vec(), timeout_ms));
            Ok(calls.len() as u32)
        }
        fn http_call_response_headers(&self) -> HostResult<Headers> {
            Ok(Headers::new(self.call_response.borrow().0.clone()))
        }
        fn http_call_response_body(&self, size: usize) -> HostResult<Vec<u8>> {
            let response = self.call_response.borrow();
            Ok(response.1.get(..size.min(response.1.len())).unwrap_or_default().to_vec())
        }
        fn resume_request(&self) -> HostResult<()> {
            self.resumed.set(self.resumed.get() + 1);
            Ok(())
        }
        fn shared_data(&self, key: &str) -> HostResult<SharedValue> {
            self.shared_calls.set(self.shared_calls.get() + 1);
            Ok(match self.shared.data.borrow().get(key) {
                Some((value, cas)) => SharedValue { value: Some(value.clone()), cas: *cas },
                None => SharedValue { value: None, cas: 0 },
            })
        }
        fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> HostResult<Stored> {
            self.shared_calls.set(self.shared_calls.get() + 1);
            let mut data = self.shared.data.borrow_mut();
            // Envoy's rule: a non-zero CAS is checked against an existing entry only.
            let wire = wire_cas(cas);
            if data.get(key).is_some_and(|(_, current)| wire != 0 && wire != *current) {
                return Ok(Stored::CasMismatch);
            }
            let next = self.shared.next_cas.get().wrapping_add(1).max(1);
            self.shared.next_cas.set(next);
            data.insert(key.to_string(), (value.to_vec(), next));
            Ok(Stored::Yes)
        }
        fn register_queue(&self, name: &str) -> HostResult<u32> {
            let mut queues = self.shared.queues.borrow_mut();
            let next = queues.len() as u32 + 1;
            Ok(queues.entry(name.to_string()).or_insert_with(|| (next, VecDeque::new())).0)
        }
        fn resolve_queue(&self, _vm_id: &str, name: &str) -> HostResult<Option<u32>> {
            Ok(self.shared.queues.borrow().get(name).map(|(id, _)| *id))
        }
        fn enqueue(&self, queue: u32, item: &[u8]) -> HostResult<()> {
            let mut queues = self.shared.queues.borrow_mut();
            match queues.values_mut().find(|(id, _)| *id == queue) {
                Some((_, items)) => {
                    items.push_back(item.to_vec());
                    Ok(())
                }
                None => Err(HostError { call: "enqueue_shared_queue", status: 1 }),
            }
        }
        fn dequeue(&self, queue: u32) -> HostResult<Option<Vec<u8>>> {
            let mut queues = self.shared.queues.borrow_mut();
            Ok(queues.values_mut().find(|(id, _)| *id == queue).and_then(|(_, items)| items.pop_front()))
        }
        fn set_tick_period(&self, period_ms: u32) -> HostResult<()> {
            self.tick_period.set(Some(period_ms));
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn shared_data_is_compare_and_swap_across_workers() {
            let shared = Rc::new(FakeShared::default());
            let a = FakeHost { shared: Rc::clone(&shared), ..FakeHost::default() };
            let b = FakeHost { shared, ..FakeHost::default() };
            assert_eq!(a.shared_data("k").unwrap(), SharedValue { value: None, cas: 0 });
            assert_eq!(a.set_shared_data("k", b"1", Some(0)).unwrap(), Stored::Yes);
            let seen_a = a.shared_data("k").unwrap();
            let seen_b = b.shared_data("k").unwrap();
            assert_eq!((seen_a.value.as_deref(), seen_a.cas), (Some(&b"1"[..]), seen_b.cas));
            assert_eq!(b.set_shared_data("k", b"2", Some(seen_b.cas)).unwrap(), Stored::Yes);
            assert_eq!(a.set_shared_data("k", b"3", Some(seen_a.cas)).unwrap(), Stored::CasMismatch);
            assert_eq!(a.shared_data("k").unwrap().value.as_deref(), Some(&b"2"[..]));
            assert_eq!(a.set_shared_data("k", b"4", None).unwrap(), Stored::Yes);
            assert_eq!(a.shared_calls.get(), 6);
        }

        #[test]
        fn two_workers_that_found_an_entry_missing_cannot_both_create_it() {
            let shared = Rc::new(FakeShared::default());
            let a = FakeHost { shared: Rc::clone(&shared), ..FakeHost::default() };
            let b = FakeHost { shared, ..FakeHost::default() };
            let (seen_a, seen_b) = (a.shared_data("k").unwrap(), b.shared_data("k").unwrap());
            assert_eq!(a.set_shared_data("k", b"a", Some(seen_a.cas)).unwrap(), Stored::Yes);
            assert_eq!(b.set_shared_data("k", b"b", Some(seen_b.cas)).unwrap(), Stored::CasMismatch);
            assert_eq!(b.shared_data("k").unwrap().value.as_deref(), Some(&b"a"[..]));
            assert_eq!((wire_cas(None), wire_cas(Some(0)), wire_cas(Some(7))), (0, CREATE_IF_ABSENT, 7));
        }

        #[test]
        fn queues_callouts_and_timers_are_recorded() {
            let host = FakeHost::default();
            assert_eq!(host.resolve_queue("switchyard", "usage").unwrap(), None);
            let id = host.register_queue("usage").unwrap();
            assert_eq!(host.resolve_queue("switchyard", "usage").unwrap(), Some(id));
            host.enqueue(id, b"a").unwrap();
            host.enqueue(id, b"b").unwrap();
            assert_eq!(host.dequeue(id).unwrap().as_deref(), Some(&b"a"[..]));
            assert_eq!(host.dequeue(id).unwrap().as_deref(), Some(&b"b"[..]));
            assert_eq!(host.dequeue(id).unwrap(), None);
            assert!(host.enqueue(id + 1, b"x").is_err());
            let token = host.http_call("sidecar", &[(":path", "/x")], b"", 500).unwrap();
            assert_eq!(token, 1);
            assert_eq!(host.http_calls.borrow()[0].0, "sidecar");
            host.resume_request().unwrap();
            host.set_tick_period(1000).unwrap();
            assert_eq!((host.resumed.get(), host.tick_period.get()), (1, Some(1000)));
        }
    }
}
