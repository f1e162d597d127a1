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
    fn count(&self, name: &str);
}

#[cfg(test)]
pub use fake::FakeHost;

#[cfg(test)]
mod fake {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

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
        fn count(&self, name: &str) {
            *self.counters.borrow_mut().entry(name.to_string()).or_default() += 1;
        }
    }
}
