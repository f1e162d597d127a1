//! Every error a client can receive, and the one mapping from each to an HTTP status
//! and the OpenAI error envelope `{"error":{"message","type","param","code"}}`.
//!
//! Clients (and the official SDKs) branch on the status first, so status fidelity
//! matters more than `type`; both are decided here and nowhere else.

use serde::Serialize;
use serde_json::value::RawValue;

/// The `error.type` values the gateway emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RateLimit,
    /// OpenAI's own 429 types for a request-rate and a token-rate limit.
    Requests,
    Tokens,
    InsufficientQuota,
    Server,
    ServiceUnavailable,
    Timeout,
}

impl ErrorType {
    /// Recognises the `type` strings OpenAI-compatible servers send.
    pub fn from_openai(kind: &str) -> Option<ErrorType> {
        match kind {
            "invalid_request_error" => Some(ErrorType::InvalidRequest),
            "authentication_error" => Some(ErrorType::Authentication),
            "permission_error" => Some(ErrorType::Permission),
            "not_found_error" => Some(ErrorType::NotFound),
            "rate_limit_error" | "requests" | "tokens" => Some(ErrorType::RateLimit),
            "insufficient_quota" => Some(ErrorType::InsufficientQuota),
            "server_error" | "api_error" => Some(ErrorType::Server),
            "service_unavailable" | "service_unavailable_error" => Some(ErrorType::ServiceUnavailable),
            "timeout" => Some(ErrorType::Timeout),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            // OpenAI itself reports unknown models and URLs as invalid_request_error.
            ErrorType::InvalidRequest | ErrorType::NotFound => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Permission => "permission_error",
            ErrorType::RateLimit => "rate_limit_error",
            ErrorType::Requests => "requests",
            ErrorType::Tokens => "tokens",
            ErrorType::InsufficientQuota => "insufficient_quota",
            ErrorType::Server => "server_error",
            ErrorType::ServiceUnavailable => "service_unavailable",
            ErrorType::Timeout => "timeout",
        }
    }
}

/// An error reported by a provider, already normalised to OpenAI terms by its adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderError {
    pub status: u16,
    pub kind: ErrorType,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
    /// Azure's `innererror` (which content filter fired, and why), as raw JSON, passed on
    /// beside the standard fields.
    pub innererror: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GatewayError {
    /// The body is not JSON (or not a JSON object).
    InvalidJson {
        detail: String,
    },
    /// A field is missing, of the wrong type or out of range. `code` follows OpenAI's
    /// vocabulary (`missing_required_parameter`, `invalid_type`, `invalid_value`, ...).
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: &'static str,
    },
    /// The deployment's provider cannot honour a parameter and the policy is to reject.
    UnsupportedParameter {
        param: String,
        provider: &'static str,
        detail: Option<String>,
    },
    /// No or wrong gateway key.
    Unauthorized {
        message: &'static str,
    },
    ModelNotFound {
        model: String,
    },
    UnknownUrl {
        method: String,
        path: String,
    },
    MethodNotAllowed {
        method: String,
        path: String,
    },
    /// The provider answered with an error; it keeps the provider's message.
    Provider(ProviderError),
    /// The provider answered something that is not its documented format.
    ProviderMalformed {
        provider: &'static str,
        detail: String,
    },
    /// The provider's stream stopped before its end marker (connection cut, truncated
    /// body): the client must not mistake the partial answer for a complete one.
    StreamIncomplete {
        provider: &'static str,
    },
    /// The gateway's own configuration cannot serve this request (e.g. a deployment's
    /// key variable is unset). Not the client's fault, not retryable by the client.
    Misconfigured {
        detail: String,
    },
    /// The client's key (or its team) may not do this: a model outside its list
    /// (`key_model_access_denied`, `team_model_access_denied`).
    Forbidden {
        code: &'static str,
        message: String,
        param: Option<&'static str>,
    },
    /// A rate, token or parallel-request limit refused the request.
    RateLimited(RateLimit),
    /// Something the gateway needs for this request is down (e.g. the key store while a
    /// key is not cached yet); retryable.
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
}

/// Which limit refused a request, and when it frees up: what the 429's body and headers
/// say (`retry-after`, `x-ratelimit-*`, as OpenAI and LiteLLM send them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Whose limit: `api_key`, `team`, `user`, `end_user`, `model_per_key`.
    pub entity: &'static str,
    /// Which limit: `requests`, `tokens`, `max_parallel_requests`.
    pub limit_type: &'static str,
    pub limit: u64,
    /// Whole seconds until the window resets (or a parallel slot is likely free).
    pub reset_secs: u64,
}

impl GatewayError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest { message: message.into(), param: Some(param.into()), code: "invalid_value" }
    }

    pub fn status(&self) -> u16 {
        match self {
            GatewayError::InvalidJson { .. }
            | GatewayError::InvalidRequest { .. }
            | GatewayError::UnsupportedParameter { .. } => 400,
            GatewayError::Unauthorized { .. } => 401,
            GatewayError::ModelNotFound { .. } | GatewayError::UnknownUrl { .. } => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::Provider(e) => e.status,
            GatewayError::ProviderMalformed { .. } | GatewayError::StreamIncomplete { .. } => 502,
            GatewayError::Misconfigured { .. } => 500,
            GatewayError::Forbidden { .. } => 403,
            GatewayError::RateLimited(_) => 429,
            GatewayError::Unavailable { .. } => 503,
        }
    }

    /// Response headers the error's answer carries beside its body.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            GatewayError::RateLimited(limit) => {
                let unit = if limit.limit_type == "tokens" { "tokens" } else { "requests" };
                let (limit_header, remaining_header, reset_header) = if unit == "tokens" {
                    ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
                } else {
                    ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
                };
                let reset = limit.reset_secs.max(1);
                vec![
                    ("retry-after", reset.to_string()),
                    (limit_header, limit.limit.to_string()),
                    (remaining_header, "0".to_string()),
                    (reset_header, format!("{reset}s")),
                ]
            }
            GatewayError::Unavailable { retry_after_secs, .. } => vec![("retry-after", retry_after_secs.to_string())],
            _ => Vec::new(),
        }
    }

    fn kind(&self) -> ErrorType {
        match self {
            GatewayError::InvalidJson { .. }
            | GatewayError::InvalidRequest { .. }
            | GatewayError::UnsupportedParameter { .. }
            | GatewayError::MethodNotAllowed { .. } => ErrorType::InvalidRequest,
            GatewayError::Unauthorized { .. } => ErrorType::Authentication,
            GatewayError::ModelNotFound { .. } | GatewayError::UnknownUrl { .. } => ErrorType::NotFound,
            GatewayError::Provider(e) => e.kind,
            GatewayError::ProviderMalformed { .. }
            | GatewayError::StreamIncomplete { .. }
            | GatewayError::Misconfigured { .. } => ErrorType::Server,
            GatewayError::Forbidden { .. } => ErrorType::Permission,
            GatewayError::RateLimited(limit) if limit.limit_type == "tokens" => ErrorType::Tokens,
            GatewayError::RateLimited(_) => ErrorType::Requests,
            GatewayError::Unavailable { .. } => ErrorType::ServiceUnavailable,
        }
    }

    fn code(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidJson { .. } => Some("invalid_json"),
            GatewayError::InvalidRequest { code, .. } => Some(code),
            GatewayError::UnsupportedParameter { .. } => Some("unsupported_parameter"),
            GatewayError::Unauthorized { .. } => Some("invalid_api_key"),
            GatewayError::ModelNotFound { .. } => Some("model_not_found"),
            GatewayError::UnknownUrl { .. } => Some("unknown_url"),
            GatewayError::MethodNotAllowed { .. } => Some("method_not_allowed"),
            GatewayError::Provider(e) => e.code.as_deref(),
            GatewayError::ProviderMalformed { .. } => Some("bad_upstream_response"),
            GatewayError::StreamIncomplete { .. } => Some("incomplete_stream"),
            GatewayError::Misconfigured { .. } => Some("gateway_misconfigured"),
            GatewayError::Forbidden { code, .. } => Some(code),
            GatewayError::RateLimited(_) => Some("rate_limit_exceeded"),
            GatewayError::Unavailable { .. } => Some("service_unavailable"),
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            GatewayError::UnsupportedParameter { param, .. } => Some(param),
            GatewayError::ModelNotFound { .. } => Some("model"),
            GatewayError::Provider(e) => e.param.as_deref(),
            GatewayError::Forbidden { param, .. } => *param,
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            GatewayError::InvalidJson { detail } => {
                format!("We could not parse the JSON body of your request: {detail}")
            }
            GatewayError::InvalidRequest { message, .. } => message.clone(),
            GatewayError::UnsupportedParameter { param, provider, detail } => match detail {
                Some(detail) => {
                    format!("Unsupported parameter: '{param}' is not supported by provider {provider}: {detail}")
                }
                None => format!("Unsupported parameter: '{param}' is not supported by provider {provider}."),
            },
            GatewayError::Unauthorized { message } => (*message).to_string(),
            GatewayError::ModelNotFound { model } => {
                format!("The model `{model}` does not exist or is not served by this gateway.")
            }
            GatewayError::UnknownUrl { method, path } => format!("Invalid URL ({method} {path})"),
            GatewayError::MethodNotAllowed { method, path } => {
                format!("Method {method} is not allowed for {path}")
            }
            GatewayError::Provider(e) => e.message.clone(),
            GatewayError::ProviderMalformed { provider, detail } => {
                format!("The {provider} provider returned a response the gateway could not read: {detail}")
            }
            GatewayError::StreamIncomplete { provider } => {
                format!("The {provider} provider's stream ended before the response was complete.")
            }
            GatewayError::Misconfigured { detail } => {
                format!("The gateway cannot serve this request: {detail}")
            }
            GatewayError::Forbidden { message, .. } | GatewayError::Unavailable { message, .. } => message.clone(),
            // LiteLLM's wording (parallel_request_limiter_v3), which its users' tools match.
            GatewayError::RateLimited(l) => format!(
                "Rate limit exceeded for {}. Limit type: {}. Current limit: {}, Remaining: 0. Limit resets in {} s.",
                l.entity,
                l.limit_type,
                l.limit,
                l.reset_secs.max(1)
            ),
        }
    }

    /// The OpenAI error envelope as JSON bytes.
    pub fn body(&self) -> Vec<u8> {
        let inner = match self {
            GatewayError::Provider(e) => e.innererror.as_deref(),
            _ => None,
        };
        let inner = inner.and_then(|raw| serde_json::from_str::<&RawValue>(raw).ok());
        let body = Body {
            message: &self.message(),
            kind: self.kind().as_str(),
            param: self.param(),
            code: self.code(),
            innererror: inner,
        };
        serde_json::to_vec(&Envelope { error: body }).unwrap_or_else(|_| FALLBACK_BODY.to_vec())
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    innererror: Option<&'a RawValue>,
}

const FALLBACK_BODY: &[u8] =
    br#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#;

/// Serialises an OpenAI error envelope. Serialising these borrowed strings cannot fail;
/// the fallback literal keeps that a fact rather than an `unwrap`.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&Envelope { error: Body { message, kind, param, code, innererror: None } })
        .unwrap_or_else(|_| FALLBACK_BODY.to_vec())
}

/// Replaces every occurrence of `secret` in `text`. Providers sometimes quote the key
/// they were sent in an error message; it must never reach the client.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.len() < 4 || !text.contains(secret) {
        return text.to_string();
    }
    text.replace(secret, "[REDACTED]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn envelope(e: &GatewayError) -> Value {
        serde_json::from_slice(&e.body()).unwrap()
    }

    #[test]
    fn every_variant_maps_to_status_and_openai_shape() {
        let cases: Vec<(GatewayError, u16, &str, Option<&str>, Option<&str>)> = vec![
            (
                GatewayError::InvalidJson { detail: "EOF".into() },
                400,
                "invalid_request_error",
                None,
                Some("invalid_json"),
            ),
            (
                GatewayError::invalid("messages", "bad"),
                400,
                "invalid_request_error",
                Some("messages"),
                Some("invalid_value"),
            ),
            (
                GatewayError::UnsupportedParameter { param: "n".into(), provider: "anthropic", detail: None },
                400,
                "invalid_request_error",
                Some("n"),
                Some("unsupported_parameter"),
            ),
            (
                GatewayError::Unauthorized { message: "no key" },
                401,
                "authentication_error",
                None,
                Some("invalid_api_key"),
            ),
            (
                GatewayError::ModelNotFound { model: "x".into() },
                404,
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            (
                GatewayError::UnknownUrl { method: "GET".into(), path: "/x".into() },
                404,
                "invalid_request_error",
                None,
                Some("unknown_url"),
            ),
            (
                GatewayError::MethodNotAllowed { method: "GET".into(), path: "/v1/chat/completions".into() },
                405,
                "invalid_request_error",
                None,
                Some("method_not_allowed"),
            ),
            (
                GatewayError::Forbidden {
                    code: "key_model_access_denied",
                    message: "This key may not use model x.".into(),
                    param: Some("model"),
                },
                403,
                "permission_error",
                Some("model"),
                Some("key_model_access_denied"),
            ),
            (
                GatewayError::RateLimited(RateLimit {
                    entity: "api_key",
                    limit_type: "requests",
                    limit: 10,
                    reset_secs: 42,
                }),
                429,
                "requests",
                None,
                Some("rate_limit_exceeded"),
            ),
            (
                GatewayError::RateLimited(RateLimit {
                    entity: "team",
                    limit_type: "tokens",
                    limit: 1000,
                    reset_secs: 0,
                }),
                429,
                "tokens",
                None,
                Some("rate_limit_exceeded"),
            ),
            (
                GatewayError::Unavailable { message: "The key store is unreachable.".into(), retry_after_secs: 1 },
                503,
                "service_unavailable",
                None,
                Some("service_unavailable"),
            ),
            (
                GatewayError::Provider(ProviderError {
                    status: 503,
                    kind: ErrorType::ServiceUnavailable,
                    code: Some("overloaded".into()),
                    param: None,
                    message: "Overloaded".into(),
                    innererror: None,
                }),
                503,
                "service_unavailable",
                None,
                Some("overloaded"),
            ),
            (
                GatewayError::ProviderMalformed { provider: "anthropic", detail: "x".into() },
                502,
                "server_error",
                None,
                Some("bad_upstream_response"),
            ),
            (
                GatewayError::StreamIncomplete { provider: "anthropic" },
                502,
                "server_error",
                None,
                Some("incomplete_stream"),
            ),
            (
                GatewayError::Misconfigured { detail: "x".into() },
                500,
                "server_error",
                None,
                Some("gateway_misconfigured"),
            ),
        ];
        for (err, status, kind, param, code) in cases {
            assert_eq!(err.status(), status, "{err:?}");
            let v = envelope(&err);
            let body = &v["error"];
            assert_eq!(body["type"], json!(kind), "{err:?}");
            assert_eq!(body["param"], json!(param), "{err:?}");
            assert_eq!(body["code"], json!(code), "{err:?}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(v.as_object().unwrap().len(), 1);
            assert_eq!(body.as_object().unwrap().len(), 4);
        }
    }

    #[test]
    fn limits_carry_retry_after_and_rate_limit_headers() {
        let err =
            GatewayError::RateLimited(RateLimit { entity: "api_key", limit_type: "tokens", limit: 500, reset_secs: 7 });
        assert_eq!(
            err.headers(),
            vec![
                ("retry-after", "7".to_string()),
                ("x-ratelimit-limit-tokens", "500".to_string()),
                ("x-ratelimit-remaining-tokens", "0".to_string()),
                ("x-ratelimit-reset-tokens", "7s".to_string()),
            ]
        );
        let parallel = GatewayError::RateLimited(RateLimit {
            entity: "team",
            limit_type: "max_parallel_requests",
            limit: 2,
            reset_secs: 0,
        });
        assert_eq!(parallel.headers()[0], ("retry-after", "1".to_string()), "never retry-after: 0");
        assert_eq!(parallel.headers()[1].0, "x-ratelimit-limit-requests");
        assert!(parallel.message().starts_with("Rate limit exceeded for team. Limit type: max_parallel_requests."));
        assert!(GatewayError::invalid("x", "y").headers().is_empty());
    }

    #[test]
    fn redact_removes_every_occurrence_and_ignores_tiny_secrets() {
        assert_eq!(redact("key sk-abc123 bad; sk-abc123", "sk-abc123"), "key [REDACTED] bad; [REDACTED]");
        assert_eq!(redact("nothing here", "sk-abc123"), "nothing here");
        assert_eq!(redact("a b c", "a"), "a b c");
    }
}
