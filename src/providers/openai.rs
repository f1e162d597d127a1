//! Any server speaking OpenAI Chat Completions (OpenAI itself, vLLM, Ollama's `/v1`, …).
//!
//! Requests pass through with the model name rewritten; successful responses are not
//! touched at all (no buffering). Error bodies are normalised to the OpenAI envelope,
//! since "compatible" servers disagree on error shapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::stream::{StreamContext, StreamTranslator};
use super::{
    body_excerpt, handling_for, provider_error, AuthScheme, ErrorDetails, ProviderAdapter, RequestContext,
    ResponseContext, ResponseHandling, TranslatedResponse, UpstreamRequest,
};
use crate::error::{ErrorType, GatewayError};
use crate::json::{parse_request, Str};

pub struct OpenAi;

impl ProviderAdapter for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn auth(&self) -> AuthScheme {
        AuthScheme::Bearer
    }

    fn chat_request(&self, ctx: &RequestContext, body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
        let fields: TopLevel = parse_request(body)?;
        let mut edits: Vec<(&str, String)> = Vec::new();
        if let Some(model) = &ctx.endpoint.model {
            let wanted = serde_json::to_string(model).unwrap_or_default();
            if fields.get("model") != Some(wanted.as_str()) {
                edits.push(("model", wanted));
            }
        }
        let stream = fields.get("stream").and_then(|raw| serde_json::from_str::<bool>(raw).ok()).unwrap_or(false);
        let mut include_usage = false;
        if stream {
            // Usage is always requested, so the gateway can meter every stream; the
            // usage chunk is dropped again for clients that did not ask for it.
            let mut options: Map<String, Value> =
                fields.get("stream_options").and_then(|raw| serde_json::from_str(raw).ok()).unwrap_or_default();
            include_usage = options.get("include_usage").and_then(Value::as_bool).unwrap_or(false);
            if !include_usage {
                options.insert("include_usage".into(), Value::Bool(true));
                edits.push(("stream_options", serde_json::to_string(&options).unwrap_or_default()));
            }
        }
        Ok(UpstreamRequest {
            path: format!("{}/chat/completions", ctx.endpoint.base_path),
            body: (!edits.is_empty()).then(|| fields.rewrite(&edits)),
            stream,
            include_usage,
            ..UpstreamRequest::default()
        })
    }

    fn response_handling(&self, status: u16, stream: bool) -> ResponseHandling {
        handling_for(status, stream, ResponseHandling::PassThrough)
    }

    fn chat_stream(&self, ctx: StreamContext, api_key: Option<String>) -> Box<dyn StreamTranslator> {
        Box::new(stream::OpenAiStream::new(ctx, api_key))
    }

    fn chat_response(&self, ctx: &ResponseContext, status: u16, body: &[u8]) -> TranslatedResponse {
        TranslatedResponse::error(&normalise_error(ctx, status, body))
    }
}

/// The top-level fields of a JSON object, values untouched, in arrival order.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl TopLevel<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.get())
    }

    /// Re-encodes the object with each edit's value (raw JSON) in place of the field's,
    /// appending fields that were absent; everything else is copied byte for byte.
    fn rewrite(&self, edits: &[(&str, String)]) -> Vec<u8> {
        let size: usize = self.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>()
            + edits.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>();
        let mut out = Vec::with_capacity(size + 2);
        let field = |out: &mut Vec<u8>, key: &str, value: &str| {
            out.push(if out.is_empty() { b'{' } else { b',' });
            // Writing a string to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        };
        for (key, value) in &self.0 {
            let edited = edits.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            field(&mut out, key, edited.unwrap_or(value.get()));
        }
        for (key, value) in edits {
            if self.get(key).is_none() {
                field(&mut out, key, value);
            }
        }
        if out.is_empty() {
            out.push(b'{');
        }
        out.push(b'}');
        out
    }
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(TopLevel(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// The error shapes seen from OpenAI-compatible servers: OpenAI's envelope (`error`
/// an object), a bare string under `error`, or flat bodies with `message`/`detail`
/// (Mistral, older vLLM, FastAPI defaults).
#[derive(Deserialize)]
struct LooseError<'a> {
    #[serde(default, borrow)]
    error: Option<ErrorField<'a>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    detail: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField<'a> {
    Object(EnvelopeError<'a>),
    Text(#[serde(borrow)] Cow<'a, str>),
}

#[derive(Deserialize)]
struct EnvelopeError<'a> {
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default, borrow)]
    param: Option<Cow<'a, str>>,
}

pub(crate) fn normalise_error(ctx: &ResponseContext, status: u16, body: &[u8]) -> GatewayError {
    let parsed: Option<LooseError> = serde_json::from_slice(body).ok();
    let (message, details) = match parsed {
        Some(LooseError { error: Some(ErrorField::Object(e)), .. }) => {
            // Providers use numbers (OpenRouter) as well as strings for `code`.
            let code = match e.code {
                Some(serde_json::Value::String(s)) => Some(s),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let details = ErrorDetails {
                kind: e.kind.as_deref().and_then(ErrorType::from_openai),
                code,
                param: e.param.map(Cow::into_owned),
            };
            (e.message.map(Cow::into_owned), details)
        }
        Some(LooseError { error: Some(ErrorField::Text(text)), .. }) => {
            (Some(text.into_owned()), ErrorDetails::default())
        }
        Some(LooseError { message: Some(m), .. }) => (Some(m.into_owned()), ErrorDetails::default()),
        Some(LooseError { detail: Some(d), .. }) => {
            let text = serde_json::from_str::<String>(d.get()).unwrap_or_else(|_| d.get().to_string());
            (Some(text), ErrorDetails::default())
        }
        _ => (None, ErrorDetails::default()),
    };
    let message = message.unwrap_or_else(|| {
        let excerpt = body_excerpt(body);
        if excerpt.is_empty() {
            format!("The provider returned HTTP {status} with no error message.")
        } else {
            format!("The provider returned HTTP {status}: {excerpt}")
        }
    });
    provider_error(ctx, status, &message, details)
}

mod stream;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;
    use crate::endpoint::Endpoint;
    use crate::providers::Provider;
    use serde_json::{json, Value};

    fn endpoint(model: Option<&str>) -> Endpoint {
        Endpoint {
            provider: Provider::OpenAi,
            model: model.map(str::to_string),
            api_key_env: None,
            authority: "api.openai.com".into(),
            base_path: "/v1".into(),
            max_tokens: None,
        }
    }

    fn translate(model: Option<&str>, body: &str) -> Result<UpstreamRequest, GatewayError> {
        let ep = endpoint(model);
        let config = UpstreamConfig::default();
        OpenAi.chat_request(&RequestContext { endpoint: &ep, config: &config }, body.as_bytes())
    }

    #[test]
    fn rewrites_only_the_model_and_keeps_everything_else_byte_for_byte() {
        let body =
            r#"{"model":"alias","messages":[{"role":"user","content":"h\u00e9"}],"logit_bias":{"1": -100},"x":[1,2]}"#;
        let out = translate(Some("gpt-4o-mini"), body).unwrap();
        assert_eq!(out.path, "/v1/chat/completions");
        assert_eq!(
            String::from_utf8(out.body.unwrap()).unwrap(),
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\u00e9"}],"logit_bias":{"1": -100},"x":[1,2]}"#
        );
    }

    #[test]
    fn leaves_the_body_alone_when_the_model_already_matches_or_is_not_set() {
        let body = r#"{"model":"gpt-4o","messages":[]}"#;
        assert_eq!(translate(Some("gpt-4o"), body).unwrap().body, None);
        assert_eq!(translate(None, body).unwrap().body, None);
    }

    #[test]
    fn successful_responses_pass_through_unbuffered_and_streams_are_read() {
        assert_eq!(OpenAi.response_handling(200, false), ResponseHandling::PassThrough);
        assert_eq!(OpenAi.response_handling(200, true), ResponseHandling::Stream);
        assert_eq!(OpenAi.response_handling(429, false), ResponseHandling::Translate);
        assert_eq!(OpenAi.response_handling(429, true), ResponseHandling::Translate);
    }

    #[test]
    fn streams_always_ask_for_usage_and_remember_whether_the_client_did() {
        let cases = [
            (r#"{"model":"m","messages":[],"stream":true}"#, r#"{"include_usage":true}"#, false),
            (
                r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_obfuscation":false}}"#,
                r#"{"include_obfuscation":false,"include_usage":true}"#,
                false,
            ),
            (r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#, "", true),
        ];
        for (body, options, client_asked) in cases {
            let out = translate(None, body).unwrap();
            assert!(out.stream);
            assert_eq!(out.include_usage, client_asked, "{body}");
            match out.body {
                Some(b) => {
                    let sent: Value = serde_json::from_slice(&b).unwrap();
                    assert_eq!(sent["stream_options"], serde_json::from_str::<Value>(options).unwrap(), "{body}");
                }
                None => assert!(options.is_empty(), "{body}"),
            }
        }
        let plain = translate(None, r#"{"model":"m","messages":[],"stream":false}"#).unwrap();
        assert!(!plain.stream && plain.body.is_none());
    }

    #[test]
    fn normalises_every_error_shape() {
        let ctx = ResponseContext { created: 0, api_key: Some("sk-test-secret") };
        let cases: Vec<(u16, &[u8], u16, &str, Value, Value)> = vec![
            (
                401,
                br#"{"error":{"message":"Incorrect API key provided: sk-test-secret","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
                401, "Incorrect API key provided: [REDACTED]", json!("invalid_api_key"), json!(null),
            ),
            (
                400,
                br#"{"error":{"message":"bad temp","type":"invalid_request_error","param":"temperature","code":null}}"#,
                400, "bad temp", json!(null), json!("temperature"),
            ),
            (429, br#"{"error":{"message":"slow down","code":429}}"#, 429, "slow down", json!("429"), json!(null)),
            (422, br#"{"object":"error","message":"vllm says no","type":"BadRequestError","code":400}"#, 400, "vllm says no", json!(null), json!(null)),
            (404, br#"{"detail":"Not Found"}"#, 404, "Not Found", json!(null), json!(null)),
            (500, br#"{"error":"boom"}"#, 500, "boom", json!(null), json!(null)),
            (502, b"<html>bad gateway</html>", 502, "The provider returned HTTP 502: <html>bad gateway</html>", json!("bad_gateway"), json!(null)),
            (503, b"", 503, "The provider returned HTTP 503 with no error message.", json!("overloaded"), json!(null)),
        ];
        for (status, body, want_status, want_message, want_code, want_param) in cases {
            let out = OpenAi.chat_response(&ctx, status, body);
            assert_eq!(out.status, want_status, "{}", String::from_utf8_lossy(body));
            let v: Value = serde_json::from_slice(&out.body).unwrap();
            assert_eq!(v["error"]["message"], json!(want_message));
            assert_eq!(v["error"]["code"], want_code, "{}", String::from_utf8_lossy(body));
            assert_eq!(v["error"]["param"], want_param);
        }
    }
}
