//! The Envoy glue: the only module that knows proxy-wasm. Root contexts load the
//! configuration; HTTP contexts forward each callback to the per-request state machine
//! with a [`WasmHost`]. No business logic lives here.

mod abi;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::{self, DownstreamConfig, PluginConfig, UpstreamConfig};
use crate::downstream::DownstreamExchange;
use crate::feed::{self, FeedFollower};
use crate::headers::Headers;
use crate::host::{Flow, Host, HostResult, SharedValue, Stored};
use crate::ledger::LEDGER;
use crate::upstream::{self, DeploymentCache, UpstreamExchange, STALLS};

proxy_wasm::main! {{
    let _ = log::set_logger(&HOST_LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, stage: None, feed: FeedFollower::default() })
    });
}}

struct HostLogger;
static HOST_LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        abi::log(level as u32, &record.args().to_string());
    }
    fn flush(&self) {}
}

enum Stage {
    Downstream(Rc<DownstreamConfig>),
    Upstream(Rc<UpstreamConfig>, Rc<DeploymentCache>),
}

struct Root {
    context_id: u32,
    stage: Option<Stage>,
    /// The downstream stage's part in following the sidecar's change feed.
    feed: FeedFollower,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if LEDGER.with(|l| l.borrow().owns(token_id)) {
            LEDGER.with(|l| l.borrow_mut().on_http_call_response(&WasmHost, token_id, body_size));
        } else if self.feed.owns(token_id) {
            if let Some(Stage::Downstream(c)) = &self.stage {
                if let Some(vk) = &c.virtual_keys {
                    self.feed.on_http_call_response(&WasmHost, vk, token_id, body_size);
                }
            }
        } else {
            // A call a woken request made from this context's callback (see `callouts`).
            requests::deliver(self.context_id, token_id, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, plugin_configuration_size) {
            Ok(b) => b,
            Err(e) => {
                log::error!("switchyard: cannot read the plugin configuration: {e}");
                return false;
            }
        };
        let env = |name: &str| std::env::var(name).ok();
        match config::parse(&bytes, &env, now_unix()) {
            Ok(PluginConfig::Downstream(c)) => {
                log::info!("switchyard downstream filter configured with {} models", c.models().len());
                // Virtual keys: follow the sidecar's change feed (see `feed`).
                if c.virtual_keys.is_some() {
                    if let Err(e) = abi::set_tick_period_ms(feed::TICK_MS) {
                        log::error!("switchyard: cannot start the change-feed timer: {e}");
                    }
                }
                self.stage = Some(Stage::Downstream(Rc::new(c)));
                true
            }
            Ok(PluginConfig::Upstream(c)) => {
                // The stall watchdog's timer (see `upstream::StreamWatch`): one VM entry a
                // second, which returns at once while no stream is open.
                if c.stream_stall_timeout > 0 {
                    if let Err(e) = abi::set_tick_period_ms(STALL_CHECK_PERIOD_MS) {
                        log::error!("switchyard: cannot start the stream stall timer: {e}");
                    }
                }
                self.stage = Some(Stage::Upstream(Rc::new(c), Rc::default()));
                true
            }
            Err(errors) => {
                for e in errors {
                    log::error!("switchyard configuration error: {e}");
                }
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.stage {
            Some(Stage::Downstream(c)) => Some(Box::new(requests::register(context_id, Rc::clone(c)))),
            Some(Stage::Upstream(c, deployments)) => {
                let mut exchange = UpstreamExchange::new(Rc::clone(c), Rc::clone(deployments));
                exchange.set_context_id(context_id);
                Some(Box::new(UpstreamHttp(exchange)))
            }
            None => None,
        }
    }

    fn on_tick(&mut self) {
        if let Some(Stage::Downstream(c)) = &self.stage {
            if let Some(vk) = &c.virtual_keys {
                self.feed.on_tick(&WasmHost, vk);
                LEDGER.with(|l| l.borrow_mut().on_tick(&WasmHost, vk));
                requests::sweep(self.context_id);
            }
            return;
        }
        if !matches!(self.stage, Some(Stage::Upstream(..))) || STALLS.with(|s| s.is_empty()) {
            return;
        }
        // Streams whose error event went out at the last tick are reset now (a context
        // that has ended since is refused by `set_effective_context`, and skipped).
        for context_id in STALLS.with(|s| s.take_given_up()) {
            let _ = abi::set_effective_context(context_id).and_then(|()| abi::close_stream(abi::STREAM_RESPONSE));
        }
        // Resuming a stalled attempt's filter context pushes its empty buffered body on to
        // the downstream filter, which writes the error event the check left.
        for (context_id, provider) in STALLS.with(|s| s.check(abi::now_nanos())) {
            let result =
                abi::set_effective_context(context_id).and_then(|()| abi::continue_stream(abi::STREAM_RESPONSE));
            match result {
                Ok(()) => upstream::count_stall(&WasmHost, provider),
                Err(e) => log::warn!("upstream filter: could not end a stalled stream: {e}"),
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// How often the stall watchdog checks the open streams.
const STALL_CHECK_PERIOD_MS: u32 = 1000;

fn now_unix() -> u64 {
    abi::now_nanos() / 1_000_000_000
}

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

/// Wall time per callback, measured inside the VM (`--features profile` only).
#[cfg(feature = "profile")]
mod profile {
    use std::cell::RefCell;

    pub const NAMES: [&str; 19] = [
        "down headers",
        "down body",
        "up headers",
        "up body",
        "up resp headers",
        "up resp body",
        "get_map",
        "get_header",
        "set_header",
        "remove_header",
        "get_buffer",
        "set_buffer",
        "get_property",
        "set_property",
        "env",
        "now",
        "send_response",
        "down resp headers",
        "down resp body",
    ];

    thread_local! {
        static TOTALS: RefCell<[(u64, u64); 19]> = const { RefCell::new([(0, 0); 19]) };
    }

    pub fn time<T>(phase: usize, f: impl FnOnce() -> T) -> T {
        let start = super::abi::now_nanos();
        let out = f();
        let spent = super::abi::now_nanos().saturating_sub(start);
        TOTALS.with(|t| {
            let mut t = t.borrow_mut();
            if let Some(slot) = t.get_mut(phase) {
                slot.0 += spent;
                slot.1 += 1;
            }
            if phase == 0 && t.first().is_some_and(|s| s.1 % 5000 == 0) {
                let report: Vec<String> = t
                    .iter()
                    .zip(NAMES)
                    .filter(|((_, n), _)| *n > 0)
                    .map(|((ns, n), name)| format!("{name}: {:.1} µs x{n}", *ns as f64 / (*n).max(1) as f64 / 1000.0))
                    .collect();
                log::warn!("profile: {}", report.join(", "));
                *t = [(0, 0); 19];
            }
        });
        out
    }
}

#[cfg(not(feature = "profile"))]
mod profile {
    #[inline(always)]
    pub fn time<T>(_phase: usize, f: impl FnOnce() -> T) -> T {
        f()
    }
}

/// `--features idle`: every callback holds the message until it is complete, and does
/// nothing else (no host call, no parse).
#[cfg(feature = "idle")]
fn idle(end_of_stream: bool) -> Option<Action> {
    Some(if end_of_stream { Action::Continue } else { Action::Pause })
}

#[cfg(not(feature = "idle"))]
#[inline(always)]
fn idle(_end_of_stream: bool) -> Option<Action> {
    None
}

/// The downstream filter's requests on this worker, by context id: so one request's
/// callback can hand a sidecar answer to the request that owns it, or wake the requests
/// that joined its key lookup (`crate::callouts`). Each runs in its own context: the host
/// calls it makes act on its own stream.
mod requests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::{Rc, Weak};

    use super::{abi, DownstreamHttp, WasmHost};
    use crate::callouts::OWNERS;
    use crate::config::DownstreamConfig;
    use crate::downstream::DownstreamExchange;

    type Shared = Rc<RefCell<DownstreamExchange>>;

    thread_local! {
        static LIVE: RefCell<HashMap<u32, Weak<RefCell<DownstreamExchange>>>> = RefCell::new(HashMap::new());
    }

    pub fn register(context_id: u32, config: Rc<DownstreamConfig>) -> DownstreamHttp {
        let mut exchange = DownstreamExchange::new(config);
        exchange.set_context_id(context_id);
        let exchange = Rc::new(RefCell::new(exchange));
        LIVE.with(|l| l.borrow_mut().insert(context_id, Rc::downgrade(&exchange)));
        DownstreamHttp { context_id, exchange }
    }

    pub fn forget(context_id: u32) {
        let _ = LIVE.try_with(|l| l.borrow_mut().remove(&context_id));
    }

    fn get(context_id: u32) -> Option<Shared> {
        LIVE.with(|l| l.borrow().get(&context_id).and_then(Weak::upgrade))
    }

    /// Runs `f` on request `context_id` in its own context; false if it has ended.
    fn in_context(context_id: u32, f: impl FnOnce(&mut DownstreamExchange)) -> bool {
        let Some(exchange) = get(context_id) else { return false };
        if abi::set_effective_context(context_id).is_err() {
            return false;
        }
        match exchange.try_borrow_mut() {
            Ok(mut exchange) => f(&mut exchange),
            Err(_) => log::error!("switchyard: request {context_id} is busy; a sidecar answer for it is dropped"),
        }
        true
    }

    /// A call's answer reached `receiver`'s callback: hand it to the request that owns the
    /// call (read in that request's context, where Envoy keeps it), then wake the requests
    /// its answer was for.
    pub fn deliver(receiver: u32, token: u32, body_size: usize) {
        let owner = OWNERS.with(|o| o.borrow().owner(token)).unwrap_or(receiver);
        in_context(owner, |ex| ex.on_http_call_response(&WasmHost, token, body_size));
        wake_all();
        let _ = abi::set_effective_context(receiver);
    }

    /// The requests that joined a lookup which has its answer now.
    fn wake_all() {
        loop {
            let wakes = OWNERS.with(|o| o.borrow_mut().take_wakes());
            if wakes.is_empty() {
                return;
            }
            for wake in wakes {
                in_context(wake.context_id, |ex| ex.on_wake(&WasmHost, wake.event));
            }
        }
    }

    /// The root context's tick: calls past their deadline wake their owners as failed
    /// (their answer was lost), and pending wakes run.
    pub fn sweep(root: u32) {
        let now_ms = abi::now_nanos() / 1_000_000;
        if OWNERS.with(|o| o.borrow().has_end_user_waiters()) {
            let loaded = crate::customers::Load::read(&WasmHost) == crate::customers::Load::Done;
            OWNERS.with(|o| o.borrow_mut().check_end_users(loaded, now_ms));
        }
        let lost = OWNERS.with(|o| o.borrow_mut().expired(now_ms));
        let switches = !lost.is_empty() || OWNERS.with(|o| o.borrow().has_wakes());
        for (token, owner) in lost {
            in_context(owner, |ex| ex.on_call_lost(&WasmHost, token));
        }
        wake_all();
        if switches {
            let _ = abi::set_effective_context(root);
        }
    }
}

struct DownstreamHttp {
    context_id: u32,
    exchange: Rc<std::cell::RefCell<DownstreamExchange>>,
}

impl DownstreamHttp {
    fn with<T>(&self, f: impl FnOnce(&mut DownstreamExchange) -> T) -> T {
        f(&mut self.exchange.borrow_mut())
    }
}

impl Drop for DownstreamHttp {
    fn drop(&mut self) {
        requests::forget(self.context_id);
    }
}

impl Context for DownstreamHttp {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        requests::deliver(self.context_id, token_id, body_size);
    }
}

impl HttpContext for DownstreamHttp {
    fn on_http_response_headers(&mut self, _: usize, _end_of_stream: bool) -> Action {
        // The real filter lets the answer through at once, too.
        if cfg!(feature = "idle") {
            return Action::Continue;
        }
        action(profile::time(17, || self.with(|ex| ex.on_response_headers(&WasmHost))))
    }
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if cfg!(feature = "idle") {
            return Action::Continue;
        }
        action(profile::time(18, || self.with(|ex| ex.on_response_body(&WasmHost, body_size, end_of_stream))))
    }
    fn on_log(&mut self) {
        if !cfg!(feature = "idle") {
            self.with(|ex| ex.on_done(&WasmHost));
        }
    }
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if let Some(held) = idle(end_of_stream) {
            return held;
        }
        #[cfg(feature = "trap-test")]
        trap_if_asked(false);
        action(profile::time(0, || self.with(|ex| ex.on_request_headers(&WasmHost, end_of_stream))))
    }
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(held) = idle(end_of_stream) {
            return held;
        }
        let flow = profile::time(1, || self.with(|ex| ex.on_request_body(&WasmHost, body_size, end_of_stream)));
        #[cfg(feature = "trap-test")]
        if end_of_stream {
            trap_if_asked(true);
        }
        action(flow)
    }
}

/// `x-switchyard-test-trap: <when>`: trap at the request headers (any value but
/// `after-admission`), or once admission has taken the request's room in its rate limits
/// (`after-admission`: the slot a trapped VM leaks).
#[cfg(feature = "trap-test")]
#[allow(clippy::panic)]
fn trap_if_asked(after_admission: bool) {
    let asked = abi::get_map(abi::MAP_REQUEST_HEADERS)
        .ok()
        .and_then(|h| h.into_iter().find(|(k, _)| k == "x-switchyard-test-trap").map(|(_, v)| v == "after-admission"));
    if asked == Some(after_admission) {
        panic!("trap requested by x-switchyard-test-trap");
    }
}

struct UpstreamHttp(UpstreamExchange);

impl Context for UpstreamHttp {}

impl HttpContext for UpstreamHttp {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if let Some(held) = idle(end_of_stream) {
            return held;
        }
        action(profile::time(2, || self.0.on_request_headers(&WasmHost, end_of_stream)))
    }
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(held) = idle(end_of_stream) {
            return held;
        }
        action(profile::time(3, || self.0.on_request_body(&WasmHost, body_size, end_of_stream)))
    }
    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if let Some(held) = idle(end_of_stream) {
            return held;
        }
        action(profile::time(4, || self.0.on_response_headers(&WasmHost, end_of_stream)))
    }
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(held) = idle(end_of_stream) {
            return held;
        }
        action(profile::time(5, || self.0.on_response_body(&WasmHost, body_size, end_of_stream)))
    }
}

/// [`Host`] over the raw host calls of the current HTTP context.
struct WasmHost;

impl Host for WasmHost {
    fn request_headers(&self) -> HostResult<Headers> {
        profile::time(6, || abi::get_map(abi::MAP_REQUEST_HEADERS).map(Headers::new))
    }
    fn request_header(&self, name: &str) -> HostResult<Option<String>> {
        profile::time(7, || abi::get_map_value(abi::MAP_REQUEST_HEADERS, name))
    }
    fn set_request_header(&self, name: &str, value: &str) -> HostResult<()> {
        profile::time(8, || abi::replace_map_value(abi::MAP_REQUEST_HEADERS, name, value))
    }
    fn remove_request_header(&self, name: &str) -> HostResult<()> {
        profile::time(9, || abi::remove_map_value(abi::MAP_REQUEST_HEADERS, name))
    }
    fn request_body(&self, size: usize) -> HostResult<Vec<u8>> {
        profile::time(10, || abi::get_buffer(abi::BUFFER_REQUEST_BODY, 0, size))
    }
    fn set_request_body(&self, current_size: usize, body: &[u8]) -> HostResult<()> {
        profile::time(11, || abi::replace_buffer(abi::BUFFER_REQUEST_BODY, current_size, body))
    }
    fn response_header(&self, name: &str) -> HostResult<Option<String>> {
        profile::time(7, || abi::get_map_value(abi::MAP_RESPONSE_HEADERS, name))
    }
    fn set_response_header(&self, name: &str, value: &str) -> HostResult<()> {
        profile::time(8, || abi::replace_map_value(abi::MAP_RESPONSE_HEADERS, name, value))
    }
    fn remove_response_header(&self, name: &str) -> HostResult<()> {
        profile::time(9, || abi::remove_map_value(abi::MAP_RESPONSE_HEADERS, name))
    }
    fn response_body(&self, size: usize) -> HostResult<Vec<u8>> {
        profile::time(10, || abi::get_buffer(abi::BUFFER_RESPONSE_BODY, 0, size))
    }
    fn set_response_body(&self, current_size: usize, body: &[u8]) -> HostResult<()> {
        profile::time(11, || abi::replace_buffer(abi::BUFFER_RESPONSE_BODY, current_size, body))
    }
    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        profile::time(12, || abi::get_property(path))
    }
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
        profile::time(16, || abi::send_local_response(status, headers, body))
    }
    fn env(&self, name: &str) -> Option<String> {
        profile::time(14, || std::env::var(name).ok())
    }
    fn now_unix(&self) -> u64 {
        profile::time(15, now_unix)
    }
    fn count_by(&self, name: &str, n: u64) {
        let result = COUNTERS.with(|counters| {
            let mut counters = counters.borrow_mut();
            let id = match counters.get(name) {
                Some(&id) => id,
                None => {
                    let id = abi::define_counter(name)?;
                    counters.insert(name.to_string(), id);
                    id
                }
            };
            abi::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX))
        });
        if let Err(e) = result {
            log::warn!("switchyard: could not count {name}: {e}");
        }
    }
    fn now_nanos(&self) -> u64 {
        abi::now_nanos()
    }
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u32) -> HostResult<u32> {
        // Through the SDK, not the raw call: its dispatcher must learn the token to route
        // the answer to this context (it traps on a token it does not know).
        let body = (!body.is_empty()).then_some(body);
        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms));
        proxy_wasm::hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, Vec::new(), timeout)
            .map_err(|status| crate::host::HostError { call: "http_call", status: status as u32 })
    }
    fn http_call_response_headers(&self) -> HostResult<Headers> {
        abi::get_map(abi::MAP_HTTP_CALL_RESPONSE_HEADERS).map(Headers::new)
    }
    fn http_call_response_body(&self, size: usize) -> HostResult<Vec<u8>> {
        abi::get_buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, 0, size)
    }
    fn resume_request(&self) -> HostResult<()> {
        abi::continue_stream(abi::STREAM_REQUEST)
    }
    fn shared_data(&self, key: &str) -> HostResult<SharedValue> {
        abi::get_shared_data(key).map(|(value, cas)| SharedValue { value, cas })
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> HostResult<Stored> {
        abi::set_shared_data(key, value, crate::host::wire_cas(cas)).map(|stored| {
            if stored {
                Stored::Yes
            } else {
                Stored::CasMismatch
            }
        })
    }
    fn register_queue(&self, name: &str) -> HostResult<u32> {
        abi::register_shared_queue(name)
    }
    fn resolve_queue(&self, vm_id: &str, name: &str) -> HostResult<Option<u32>> {
        abi::resolve_shared_queue(vm_id, name)
    }
    fn enqueue(&self, queue: u32, item: &[u8]) -> HostResult<()> {
        abi::enqueue_shared_queue(queue, item)
    }
    fn dequeue(&self, queue: u32) -> HostResult<Option<Vec<u8>>> {
        abi::dequeue_shared_queue(queue)
    }
    fn set_tick_period(&self, period_ms: u32) -> HostResult<()> {
        abi::set_tick_period_ms(period_ms)
    }
}

thread_local! {
    /// Counter ids by name: defining a metric is a host call, incrementing one by id is
    /// cheaper. One VM per worker thread, so one map per VM.
    static COUNTERS: std::cell::RefCell<std::collections::BTreeMap<String, u32>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}
