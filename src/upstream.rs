//! The upstream filter, once per attempt, after Envoy picked the endpoint: read the
//! deployment from the endpoint's metadata, translate the request for its provider,
//! and translate the provider's answer back. A retry that lands on another provider
//! is translated for that provider.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::config::UpstreamConfig;
use crate::endpoint::{Deployment, Endpoint, METADATA_NAMESPACE};
use crate::error::GatewayError;
use crate::host::{Flow, Host};
use crate::operation::Operation;
use crate::providers::stream::{StreamContext, StreamTranslator};
use crate::providers::{canonical_error, RequestContext, RequestFacts, ResponseContext, ResponseHandling};

pub const DROPPED_PARAMS_HEADER: &str = "x-switchyard-dropped-params";
/// Parameters sent with another value than the client's, as `param=value`.
pub const ADJUSTED_PARAMS_HEADER: &str = "x-switchyard-adjusted-params";
/// Which deployment answered: its provider and the provider's model name.
pub const PROVIDER_HEADER: &str = "x-switchyard-provider";
pub const DEPLOYMENT_MODEL_HEADER: &str = "x-switchyard-model";
/// How many attempts the answer took (1: the first deployment tried answered).
pub const ATTEMPTS_HEADER: &str = "x-switchyard-attempts";
/// A provider's 429 crosses the router as a 503, so that Envoy retries it on another
/// deployment and counts it towards this one's cooldown (outlier detection counts 5xx
/// only); this header carries the 429, which the downstream filter gives the client.
pub const STATUS_HEADER: &str = "x-switchyard-status";
const RATE_LIMITED: u16 = 429;
/// Set by the router on every attempt (`include_request_attempt_count`).
const ATTEMPT_COUNT_HEADER: &str = "x-envoy-attempt-count";
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
        }
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
        // The downstream filter validated the body for its path, so its shape names the
        // operation (no host call to read `:path`).
        self.operation = Operation::of_body(&body).unwrap_or(Operation::Chat);
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
        self.dropped_params = translated.dropped_params;
        self.adjusted_params = translated.adjusted_params;
        self.stream = translated.stream;
        self.include_usage = translated.include_usage;
        Flow::Continue
    }

    pub fn on_response_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Flow {
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
        let Some(deployment) = &self.deployment else {
            return Flow::Continue;
        };
        let endpoint = &deployment.endpoint;
        match self.handling {
            ResponseHandling::PassThrough => {
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
        let result = host
            .set_response_body(body.len(), &out.body)
            .and_then(|()| host.set_response_header("content-length", &out.body.len().to_string()))
            .and_then(|()| host.set_response_header("content-type", "application/json"));
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
        if let Err(e) = host.set_response_body(chunk.len(), &out) {
            log::error!("upstream filter: could not write the translated stream: {e}");
        }
        Flow::Continue
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
