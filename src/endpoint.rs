//! A deployment, as described by its Envoy endpoint's metadata
//! (`metadata.filter_metadata.switchyard` on the `lb_endpoint`):
//!
//! | key           | meaning                                                             |
//! |---------------|---------------------------------------------------------------------|
//! | `provider`    | wire format / adapter: `openai`, `anthropic` (required)             |
//! | `model`       | the provider's model name (default: the alias the client sent)      |
//! | `api_key_env` | environment variable holding the provider key (default: no auth)    |
//! | `api_base`    | `scheme://host[:port][/path]`; sets `:authority` and the path prefix |
//! | `max_tokens`  | `max_tokens` to send when the client gave none (providers needing it)|
//! | `api_version` | Azure: the `api-version` of deployment URLs (absent: the v1 API)     |
//! | `unsupported_params` | `default`, `drop` or `reject` (see [`ParamPolicy`])          |
//!
//! The scheme in `api_base` is informational: TLS is the cluster's transport socket.

use crate::pairs;
use crate::providers::{ParamPolicy, Provider};

pub const METADATA_NAMESPACE: &str = "switchyard";

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub provider: Provider,
    pub model: Option<String>,
    pub api_key_env: Option<String>,
    pub authority: String,
    pub base_path: String,
    pub max_tokens: Option<u32>,
    pub api_version: Option<String>,
    pub param_policy: ParamPolicy,
}

impl Endpoint {
    /// Decodes the metadata map Envoy returns for
    /// `xds.upstream_host_metadata.filter_metadata.switchyard`.
    pub fn from_metadata(bytes: &[u8]) -> Result<Endpoint, String> {
        let entries = pairs::decode(bytes).ok_or("endpoint metadata is malformed")?;
        let mut provider = None;
        let mut model = None;
        let mut api_key_env = None;
        let mut api_base = None;
        let mut max_tokens = None;
        let mut api_version = None;
        let mut param_policy = ParamPolicy::Default;
        for (key, value) in entries {
            let text = || {
                String::from_utf8(value.to_vec()).map_err(|_| format!("{} is not UTF-8", String::from_utf8_lossy(key)))
            };
            match key {
                b"provider" => {
                    let name = text()?;
                    provider = Some(Provider::from_name(&name).ok_or_else(|| format!("unknown provider {name:?}"))?);
                }
                b"model" => model = Some(text()?).filter(|m| !m.is_empty()),
                b"api_key_env" => api_key_env = Some(text()?).filter(|v| !v.is_empty()),
                b"api_base" => api_base = Some(text()?),
                b"max_tokens" => {
                    let n = pairs::metadata_number(value)
                        .filter(|n| *n >= 1.0 && *n <= f64::from(u32::MAX) && n.fract() == 0.0)
                        .ok_or("max_tokens must be a positive integer")?;
                    max_tokens = Some(n as u32);
                }
                b"api_version" => api_version = Some(text()?).filter(|v| !v.is_empty()),
                b"unsupported_params" => {
                    let name = text()?;
                    param_policy = ParamPolicy::from_name(&name)
                        .ok_or_else(|| format!("unsupported_params must be default, drop or reject, not {name:?}"))?;
                }
                // Other keys (prices, labels) belong to other consumers of the metadata.
                _ => {}
            }
        }
        let provider = provider.ok_or("endpoint metadata has no provider")?;
        let base = api_base.as_deref().unwrap_or(provider.default_api_base());
        let (authority, base_path) = split_api_base(base)?;
        // Model ids have slashes (`meta-llama/Llama-3.3-70B`, `accounts/fireworks/models/…`);
        // adapters that put one in a URL path escape or check it. The version goes into
        // a query string as it is.
        if model.as_deref().is_some_and(|m| !m.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(format!("model {model:?} may not contain spaces or control characters"));
        }
        if api_version.as_deref().is_some_and(|v| !v.bytes().all(|b| b.is_ascii_graphic() && !b"/?#&%".contains(&b))) {
            return Err(format!("api_version {api_version:?} may not contain spaces or any of / ? # & %"));
        }
        Ok(Endpoint { provider, model, api_key_env, authority, base_path, max_tokens, api_version, param_policy })
    }

    /// The model name to send: the deployment's, or else the alias the client used.
    pub fn model_or<'a>(&'a self, requested: &'a str) -> &'a str {
        self.model.as_deref().unwrap_or(requested)
    }
}

/// `https://api.example.com:8443/v1/` → (`api.example.com:8443`, `/v1`).
fn split_api_base(base: &str) -> Result<(String, String), String> {
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .ok_or_else(|| format!("api_base {base:?} must start with http:// or https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic() && b != b'@') {
        return Err(format!("api_base {base:?} has no valid host"));
    }
    if path.contains(['?', '#']) {
        return Err(format!("api_base {base:?} must not contain a query or fragment"));
    }
    Ok((authority.to_string(), path.trim_end_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        pairs::encode(pairs)
    }

    #[test]
    fn full_metadata() {
        let bytes = meta(&[
            ("provider", b"anthropic"),
            ("model", b"claude-sonnet-4-5"),
            ("api_key_env", b"ANTHROPIC_API_KEY"),
            ("api_base", b"http://127.0.0.1:8081/proxy/"),
            ("max_tokens", &2048f64.to_le_bytes()),
            ("input_cost_per_token", b"0.000003"),
        ]);
        let ep = Endpoint::from_metadata(&bytes).unwrap();
        assert_eq!(ep.provider, Provider::Anthropic);
        assert_eq!(ep.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(ep.api_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
        assert_eq!(ep.authority, "127.0.0.1:8081");
        assert_eq!(ep.base_path, "/proxy");
        assert_eq!(ep.max_tokens, Some(2048));
    }

    #[test]
    fn defaults_per_provider() {
        let ep = Endpoint::from_metadata(&meta(&[("provider", b"openai")])).unwrap();
        assert_eq!((ep.authority.as_str(), ep.base_path.as_str()), ("api.openai.com", "/v1"));
        assert_eq!(ep.model_or("gpt-4o"), "gpt-4o");
        let ep = Endpoint::from_metadata(&meta(&[("provider", b"anthropic"), ("max_tokens", b"512")])).unwrap();
        assert_eq!((ep.authority.as_str(), ep.base_path.as_str()), ("api.anthropic.com", ""));
        assert_eq!(ep.max_tokens, Some(512));
        let ep = Endpoint::from_metadata(&meta(&[("provider", b"gemini")])).unwrap();
        assert_eq!((ep.authority.as_str(), ep.base_path.as_str()), ("generativelanguage.googleapis.com", ""));
    }

    #[test]
    fn model_ids_may_have_slashes_and_colons() {
        for model in
            ["meta-llama/Llama-3.3-70B-Instruct-Turbo", "accounts/fireworks/models/llama-v3p1-8b", "llama3.2:3b"]
        {
            let ep = Endpoint::from_metadata(&meta(&[("provider", b"together"), ("model", model.as_bytes())])).unwrap();
            assert_eq!(ep.model.as_deref(), Some(model));
        }
    }

    #[test]
    fn bad_metadata_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![1, 2, 3],
            meta(&[("model", b"x")]),
            meta(&[("provider", b"carrier-pigeon")]),
            meta(&[("provider", b"openai"), ("api_base", b"ftp://x")]),
            meta(&[("provider", b"openai"), ("api_base", b"https://")]),
            meta(&[("provider", b"openai"), ("api_base", b"https://u@h/")]),
            meta(&[("provider", b"openai"), ("api_base", b"https://h/v1?x=1")]),
            meta(&[("provider", b"openai"), ("max_tokens", b"0")]),
            meta(&[("provider", b"openai"), ("max_tokens", b"1.5")]),
            meta(&[("provider", &[0xff, 0xfe])]),
            meta(&[("provider", b"openai"), ("model", b"gpt 4")]),
            meta(&[("provider", b"azure"), ("api_version", b"2024-10-21&x=1")]),
            meta(&[("provider", b"openai"), ("unsupported_params", b"ignore")]),
        ];
        for bytes in cases {
            assert!(Endpoint::from_metadata(&bytes).is_err(), "{bytes:?}");
        }
    }
}

/// A deployment ready to serve: its endpoint settings and its key.
#[derive(Debug, PartialEq)]
pub struct Deployment {
    pub endpoint: Endpoint,
    pub api_key: Option<String>,
}
