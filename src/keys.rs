//! Virtual keys in the filter: the client's key, its SHA-256 (LiteLLM's stored form, so
//! LiteLLM keys keep working), the record the sidecar keeps for it, and that record
//! cached in Envoy's shared data, where every worker finds it without a network hop.
//!
//! The record is the sidecar's `GET /internal/v1/keys/{sha256}` answer
//! (sidecar/README.md): the key's models and limits, its team's and its user's.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::rc::Rc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::headers::Headers;

/// Where clients put their key: OpenAI's SDKs, Anthropic's, Azure's.
pub fn presented_key(headers: &Headers) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| headers.get("x-api-key"))
        .or_else(|| headers.get("api-key"))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The key's SHA-256 as 64 lower-case hex digits.
pub fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0xf));
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// Limits an entity (key, team, user) carries; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
    #[serde(deserialize_with = "null_as_default")]
    pub model_rpm_limit: BTreeMap<String, u64>,
    #[serde(deserialize_with = "null_as_default")]
    pub model_tpm_limit: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TeamRecord {
    pub team_id: String,
    pub team_alias: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub models: Vec<String>,
    pub blocked: bool,
    #[serde(flatten)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct UserRecord {
    pub user_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub models: Vec<String>,
    #[serde(flatten)]
    pub limits: Limits,
}

/// What the filter enforces for one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct KeyRecord {
    /// The key's SHA-256 (hex).
    pub token: String,
    pub key_alias: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<u64>,
    #[serde(deserialize_with = "null_as_default")]
    pub models: Vec<String>,
    pub blocked: bool,
    #[serde(flatten)]
    pub limits: Limits,
    pub team: Option<TeamRecord>,
    pub user: Option<UserRecord>,
    /// The sidecar's change sequence when the record last changed.
    pub version: u64,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Model lists in LiteLLM name models by group; an empty list, or one of these
/// entries, allows every model.
const ALL_MODELS: [&str; 2] = ["all-proxy-models", "*"];
const ALL_TEAM_MODELS: &str = "all-team-models";
const NO_DEFAULT_MODELS: &str = "no-default-models";

pub(crate) fn allows(models: &[String], model: &str) -> bool {
    models.is_empty()
        || models.iter().any(|m| {
            m == model
                || ALL_MODELS.contains(&m.as_str())
                // `anthropic/*`: every model of that prefix.
                || m.strip_suffix('*').is_some_and(|prefix| !prefix.is_empty() && model.starts_with(prefix))
        })
}

impl KeyRecord {
    /// Some token limit applies to the key's requests (its own, per model, its team's or
    /// its user's).
    pub fn limits_tokens(&self) -> bool {
        let any = |l: &Limits| l.tpm_limit.is_some() || !l.model_tpm_limit.is_empty();
        any(&self.limits)
            || self.team.as_ref().is_some_and(|t| any(&t.limits))
            || self.user.as_ref().is_some_and(|u| any(&u.limits))
    }

    /// The key may be used at `now` (unix seconds): not blocked, its team not blocked,
    /// not expired. The errors are 401s, as LiteLLM answers them.
    pub fn usable(&self, now: u64) -> Result<(), GatewayError> {
        if self.blocked {
            return Err(GatewayError::Unauthorized { message: "Authentication Error: this key is blocked." });
        }
        if self.team.as_ref().is_some_and(|t| t.blocked) {
            return Err(GatewayError::Unauthorized {
                message: "Authentication Error: the team of this key is blocked.",
            });
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(GatewayError::Unauthorized { message: "Authentication Error: this key has expired." });
        }
        Ok(())
    }

    /// The key (and its team) may call `model`, the model group the client named.
    pub fn may_use(&self, model: &str) -> Result<(), GatewayError> {
        // LiteLLM's `all-team-models`: the key may use what its team may.
        let own: &[String] = if self.models.iter().any(|m| m == ALL_TEAM_MODELS) {
            self.team.as_ref().map_or(&[], |t| &t.models)
        } else {
            &self.models
        };
        if !allows(own, model) {
            return Err(GatewayError::Forbidden {
                code: "key_model_access_denied",
                message: format!("This key is not allowed to access model {model}. Allowed models: {:?}.", self.models),
                param: Some("model"),
            });
        }
        if let Some(team) = self.team.as_ref().filter(|t| !allows(&t.models, model)) {
            return Err(GatewayError::Forbidden {
                code: "team_model_access_denied",
                message: format!(
                    "This key's team is not allowed to access model {model}. Allowed models: {:?}.",
                    team.models
                ),
                param: Some("model"),
            });
        }
        // A personal key (no team): its user's list applies too, as in LiteLLM;
        // `no-default-models` means the user may use team models only.
        if let Some(user) = self.user.as_ref().filter(|_| self.team.is_none()) {
            let no_defaults = user.models.iter().any(|m| m == NO_DEFAULT_MODELS);
            if no_defaults || !allows(&user.models, model) {
                return Err(GatewayError::Forbidden {
                    code: "user_model_access_denied",
                    message: format!(
                        "This key's user is not allowed to access model {model}. Allowed models: {:?}.",
                        user.models
                    ),
                    param: Some("model"),
                });
            }
        }
        Ok(())
    }
}

/// A key's entry in shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedKey {
    /// What the sidecar answered at `fetched_at` (unix seconds): the record, or `None`
    /// for a key it does not know.
    Answer { fetched_at: u64, record: Option<Rc<KeyRecord>> },
    /// The key changed at the sidecar's change `seq` (the change feed said so): ask
    /// again, and cache no answer older than that change.
    Changed { seq: u64 },
}

thread_local! {
    /// Entries this worker decoded, by shared-data key, with the CAS they had: an entry
    /// unchanged since (same CAS) is not parsed again.
    static DECODED: RefCell<HashMap<String, (u32, CachedKey)>> = RefCell::new(HashMap::new());
}

/// Most entries a worker keeps decoded (then it starts again from none).
const MAX_DECODED: usize = 4096;

/// The entry `key` holds (its bytes and CAS as just read), decoded at most once per change.
/// (Unit tests, whose fake shared stores reuse keys and CAS values, always decode.)
pub fn decode_entry(key: &str, cas: u32, bytes: Option<&[u8]>) -> Option<CachedKey> {
    if cfg!(test) {
        return bytes.and_then(CachedKey::decode);
    }
    DECODED.with(|d| decode_with(&mut d.borrow_mut(), key, cas, bytes))
}

fn decode_with(
    memo: &mut HashMap<String, (u32, CachedKey)>,
    key: &str,
    cas: u32,
    bytes: Option<&[u8]>,
) -> Option<CachedKey> {
    let bytes = bytes?;
    if let Some((_, entry)) = memo.get(key).filter(|(c, _)| *c == cas) {
        return Some(entry.clone());
    }
    let entry = CachedKey::decode(bytes)?;
    if memo.len() >= MAX_DECODED {
        memo.clear();
    }
    memo.insert(key.to_string(), (cas, entry.clone()));
    Some(entry)
}

/// The shared-data key of a key's cache entry. 128 bits of the hash keep entries
/// distinct; the key space grows only with keys the sidecar knows or was asked about.
pub fn cache_key(hash: &str) -> String {
    format!("sy:k:{}", hash.get(..32).unwrap_or(hash))
}

const ANSWER: u8 = 1;
const CHANGED: u8 = 2;

impl CachedKey {
    /// Shared-data bytes of an answer: a tag, the fetch time (8 bytes, little endian),
    /// then the sidecar's JSON record, or nothing for an unknown key.
    pub fn encode_answer(fetched_at: u64, record_json: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + record_json.map_or(0, <[u8]>::len));
        out.push(ANSWER);
        out.extend_from_slice(&fetched_at.to_le_bytes());
        out.extend_from_slice(record_json.unwrap_or_default());
        out
    }

    pub fn encode_changed(seq: u64) -> Vec<u8> {
        let mut out = vec![CHANGED];
        out.extend_from_slice(&seq.to_le_bytes());
        out
    }

    /// `None` for bytes that are not an entry (or a record that does not parse, which is
    /// then fetched again).
    pub fn decode(bytes: &[u8]) -> Option<CachedKey> {
        let (tag, rest) = bytes.split_first()?;
        let (number, json) = rest.split_first_chunk::<8>()?;
        let number = u64::from_le_bytes(*number);
        match *tag {
            CHANGED => Some(CachedKey::Changed { seq: number }),
            ANSWER if json.is_empty() => Some(CachedKey::Answer { fetched_at: number, record: None }),
            ANSWER => serde_json::from_slice(json)
                .ok()
                .map(|record| CachedKey::Answer { fetched_at: number, record: Some(Rc::new(record)) }),
            _ => None,
        }
    }

    /// An answer fresh enough to use without asking the sidecar: known keys for `ttl`,
    /// unknown ones for `negative_ttl`.
    pub fn fresh(&self, now: u64, ttl: u64, negative_ttl: u64) -> bool {
        match self {
            CachedKey::Answer { fetched_at, record } => {
                now.saturating_sub(*fetched_at) < if record.is_some() { ttl } else { negative_ttl }
            }
            CachedKey::Changed { .. } => false,
        }
    }

    /// Whether an answer for a record at `version` may replace this entry: not when the
    /// entry says the key changed after that version (the answer was fetched before the
    /// change and arrives late).
    pub fn superseded_by(&self, version: u64) -> bool {
        match self {
            CachedKey::Changed { seq } => version >= *seq,
            CachedKey::Answer { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_personal_keys_user_list_applies() {
        let rec = |user_models: Value, team: bool| -> KeyRecord {
            let mut r = json!({"token": "t", "user": {"user_id": "u", "models": user_models}});
            if team {
                r["team"] = json!({"team_id": "x", "models": []});
            }
            serde_json::from_value(r).unwrap()
        };
        assert!(rec(json!(["gpt"]), false).may_use("gpt").is_ok());
        let err = rec(json!(["gpt"]), false).may_use("claude").unwrap_err();
        assert!(err.body().windows(24).any(|w| w == b"user_model_access_denied"));
        assert!(rec(json!(["no-default-models"]), false).may_use("gpt").is_err());
        assert!(rec(json!(["gpt"]), true).may_use("claude").is_ok(), "a team key: the team decides");
        assert!(rec(json!([]), false).may_use("claude").is_ok());
    }

    #[test]
    fn an_entry_is_decoded_once_per_change() {
        let mut memo = HashMap::new();
        let first = CachedKey::encode_answer(5, Some(br#"{"token": "a", "version": 1}"#));
        let again = decode_with(&mut memo, "k", 7, Some(&first)).unwrap();
        // Same CAS: the memo answers, whatever the bytes (they cannot differ in Envoy).
        let other = CachedKey::encode_answer(6, None);
        assert_eq!(decode_with(&mut memo, "k", 7, Some(&other)), Some(again));
        // A new CAS: decoded afresh.
        assert_eq!(
            decode_with(&mut memo, "k", 8, Some(&other)),
            Some(CachedKey::Answer { fetched_at: 6, record: None })
        );
        assert_eq!(decode_with(&mut memo, "k", 9, None), None);
        assert_eq!(decode_with(&mut memo, "k", 9, Some(b"junk")), None);
    }

    #[test]
    fn hashes_are_litellms_sha256_hex() {
        // hashlib.sha256(b"sk-1234").hexdigest()
        assert_eq!(hash("sk-1234"), "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b");
        assert_eq!(hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn keys_come_from_the_headers_clients_use() {
        let h =
            |pairs: &[(&str, &str)]| Headers::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        assert_eq!(presented_key(&h(&[("authorization", "Bearer sk-a ")])), Some("sk-a"));
        assert_eq!(presented_key(&h(&[("authorization", "bearer sk-b")])), Some("sk-b"));
        assert_eq!(presented_key(&h(&[("x-api-key", "sk-c")])), Some("sk-c"));
        assert_eq!(presented_key(&h(&[("api-key", "sk-d")])), Some("sk-d"));
        assert_eq!(presented_key(&h(&[("authorization", "Basic xyz")])), None);
        assert_eq!(presented_key(&h(&[("authorization", "Bearer  ")])), None);
    }

    fn record(value: serde_json::Value) -> KeyRecord {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_sidecars_record_parses_with_nulls_and_unknown_fields() {
        let r = record(json!({
            "token": "ab", "key_alias": null, "key_name": "sk-...1234", "team_id": "t1", "user_id": null,
            "expires_at": null, "models": ["gpt-4o"], "blocked": false, "aliases": {},
            "rpm_limit": 10, "tpm_limit": null, "max_parallel_requests": 2,
            "model_rpm_limit": {"gpt-4o": 5}, "model_tpm_limit": null,
            "team": {"team_id": "t1", "team_alias": "core", "models": [], "blocked": false, "rpm_limit": 100,
                     "tpm_limit": null, "max_parallel_requests": null, "model_rpm_limit": null, "model_tpm_limit": null},
            "user": null, "version": 7, "added_later": true
        }));
        assert_eq!(r.limits.rpm_limit, Some(10));
        assert_eq!(r.limits.model_rpm_limit.get("gpt-4o"), Some(&5));
        assert_eq!(r.team.as_ref().map(|t| t.limits.rpm_limit), Some(Some(100)));
        assert_eq!(r.version, 7);
    }

    #[test]
    fn usable_and_model_access_table() {
        let now = 1_000;
        let cases = [
            (json!({}), Ok(())),
            (json!({"blocked": true}), Err(401)),
            (json!({"team": {"team_id": "t", "blocked": true}}), Err(401)),
            (json!({"expires_at": 1000}), Err(401)),
            (json!({"expires_at": 1001}), Ok(())),
        ];
        for (value, expected) in cases {
            let got = record(value.clone()).usable(now).map_err(|e| e.status());
            assert_eq!(got, expected, "{value}");
        }
        let access = [
            (json!({}), "gpt-4o", None),
            (json!({"models": ["gpt-4o"]}), "gpt-4o", None),
            (json!({"models": ["claude"]}), "gpt-4o", Some("key_model_access_denied")),
            (json!({"models": ["all-proxy-models"]}), "gpt-4o", None),
            (json!({"models": ["anthropic/*"]}), "anthropic/claude", None),
            (json!({"models": ["anthropic/*"]}), "gpt-4o", Some("key_model_access_denied")),
            (json!({"team": {"team_id": "t", "models": ["claude"]}}), "gpt-4o", Some("team_model_access_denied")),
            (json!({"models": ["gpt-4o"], "team": {"team_id": "t", "models": ["gpt-4o"]}}), "gpt-4o", None),
            (json!({"models": ["all-team-models"], "team": {"team_id": "t", "models": ["gpt-4o"]}}), "gpt-4o", None),
            (
                json!({"models": ["all-team-models"], "team": {"team_id": "t", "models": ["claude"]}}),
                "gpt-4o",
                Some("key_model_access_denied"),
            ),
            (json!({"models": ["all-team-models"]}), "gpt-4o", None),
        ];
        for (value, model, code) in access {
            let got = record(value.clone()).may_use(model).err().map(|e| {
                let body: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
                assert_eq!(e.status(), 403);
                body["error"]["code"].as_str().unwrap().to_string()
            });
            assert_eq!(got.as_deref(), code, "{value} {model}");
        }
    }

    #[test]
    fn cache_entries_round_trip_and_age() {
        let json = br#"{"token":"ab","models":[],"blocked":false,"version":3}"#;
        let entry = CachedKey::decode(&CachedKey::encode_answer(500, Some(json))).unwrap();
        let CachedKey::Answer { fetched_at, record } = &entry else { panic!("an answer") };
        assert_eq!((*fetched_at, record.as_ref().map(|r| r.version)), (500, Some(3)));
        assert!(entry.fresh(559, 60, 5) && !entry.fresh(560, 60, 5));
        let unknown = CachedKey::decode(&CachedKey::encode_answer(500, None)).unwrap();
        assert!(matches!(unknown, CachedKey::Answer { record: None, .. }));
        assert!(unknown.fresh(504, 60, 5) && !unknown.fresh(505, 60, 5));
        let changed = CachedKey::decode(&CachedKey::encode_changed(9)).unwrap();
        assert_eq!(changed, CachedKey::Changed { seq: 9 });
        assert!(!changed.fresh(0, 60, 5));
        assert!(!changed.superseded_by(8), "an answer from before the change must not come back");
        assert!(changed.superseded_by(9) && entry.superseded_by(0));
        assert_eq!(CachedKey::decode(b"short"), None);
        assert_eq!(CachedKey::decode(&[7, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(CachedKey::decode(&CachedKey::encode_answer(1, Some(b"{not json"))), None);
        assert_eq!(cache_key(&hash("sk-1234")), "sy:k:88dc28d0f030c55ed4ab77ed8faf0981");
    }
}
