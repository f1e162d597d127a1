//! The upstream filter, once per attempt, after Envoy picked the endpoint: read the
//! deployment from the endpoint's metadata, translate the request for its provider,
//! and translate the provider's answer back. A retry that lands on another provider
//! is translated for that provider.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::codec::sse::write_data;
use crate::config::UpstreamConfig;
use crate::endpoint::{Deployment, Endpoint, METADATA_NAMESPACE};
use crate::error::{error_body, GatewayError};
use crate::handoff::{Attempt, Pending, RequestInfo, HANDOFF};
use crate::host::{Flow, Host};
use crate::operation::Operation;
use crate::providers::stream::{StreamContext, StreamTranslator};
use crate::providers::{canonical_error, RequestContext, RequestFacts, ResponseContext, ResponseHandling};
use crate::usage::Usage;

pub const DROPPED_PARAMS_HEADER: &str = "x-switchyard-dropped-params";
/// Parameters sent with another value than the client's, as `param=value`.
pub const ADJUSTED_PARAMS_HEADER: &str = "x-switchyard-adjusted-params";
/// Which deployment answered: its provider and the provider's model name.
pub const PROVIDER_HEADER: &str = "x-switchyard-provider";
pub const DEPLOYMENT_MODEL_HEADER: &str = "x-switchyard-model";
/// What the answer cost, in USD, where LiteLLM's clients read it (non-streamed answers of
/// a priced deployment: a stream's headers leave before its usage is known, as in LiteLLM).
pub const RESPONSE_COST_HEADER: &str = "x-litellm-response-cost";
/// How many attempts the answer took (1: the first deployment tried answered).
pub const ATTEMPTS_HEADER: &str = "x-switchyard-attempts";
/// A provider's 429 crosses the router as a 503, so that Envoy retries it on another
/// deployment and counts it towards this one's cooldown (outlier detection counts 5xx
/// only); this header carries the 429, which the downstream filter gives the client.
pub const STATUS_HEADER: &str = "x-switchyard-status";
const RATE_LIMITED: u16 = 429;
/// Set by the router on every attempt (`include_request_attempt_count`).
const ATTEMPT_COUNT_HEADER: &str = "x-envoy-attempt-count";
/// Envoy's id for the client's request, the same on every attempt.
const REQUEST_ID_HEADER: &str = "x-request-id";
/// Envoy names each model group's cluster `model.<group>`.
const CLUSTER_PREFIX: &str = "model.";

/// Every header carrying a key or a provider-specific setting that some adapter sets.
/// A retry starts from the header map the previous attempt edited, so an attempt to
/// another provider must not inherit (say) an Anthropic key or version header. The
/// first attempt's map has none of them: the route's `request_headers_to_remove`
/// strips them all from the client's request (the config lint insists), and the
/// downstream filter strips client credentials too. So only retries pay for removing
/// them, one host call each.
const PROVIDER_HEADERS: [&str; 6] =
    ["authorization", "x-api-key", "api-key", "x-goog-api-key", "anthropic-version", "anthropic-beta"];

pub struct UpstreamExchange {
    config: Rc<UpstreamConfig>,
    deployments: Rc<DeploymentCache>,
    deployment: Option<Rc<Deployment>>,
    operation: Operation,
    facts: RequestFacts,
    dropped_params: Vec<String>,
    adjusted_params: Vec<String>,
    stream: bool,
    include_usage: bool,
    response_status: u16,
    handling: ResponseHandling,
    translator: Option<Box<dyn StreamTranslator>>,
    /// 1 for the first attempt, then one more for each retry or fallback.
    attempt: u32,
    /// The provider's model that answers: the deployment's, or the alias passed on.
    answering_model: String,
    /// Envoy's id for this attempt's filter context: the stall watchdog acts on it.
    context_id: u32,
    /// What the downstream filter handed over about the client's request.
    info: Option<Rc<RequestInfo>>,
    /// This stream's entry in the stall watchdog, from its first byte to its end.
    watch: Option<Rc<StreamWatch>>,
    /// The deployment's prices (catalog and endpoint metadata), if it has any.
    prices: Option<crate::pricing::Prices>,
    /// This attempt's record in `info.attempts`, once its provider answered.
    metered: Option<usize>,
}

impl UpstreamExchange {
    pub fn new(config: Rc<UpstreamConfig>, deployments: Rc<DeploymentCache>) -> Self {
        UpstreamExchange {
            config,
            deployments,
            deployment: None,
            operation: Operation::Chat,
            facts: RequestFacts::default(),
            dropped_params: Vec::new(),
            adjusted_params: Vec::new(),
            stream: false,
            include_usage: false,
            response_status: 0,
            handling: ResponseHandling::PassThrough,
            translator: None,
            attempt: 1,
            answering_model: String::new(),
            context_id: 0,
            info: None,
            watch: None,
            prices: None,
            metered: None,
        }
    }

    /// Envoy's id for this filter context, which the stall watchdog needs to end a stalled
    /// stream (set once, when the context is created).
    pub fn set_context_id(&mut self, context_id: u32) {
        self.context_id = context_id;
    }

    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Flow {
        let deployment = match self.deployments.get(host) {
            Ok(d) => d,
            Err(detail) => return misconfigured(host, detail),
        };
        self.attempt =
            host.request_header(ATTEMPT_COUNT_HEADER).ok().flatten().and_then(|v| v.parse().ok()).unwrap_or(1);
        if self.attempt > 1 {
            count(host, &format!("fallbacks.{}", deployment.endpoint.provider.name()));
        }
        // The first attempt runs as the downstream filter lets the request go; later ones
        // find the request by its id (see `handoff`).
        self.info = if self.attempt == 1 {
            match HANDOFF.with(|h| h.take_pending()) {
                Pending::Only(info) => Some(info),
                Pending::Several => match host.request_header(REQUEST_ID_HEADER) {
                    Ok(Some(id)) => HANDOFF.with(|h| h.take_by_id(&id)),
                    _ => None,
                },
                Pending::Nothing => None,
            }
        } else {
            match host.request_header(REQUEST_ID_HEADER) {
                Ok(Some(id)) => HANDOFF.with(|h| h.find(&id)),
                _ => None,
            }
        };
        self.deployment = Some(deployment);
        if end_of_stream {
            return self.on_request_body(host, 0, true);
        }
        Flow::Pause
    }

    pub fn on_request_body(&mut self, host: &dyn Host, body_size: usize, end_of_stream: bool) -> Flow {
        let Some(deployment) = &self.deployment else {
            return Flow::Continue;
        };
        let endpoint = &deployment.endpoint;
        if !end_of_stream {
            return Flow::Pause;
        }
        let body = match host.request_body(body_size) {
            Ok(b) => b,
            Err(e) => return misconfigured(host, e.to_string()),
        };
        let adapter = endpoint.provider.adapter();
        let ctx = RequestContext { endpoint, config: &self.config };
        self.operation = match &self.info {
            Some(info) => info.operation,
            // Not handed over (an attempt Envoy started otherwise): the downstream filter
            // validated the body for its path, so its shape names the operation.
            None => {
                log::debug!("upstream filter: no hand-off for this attempt; reading the body's shape");
                Operation::of_body(&body).unwrap_or(Operation::Chat)
            }
        };
        let translated = match adapter.request(&ctx, self.operation, &body, &mut self.facts) {
            Ok(t) => t,
            Err(err) => return reply_error(host, &err),
        };
        let content_length = match &translated.body {
            Some(new_body) => {
                if let Err(e) = host.set_request_body(body.len(), new_body) {
                    return misconfigured(host, e.to_string());
                }
                new_body.len()
            }
            None => body.len(),
        };
        // The headers are written one at a time without reading the map first: writes
        // are cheap host calls, reads are not.
        let auth = deployment.api_key.as_deref().map(|key| endpoint.provider.auth().header(key));
        let mut writes: Vec<(&str, Option<&str>)> = Vec::with_capacity(16);
        let ours = |name: &str| {
            auth.as_ref().is_some_and(|(n, _)| *n == name) || translated.headers.iter().any(|(n, _)| *n == name)
        };
        if self.attempt > 1 {
            writes.extend(PROVIDER_HEADERS.into_iter().filter(|name| !ours(name)).map(|name| (name, None)));
        }
        let content_length = content_length.to_string();
        writes.push((":path", Some(&translated.path)));
        writes.push((":authority", Some(&endpoint.authority)));
        writes.push(("content-length", Some(&content_length)));
        if let Some((name, value)) = &auth {
            writes.push((name, Some(value)));
        }
        writes.extend(translated.headers.iter().map(|(k, v)| (*k, Some(v.as_str()))));
        for (name, value) in writes {
            let result = match value {
                Some(value) => host.set_request_header(name, value),
                None => host.remove_request_header(name),
            };
            if let Err(e) = result {
                return misconfigured(host, e.to_string());
            }
        }
        self.answering_model = endpoint.model.clone().unwrap_or_else(|| self.facts.model.clone());
        // A deployment without `model` serves (and is priced as) the model asked for.
        self.prices = endpoint.prices_for(&self.answering_model);
        self.dropped_params = translated.dropped_params;
        self.adjusted_params = translated.adjusted_params;
        self.stream = translated.stream;
        self.include_usage = translated.include_usage;
        Flow::Continue
    }

    pub fn on_response_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Flow {
        STALLS.with(StallWatchdog::clear_handoff);
        let Some(deployment) = &self.deployment else {
            return Flow::Continue;
        };
        let endpoint = &deployment.endpoint;
        let status = host.response_header(":status").ok().flatten().and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        self.response_status = status;
        if status >= 400 {
            count(host, &format!("attempt_errors.{}.{status}", endpoint.provider.name()));
        }
        let adapter = endpoint.provider.adapter();
        self.handling = adapter.response_handling(endpoint, self.operation, status, self.stream, &self.facts);
        if let Some(info) = &self.info {
            let attempt = Attempt {
                provider: endpoint.provider.name(),
                model: self.answering_model.clone(),
                status,
                ..Attempt::default()
            };
            let index = info.begin_attempt(attempt);
            self.metered = Some(index);
            // Until the provider says what it billed: a success is metered by the
            // request's estimated input; providers bill no error.
            if (200..300).contains(&status) {
                self.meter(None, 0, false);
            }
        }
        match self.handling {
            ResponseHandling::PassThrough => {
                if status == RATE_LIMITED {
                    set_status(host, status);
                }
                self.stamp(host);
                // Held until complete (not read): headers and body then cross the
                // filter chains once, which costs less than streaming a short body.
                // Holding also keeps a failure before the end retryable.
                return if end_of_stream { Flow::Continue } else { Flow::Pause };
            }
            ResponseHandling::Stream => {
                let ctx = StreamContext {
                    created: host.now_unix(),
                    include_usage: self.include_usage,
                    provider: endpoint.provider,
                    api_key: deployment.api_key.clone(),
                    facts: std::mem::take(&mut self.facts),
                };
                self.translator = Some(adapter.stream(ctx));
                // The body is rewritten as it flows, so its length is unknown. The
                // headers wait for the first piece of body: until then nothing has
                // reached the client, and a provider that stalls or fails before its
                // first byte can still be retried on another deployment.
                let result = host
                    .remove_response_header("content-length")
                    .and_then(|()| host.set_response_header("content-type", "text/event-stream"))
                    .and_then(|()| host.set_response_header("cache-control", "no-cache"));
                if let Err(e) = result {
                    log::error!("upstream filter: could not prepare the stream's headers: {e}");
                }
                self.stamp(host);
                return if end_of_stream { Flow::Continue } else { Flow::Pause };
            }
            ResponseHandling::Translate => {}
        }
        if end_of_stream {
            // A body-less answer has no body to rewrite; its status still must not be
            // one clients misread (529).
            let (mapped, _, _) = canonical_error(status);
            if mapped != status || mapped == RATE_LIMITED {
                set_status(host, mapped);
            }
            self.stamp(host);
            return Flow::Continue;
        }
        Flow::Pause
    }

    pub fn on_response_body(&mut self, host: &dyn Host, body_size: usize, end_of_stream: bool) -> Flow {
        STALLS.with(StallWatchdog::clear_handoff);
        let Some(deployment) = &self.deployment else {
            return Flow::Continue;
        };
        let endpoint = &deployment.endpoint;
        match self.handling {
            ResponseHandling::PassThrough => {
                if end_of_stream && (200..300).contains(&self.response_status) {
                    self.meter_pass_through(host, body_size);
                }
                return if end_of_stream { Flow::Continue } else { Flow::Pause };
            }
            ResponseHandling::Stream => return self.stream_body(host, body_size, end_of_stream),
            ResponseHandling::Translate => {}
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        let body = match host.response_body(body_size) {
            Ok(b) => b,
            Err(e) => {
                log::error!("upstream filter: {e}");
                return Flow::Continue;
            }
        };
        let ctx = ResponseContext {
            created: host.now_unix(),
            api_key: deployment.api_key.as_deref(),
            endpoint,
            request: &self.facts,
        };
        let out = endpoint.provider.adapter().response(&ctx, self.operation, self.response_status, &body);
        let cost = match out.usage {
            Some(usage) => self.meter(Some(usage), 0, !out.usage_estimated),
            None => None,
        };
        let result = host
            .set_response_body(body.len(), &out.body)
            .and_then(|()| host.set_response_header("content-length", &out.body.len().to_string()))
            .and_then(|()| host.set_response_header("content-type", "application/json"))
            .and_then(|()| match cost {
                Some(cost) => host.set_response_header(RESPONSE_COST_HEADER, &crate::pricing::usd(cost)),
                None => Ok(()),
            });
        if let Err(e) = result {
            log::error!("upstream filter: could not write the translated response: {e}");
        }
        set_status(host, out.status);
        self.stamp(host);
        Flow::Continue
    }

    /// Translates the piece of a stream that just arrived and lets it go on.
    fn stream_body(&mut self, host: &dyn Host, body_size: usize, end_of_stream: bool) -> Flow {
        let Some(translator) = self.translator.as_mut() else {
            return Flow::Continue;
        };
        let chunk = match host.response_body(body_size) {
            Ok(c) => c,
            Err(e) => {
                log::error!("upstream filter: {e}");
                return Flow::Continue;
            }
        };
        let mut out = Vec::with_capacity(chunk.len() + chunk.len() / 2);
        translator.push(&chunk, &mut out);
        if end_of_stream {
            translator.finish(&mut out);
        }
        let (usage, estimate) = (translator.usage(), translator.output_estimate());
        // Final once the provider's stream ended with its usage; an estimate until then
        // (the client may go, or the stream be cut, at any moment).
        self.meter(usage, estimate, end_of_stream && usage.is_some());
        if let Err(e) = host.set_response_body(chunk.len(), &out) {
            log::error!("upstream filter: could not write the translated stream: {e}");
        }
        self.watch_stream(end_of_stream);
        Flow::Continue
    }

    /// A complete answer forwarded as it came: its usage read off the body (one host
    /// call), its cost told to the client as LiteLLM does.
    fn meter_pass_through(&mut self, host: &dyn Host, body_size: usize) {
        let Some(deployment) = &self.deployment else { return };
        let body = match host.response_body(body_size) {
            Ok(body) => body,
            Err(e) => return log::warn!("upstream filter: could not read the answer's usage: {e}"),
        };
        let usage = deployment.endpoint.provider.adapter().pass_through_usage(self.response_status, &body);
        if let Some(cost) = usage.and_then(|usage| self.meter(Some(usage), 0, true)) {
            if let Err(e) = host.set_response_header(RESPONSE_COST_HEADER, &crate::pricing::usd(cost)) {
                log::warn!("upstream filter: could not tell the answer's cost: {e}");
            }
        }
    }

    /// Records what this attempt has cost so far in the request's hand-off, where the
    /// downstream filter reads it when the request ends. `reported`: the provider's
    /// usage so far; `final_`: it is the whole answer's. Otherwise the estimate: the
    /// request's estimated input unless the provider already counted it, and the larger
    /// of the reported output and `output_estimate`. Returns the cost, if priced.
    fn meter(&self, reported: Option<Usage>, output_estimate: u64, final_: bool) -> Option<crate::pricing::NanoUsd> {
        let usage = match reported {
            Some(usage) if final_ => usage,
            reported => {
                let mut usage = reported.unwrap_or_default();
                if usage.prompt_tokens() == 0 {
                    usage.input = self.info.as_ref().map_or(0, |info| info.input_estimate);
                }
                usage.output = usage.output.max(output_estimate);
                usage
            }
        };
        let cost = self.prices.as_ref().map(|prices| crate::pricing::cost(prices, &usage));
        // An attempt without the request's facts (see `handoff`) still tells the client
        // its answer's cost; only the ledger misses it.
        if let (Some(info), Some(index)) = (&self.info, self.metered) {
            info.update_attempt(index, usage, !final_, cost);
        }
        cost
    }

    /// Keeps the stall watchdog informed: the first piece of body registers the stream
    /// (its headers leave for the client when this callback returns, and the downstream
    /// filter picks the watch up in its response-headers callback, which Envoy runs
    /// before returning to this VM), every later piece counts as activity, the last one
    /// ends the watch. No host call.
    fn watch_stream(&mut self, end_of_stream: bool) {
        if end_of_stream {
            if self.watch.take().is_some() {
                STALLS.with(|s| s.forget(self.context_id));
            }
            return;
        }
        if let Some(watch) = &self.watch {
            watch.activity.set(watch.activity.get().wrapping_add(1));
            return;
        }
        let limit = self.config.stream_stall_timeout;
        let Some(deployment) = &self.deployment else { return };
        if limit == 0 {
            return;
        }
        let watch = STALLS.with(|s| s.watch(self.context_id, deployment.endpoint.provider.name(), limit));
        self.watch = Some(watch);
    }

    /// Tells the client who answered, after how many attempts, and which of its
    /// parameters the provider could not take.
    fn stamp(&self, host: &dyn Host) {
        let Some(deployment) = &self.deployment else { return };
        let attempts = self.attempt.to_string();
        let mut result = host
            .set_response_header(PROVIDER_HEADER, deployment.endpoint.provider.name())
            .and_then(|()| host.set_response_header(ATTEMPTS_HEADER, &attempts));
        if !self.answering_model.is_empty() {
            result = result.and_then(|()| host.set_response_header(DEPLOYMENT_MODEL_HEADER, &self.answering_model));
        }
        if !self.dropped_params.is_empty() {
            result =
                result.and_then(|()| host.set_response_header(DROPPED_PARAMS_HEADER, &self.dropped_params.join(",")));
        }
        if !self.adjusted_params.is_empty() {
            result =
                result.and_then(|()| host.set_response_header(ADJUSTED_PARAMS_HEADER, &self.adjusted_params.join(",")));
        }
        if let Err(e) = result {
            log::error!("upstream filter: could not label the response: {e}");
        }
    }
}

impl Drop for UpstreamExchange {
    fn drop(&mut self) {
        if self.watch.is_some() {
            let _ = STALLS.try_with(|s| s.forget(self.context_id));
        }
    }
}

/// A stream whose provider goes silent after its first byte cannot be retried (the
/// client has bytes), and Envoy's only answer to the silence, `per_try_idle_timeout`,
/// resets the client's connection: the SDK raises a connection error mid-answer. So the
/// upstream filter watches its streams itself. A timer (the root context's tick, once a
/// second) finds a stream silent for `stream_stall_timeout` seconds, leaves an OpenAI
/// error event for it here, and resumes that attempt's filter context (`proxy_continue_stream`):
/// Envoy pushes the (empty) buffered body on through the router, and the downstream filter,
/// which holds the same watch, writes the event into that empty body frame. At the next
/// tick the attempt is reset (`proxy_close_stream`), which ends the client's stream once
/// the event has been flushed. (Not in the same tick: Envoy runs the reset, a deferred
/// action of this VM, at the end of the downstream filter's callback, before the event
/// has left it.) Envoy offers a filter no way to end the stream cleanly (no end of stream
/// can be added outside a body callback), and none at all for a provider that resets the
/// connection: the router resets the client first (see README).
///
/// One watch is shared by the stream's upstream and downstream filter contexts. They
/// meet through a hand-off slot: the upstream filter fills it in the callback that lets
/// the stream's headers go on, and the downstream filter empties it in its
/// response-headers callback, which Envoy calls synchronously from there. Every other
/// upstream response callback clears the slot, so a watch can only reach the downstream
/// filter of its own stream.
#[derive(Default)]
pub struct StreamWatch {
    /// Pieces of body the provider sent after the first.
    activity: Cell<u64>,
    /// Set by the watchdog when it gives up on the stream; written by the downstream filter.
    error_event: RefCell<Option<Vec<u8>>>,
}

impl StreamWatch {
    /// The SSE error event to end the client's stream with, once the watchdog has given
    /// up on it; taken once.
    pub fn take_error_event(&self) -> Option<Vec<u8>> {
        self.error_event.borrow_mut().take()
    }
}

struct Watched {
    watch: Rc<StreamWatch>,
    provider: &'static str,
    limit_secs: u64,
    /// The activity count seen at the last check, and when it was first seen.
    seen: u64,
    quiet_since_ns: Option<u64>,
}

/// Every watched stream of this VM (one per worker thread), by filter context id.
#[derive(Default)]
pub struct StallWatchdog {
    streams: RefCell<BTreeMap<u32, Watched>>,
    handoff: RefCell<Option<Rc<StreamWatch>>>,
    /// Streams given up on at the last check: to be reset at the next.
    given_up: RefCell<Vec<u32>>,
}

thread_local! {
    /// The VM's watchdog, shared by the upstream filter contexts (which register their
    /// streams), the downstream filter contexts (which write the error events) and the
    /// upstream root context (whose timer runs the checks).
    pub static STALLS: StallWatchdog = StallWatchdog::default();
}

impl StallWatchdog {
    fn watch(&self, context_id: u32, provider: &'static str, limit_secs: u64) -> Rc<StreamWatch> {
        let watch = Rc::new(StreamWatch::default());
        let entry = Watched { watch: Rc::clone(&watch), provider, limit_secs, seen: 0, quiet_since_ns: None };
        self.streams.borrow_mut().insert(context_id, entry);
        *self.handoff.borrow_mut() = Some(Rc::clone(&watch));
        watch
    }

    fn forget(&self, context_id: u32) {
        self.streams.borrow_mut().remove(&context_id);
    }

    fn clear_handoff(&self) {
        self.handoff.borrow_mut().take();
    }

    /// The watch of the stream whose headers are on their way to the client, if any
    /// (for the downstream filter's response-headers callback).
    pub fn take_handoff(&self) -> Option<Rc<StreamWatch>> {
        self.handoff.borrow_mut().take()
    }

    /// Nothing to watch and nothing to reset: the timer has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.streams.borrow().is_empty() && self.given_up.borrow().is_empty()
    }

    /// The filter context ids of the streams given up on at the previous check, whose
    /// error event has gone out since: the caller resets them.
    pub fn take_given_up(&self) -> Vec<u32> {
        std::mem::take(&mut *self.given_up.borrow_mut())
    }

    /// Checks every watched stream at `now_ns` (the host clock): a stream whose
    /// activity has not changed for its limit gets its error event and leaves the watch.
    /// Returns the filter context ids of those streams and their providers, for the
    /// caller to resume now
    /// ([`Self::take_given_up`] returns them again at the next check, to reset). A stream
    /// is silent for about its limit, at most one check interval more, when it is caught
    /// (a check earlier than the limit by less than `CHECK_SLACK_NS`, timer jitter, counts).
    /// Several root contexts may call this; checks are idempotent.
    pub fn check(&self, now_ns: u64) -> Vec<(u32, &'static str)> {
        let mut stalled = Vec::new();
        self.streams.borrow_mut().retain(|&context_id, w| {
            let activity = w.watch.activity.get();
            match w.quiet_since_ns {
                Some(since) if activity == w.seen => {
                    let quiet = now_ns.saturating_sub(since).saturating_add(CHECK_SLACK_NS);
                    if quiet < w.limit_secs.saturating_mul(1_000_000_000) {
                        return true;
                    }
                    *w.watch.error_event.borrow_mut() = Some(stall_event(w.provider, w.limit_secs));
                    log::warn!(
                        "upstream filter: the {} provider sent nothing for {} s mid-stream; ending the stream",
                        w.provider,
                        w.limit_secs
                    );
                    stalled.push((context_id, w.provider));
                    false
                }
                _ => {
                    w.seen = activity;
                    w.quiet_since_ns = Some(now_ns);
                    true
                }
            }
        });
        self.given_up.borrow_mut().extend(stalled.iter().map(|(context_id, _)| *context_id));
        stalled
    }
}

/// Counts a stream the watchdog ended, `switchyard.stream_stalls.<provider>.<group>`
/// (`host` acting on the stalled attempt's filter context).
pub fn count_stall(host: &dyn Host, provider: &str) {
    count(host, &format!("stream_stalls.{provider}"));
}

/// Timer jitter tolerated by [`StallWatchdog::check`]: ticks a second apart arrive a
/// little early or late.
const CHECK_SLACK_NS: u64 = 50_000_000;

/// The event that ends a stalled stream: OpenAI's error shape, no `[DONE]` (the SDK
/// raises `APIError` with this message).
fn stall_event(provider: &str, limit_secs: u64) -> Vec<u8> {
    let message = format!(
        "The {provider} provider sent nothing for {limit_secs} s in the middle of the stream; the gateway ended it."
    );
    let mut out = Vec::new();
    write_data(&mut out, &error_body(&message, "timeout", None, Some("stream_stalled")));
    out
}

/// Writes the status the router is to see (see [`STATUS_HEADER`] for 429s).
fn set_status(host: &dyn Host, status: u16) {
    let result = if status == RATE_LIMITED {
        host.set_response_header(":status", "503").and_then(|()| host.set_response_header(STATUS_HEADER, "429"))
    } else {
        host.set_response_header(":status", &status.to_string())
    };
    if let Err(e) = result {
        log::error!("upstream filter: could not set the response status: {e}");
    }
}

/// Counts `what` for this attempt's model group: `switchyard.<what>.<group>`. The group
/// goes last because its name may contain dots (`gpt-4.1`); the stats tags in the
/// shipped config extract provider, status and group from that shape. Only failures
/// and fallbacks are counted, so the common path pays no host call for it.
fn count(host: &dyn Host, what: &str) {
    let cluster = match host.property(&["xds", "cluster_name"]) {
        Ok(Some(name)) => String::from_utf8_lossy(&name).into_owned(),
        _ => "unknown".to_string(),
    };
    // Stat names take a narrow alphabet; a group id may have more (`org/model:tag`).
    let group: String = cluster
        .strip_prefix(CLUSTER_PREFIX)
        .unwrap_or(&cluster)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect();
    host.count(&format!("switchyard.{what}.{group}"));
}

/// The deployments one upstream filter (one cluster) has served, by their endpoint
/// metadata as Envoy hands it over: each endpoint's metadata is parsed and its key
/// looked up once per VM instead of once per attempt. The metadata bytes are the key
/// because nothing cheaper identifies an endpoint (two deployments of one group may
/// share an address, with different keys or models); reading them is one host call
/// either way. A VM's environment is fixed when it starts, so a cached key cannot go
/// stale, and new metadata (an EDS update) is a new entry.
#[derive(Default)]
pub struct DeploymentCache(RefCell<HashMap<Vec<u8>, Rc<Deployment>>>);

/// More distinct endpoints than any cluster has; reached only through endpoint churn,
/// which then starts the cache afresh instead of growing it without bound.
const DEPLOYMENT_CACHE_LIMIT: usize = 1024;

impl DeploymentCache {
    /// The chosen endpoint's deployment. Misconfigured endpoints are not cached: their
    /// error is logged and answered on every attempt.
    fn get(&self, host: &dyn Host) -> Result<Rc<Deployment>, String> {
        let path = ["xds", "upstream_host_metadata", "filter_metadata", METADATA_NAMESPACE];
        let bytes = match host.property(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(misconfigured_detail("the endpoint has no switchyard metadata")),
            Err(e) => return Err(misconfigured_detail(&e.to_string())),
        };
        if let Some(known) = self.0.borrow().get(&bytes) {
            return Ok(Rc::clone(known));
        }
        let deployment = Rc::new(deployment(host, &bytes)?);
        let mut cache = self.0.borrow_mut();
        if cache.len() >= DEPLOYMENT_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(bytes, Rc::clone(&deployment));
        Ok(deployment)
    }
}

fn deployment(host: &dyn Host, metadata: &[u8]) -> Result<Deployment, String> {
    let endpoint = Endpoint::from_metadata(metadata).map_err(|detail| misconfigured_detail(&detail))?;
    let api_key = match &endpoint.api_key_env {
        Some(var) => Some(host.env(var).filter(|k| !k.is_empty()).ok_or_else(|| {
            format!("the {} deployment's API key variable {var} is not set", endpoint.provider.name())
        })?),
        None => None,
    };
    Ok(Deployment { endpoint, api_key })
}

fn misconfigured_detail(detail: &str) -> String {
    format!("the selected deployment is misconfigured: {detail}")
}

fn reply_error(host: &dyn Host, err: &GatewayError) -> Flow {
    crate::downstream::reply_error(host, err)
}

fn misconfigured(host: &dyn Host, detail: String) -> Flow {
    log::error!("upstream filter: {detail}");
    reply_error(host, &GatewayError::Misconfigured { detail })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stall_tests {
    use super::*;
    use crate::config::{self, PluginConfig};
    use crate::downstream::DownstreamExchange;
    use crate::host::FakeHost;
    use crate::pairs;
    use serde_json::{json, Value};

    const SECOND: u64 = 1_000_000_000;

    fn stall_config(seconds: u64) -> Rc<UpstreamConfig> {
        Rc::new(UpstreamConfig { stream_stall_timeout: seconds, ..UpstreamConfig::default() })
    }

    /// An Anthropic stream through both filters' state machines, up to its first piece of
    /// body; returns the exchanges and their hosts.
    fn open_stream(
        context_id: u32,
        seconds: u64,
        client_streams: bool,
    ) -> (UpstreamExchange, FakeHost, DownstreamExchange, FakeHost) {
        let request =
            json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stream": client_streams});
        let down_host = FakeHost::with_request(
            &[(":method", "POST"), (":path", "/v1/chat/completions")],
            request.to_string().as_bytes(),
        );
        let doc = json!({"stage": "downstream", "models": [{"id": "demo"}]});
        let PluginConfig::Downstream(down_config) = config::parse(doc.to_string().as_bytes(), &|_| None, 0).unwrap()
        else {
            panic!("expected a downstream config")
        };
        let mut down = DownstreamExchange::new(Rc::new(down_config));
        assert_eq!(down.on_request_headers(&down_host, false), Flow::Pause);
        let size = down_host.request_body.borrow().len();
        assert_eq!(down.on_request_body(&down_host, size, true), Flow::Continue);

        let mut up_host = FakeHost::with_request(&[(":path", "/v1/chat/completions")], request.to_string().as_bytes());
        let meta = [("provider", "anthropic"), ("model", "claude-sonnet-4-5"), ("api_key_env", "KEY")];
        up_host.properties.insert("xds.upstream_host_metadata.filter_metadata.switchyard".into(), pairs::encode(&meta));
        up_host.env.insert("KEY".into(), "sk-ant-test".into());
        let mut up = UpstreamExchange::new(stall_config(seconds), Rc::default());
        up.set_context_id(context_id);
        assert_eq!(up.on_request_headers(&up_host, false), Flow::Pause);
        let size = up_host.request_body.borrow().len();
        assert_eq!(up.on_request_body(&up_host, size, true), Flow::Continue);
        *up_host.response_headers.borrow_mut() =
            vec![(":status".into(), "200".into()), ("content-type".into(), "text/event-stream".into())];
        if client_streams {
            assert_eq!(up.on_response_headers(&up_host, false), Flow::Pause);
            let start = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}}"#;
            *up_host.response_body.borrow_mut() = format!("event: message_start\ndata: {start}\n\n").into_bytes();
            let size = up_host.response_body.borrow().len();
            // This callback lets the headers go on; Envoy then calls the downstream filter.
            assert_eq!(up.on_response_body(&up_host, size, false), Flow::Continue);
        }
        assert_eq!(down.on_response_headers(&down_host), Flow::Continue);
        (up, up_host, down, down_host)
    }

    fn events(body: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(body).unwrap();
        text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect()
    }

    #[test]
    fn a_silent_stream_gets_one_error_event_written_by_the_downstream_filter() {
        let (up, _up_host, mut down, down_host) = open_stream(41, 3, true);
        STALLS.with(|s| {
            assert!(s.check(100 * SECOND).is_empty(), "the first check only notes the activity");
            assert!(s.check(102 * SECOND).is_empty(), "2 s of silence is within the limit");
            assert!(s.take_given_up().is_empty());
            assert_eq!(s.check(103 * SECOND - 10_000_000), vec![(41, "anthropic")], "timer jitter is tolerated");
            assert_eq!(s.take_given_up(), vec![41], "reset at the next check");
            assert!(s.check(200 * SECOND).is_empty(), "a stalled stream is given up on once");
            assert!(s.take_given_up().is_empty() && s.is_empty());
        });
        // A piece of body the provider sent meanwhile is left alone...
        *down_host.response_body.borrow_mut() = b"data: {}\n\n".to_vec();
        assert_eq!(down.on_response_body(&down_host, 10, false), Flow::Continue);
        assert_eq!(&down_host.response_body.borrow()[..], b"data: {}\n\n");
        // ... the empty one the resumed upstream context pushes carries the event.
        down_host.response_body.borrow_mut().clear();
        assert_eq!(down.on_response_body(&down_host, 0, false), Flow::Continue);
        let got = events(&down_host.response_body.borrow());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["error"]["type"], "timeout");
        assert_eq!(got[0]["error"]["code"], "stream_stalled");
        assert_eq!(got[0]["error"]["param"], Value::Null);
        assert!(got[0]["error"]["message"].as_str().unwrap().contains("anthropic provider sent nothing for 3 s"));
        down_host.response_body.borrow_mut().clear();
        down.on_response_body(&down_host, 0, false);
        assert!(down_host.response_body.borrow().is_empty(), "written once");
        drop(up);
    }

    #[test]
    fn activity_restarts_the_silence_and_the_end_of_the_stream_ends_the_watch() {
        let (mut up, up_host, _down, _down_host) = open_stream(42, 3, true);
        let ping = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";
        STALLS.with(|s| {
            assert!(s.check(10 * SECOND).is_empty());
        });
        *up_host.response_body.borrow_mut() = ping.to_vec();
        up.on_response_body(&up_host, ping.len(), false);
        STALLS.with(|s| {
            assert!(s.check(12 * SECOND).is_empty(), "activity seen: the silence starts again");
            assert!(s.check(14 * SECOND).is_empty());
            assert_eq!(s.check(15 * SECOND), vec![(42, "anthropic")]);
        });
        let (mut up, up_host, _down, _down_host) = open_stream(43, 3, true);
        *up_host.response_body.borrow_mut() = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_vec();
        let size = up_host.response_body.borrow().len();
        up.on_response_body(&up_host, size, true);
        STALLS.with(|s| {
            s.check(20 * SECOND);
            assert!(s.check(100 * SECOND).is_empty(), "a finished stream is not watched");
        });
    }

    #[test]
    fn only_the_stream_whose_headers_just_passed_takes_the_watch() {
        // A non-streaming request's downstream filter takes nothing (and leaves no watch
        // behind for another).
        let (_up, _uh, mut down, down_host) = open_stream(44, 3, false);
        STALLS.with(|s| assert!(s.is_empty()));
        down.on_response_body(&down_host, 0, false);
        assert!(down_host.response_body.borrow().is_empty());
        // A stream's watch is dropped from the slot by the next upstream callback if its
        // downstream filter never took it.
        let up_host = FakeHost::default();
        STALLS.with(|s| *s.handoff.borrow_mut() = Some(Rc::new(StreamWatch::default())));
        UpstreamExchange::new(stall_config(3), Rc::default()).on_response_headers(&up_host, true);
        STALLS.with(|s| assert!(s.take_handoff().is_none()));
        // With the watchdog off nothing is registered.
        let (_up, _uh, _down, _dh) = open_stream(45, 0, true);
        STALLS.with(|s| assert!(s.is_empty() && s.take_handoff().is_none()));
        // A dropped attempt (client gone, reset) leaves the watch.
        let (up, _uh, _down, _dh) = open_stream(46, 3, true);
        STALLS.with(|s| assert!(!s.is_empty()));
        drop(up);
        STALLS.with(|s| assert!(s.is_empty()));
    }
}
