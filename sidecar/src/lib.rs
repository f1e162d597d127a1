//! The Switchyard sidecar: the records that must outlive a request.
//!
//! It owns virtual keys, teams, users and end users (LiteLLM's "customers"), serves them
//! through a LiteLLM-compatible admin API guarded by the master key, and through a small
//! internal API to the Envoy filter, which enforces from its own cache and asks here only
//! on a cache miss and once a second for what changed. The spend
//! ledger records what each request cost (once, however often the filter resends it) and
//! adds it to the entities' `spend`; budgets and leases come next (money in integer
//! nano-dollars throughout, one change sequence, entity kinds shared with the filter).
//!
//! Module map:
//! - [`config`]: environment → validated settings.
//! - [`duration`]: LiteLLM's duration syntax (`30s`, `1h`, `7d`, `1mo`) and its resets.
//! - [`period`]: budget periods derived from a `budget_duration` and when it took effect.
//! - [`budget`]: which budgets an entity has (limits, schedule, per model, linked rows).
//! - [`keys`]: key generation, LiteLLM's `hash_token` (unsalted SHA-256 hex), `key_name`.
//! - [`fields`]: the admin API's accepted fields per request, and their validation.
//! - [`schema`]: tables and columns, shared by both databases.
//! - [`store`]: the `Store` trait; SQLite and PostgreSQL behind it.
//! - [`ledger`]: the spend ledger's records (the filter's usage batches) and their
//!   LiteLLM shapes; its SQL is [`store::ledger`].
//! - [`api`]: the HTTP routes (admin, internal, health).
//! - [`import`]: `import-litellm`, LiteLLM's key/team/user tables into this store.
//! - [`error`], [`time`]: the OpenAI error shape; unix seconds ↔ ISO 8601.

pub mod api;
pub mod budget;
pub mod config;
pub mod duration;
pub mod error;
pub mod fields;
pub mod import;
pub mod keys;
pub mod ledger;
pub mod period;
pub mod schema;
pub mod store;
pub mod time;
