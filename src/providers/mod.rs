//! Provider adapters: one module per wire format, all behind [`ProviderAdapter`].
//!
//! An adapter is pure: request bytes in, the provider's request out; the provider's
//! response bytes in, OpenAI-shaped bytes out. It never touches Envoy, so it is tested
//! natively with golden fixtures.

pub mod anthropic;
pub mod openai;
pub mod stream;

use crate::config::UpstreamConfig;
use crate::endpoint::Endpoint;
use crate::error::{ErrorType, GatewayError, ProviderError};
use stream::{StreamContext, StreamTranslator};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Any server speaking OpenAI Chat Completions.
    OpenAi,
    Anthropic,
}

impl Provider {
    pub fn from_name(name: &str) -> Option<Provider> {
        match name {
            "openai" => Some(Provider::OpenAi),
            "anthropic" => Some(Provider::Anthropic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        self.adapter().name()
    }

    pub fn default_api_base(self) -> &'static str {
        match self {
            Provider::OpenAi => "https://api.openai.com/v1",
            Provider::Anthropic => "https://api.anthropic.com",
        }
    }

    pub fn adapter(self) -> &'static dyn ProviderAdapter {
        match self {
            Provider::OpenAi => &openai::OpenAi,
            Provider::Anthropic => &anthropic::Anthropic,
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

pub struct RequestContext<'c> {
    pub endpoint: &'c Endpoint,
    pub config: &'c UpstreamConfig,
}

/// The provider request an adapter produced from the client's body.
#[derive(Debug, Default, PartialEq)]
pub struct UpstreamRequest {
    pub path: String,
    /// `None`: send the client's body unchanged.
    pub body: Option<Vec<u8>>,
    /// Provider headers other than auth (e.g. `anthropic-version`).
    pub headers: Vec<(&'static str, String)>,
    /// Request fields the provider has no slot for and that were left out.
    pub dropped_params: Vec<String>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseHandling {
    /// Already in OpenAI's shape: forward without buffering.
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
}

impl TranslatedResponse {
    pub fn error(err: &GatewayError) -> Self {
        TranslatedResponse { status: err.status(), body: err.body() }
    }
}

pub trait ProviderAdapter: Sync {
    fn name(&self) -> &'static str;
    fn auth(&self) -> AuthScheme;
    /// OpenAI chat request body → the provider's request.
    fn chat_request(&self, ctx: &RequestContext, body: &[u8]) -> Result<UpstreamRequest, GatewayError>;
    /// Decided from the status line, before any body arrives. Errors are never
    /// streamed: they come whole, before the first byte reaches the client.
    fn response_handling(&self, status: u16, stream: bool) -> ResponseHandling;
    /// The provider's complete response (success or error) → OpenAI's shape.
    fn chat_response(&self, ctx: &ResponseContext, status: u16, body: &[u8]) -> TranslatedResponse;
    /// A translator for a successful streamed response.
    fn chat_stream(&self, ctx: StreamContext, api_key: Option<String>) -> Box<dyn StreamTranslator>;
}

/// Translate errors; stream successes when a stream was asked for.
pub fn handling_for(status: u16, stream: bool, success: ResponseHandling) -> ResponseHandling {
    match ((200..300).contains(&status), stream) {
        (true, true) => ResponseHandling::Stream,
        (true, false) => success,
        (false, _) => ResponseHandling::Translate,
    }
}

/// The canonical mapping from a provider's HTTP status to the status, type and code the
/// client sees (PROVIDERS.md §10.3). Adapters refine `code` from the provider's body.
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
}

/// Builds a provider error with the canonical mapping, the provider's message (scrubbed
/// of the key) and whatever more specific details the adapter found.
pub fn provider_error(ctx: &ResponseContext, status: u16, message: &str, details: ErrorDetails) -> GatewayError {
    let (status, canonical_kind, default_code) = canonical_error(status);
    let message = match ctx.api_key {
        Some(key) => crate::error::redact(message, key),
        None => message.to_string(),
    };
    GatewayError::Provider(ProviderError {
        status,
        kind: details.kind.unwrap_or(canonical_kind),
        code: details.code.or_else(|| default_code.map(str::to_string)),
        param: details.param,
        message,
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
        let ctx = ResponseContext { created: 0, api_key: Some("sk-live-123456") };
        let err = provider_error(&ctx, 401, "Incorrect API key provided: sk-live-123456", ErrorDetails::default());
        assert!(!err.message().contains("sk-live-123456"));
        assert!(!String::from_utf8(err.body()).unwrap().contains("sk-live-123456"));
    }

    #[test]
    fn excerpt_is_bounded_and_printable() {
        assert_eq!(body_excerpt(b"  <html>\n502</html> "), "<html>502</html>");
        assert_eq!(body_excerpt(&[b'x'; 500]).chars().count(), 201);
        assert_eq!(body_excerpt(&[0xff, b'a']), "\u{fffd}a");
    }
}
