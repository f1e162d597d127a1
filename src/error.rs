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
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            GatewayError::UnsupportedParameter { param, .. } => Some(param),
            GatewayError::ModelNotFound { .. } => Some("model"),
            GatewayError::Provider(e) => e.param.as_deref(),
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
    fn redact_removes_every_occurrence_and_ignores_tiny_secrets() {
        assert_eq!(redact("key sk-abc123 bad; sk-abc123", "sk-abc123"), "key [REDACTED] bad; [REDACTED]");
        assert_eq!(redact("nothing here", "sk-abc123"), "nothing here");
        assert_eq!(redact("a b c", "a"), "a b c");
    }
}
