//! Provider adapters: one module per wire format, all behind [`ProviderAdapter`].
//!
//! An adapter is pure: request bytes in, the provider's request out; the provider's
//! response bytes in, OpenAI-shaped bytes out. It never touches Envoy, so it is tested
//! natively with golden fixtures.

pub mod anthropic;
pub mod gemini;
pub mod models;
pub mod openai;
pub mod stream;

use crate::config::UpstreamConfig;
use crate::endpoint::Endpoint;
use crate::error::{ErrorType, GatewayError, ProviderError};
use crate::operation::Operation;
use crate::usage::Usage;
use openai::presets::Preset;
use stream::{StreamContext, StreamTranslator};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// A server speaking OpenAI's API, with its preset (defaults and quirks).
    OpenAi(&'static Preset),
    Anthropic,
    Gemini,
}

impl Provider {
    /// `openai`, `anthropic`, `gemini`, or any OpenAI-compatible preset's name
    /// (`azure`, `mistral`, `groq`, …).
    pub fn from_name(name: &str) -> Option<Provider> {
        match name {
            "anthropic" => Some(Provider::Anthropic),
            "gemini" => Some(Provider::Gemini),
            other => openai::presets::find(other).map(Provider::OpenAi),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi(preset) => preset.name,
            Provider::Anthropic => anthropic::NAME,
            Provider::Gemini => gemini::NAME,
        }
    }

    pub fn default_api_base(self) -> &'static str {
        match self {
            Provider::OpenAi(preset) => preset.api_base,
            Provider::Anthropic => "https://api.anthropic.com",
            Provider::Gemini => "https://generativelanguage.googleapis.com",
        }
    }

    /// How the provider expects its key.
    pub fn auth(self) -> AuthScheme {
        match self {
            Provider::OpenAi(preset) => preset.auth,
            Provider::Anthropic => AuthScheme::Header("x-api-key"),
            Provider::Gemini => AuthScheme::Header("x-goog-api-key"),
        }
    }

    pub fn adapter(self) -> &'static dyn ProviderAdapter {
        match self {
            Provider::OpenAi(_) => &openai::OpenAi,
            Provider::Anthropic => &anthropic::Anthropic,
            Provider::Gemini => &gemini::Gemini,
        }
    }
}

/// How the provider expects its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer <key>`
    Bearer,
    /// `<header>: <key>`
    Header(&'static str),
}

impl AuthScheme {
    pub fn header(self, key: &str) -> (&'static str, String) {
        match self {
            AuthScheme::Bearer => ("authorization", format!("Bearer {key}")),
            AuthScheme::Header(name) => (name, key.to_string()),
        }
    }
}

/// What to do with a request parameter the deployment's provider cannot honour
/// (endpoint metadata `unsupported_params`, one setting per model group).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ParamPolicy {
    /// Refuse parameters whose absence would change the answer (`n > 1`, a schema, a
    /// named tool choice, logprobs); drop sampling knobs and report them.
    #[default]
    Default,
    /// Drop everything unsupported, reporting it in `x-switchyard-dropped-params`.
    Drop,
    /// Refuse everything unsupported with a 400 naming the parameter.
    Reject,
}

impl ParamPolicy {
    pub fn from_name(name: &str) -> Option<ParamPolicy> {
        match name {
            "default" => Some(ParamPolicy::Default),
            "drop" => Some(ParamPolicy::Drop),
            "reject" => Some(ParamPolicy::Reject),
            _ => None,
        }
    }
}

/// How much a missing parameter changes what the client gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impact {
    /// Leaving it out changes the answer's meaning or shape.
    Semantic,
    /// A sampling knob: the answer is still what was asked for.
    Sampling,
}

pub struct RequestContext<'c> {
    pub endpoint: &'c Endpoint,
    pub config: &'c UpstreamConfig,
}

impl RequestContext<'_> {
    /// Applies the deployment's policy to a parameter its provider lacks: `Ok` (and the
    /// name recorded in `dropped`) to leave it out, or the 400 to answer.
    pub fn unsupported(
        &self,
        param: &str,
        impact: Impact,
        detail: &str,
        dropped: &mut Vec<String>,
    ) -> Result<(), GatewayError> {
        let reject = match (self.endpoint.param_policy, impact) {
            (ParamPolicy::Reject, _) | (ParamPolicy::Default, Impact::Semantic) => true,
            (ParamPolicy::Drop, _) | (ParamPolicy::Default, Impact::Sampling) => false,
        };
        if reject {
            return Err(GatewayError::UnsupportedParameter {
                param: param.into(),
                provider: self.endpoint.provider.name(),
                detail: Some(detail.into()),
            });
        }
        dropped.push(param.to_string());
        Ok(())
    }

    /// Applies the deployment's policy to a parameter value its provider cannot take as
    /// sent but can take changed (a temperature above the provider's range, a prefill's
    /// trailing whitespace): `Ok` (and `param=value` recorded in `adjusted`) to send
    /// `value` instead, or, under `reject`, the 400 to answer.
    pub fn adjust(
        &self,
        param: &str,
        value: &str,
        detail: &str,
        adjusted: &mut Vec<String>,
    ) -> Result<(), GatewayError> {
        if self.endpoint.param_policy == ParamPolicy::Reject {
            return Err(GatewayError::UnsupportedParameter {
                param: param.into(),
                provider: self.endpoint.provider.name(),
                detail: Some(detail.into()),
            });
        }
        adjusted.push(format!("{param}={value}"));
        Ok(())
    }
}

/// The provider request an adapter produced from the client's body.
#[derive(Debug, Default, PartialEq)]
pub struct UpstreamRequest {
    /// Path and query.
    pub path: String,
    /// `None`: send the client's body unchanged.
    pub body: Option<Vec<u8>>,
    /// Provider headers other than auth (e.g. `anthropic-version`).
    pub headers: Vec<(&'static str, String)>,
    /// Request fields the provider has no slot for and that were left out.
    pub dropped_params: Vec<String>,
    /// Request fields sent with another value than the client's (`param=value`).
    pub adjusted_params: Vec<String>,
    /// The client asked for a stream.
    pub stream: bool,
    /// … and for a final usage chunk in it.
    pub include_usage: bool,
}

pub struct ResponseContext<'c> {
    /// Unix seconds when the provider's response arrived (`created`).
    pub created: u64,
    /// The provider key, so it can be scrubbed from anything echoed back.
    pub api_key: Option<&'c str>,
    /// The deployment, for adapters whose answers depend on it (model names, quirks).
    pub endpoint: &'c Endpoint,
    /// What the client asked for, where the provider's answer does not say (e.g. the
    /// embedding encoding, the model name).
    pub request: &'c RequestFacts,
}

/// Facts about the client's request an adapter keeps for translating the answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RequestFacts {
    /// The model the client asked for.
    pub model: String,
    pub base64_embeddings: bool,
    /// Characters of input, for providers that report no token counts (Gemini embeddings).
    pub input_chars: usize,
    /// JSON mode was emulated with the gateway's own forced tool (Anthropic): its call
    /// is the answer's content.
    pub json_tool: bool,
    /// The client asked with the deprecated `functions`: the answer's call goes in
    /// `message.function_call` (finish reason `function_call`), not `tool_calls`.
    pub legacy_functions: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseHandling {
    /// Already in OpenAI's shape: forwarded, never read.
    PassThrough,
    /// Buffer the whole body and translate it.
    Translate,
    /// Translate each piece as it arrives.
    Stream,
}

#[derive(Debug, PartialEq)]
pub struct TranslatedResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// What the provider bills for the answer, in its own breakdown, read by the
    /// translation itself (rate limits, cost and the ledger need no other parse); `None`
    /// for errors and answers that report none.
    pub usage: Option<Usage>,
    /// `usage` is the gateway's estimate, not the provider's count.
    pub usage_estimated: bool,
}

impl TranslatedResponse {
    pub fn error(err: &GatewayError) -> Self {
        TranslatedResponse { status: err.status(), body: err.body(), usage: None, usage_estimated: false }
    }

    pub fn success(status: u16, body: Vec<u8>, usage: Option<Usage>) -> Self {
        TranslatedResponse { status, body, usage, usage_estimated: false }
    }
}

pub trait ProviderAdapter: Sync {
    /// The client's request body for `op` → the provider's request. `facts` records
    /// what the response translation will need.
    fn request(
        &self,
        ctx: &RequestContext,
        op: Operation,
        body: &[u8],
        facts: &mut RequestFacts,
    ) -> Result<UpstreamRequest, GatewayError>;
    /// Decided from the status line, before any body arrives. Errors are never
    /// streamed: they come whole, before the first byte reaches the client. `facts` are
    /// what `request` recorded (an answer to a legacy request may need reading).
    fn response_handling(
        &self,
        endpoint: &Endpoint,
        op: Operation,
        status: u16,
        stream: bool,
        facts: &RequestFacts,
    ) -> ResponseHandling;
    /// The provider's complete response (success or error) → OpenAI's shape, with what
    /// the provider bills for it.
    fn response(&self, ctx: &ResponseContext, op: Operation, status: u16, body: &[u8]) -> TranslatedResponse;
    /// A translator for a successful streamed response.
    fn stream(&self, ctx: StreamContext) -> Box<dyn StreamTranslator>;
    /// What the provider bills for a complete answer forwarded as it came
    /// ([`ResponseHandling::PassThrough`]), read as cheaply as the format allows.
    fn pass_through_usage(&self, _status: u16, _body: &[u8]) -> Option<Usage> {
        None
    }
}

/// Translate errors; stream successes when a stream was asked for.
pub fn handling_for(status: u16, stream: bool, success: ResponseHandling) -> ResponseHandling {
    match ((200..300).contains(&status), stream) {
        (true, true) => ResponseHandling::Stream,
        (true, false) => success,
        (false, _) => ResponseHandling::Translate,
    }
}

pub fn unsupported_operation(provider: &'static str, op: Operation) -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!("The {provider} provider does not serve {}; use a model whose deployments do.", op.path()),
        param: Some("model".into()),
        code: "unsupported_operation",
    }
}

/// The canonical mapping from a provider's HTTP status to the status, type and code the
/// client sees (docs/providers/gateway-rules.md#error-status-mapping). Adapters refine `code` from the provider's body.
pub fn canonical_error(status: u16) -> (u16, ErrorType, Option<&'static str>) {
    match status {
        400 | 422 => (400, ErrorType::InvalidRequest, None),
        401 => (401, ErrorType::Authentication, Some("invalid_api_key")),
        402 => (402, ErrorType::InsufficientQuota, Some("insufficient_quota")),
        403 => (403, ErrorType::Permission, None),
        404 => (404, ErrorType::NotFound, None),
        408 => (408, ErrorType::Timeout, Some("timeout")),
        413 => (413, ErrorType::InvalidRequest, Some("request_too_large")),
        429 => (429, ErrorType::RateLimit, Some("rate_limit_exceeded")),
        500 => (500, ErrorType::Server, None),
        502 => (502, ErrorType::Server, Some("bad_gateway")),
        // 529 is Anthropic's "overloaded"; many HTTP clients do not know it, and it is
        // retryable like 503.
        503 | 529 => (503, ErrorType::ServiceUnavailable, Some("overloaded")),
        504 => (504, ErrorType::Timeout, Some("timeout")),
        s if (400..500).contains(&s) => (s, ErrorType::InvalidRequest, None),
        s if (500..600).contains(&s) => (s, ErrorType::Server, None),
        // A non-error status reaching error handling means the provider broke protocol.
        _ => (502, ErrorType::Server, Some("bad_upstream_response")),
    }
}

/// What an adapter could read from a provider's error body.
#[derive(Debug, Default)]
pub struct ErrorDetails {
    /// A `type` the provider sent that OpenAI clients understand; else the status decides.
    pub kind: Option<ErrorType>,
    pub code: Option<String>,
    pub param: Option<String>,
    /// Provider-specific detail passed on as it came (Azure's `innererror`), raw JSON.
    pub innererror: Option<String>,
}

/// Builds a provider error with the canonical mapping, the provider's message (scrubbed
/// of the key) and whatever more specific details the adapter found.
pub fn provider_error(api_key: Option<&str>, status: u16, message: &str, details: ErrorDetails) -> GatewayError {
    let (status, canonical_kind, default_code) = canonical_error(status);
    let message = match api_key {
        Some(key) => crate::error::redact(message, key),
        None => message.to_string(),
    };
    GatewayError::Provider(ProviderError {
        status,
        kind: details.kind.unwrap_or(canonical_kind),
        code: details.code.or_else(|| default_code.map(str::to_string)),
        param: details.param,
        message,
        innererror: details.innererror,
    })
}

/// A short, printable excerpt of a non-JSON error body (HTML error pages and the like).
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    let mut excerpt: String = trimmed.chars().filter(|c| !c.is_control()).take(200).collect();
    if trimmed.chars().count() > 200 {
        excerpt.push('…');
    }
    excerpt
}

/// `data:<media-type>;base64,<payload>` → (media type, payload).
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    let media_type = header.strip_suffix(";base64")?;
    (!media_type.is_empty() && !data.is_empty()).then_some((media_type, data))
}

/// OpenAI sends tool-call arguments as a JSON string; providers that take them as an
/// object get the object. `""` (some clients' way of saying "no arguments") is `{}`;
/// anything but an object is `None`.
pub(crate) fn tool_arguments(arguments: &str) -> Option<&serde_json::value::RawValue> {
    let text = if arguments.trim().is_empty() { "{}" } else { arguments };
    let raw: &serde_json::value::RawValue = serde_json::from_str(text).ok()?;
    raw.get().trim_start().starts_with('{').then_some(raw)
}

/// A tool-call id for providers that return none, deterministic in `seed` and `index`
/// (the same response always yields the same ids; no randomness in the VM needed).
pub fn minted_call_id(seed: &str, index: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain(index.to_le_bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("call_{}", base62(hash, 24))
}

/// `len` base-62 digits of `value` (repeating the value's bits as needed).
pub fn base62(mut value: u64, len: usize) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let seed = value;
    let mut out = String::with_capacity(len);
    for i in 0..len {
        if value == 0 {
            value = seed.rotate_left((i as u32 % 63) + 1) | 1;
        }
        out.push(char::from(ALPHABET.get((value % 62) as usize).copied().unwrap_or(b'0')));
        value /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_table() {
        let cases = [
            (400, 400, ErrorType::InvalidRequest),
            (401, 401, ErrorType::Authentication),
            (403, 403, ErrorType::Permission),
            (404, 404, ErrorType::NotFound),
            (413, 413, ErrorType::InvalidRequest),
            (422, 400, ErrorType::InvalidRequest),
            (429, 429, ErrorType::RateLimit),
            (500, 500, ErrorType::Server),
            (503, 503, ErrorType::ServiceUnavailable),
            (529, 503, ErrorType::ServiceUnavailable),
            (504, 504, ErrorType::Timeout),
            (418, 418, ErrorType::InvalidRequest),
            (599, 599, ErrorType::Server),
            (200, 502, ErrorType::Server),
        ];
        for (input, status, kind) in cases {
            let (s, k, _) = canonical_error(input);
            assert_eq!((s, k), (status, kind), "{input}");
        }
    }

    #[test]
    fn provider_errors_never_carry_the_key() {
        let err = provider_error(
            Some("sk-live-123456"),
            401,
            "Incorrect API key provided: sk-live-123456",
            ErrorDetails::default(),
        );
        assert!(!err.message().contains("sk-live-123456"));
        assert!(!String::from_utf8(err.body()).unwrap().contains("sk-live-123456"));
    }

    #[test]
    fn excerpt_is_bounded_and_printable() {
        assert_eq!(body_excerpt(b"  <html>\n502</html> "), "<html>502</html>");
        assert_eq!(body_excerpt(&[b'x'; 500]).chars().count(), 201);
        assert_eq!(body_excerpt(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn minted_ids_are_stable_distinct_and_openai_shaped() {
        let a = minted_call_id("resp-1", 0);
        assert_eq!(a, minted_call_id("resp-1", 0));
        assert_ne!(a, minted_call_id("resp-1", 1));
        assert_ne!(a, minted_call_id("resp-2", 0));
        assert!(a.starts_with("call_") && a.len() == 29 && a[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn policy_decides_by_impact() {
        use crate::pairs;
        let config = UpstreamConfig::default();
        for (policy, semantic_rejected, sampling_rejected) in
            [("default", true, false), ("drop", false, false), ("reject", true, true)]
        {
            let meta = pairs::encode(&[("provider", "anthropic"), ("unsupported_params", policy)]);
            let endpoint = Endpoint::from_metadata(&meta).unwrap();
            let ctx = RequestContext { endpoint: &endpoint, config: &config };
            let mut dropped = Vec::new();
            assert_eq!(
                ctx.unsupported("n", Impact::Semantic, "x", &mut dropped).is_err(),
                semantic_rejected,
                "{policy}"
            );
            assert_eq!(
                ctx.unsupported("seed", Impact::Sampling, "x", &mut dropped).is_err(),
                sampling_rejected,
                "{policy}"
            );
        }
    }
}
