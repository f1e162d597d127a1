//! A deployment, as described by its Envoy endpoint's metadata
//! (`metadata.filter_metadata.switchyard` on the `lb_endpoint`).
//!
//! The metadata schema is defined once, as data: [`METADATA_KEYS`], one row per key with
//! its kind of value, whether it is required and what it means. Both decoders work from
//! that table, so they accept and refuse the same values with the same messages:
//!
//! - [`Endpoint::from_metadata`]: the bytes the filter reads from Envoy (proxy-wasm pairs,
//!   see [`crate::pairs`]);
//! - [`Endpoint::from_json`]: the same metadata as a JSON object, as the config lint
//!   (`switchyard check-endpoints`, `tools/gatewayconf.py`) and a renderer of Envoy YAML
//!   have it.
//!
//! They differ on two points, deliberately. Keys outside the table are ignored by the
//! filter (another consumer may add its own without a filter release) but refused in JSON,
//! where an unknown key is most likely a typo (`api_key_evn`). And Envoy's encoding cannot
//! tell text from a number's bytes, so a number where text belongs is "not UTF-8" (or a
//! control character) in one and "must be a string" in the other.
//!
//! The price keys are LiteLLM's names for a deployment's prices (`input_cost_per_token`,
//! …, in USD per token), so a renderer of LiteLLM configs carries them over as they are.
//! Each replaces the built-in catalog's price for the deployment's model ([`crate::pricing`]);
//! `base_model` names the catalog model whose prices apply when `model` is a name the
//! catalog cannot know (an Azure deployment's). [`Endpoint::prices`] is the result.
//!
//! The scheme in `api_base` is informational: TLS is the cluster's transport socket.

use serde_json::{json, Value};

use crate::pairs;
use crate::pricing::{self, Overrides, Prices};
use crate::providers::openai::presets::PRESETS;
use crate::providers::{anthropic, gemini, AuthScheme, ParamPolicy, Provider};

pub const METADATA_NAMESPACE: &str = "switchyard";

/// One key of the endpoint metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub reader: Reader,
    /// One line: what the key means, and what its absence means.
    pub meaning: &'static str,
    /// Where the filter keeps the value.
    field: Field,
}

/// The kinds of value a key takes, and the rules each is checked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The name of a provider: `anthropic`, `gemini`, or an OpenAI-compatible preset's
    /// (`openai`, `azure`, `mistral`, …; see [`provider_names`]).
    Provider,
    /// Any UTF-8 text; empty is the same as absent.
    Text,
    /// Printable ASCII without spaces or any of `forbidden` (it goes into a URL); empty is
    /// the same as absent.
    Token { forbidden: &'static str },
    /// `http://` or `https://`, a host with an optional port and no user, an optional
    /// path; no query or fragment.
    BaseUrl,
    /// A whole number from 1 to 4294967295.
    PositiveInteger,
    /// A finite number, 0 or more (a price).
    NonNegativeNumber,
    /// One of these words.
    OneOf(&'static [&'static str]),
}

/// Which part of Switchyard reads a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The upstream filter, on every attempt.
    Filter,
    /// The sidecar's spend ledger: checked here, not used by the filter. (No key today.)
    SpendLedger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Provider,
    Model,
    ApiKeyEnv,
    ApiBase,
    MaxTokens,
    ApiVersion,
    ParamPolicy,
    BaseModel,
    Price(Price),
    /// Checked here, read elsewhere.
    #[allow(dead_code)]
    Other,
}

/// Which of [`Overrides`] a price key sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Price {
    Input,
    Output,
    CacheRead,
    CacheWrite5m,
    CacheWrite1h,
    Reasoning,
    InputAbove200k,
    OutputAbove200k,
    CacheReadAbove200k,
}

const PARAM_POLICIES: &[&str] = &["default", "drop", "reject"];

/// The endpoint metadata schema. `switchyard schema` prints it; the README's "Endpoint
/// metadata" table says the same in prose.
pub static METADATA_KEYS: [Key; 17] = [
    Key {
        name: "provider",
        kind: Kind::Provider,
        required: true,
        reader: Reader::Filter,
        meaning: "the wire format, auth and defaults: anthropic, gemini, openai or an OpenAI-compatible preset",
        field: Field::Provider,
    },
    Key {
        name: "model",
        kind: Kind::Token { forbidden: "" },
        required: false,
        reader: Reader::Filter,
        meaning: "the provider's model name (Azure: the deployment name); absent: the model the client asked for",
        field: Field::Model,
    },
    Key {
        name: "api_key_env",
        kind: Kind::Text,
        required: false,
        reader: Reader::Filter,
        meaning: "the environment variable holding the provider key (also in the VM's host_env_keys); absent: no auth",
        field: Field::ApiKeyEnv,
    },
    Key {
        name: "api_base",
        kind: Kind::BaseUrl,
        required: false,
        reader: Reader::Filter,
        meaning: "scheme://host[:port][/path]: the :authority and path prefix of requests; absent: the provider's API",
        field: Field::ApiBase,
    },
    Key {
        name: "max_tokens",
        kind: Kind::PositiveInteger,
        required: false,
        reader: Reader::Filter,
        meaning: "max_tokens to send when the client gave none, to providers that need one; absent: the filter's \
                  default_max_tokens",
        field: Field::MaxTokens,
    },
    Key {
        name: "api_version",
        kind: Kind::Token { forbidden: "/?#&%" },
        required: false,
        reader: Reader::Filter,
        meaning: "Azure: the api-version of deployment URLs; absent: the /openai/v1 API",
        field: Field::ApiVersion,
    },
    Key {
        name: "unsupported_params",
        kind: Kind::OneOf(PARAM_POLICIES),
        required: false,
        reader: Reader::Filter,
        meaning: "parameters the provider lacks: default refuses those whose absence changes the answer and drops \
                  sampling knobs, drop drops all, reject refuses all; absent: default",
        field: Field::ParamPolicy,
    },
    Key {
        name: "input_cost_per_token",
        kind: Kind::NonNegativeNumber,
        required: false,
        reader: Reader::Filter,
        meaning: "USD per uncached input token; absent: the catalog's price for the model (base_model, else model)",
        field: Field::Price(Price::Input),
    },
    Key {
        name: "output_cost_per_token",
        kind: Kind::NonNegativeNumber,
        required: false,
        reader: Reader::Filter,
        meaning: "USD per output token, reasoning included; absent: the catalog's price",
        field: Field::Price(Price::Output),
    },
    Key {
        name: "cache_read_input_token_cost",
        kind: Kind::NonNegativeNumber,
        required: false,
        reader: Reader::Filter,
        meaning: "USD per input token read from the prompt cache; absent: the catalog's price, else the input price",
        field: Field::Price(Price::CacheRead),
    },
    Key {
        name: "cache_creation_input_token_cost",
        kind: Kind::NonNegativeNumber,
        required: false,
        reader: Reader::Filter,
        meaning: "USD per input token written to the prompt cache (5 minutes); absent: the catalog's price, else \
                  the input price",
        field: Field::Price(Price::CacheWrite5m),
    },
    Key {
        name: "cache_creation_input_token_cost_above_1hr",
        kind: Kind::NonNegativeNumber,
        required: false,
        reader: Reader::Filter,
        meaning: "USD per input token written to the prompt cache for 1 hour; absent: the catalog's price, else \
                  the 5-minute write price",
        field: Field::Price(Price::CacheWrite1h),
    },
    Key {
        name: "output_cost_per_reasoning_token",
        kind: Kind::NonNegativeNumber,
        required: false,
        reader: Reader::Filter,
        meaning: "USD per output token spent reasoning; absent: the catalog's price, else the output price",
        field: Field::Price(Price::Reasoning),
    },
    Key {
        name: "input_cost_per_token_above_200k_tokens",
        kind: Kind::NonNegativeNumber,
        required: false,
        reader: Reader::Filter,
        meaning: "USD per uncached input token of answers whose prompt is above 200000 tokens; absent: the \
                  catalog's, else input_cost_per_token",
        field: Field::Price(Price::InputAbove200k),
    },
    Key {
        name: "output_cost_per_token_above_200k_tokens",
        kind: Kind::NonNegativeNumber,
        required: false,
        reader: Reader::Filter,
        meaning: "USD per output token of answers whose prompt is above 200000 tokens; absent: the catalog's, \
                  else output_cost_per_token",
        field: Field::Price(Price::OutputAbove200k),
    },
    Key {
        name: "cache_read_input_token_cost_above_200k_tokens",
        kind: Kind::NonNegativeNumber,
        required: false,
        reader: Reader::Filter,
        meaning: "USD per cached input token of answers whose prompt is above 200000 tokens; absent: the \
                  catalog's, else cache_read_input_token_cost",
        field: Field::Price(Price::CacheReadAbove200k),
    },
    Key {
        name: "base_model",
        kind: Kind::Token { forbidden: "" },
        required: false,
        reader: Reader::Filter,
        meaning: "the catalog model whose prices and limits apply (LiteLLM's model_info.base_model, e.g. gpt-4.1 \
                  for an Azure deployment); absent: model",
        field: Field::BaseModel,
    },
];

/// The key named `name`, if the schema has it.
pub fn key(name: &[u8]) -> Option<&'static Key> {
    METADATA_KEYS.iter().find(|k| k.name.as_bytes() == name)
}

/// Every name `provider` accepts: the adapters', then the OpenAI-compatible presets'.
pub fn provider_names() -> impl Iterator<Item = &'static str> {
    [anthropic::NAME, gemini::NAME].into_iter().chain(PRESETS.iter().map(|p| p.name))
}

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
    /// The catalog model whose prices and limits apply, if not `model`.
    pub base_model: Option<String>,
    /// Prices set by the metadata, over the catalog's.
    pub price_overrides: Overrides,
}

impl Endpoint {
    /// Decodes the metadata map Envoy returns for
    /// `xds.upstream_host_metadata.filter_metadata.switchyard`. Keys the schema does not
    /// list are ignored: they belong to other consumers of the metadata.
    pub fn from_metadata(bytes: &[u8]) -> Result<Endpoint, String> {
        let entries = pairs::decode(bytes).ok_or("endpoint metadata is malformed")?;
        let mut fields = Fields::default();
        for (name, value) in entries {
            if let Some(key) = key(name) {
                fields.set(key, Raw::Envoy(value))?;
            }
        }
        fields.finish()
    }

    /// Checks metadata written as a JSON object (the lint's and a renderer's view of the
    /// YAML) by the same rules as [`Endpoint::from_metadata`], and refuses keys the schema
    /// does not list.
    pub fn from_json(metadata: &Value) -> Result<Endpoint, String> {
        let object = metadata.as_object().ok_or("endpoint metadata must be an object")?;
        let mut fields = Fields::default();
        for (name, value) in object {
            let key = key(name.as_bytes()).ok_or_else(|| {
                let known: Vec<&str> = METADATA_KEYS.iter().map(|k| k.name).collect();
                format!("unknown metadata key {name:?} (known: {})", known.join(", "))
            })?;
            fields.set(key, Raw::Json(value))?;
        }
        fields.finish()
    }

    /// The model name to send: the deployment's, or else the alias the client used.
    pub fn model_or<'a>(&'a self, requested: &'a str) -> &'a str {
        self.model.as_deref().unwrap_or(requested)
    }

    /// The catalog entry of the deployment's model: `base_model`'s (the provider's model of
    /// that name, else LiteLLM's key: `azure/gpt-4.1`, `gpt-4.1`), else `model`'s.
    pub fn catalog_entry(&self) -> Option<&'static pricing::Entry> {
        self.catalog_entry_for(self.model.as_deref())
    }

    fn catalog_entry_for(&self, model: Option<&str>) -> Option<&'static pricing::Entry> {
        let base = self
            .base_model
            .as_deref()
            .and_then(|b| pricing::lookup(self.provider, b).or_else(|| pricing::lookup_litellm(b)));
        base.or_else(|| model.and_then(|m| pricing::lookup(self.provider, m)))
    }

    /// The deployment's prices: the catalog's for its model (see [`Endpoint::catalog_entry`])
    /// with the metadata's prices over them; `None` when neither the catalog nor the
    /// metadata prices it (a deployment without `model` is priced by `base_model` or its
    /// metadata only: see [`Endpoint::prices_for`]).
    pub fn prices(&self) -> Option<Prices> {
        Prices::resolve(self.provider, self.catalog_entry(), &self.price_overrides)
    }

    /// [`Endpoint::prices`] for a request for `requested`: a deployment without `model`
    /// serves the model the client asked for.
    pub fn prices_for(&self, requested: &str) -> Option<Prices> {
        Prices::resolve(self.provider, self.catalog_entry_for(Some(self.model_or(requested))), &self.price_overrides)
    }
}

/// A value as it arrived.
#[derive(Clone, Copy)]
enum Raw<'a> {
    /// Envoy's encoding: strings as their bytes, numbers as 8-byte doubles.
    Envoy(&'a [u8]),
    Json(&'a Value),
}

impl<'a> Raw<'a> {
    fn text(self, name: &str) -> Result<&'a str, String> {
        match self {
            Raw::Envoy(bytes) => std::str::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8")),
            Raw::Json(Value::String(s)) => Ok(s),
            Raw::Json(other) => Err(format!("{name} must be a string, not {other}")),
        }
    }

    /// A price in USD per token as femto-USD, from the decimal text when it has one (exact),
    /// else from the double (Envoy's YAML numbers).
    fn femto(self) -> Option<u64> {
        let text = match self {
            Raw::Envoy(bytes) => std::str::from_utf8(bytes).ok(),
            Raw::Json(Value::String(s)) => Some(s.as_str()),
            Raw::Json(_) => None,
        };
        text.and_then(pricing::femto_from_usd).or_else(|| self.number().and_then(pricing::femto_from_f64))
    }

    /// A number, or a string holding one (YAML may quote numbers).
    fn number(self) -> Option<f64> {
        match self {
            Raw::Envoy(bytes) => pairs::metadata_number(bytes),
            Raw::Json(Value::Number(n)) => n.as_f64(),
            Raw::Json(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Raw::Json(_) => None,
        }
        .filter(|n| n.is_finite())
    }
}

/// A value that passed its kind's rules.
enum Parsed {
    Provider(Provider),
    /// `None` for an empty text.
    Text(Option<String>),
    /// `api_base` as (authority, path prefix).
    BaseUrl(String, String),
    Integer(u32),
    /// A price, in femto-USD per token.
    Price(u64),
    Word(&'static str),
}

impl Kind {
    fn parse(self, name: &str, raw: Raw) -> Result<Parsed, String> {
        Ok(match self {
            Kind::Provider => {
                let text = raw.text(name)?;
                Parsed::Provider(Provider::from_name(text).ok_or_else(|| format!("unknown {name} {text:?}"))?)
            }
            Kind::Text => Parsed::Text(Some(raw.text(name)?).filter(|t| !t.is_empty()).map(str::to_string)),
            Kind::Token { forbidden } => {
                let text = raw.text(name)?;
                if !text.bytes().all(|b| b.is_ascii_graphic() && !forbidden.as_bytes().contains(&b)) {
                    let also = forbidden.chars().map(String::from).collect::<Vec<_>>().join(" ");
                    let also = if also.is_empty() { String::new() } else { format!(" or any of {also}") };
                    return Err(format!("{name} {text:?} must be printable ASCII without spaces{also}"));
                }
                Parsed::Text(Some(text).filter(|t| !t.is_empty()).map(str::to_string))
            }
            Kind::BaseUrl => {
                let (authority, path) = split_api_base(name, raw.text(name)?)?;
                Parsed::BaseUrl(authority, path)
            }
            Kind::PositiveInteger => {
                let n = raw
                    .number()
                    .filter(|n| *n >= 1.0 && *n <= f64::from(u32::MAX) && n.fract() == 0.0)
                    .ok_or_else(|| format!("{name} must be a positive integer"))?;
                Parsed::Integer(n as u32)
            }
            Kind::NonNegativeNumber => {
                raw.number().filter(|n| *n >= 0.0).ok_or_else(|| format!("{name} must be a number, 0 or more"))?;
                Parsed::Price(raw.femto().ok_or_else(|| format!("{name} is above 18446 USD a token"))?)
            }
            Kind::OneOf(words) => {
                let text = raw.text(name)?;
                let word = words
                    .iter()
                    .find(|w| **w == text)
                    .ok_or_else(|| format!("{name} must be {}, not {text:?}", or_list(words)))?;
                Parsed::Word(word)
            }
        })
    }
}

/// `a, b or c`.
fn or_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [only] => (*only).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The values seen so far, by field.
#[derive(Default)]
struct Fields {
    seen: Vec<&'static str>,
    provider: Option<Provider>,
    model: Option<String>,
    api_key_env: Option<String>,
    base: Option<(String, String)>,
    max_tokens: Option<u32>,
    api_version: Option<String>,
    param_policy: ParamPolicy,
    base_model: Option<String>,
    prices: Overrides,
}

impl Fields {
    fn set(&mut self, key: &'static Key, raw: Raw) -> Result<(), String> {
        let parsed = key.kind.parse(key.name, raw)?;
        match (key.field, parsed) {
            (Field::Provider, Parsed::Provider(provider)) => self.provider = Some(provider),
            (Field::Model, Parsed::Text(model)) => self.model = model,
            (Field::ApiKeyEnv, Parsed::Text(var)) => self.api_key_env = var,
            (Field::ApiBase, Parsed::BaseUrl(authority, path)) => self.base = Some((authority, path)),
            (Field::MaxTokens, Parsed::Integer(n)) => self.max_tokens = Some(n),
            (Field::ApiVersion, Parsed::Text(version)) => self.api_version = version,
            (Field::ParamPolicy, Parsed::Word(word)) => {
                self.param_policy =
                    ParamPolicy::from_name(word).ok_or_else(|| format!("{}: no policy {word:?}", key.name))?;
            }
            (Field::BaseModel, Parsed::Text(model)) => self.base_model = model,
            (Field::Price(price), Parsed::Price(femto)) => {
                let o = &mut self.prices;
                let slot = match price {
                    Price::Input => &mut o.input,
                    Price::Output => &mut o.output,
                    Price::CacheRead => &mut o.cache_read,
                    Price::CacheWrite5m => &mut o.cache_write_5m,
                    Price::CacheWrite1h => &mut o.cache_write_1h,
                    Price::Reasoning => &mut o.reasoning,
                    Price::InputAbove200k => &mut o.input_above_200k,
                    Price::OutputAbove200k => &mut o.output_above_200k,
                    Price::CacheReadAbove200k => &mut o.cache_read_above_200k,
                };
                *slot = Some(femto);
            }
            (Field::Other, _) => {}
            // A schema row whose kind its field cannot hold (a unit test decodes every row).
            _ => return Err(format!("{}: the schema's kind does not fit the filter's field", key.name)),
        }
        self.seen.push(key.name);
        Ok(())
    }

    fn finish(self) -> Result<Endpoint, String> {
        if let Some(missing) = METADATA_KEYS.iter().find(|k| k.required && !self.seen.contains(&k.name)) {
            return Err(format!("endpoint metadata has no {}", missing.name));
        }
        let provider = self.provider.ok_or("endpoint metadata has no provider")?;
        let (authority, base_path) = match self.base {
            Some(base) => base,
            None => split_api_base("api_base", provider.default_api_base())?,
        };
        let Fields { model, api_key_env, max_tokens, api_version, param_policy, base_model, prices, .. } = self;
        Ok(Endpoint {
            provider,
            model,
            api_key_env,
            authority,
            base_path,
            max_tokens,
            api_version,
            param_policy,
            base_model,
            price_overrides: prices,
        })
    }
}

/// `https://api.example.com:8443/v1/` → (`api.example.com:8443`, `/v1`).
fn split_api_base(name: &str, base: &str) -> Result<(String, String), String> {
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .ok_or_else(|| format!("{name} {base:?} must start with http:// or https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic() && b != b'@') {
        return Err(format!("{name} {base:?} has no valid host"));
    }
    if path.contains(['?', '#']) {
        return Err(format!("{name} {base:?} must not contain a query or fragment"));
    }
    Ok((authority.to_string(), path.trim_end_matches('/').to_string()))
}

/// The schema and the providers as JSON (`switchyard schema`).
pub fn schema_json() -> Value {
    let keys: Vec<Value> = METADATA_KEYS.iter().map(|k| k.to_json()).collect();
    let providers: Vec<Value> = provider_names()
        .filter_map(Provider::from_name)
        .map(|p| {
            let format = match p {
                Provider::OpenAi(_) => "openai",
                other => other.name(),
            };
            let auth_header = match p.auth() {
                AuthScheme::Bearer => "authorization",
                AuthScheme::Header(name) => name,
            };
            json!({"name": p.name(), "format": format, "api_base": p.default_api_base(), "auth_header": auth_header})
        })
        .collect();
    json!({"namespace": METADATA_NAMESPACE, "keys": keys, "providers": providers})
}

impl Key {
    fn to_json(self) -> Value {
        let kind = match self.kind {
            Kind::Provider => "provider",
            Kind::Text => "text",
            Kind::Token { .. } => "token",
            Kind::BaseUrl => "base_url",
            Kind::PositiveInteger => "positive_integer",
            Kind::NonNegativeNumber => "non_negative_number",
            Kind::OneOf(_) => "enum",
        };
        let reader = match self.reader {
            Reader::Filter => "filter",
            Reader::SpendLedger => "spend_ledger",
        };
        let mut out = serde_json::Map::new();
        out.insert("name".into(), json!(self.name));
        out.insert("kind".into(), json!(kind));
        match self.kind {
            Kind::OneOf(words) => {
                out.insert("values".into(), json!(words));
            }
            Kind::Provider => {
                out.insert("values".into(), json!(provider_names().collect::<Vec<_>>()));
            }
            Kind::Token { forbidden } if !forbidden.is_empty() => {
                out.insert("forbidden".into(), json!(forbidden.chars().map(String::from).collect::<Vec<_>>()));
            }
            _ => {}
        }
        out.insert("required".into(), json!(self.required));
        out.insert("read_by".into(), json!(reader));
        out.insert("meaning".into(), json!(self.meaning));
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        pairs::encode(pairs)
    }

    /// The JSON object as Envoy would hand it to the filter: strings as their bytes,
    /// numbers as 8-byte doubles, booleans as one byte.
    fn envoy_bytes(metadata: &Value) -> Vec<u8> {
        let entries: Vec<(String, Vec<u8>)> = metadata
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let bytes = match v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Number(n) => n.as_f64().unwrap().to_le_bytes().to_vec(),
                    Value::Bool(b) => vec![u8::from(*b)],
                    other => panic!("no Envoy encoding for {other}"),
                };
                (k.clone(), bytes)
            })
            .collect();
        pairs::encode(&entries)
    }

    #[test]
    fn json_and_envoy_decoders_agree() {
        // metadata → (provider, authority, base path) or the exact error, from both decoders.
        let cases: Vec<(Value, Result<(&str, &str, &str), &str>)> = vec![
            (json!({"provider": "openai"}), Ok(("openai", "api.openai.com", "/v1"))),
            (json!({"provider": "anthropic", "max_tokens": 512}), Ok(("anthropic", "api.anthropic.com", ""))),
            (json!({"provider": "anthropic", "max_tokens": "512"}), Ok(("anthropic", "api.anthropic.com", ""))),
            (
                json!({"provider": "mistral", "api_base": "http://127.0.0.1:8081/x/"}),
                Ok(("mistral", "127.0.0.1:8081", "/x")),
            ),
            (json!({"provider": "openai", "model": "", "api_key_env": ""}), Ok(("openai", "api.openai.com", "/v1"))),
            (
                json!({"provider": "azure", "api_base": "https://r.openai.azure.com", "api_version": "2024-10-21",
                    "unsupported_params": "drop"}),
                Ok(("azure", "r.openai.azure.com", "")),
            ),
            (
                json!({"provider": "openai", "input_cost_per_token": 3e-6, "output_cost_per_token": "0.000012",
                    "cache_read_input_token_cost": 0, "cache_creation_input_token_cost": 3.75e-6}),
                Ok(("openai", "api.openai.com", "/v1")),
            ),
            (json!({}), Err("endpoint metadata has no provider")),
            (json!({"model": "x"}), Err("endpoint metadata has no provider")),
            (json!({"provider": "carrier-pigeon"}), Err(r#"unknown provider "carrier-pigeon""#)),
            (
                json!({"provider": "openai", "api_base": "ftp://x"}),
                Err(r#"api_base "ftp://x" must start with http:// or https://"#),
            ),
            (json!({"provider": "openai", "api_base": ""}), Err(r#"api_base "" must start with http:// or https://"#)),
            (json!({"provider": "openai", "api_base": "https://"}), Err(r#"api_base "https://" has no valid host"#)),
            (
                json!({"provider": "openai", "api_base": "https://u@h/"}),
                Err(r#"api_base "https://u@h/" has no valid host"#),
            ),
            (
                json!({"provider": "openai", "api_base": "https://h/v1?x=1"}),
                Err(r#"api_base "https://h/v1?x=1" must not contain a query or fragment"#),
            ),
            (json!({"provider": "openai", "max_tokens": 0}), Err("max_tokens must be a positive integer")),
            (json!({"provider": "openai", "max_tokens": 1.5}), Err("max_tokens must be a positive integer")),
            (json!({"provider": "openai", "max_tokens": "1.5"}), Err("max_tokens must be a positive integer")),
            (json!({"provider": "openai", "max_tokens": 4294967296u64}), Err("max_tokens must be a positive integer")),
            (json!({"provider": "openai", "max_tokens": true}), Err("max_tokens must be a positive integer")),
            (json!({"provider": "openai", "max_tokens": "many"}), Err("max_tokens must be a positive integer")),
            (
                json!({"provider": "openai", "model": "gpt 4"}),
                Err(r#"model "gpt 4" must be printable ASCII without spaces"#),
            ),
            (
                json!({"provider": "openai", "model": "gpt-4\n"}),
                Err(r#"model "gpt-4\n" must be printable ASCII without spaces"#),
            ),
            (
                json!({"provider": "azure", "api_version": "2024-10-21&x=1"}),
                Err(r#"api_version "2024-10-21&x=1" must be printable ASCII without spaces or any of / ? # & %"#),
            ),
            (
                json!({"provider": "openai", "unsupported_params": "ignore"}),
                Err(r#"unsupported_params must be default, drop or reject, not "ignore""#),
            ),
            (
                json!({"provider": "openai", "input_cost_per_token": -1}),
                Err("input_cost_per_token must be a number, 0 or more"),
            ),
            (
                json!({"provider": "openai", "cache_read_input_token_cost": "free"}),
                Err("cache_read_input_token_cost must be a number, 0 or more"),
            ),
        ];
        for (metadata, expected) in cases {
            let from_json = Endpoint::from_json(&metadata);
            let from_envoy = Endpoint::from_metadata(&envoy_bytes(&metadata));
            assert_eq!(from_json, from_envoy, "{metadata}");
            let got = from_json.as_ref().map(|e| (e.provider.name(), e.authority.as_str(), e.base_path.as_str()));
            assert_eq!(got.map_err(String::as_str), expected, "{metadata}");
        }
    }

    #[test]
    fn json_refuses_what_envoy_ignores_or_cannot_express() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "endpoint metadata must be an object"),
            (
                json!({"provider": "openai", "api_key_evn": "K"}),
                r#"unknown metadata key "api_key_evn" (known: provider, model, "#,
            ),
            (json!({"provider": 4}), "provider must be a string, not 4"),
            (json!({"provider": "openai", "model": null}), "model must be a string, not null"),
            (json!({"provider": "openai", "api_version": 2024}), "api_version must be a string, not 2024"),
        ];
        for (metadata, expected) in cases {
            let err = Endpoint::from_json(&metadata).unwrap_err();
            assert!(err.starts_with(expected), "{metadata}: {err}");
        }
        // The filter ignores keys it does not know: other consumers may add their own.
        let labelled = meta(&[("provider", b"openai"), ("team", b"search")]);
        assert!(Endpoint::from_metadata(&labelled).is_ok());
    }

    #[test]
    fn schema_rows_are_consistent_and_each_decodes() {
        for (i, key) in METADATA_KEYS.iter().enumerate() {
            assert!(METADATA_KEYS.iter().skip(i + 1).all(|k| k.name != key.name), "{} twice", key.name);
            assert!(!key.meaning.is_empty() && !key.meaning.contains('\n'), "{}", key.name);
            assert_eq!(key.reader == Reader::Filter, key.field != Field::Other, "{}", key.name);
            // A valid value of the row's kind reaches the filter's field (no kind/field mismatch).
            let sample = match key.kind {
                Kind::Provider => json!("openai"),
                Kind::Text | Kind::Token { .. } => json!("x"),
                Kind::BaseUrl => json!("https://h"),
                Kind::PositiveInteger => json!(1),
                Kind::NonNegativeNumber => json!(0.5),
                Kind::OneOf(words) => json!(words[0]),
            };
            let metadata = json!({"provider": "openai", key.name: sample});
            assert!(Endpoint::from_json(&metadata).is_ok(), "{metadata}");
            assert!(Endpoint::from_metadata(&envoy_bytes(&metadata)).is_ok(), "{metadata}");
        }
        assert_eq!(METADATA_KEYS.iter().filter(|k| k.required).map(|k| k.name).collect::<Vec<_>>(), ["provider"]);
        for word in PARAM_POLICIES {
            assert!(ParamPolicy::from_name(word).is_some(), "{word}");
        }
    }

    #[test]
    fn every_provider_name_resolves_and_is_listed() {
        let names: Vec<&str> = provider_names().collect();
        for name in &names {
            let provider = Provider::from_name(name).unwrap();
            assert_eq!(provider.name(), *name);
            assert!(split_api_base("api_base", provider.default_api_base()).is_ok(), "{name}");
        }
        assert!(names.starts_with(&["anthropic", "gemini", "openai"]) && names.contains(&"mistral"));
        let schema = schema_json();
        assert_eq!(schema["namespace"], "switchyard");
        let listed: Vec<&str> =
            schema["providers"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(listed, names);
        assert_eq!(schema["keys"].as_array().unwrap().len(), METADATA_KEYS.len());
        assert_eq!(schema["keys"][0]["values"].as_array().unwrap().len(), names.len());
        assert_eq!(
            schema["keys"][6],
            json!({"name": "unsupported_params", "kind": "enum",
            "values": ["default", "drop", "reject"], "required": false, "read_by": "filter",
            "meaning": METADATA_KEYS[6].meaning})
        );
        let anthropic = &schema["providers"][0];
        assert_eq!(anthropic["auth_header"], "x-api-key");
        assert_eq!(schema["providers"][2]["auth_header"], "authorization");
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
        assert_eq!(ep.param_policy, ParamPolicy::Default);
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
    fn prices_from_the_catalog_and_the_metadata() {
        let femto = |usd: f64| pricing::femto_from_f64(usd).unwrap();
        // metadata → (input, output, cache read) of Endpoint::prices(), from both decoders.
        let cases: Vec<(Value, Option<(u64, u64, Option<u64>)>)> = vec![
            (
                json!({"provider": "anthropic", "model": "claude-haiku-4-5"}),
                Some((femto(1e-6), femto(5e-6), Some(femto(1e-7)))),
            ),
            (
                json!({"provider": "anthropic", "model": "anthropic/claude-haiku-4-5"}),
                Some((femto(1e-6), femto(5e-6), Some(femto(1e-7)))),
            ),
            // An Azure deployment name: base_model says which model it is, in either form.
            (
                json!({"provider": "azure", "model": "prod-gpt", "base_model": "gpt-4.1"}),
                Some((femto(2e-6), femto(8e-6), Some(femto(5e-7)))),
            ),
            (
                json!({"provider": "azure", "model": "prod-gpt", "base_model": "azure/gpt-4.1"}),
                Some((femto(2e-6), femto(8e-6), Some(femto(5e-7)))),
            ),
            // A base_model of another provider: LiteLLM's key.
            (
                json!({"provider": "vllm", "model": "local", "base_model": "openai/gpt-4o-mini"}),
                Some((femto(1.5e-7), femto(6e-7), Some(femto(7.5e-8)))),
            ),
            // An unknown base_model: the model's prices.
            (
                json!({"provider": "anthropic", "model": "claude-haiku-4-5", "base_model": "x"}),
                Some((femto(1e-6), femto(5e-6), Some(femto(1e-7)))),
            ),
            (json!({"provider": "azure", "model": "prod-gpt"}), None),
            (json!({"provider": "vllm"}), None),
            // The metadata's prices over the catalog's, field by field; alone without one.
            (
                json!({"provider": "anthropic", "model": "claude-haiku-4-5", "input_cost_per_token": 2e-6,
                       "cache_read_input_token_cost": 0}),
                Some((femto(2e-6), femto(5e-6), Some(0))),
            ),
            (
                json!({"provider": "azure", "model": "prod-gpt", "input_cost_per_token": "0.000002"}),
                Some((femto(2e-6), 0, None)),
            ),
            (json!({"provider": "vllm", "output_cost_per_token_above_200k_tokens": 1e-6}), Some((0, 0, None))),
        ];
        for (metadata, expected) in cases {
            let from_json = Endpoint::from_json(&metadata).unwrap();
            assert_eq!(Endpoint::from_metadata(&envoy_bytes(&metadata)).unwrap(), from_json, "{metadata}");
            let got = from_json.prices().map(|p| (p.input, p.output, p.cache_read));
            assert_eq!(got, expected, "{metadata}");
        }
        // Every price key lands in its field, as text or as a double.
        let all = json!({"provider": "openai", "model": "gpt-5.4", "input_cost_per_token": 1e-6,
            "output_cost_per_token": "2e-6", "cache_read_input_token_cost": 3e-6, "cache_creation_input_token_cost": 4e-6,
            "cache_creation_input_token_cost_above_1hr": 5e-6, "output_cost_per_reasoning_token": 6e-6,
            "input_cost_per_token_above_200k_tokens": 7e-6, "output_cost_per_token_above_200k_tokens": "8e-6",
            "cache_read_input_token_cost_above_200k_tokens": 9e-6});
        let ep = Endpoint::from_json(&all).unwrap();
        assert_eq!(Endpoint::from_metadata(&envoy_bytes(&all)).unwrap(), ep);
        let o = ep.price_overrides;
        let got = [
            o.input,
            o.output,
            o.cache_read,
            o.cache_write_5m,
            o.cache_write_1h,
            o.reasoning,
            o.input_above_200k,
            o.output_above_200k,
            o.cache_read_above_200k,
        ];
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 8, 9].map(|n| Some(n * 1_000_000_000)));
        let p = ep.prices().unwrap();
        assert_eq!(
            p.tiers.map(|t| t.map(|t| (t.above, t.input))),
            [
                Some((200_000, Some(7_000_000_000))),
                Some((272_000, pricing::lookup(ep.provider, "gpt-5.4").unwrap().tiers[0].input)),
                None
            ]
        );
        // A deployment without `model` is priced by the model asked for.
        let open = Endpoint::from_json(&json!({"provider": "openai"})).unwrap();
        assert_eq!(open.prices(), None);
        assert_eq!(open.prices_for("gpt-4.1").map(|p| p.input), Some(femto(2e-6)));
        assert_eq!(open.catalog_entry(), None);
        let azure = Endpoint::from_json(&json!({"provider": "azure", "model": "d", "base_model": "gpt-4.1"})).unwrap();
        assert_eq!(
            azure.catalog_entry().map(|e| (e.litellm_key(), e.max_output_tokens)),
            Some(("azure/gpt-4.1".into(), Some(32768)))
        );
        let err = Endpoint::from_json(&json!({"provider": "openai", "input_cost_per_token": 1e20})).unwrap_err();
        assert_eq!(err, "input_cost_per_token is above 18446 USD a token");
    }

    #[test]
    fn bad_metadata_is_an_error_not_a_panic() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "endpoint metadata is malformed"),
            (vec![], "endpoint metadata has no provider"),
            (meta(&[("provider", &[0xff, 0xfe])]), "provider is not UTF-8"),
            // A YAML number where text belongs reaches the filter as a double's bytes.
            (meta(&[("provider", b"openai"), ("model", &4f64.to_le_bytes())]), "model \"\\0"),
        ];
        for (bytes, expected) in cases {
            let err = Endpoint::from_metadata(&bytes).unwrap_err();
            assert!(err.starts_with(expected), "{bytes:?}: {err}");
        }
    }
}

/// A deployment ready to serve: its endpoint settings and its key.
#[derive(Debug, PartialEq)]
pub struct Deployment {
    pub endpoint: Endpoint,
    pub api_key: Option<String>,
}
