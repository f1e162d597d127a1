//! End users (LiteLLM's customers: the `user` of a request, or its
//! `x-litellm-end-user-id` / `x-litellm-customer-id` header), from Envoy's shared data.
//!
//! Only end users that restrict something (blocked, a model list, a rate limit) are kept,
//! one entry each (`sy:c:<id>`): the sidecar lists them ([`LOAD_KEY`] tracks the loading,
//! done once per Envoy process by the change-feed follower, see `feed`), and the feed
//! keeps them current. An end user with no entry restricts nothing, so a request naming
//! any `user` costs one shared-data read and never a callout, and a client sending
//! arbitrary `user` values cannot grow Envoy's memory.

use serde::Deserialize;

use crate::error::GatewayError;
use crate::host::{Host, Stored};
use crate::keys::allows;

/// Headers that name the end user (LiteLLM's `STANDARD_CUSTOMER_ID_HEADERS`), before the
/// body's `user`.
pub const END_USER_HEADERS: [&str; 2] = ["x-litellm-customer-id", "x-litellm-end-user-id"];

/// Ids longer than this are never looked up (no entry can have them).
pub const MAX_ID_LEN: usize = 512;

/// Where the loading of end users stands in this Envoy process.
pub const LOAD_KEY: &str = "sy:cl";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CustomerRecord {
    pub user_id: String,
    pub models: Vec<String>,
    pub blocked: bool,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
    pub version: u64,
}

pub fn cache_key(id: &str) -> String {
    format!("sy:c:{id}")
}

/// An entry: the version (8 bytes, little endian), then the record's JSON, or nothing for
/// an end user that no longer exists.
pub fn encode(version: u64, record_json: Option<&[u8]>) -> Vec<u8> {
    let mut out = version.to_le_bytes().to_vec();
    out.extend_from_slice(record_json.unwrap_or_default());
    out
}

/// (version, record): `None` for a deleted end user or unreadable bytes.
pub fn decode(bytes: &[u8]) -> (u64, Option<CustomerRecord>) {
    let Some((version, json)) = bytes.split_first_chunk::<8>() else { return (0, None) };
    let record = if json.is_empty() { None } else { serde_json::from_slice(json).ok() };
    (u64::from_le_bytes(*version), record)
}

/// Writes an entry unless the one there is as new or newer (a page fetched before a change
/// never overwrites the change).
pub fn store(host: &dyn Host, id: &str, version: u64, record_json: Option<&[u8]>) {
    let key = cache_key(id);
    for _ in 0..3 {
        let Ok(current) = host.shared_data(&key) else { return };
        if current.value.as_deref().is_some_and(|b| decode(b).0 >= version && b.len() >= 8) {
            return;
        }
        match host.set_shared_data(&key, &encode(version, record_json), Some(current.cas)) {
            Ok(Stored::Yes) => return,
            Ok(Stored::CasMismatch) => continue,
            Err(e) => return log::warn!("switchyard: could not store an end user: {e}"),
        }
    }
}

/// The loading of end users: not begun, in progress (after this id), or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    NotBegun,
    After(Option<String>),
    Done,
}

impl Load {
    pub fn read(host: &dyn Host) -> Load {
        match host.shared_data(LOAD_KEY).ok().and_then(|s| s.value) {
            None => Load::NotBegun,
            Some(b) if b.as_slice() == b"done" => Load::Done,
            Some(b) => match b.strip_prefix(b"after:") {
                Some(id) => Load::After(Some(String::from_utf8_lossy(id).into_owned())),
                None => Load::After(None),
            },
        }
    }

    pub fn write(&self, host: &dyn Host) {
        let bytes = match self {
            Load::NotBegun => b"begin".to_vec(),
            Load::After(None) => b"begin".to_vec(),
            Load::After(Some(id)) => [b"after:".as_slice(), id.as_bytes()].concat(),
            Load::Done => b"done".to_vec(),
        };
        if let Err(e) = host.set_shared_data(LOAD_KEY, &bytes, None) {
            log::warn!("switchyard: could not record the loading of end users: {e}");
        }
    }
}

/// The end user `id`'s record, if it restricts anything.
pub fn lookup(host: &dyn Host, id: &str) -> Option<CustomerRecord> {
    if id.len() > MAX_ID_LEN {
        return None;
    }
    let bytes = host.shared_data(&cache_key(id)).ok()?.value?;
    decode(&bytes).1
}

impl CustomerRecord {
    /// Blocked (LiteLLM's 400 and wording), or not allowed the model group (403).
    pub fn may_use(&self, model: &str) -> Result<(), GatewayError> {
        if self.blocked {
            return Err(GatewayError::InvalidRequest {
                message: format!("User blocked from making LLM API Calls. User={}", self.user_id),
                param: Some("user".into()),
                code: "end_user_blocked",
            });
        }
        if !allows(&self.models, model) {
            return Err(GatewayError::Forbidden {
                code: "customer_model_access_denied",
                message: format!(
                    "The requested model '{model}' is not in the allowed models for this customer. \
                     Check the models this customer can use and try again."
                ),
                param: Some("model"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;

    #[test]
    fn entries_are_versioned_and_never_go_back() {
        let host = FakeHost::default();
        let rec = br#"{"user_id": "u1", "blocked": true, "rpm_limit": 3, "version": 7}"#;
        store(&host, "u1", 7, Some(rec));
        assert_eq!(lookup(&host, "u1").map(|r| (r.blocked, r.rpm_limit)), Some((true, Some(3))));
        store(&host, "u1", 5, None);
        assert!(lookup(&host, "u1").is_some(), "an older write is ignored");
        store(&host, "u1", 9, None);
        assert_eq!(lookup(&host, "u1"), None, "deleted");
        assert_eq!(decode(b"bad"), (0, None));
        assert_eq!(lookup(&host, &"x".repeat(MAX_ID_LEN + 1)), None);
    }

    #[test]
    fn load_state_round_trips() {
        let host = FakeHost::default();
        assert_eq!(Load::read(&host), Load::NotBegun);
        for load in [Load::After(None), Load::After(Some("abc".into())), Load::Done] {
            load.write(&host);
            assert_eq!(Load::read(&host), load);
        }
    }

    #[test]
    fn blocked_and_model_lists() {
        let rec = CustomerRecord { user_id: "u".into(), models: vec!["gpt".into()], ..CustomerRecord::default() };
        assert!(rec.may_use("gpt").is_ok());
        let err = rec.may_use("claude").unwrap_err();
        assert_eq!(err.status(), 403);
        let blocked = CustomerRecord { blocked: true, ..rec };
        let err = blocked.may_use("gpt").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.message().contains("User blocked from making LLM API Calls. User=u"));
    }
}
