//! Plugin configuration: raw serde structs in, validated configuration out.
//!
//! Both filter stages load the same `.wasm`; the configuration's `stage` says which one
//! a plugin instance is. Errors carry the path of the offending field; the glue logs
//! each one and refuses to start (Envoy then rejects the listener or cluster), so a bad
//! config never serves traffic.

mod pbstruct;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The request header the downstream filter sets from the body's `model`; the Envoy
/// route table matches on it to pick the model group's cluster.
pub const ROUTE_HEADER: &str = "x-switchyard-model";

#[derive(Debug)]
pub enum PluginConfig {
    Downstream(DownstreamConfig),
    Upstream(UpstreamConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    pub id: String,
    pub owned_by: String,
    pub created: u64,
    /// The group's context window in tokens (the smallest of its first-choice
    /// deployments'); absent means unknown, and nothing is checked.
    pub context_window: Option<u64>,
    /// Where requests estimated larger than `context_window` go instead; without one
    /// they are refused with `context_length_exceeded` before any provider is called.
    pub context_window_fallback: Option<String>,
}

#[derive(Debug)]
pub struct DownstreamConfig {
    models: Vec<ModelEntry>,
    index: BTreeMap<String, usize>,
    /// The gateway key clients must present, when one is configured.
    pub master_key: Option<String>,
    /// Virtual keys from the sidecar, when configured (only with a master key: without
    /// one the gateway is open).
    pub virtual_keys: Option<VirtualKeys>,
    /// `GET /v1/models`, rendered once at configure time.
    pub models_list_body: Vec<u8>,
}

impl DownstreamConfig {
    pub fn model(&self, id: &str) -> Option<&ModelEntry> {
        self.index.get(id).and_then(|&i| self.models.get(i))
    }

    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// The model a request of `tokens` estimated input tokens should go to, starting at
    /// `entry`: itself when it fits, else the first fallback along the chain that does.
    /// `Err` carries the largest window tried when nothing fits.
    pub fn fitting_model<'a>(&'a self, entry: &'a ModelEntry, tokens: u64) -> Result<&'a ModelEntry, u64> {
        let mut current = entry;
        // Windows grow strictly along a chain (checked at configure time), so it ends.
        for _ in 0..=self.models.len() {
            match current.context_window {
                Some(window) if tokens > window => {
                    match current.context_window_fallback.as_deref().and_then(|id| self.model(id)) {
                        Some(next) => current = next,
                        None => return Err(window),
                    }
                }
                _ => return Ok(current),
            }
        }
        Err(current.context_window.unwrap_or(0))
    }
}

/// Where the filter finds virtual keys and how long it trusts what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualKeys {
    /// The Envoy cluster of the sidecar.
    pub sidecar_cluster: String,
    /// The sidecar's shared secret for its internal API.
    pub internal_secret: String,
    /// Seconds a known key is used from the cache before it is asked about again.
    pub cache_ttl: u64,
    /// Seconds an unknown key is refused from the cache.
    pub negative_cache_ttl: u64,
    /// Seconds a known key keeps working from the cache while the sidecar cannot answer.
    pub stale_ttl: u64,
    pub timeout_ms: u32,
    /// Seconds a request-in-flight slot is held at most: a slot whose request vanished
    /// (a trapped VM) frees itself then.
    pub parallel_slot_ttl: u64,
    /// A key the cache does not know while the sidecar is down: refused with a 503, or let
    /// through (`allow`, counted as `switchyard.keys.unverified_allowed`).
    pub allow_when_sidecar_down: bool,
    /// Rate limits held across Envoy processes by window grants from the sidecar
    /// (`rate_limit_scope: global`), not by each process alone (`process`, the default).
    pub global_limits: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// `max_tokens` sent to providers that require it when the client sent none and the
    /// deployment does not set its own.
    pub default_max_tokens: u32,
    pub anthropic_version: String,
    /// Seconds of provider silence, once a stream's first byte reached the client, after
    /// which the upstream filter ends the client's stream with an SSE error event (0: never;
    /// Envoy's `per_try_idle_timeout` then resets it instead). Shorter than the stream
    /// route's `per_try_idle_timeout` (60 s as shipped), which would otherwise fire first.
    pub stream_stall_timeout: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig { default_max_tokens: 4096, anthropic_version: "2023-06-01".into(), stream_stall_timeout: 55 }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownstream {
    models: Vec<RawModel>,
    #[serde(default)]
    master_key_env: Option<String>,
    #[serde(default)]
    virtual_keys: Option<RawVirtualKeys>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVirtualKeys {
    sidecar_cluster: String,
    internal_secret_env: String,
    #[serde(default)]
    cache_ttl: Option<u64>,
    #[serde(default)]
    negative_cache_ttl: Option<u64>,
    #[serde(default)]
    stale_ttl: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u32>,
    #[serde(default)]
    parallel_slot_ttl: Option<u64>,
    #[serde(default)]
    when_sidecar_down: Option<String>,
    #[serde(default)]
    rate_limit_scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    #[serde(default)]
    owned_by: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    context_window: Option<u64>,
    #[serde(default)]
    context_window_fallback: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    #[serde(default)]
    default_max_tokens: Option<u32>,
    #[serde(default)]
    anthropic_version: Option<String>,
    #[serde(default)]
    stream_stall_timeout: Option<u64>,
}

/// Parses a plugin configuration: a JSON document (`StringValue`) or a binary
/// `google.protobuf.Struct` (written as YAML in the Envoy config).
pub fn parse(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>, now_unix: u64) -> Result<PluginConfig, Vec<String>> {
    let mut doc = to_json(bytes).map_err(|e| vec![e])?;
    let Some(obj) = doc.as_object_mut() else {
        return Err(vec!["configuration must be an object".into()]);
    };
    let stage = obj.remove("stage");
    match stage.as_ref().and_then(Value::as_str) {
        Some("downstream") => {
            let raw: RawDownstream = from_value(doc)?;
            validate_downstream(raw, env, now_unix).map(PluginConfig::Downstream)
        }
        Some("upstream") => {
            let raw: RawUpstream = from_value(doc)?;
            validate_upstream(raw).map(PluginConfig::Upstream)
        }
        _ => Err(vec![r#"stage: must be "downstream" or "upstream""#.into()]),
    }
}

fn to_json(bytes: &[u8]) -> Result<Value, String> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err("configuration is empty".into()),
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| format!("configuration is not valid JSON: {e}")),
        Some(_) => pbstruct::decode_struct(bytes),
    }
}

fn from_value<T: for<'de> Deserialize<'de>>(doc: Value) -> Result<T, Vec<String>> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            vec![e.inner().to_string()]
        } else {
            vec![format!("{path}: {}", e.inner())]
        }
    })
}

fn validate_downstream(
    raw: RawDownstream,
    env: &dyn Fn(&str) -> Option<String>,
    now_unix: u64,
) -> Result<DownstreamConfig, Vec<String>> {
    let mut errors = Vec::new();
    let mut models = Vec::with_capacity(raw.models.len());
    let mut index = BTreeMap::new();
    if raw.models.is_empty() {
        errors.push("models: at least one model is required".to_string());
    }
    for (i, m) in raw.models.into_iter().enumerate() {
        // The id travels in the route header, so it must be a valid header value that
        // route matching compares byte for byte.
        if m.id.is_empty() || !m.id.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(format!("models[{i}].id: must be non-empty visible ASCII without spaces, got {:?}", m.id));
            continue;
        }
        if index.insert(m.id.clone(), models.len()).is_some() {
            errors.push(format!("models[{i}].id: duplicate model id {:?}", m.id));
            continue;
        }
        if m.context_window == Some(0) {
            errors.push(format!("models[{i}].context_window: must be at least 1"));
        }
        if m.context_window_fallback.is_some() && m.context_window.is_none() {
            errors.push(format!("models[{i}].context_window_fallback: needs the model's own context_window"));
        }
        models.push(ModelEntry {
            id: m.id,
            owned_by: m.owned_by.unwrap_or_else(|| "switchyard".into()),
            created: m.created.unwrap_or(now_unix),
            context_window: m.context_window,
            context_window_fallback: m.context_window_fallback,
        });
    }
    for m in &models {
        let Some(target) = &m.context_window_fallback else { continue };
        match index.get(target).and_then(|&i| models.get(i)) {
            None => {
                errors.push(format!("models[{:?}].context_window_fallback: {target:?} is not a served model", m.id))
            }
            // Each step must be strictly larger, which also rules out cycles.
            Some(next) if next.context_window.is_some_and(|w| Some(w) <= m.context_window) => errors
                .push(format!("models[{:?}].context_window_fallback: {target:?} has no larger context window", m.id)),
            Some(_) => {}
        }
    }
    let master_key = match raw.master_key_env {
        None => None,
        Some(var) => match env(&var).filter(|k| !k.is_empty()) {
            Some(key) => Some(key),
            None => {
                // An operator who asked for a key must never get an open gateway instead.
                errors.push(format!(
                    "master_key_env: environment variable {var} is not set (or not listed in vm_config.environment_variables.host_env_keys)"
                ));
                None
            }
        },
    };
    let virtual_keys = raw.virtual_keys.and_then(|vk| {
        if master_key.is_none() {
            errors.push("virtual_keys: needs master_key_env (without a master key the gateway is open)".into());
        }
        let internal_secret = env(&vk.internal_secret_env).filter(|s| !s.is_empty());
        if internal_secret.is_none() {
            errors.push(format!(
                "virtual_keys.internal_secret_env: environment variable {} is not set (or not listed in vm_config.environment_variables.host_env_keys)",
                vk.internal_secret_env
            ));
        }
        let allow_when_sidecar_down = match vk.when_sidecar_down.as_deref() {
            None | Some("deny") => false,
            Some("allow") => true,
            Some(other) => {
                errors.push(format!("virtual_keys.when_sidecar_down: must be deny or allow, not {other:?}"));
                false
            }
        };
        let global_limits = match vk.rate_limit_scope.as_deref() {
            None | Some("process") => false,
            Some("global") => true,
            Some(other) => {
                errors.push(format!("virtual_keys.rate_limit_scope: must be process or global, not {other:?}"));
                false
            }
        };
        if vk.timeout_ms == Some(0) {
            errors.push("virtual_keys.timeout_ms: must be at least 1".into());
        }
        Some(VirtualKeys {
            sidecar_cluster: vk.sidecar_cluster,
            internal_secret: internal_secret?,
            cache_ttl: vk.cache_ttl.unwrap_or(60),
            negative_cache_ttl: vk.negative_cache_ttl.unwrap_or(5),
            stale_ttl: vk.stale_ttl.unwrap_or(600),
            timeout_ms: vk.timeout_ms.unwrap_or(1000),
            parallel_slot_ttl: vk.parallel_slot_ttl.unwrap_or(900),
            allow_when_sidecar_down,
            global_limits,
        })
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    let models_list_body = render_models_list(&models);
    Ok(DownstreamConfig { models, index, master_key, virtual_keys, models_list_body })
}

fn validate_upstream(raw: RawUpstream) -> Result<UpstreamConfig, Vec<String>> {
    let defaults = UpstreamConfig::default();
    let default_max_tokens = raw.default_max_tokens.unwrap_or(defaults.default_max_tokens);
    if default_max_tokens == 0 {
        return Err(vec!["default_max_tokens: must be at least 1".into()]);
    }
    Ok(UpstreamConfig {
        default_max_tokens,
        anthropic_version: raw.anthropic_version.unwrap_or(defaults.anthropic_version),
        stream_stall_timeout: raw.stream_stall_timeout.unwrap_or(defaults.stream_stall_timeout),
    })
}

#[derive(Serialize)]
pub struct ModelObject<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'a str,
}

impl<'a> From<&'a ModelEntry> for ModelObject<'a> {
    fn from(m: &'a ModelEntry) -> Self {
        ModelObject { id: &m.id, object: "model", created: m.created, owned_by: &m.owned_by }
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

fn render_models_list(models: &[ModelEntry]) -> Vec<u8> {
    render_models(models.iter())
}

/// `GET /v1/models` for these models (a virtual key sees only those it may use).
pub fn render_models<'a>(models: impl Iterator<Item = &'a ModelEntry>) -> Vec<u8> {
    let list = ModelList { object: "list", data: models.map(ModelObject::from).collect() };
    serde_json::to_vec(&list).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::pbstruct::tests::encode_struct;
    use super::*;
    use serde_json::json;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn downstream(doc: Value, env: &dyn Fn(&str) -> Option<String>) -> Result<DownstreamConfig, Vec<String>> {
        match parse(doc.to_string().as_bytes(), env, 1_700_000_000)? {
            PluginConfig::Downstream(d) => Ok(d),
            PluginConfig::Upstream(_) => panic!("wrong stage"),
        }
    }

    #[test]
    fn downstream_from_json_and_from_protobuf_struct_agree() {
        let doc = json!({"stage": "downstream", "models": [{"id": "demo"}, {"id": "gpt-4o", "owned_by": "openai", "created": 5}]});
        for bytes in [doc.to_string().into_bytes(), encode_struct(&doc)] {
            let PluginConfig::Downstream(cfg) = parse(&bytes, &no_env, 1_700_000_000).unwrap() else { panic!() };
            assert_eq!(cfg.model("demo").unwrap().owned_by, "switchyard");
            assert_eq!(cfg.model("demo").unwrap().created, 1_700_000_000);
            assert_eq!(cfg.model("gpt-4o").unwrap().created, 5);
            assert!(cfg.model("nope").is_none());
            assert!(cfg.master_key.is_none());
            let list: Value = serde_json::from_slice(&cfg.models_list_body).unwrap();
            assert_eq!(
                list,
                json!({"object": "list", "data": [
                    {"id": "demo", "object": "model", "created": 1_700_000_000, "owned_by": "switchyard"},
                    {"id": "gpt-4o", "object": "model", "created": 5, "owned_by": "openai"},
                ]})
            );
        }
    }

    #[test]
    fn master_key_comes_from_the_environment_and_its_absence_refuses_to_start() {
        let doc = json!({"stage": "downstream", "models": [{"id": "m"}], "master_key_env": "GW_KEY"});
        let with_key = |name: &str| (name == "GW_KEY").then(|| "sk-gw".to_string());
        assert_eq!(downstream(doc.clone(), &with_key).unwrap().master_key.as_deref(), Some("sk-gw"));
        let errs = downstream(doc, &no_env).unwrap_err();
        assert!(errs[0].contains("GW_KEY is not set"), "{errs:?}");
    }

    #[test]
    fn invalid_configs_name_the_offending_field() {
        let cases = [
            (json!({"models": []}), "stage"),
            (json!({"stage": "sideways"}), "stage"),
            (json!({"stage": "downstream", "models": []}), "models: at least one"),
            (json!({"stage": "downstream", "models": [{"id": "a b"}]}), "models[0].id"),
            (json!({"stage": "downstream", "models": [{"id": "a"}, {"id": "a"}]}), "models[1].id: duplicate"),
            (
                json!({"stage": "downstream", "models": [{"id": "a", "colour": 1}]}),
                "models[0].colour: unknown field `colour`",
            ),
            (json!({"stage": "downstream", "models": [{"id": 7}]}), "models[0].id: invalid type"),
            (json!({"stage": "upstream", "default_max_tokens": 0}), "default_max_tokens"),
            (json!({"stage": "upstream", "default_max_tokens": "lots"}), "default_max_tokens: invalid type"),
            (json!({"stage": "upstream", "surprise": true}), "unknown field `surprise`"),
        ];
        for (doc, expected) in cases {
            let errs = parse(doc.to_string().as_bytes(), &no_env, 0).unwrap_err();
            assert!(errs.iter().any(|e| e.contains(expected)), "{doc}: {errs:?}");
        }
        assert!(parse(b"", &no_env, 0).is_err());
        assert!(parse(b"{not json", &no_env, 0).is_err());
        assert!(parse(b"[1]", &no_env, 0).is_err());
    }

    #[test]
    fn context_window_fallbacks_follow_the_chain_to_the_first_that_fits() {
        let doc = json!({"stage": "downstream", "models": [
            {"id": "small", "context_window": 100, "context_window_fallback": "medium"},
            {"id": "medium", "context_window": 1000, "context_window_fallback": "large"},
            {"id": "large"},
            {"id": "capped", "context_window": 50},
        ]});
        let cfg = downstream(doc, &no_env).unwrap();
        let small = cfg.model("small").unwrap();
        let cases: [(u64, &str); 4] = [(1, "small"), (100, "small"), (101, "medium"), (5000, "large")];
        for (tokens, expected) in cases {
            assert_eq!(cfg.fitting_model(small, tokens).map(|m| m.id.as_str()), Ok(expected), "{tokens}");
        }
        let capped = cfg.model("capped").unwrap();
        assert_eq!(cfg.fitting_model(capped, 50).map(|m| m.id.as_str()), Ok("capped"));
        assert_eq!(cfg.fitting_model(capped, 51).map(|m| m.id.as_str()), Err(50));
    }

    #[test]
    fn context_window_fallbacks_must_exist_and_grow() {
        let cases = [
            (json!([{"id": "a", "context_window": 10, "context_window_fallback": "zz"}]), "is not a served model"),
            (
                json!([{"id": "a", "context_window": 10, "context_window_fallback": "b"}, {"id": "b", "context_window": 10}]),
                "has no larger context window",
            ),
            (
                json!([{"id": "a", "context_window": 10, "context_window_fallback": "b"},
                       {"id": "b", "context_window": 20, "context_window_fallback": "a"}]),
                "has no larger context window",
            ),
            (json!([{"id": "a", "context_window_fallback": "b"}, {"id": "b"}]), "needs the model's own context_window"),
            (json!([{"id": "a", "context_window": 0}]), "context_window: must be at least 1"),
        ];
        for (models, expected) in cases {
            let errs = downstream(json!({"stage": "downstream", "models": models}), &no_env).unwrap_err();
            assert!(errs.iter().any(|e| e.contains(expected)), "{models}: {errs:?}");
        }
    }

    #[test]
    fn upstream_defaults_and_overrides() {
        let PluginConfig::Upstream(up) = parse(br#"{"stage":"upstream"}"#, &no_env, 0).unwrap() else { panic!() };
        assert_eq!(up, UpstreamConfig::default());
        let doc = json!({"stage": "upstream", "default_max_tokens": 1024, "anthropic_version": "2023-01-01",
                         "stream_stall_timeout": 5});
        let PluginConfig::Upstream(up) = parse(&encode_struct(&doc), &no_env, 0).unwrap() else { panic!() };
        assert_eq!(up.default_max_tokens, 1024);
        assert_eq!(up.anthropic_version, "2023-01-01");
        assert_eq!(up.stream_stall_timeout, 5);
    }
}
