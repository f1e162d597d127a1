//! Storage behind one small trait, [`Store`], with two implementations generated from one
//! body of SQL ([`sql`]): SQLite (a file, the default: zero set-up) and PostgreSQL (when
//! `DATABASE_URL` names one, for several sidecars and gateways).
//!
//! The SQL both run is the same text: both accept `$1` placeholders, `RETURNING`,
//! `ON CONFLICT`, `INSERT … SELECT`, `LIMIT/OFFSET`. What differs is kept apart: the
//! migrations (`migrations/sqlite`, `migrations/postgres`: `INTEGER` vs `BIGINT`), how a
//! transaction starts (`BEGIN IMMEDIATE` on SQLite so a writer takes the lock at once),
//! the connection set-up (WAL, `synchronous=NORMAL`, `busy_timeout`), and how a unique
//! violation names its column. Typed NULLs are bound per column type, which PostgreSQL
//! needs.
//!
//! The trait is record-shaped, not entity-shaped: a record is a flat JSON object, a
//! [`Table`] says which of its fields are columns (the rest are kept in `extra`). Every
//! write is one [`Store::commit`] of several [`Op`]s in one transaction that takes the
//! next change sequence number first; updates carry the `version` they were computed
//! from and fail with [`StoreError::Stale`] if the row changed meanwhile (the API then
//! re-reads and retries), which gives LiteLLM's read-merge-write updates without lost
//! writes on either database.

pub mod grants;
pub mod ledger;
mod sql;

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

use crate::ledger::{LogQuery, RollupQuery, RollupRow, SpendLogRow, SpendOutcome, SpendRecord};
use crate::schema::{from_nano, to_nano, ColTy, Table};

pub use sql::{PgStore, SqliteStore};

pub type Record = Map<String, Value>;
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// A unique column (or the primary key) already holds this value.
    Duplicate {
        field: String,
        value: String,
    },
    /// An update's row changed (or vanished) since it was read.
    Stale,
    /// The database cannot be reached (connection refused, pool timed out, locked).
    Unavailable(String),
    /// The database refused a value (PostgreSQL's data exceptions, SQLSTATE class 22:
    /// a NUL character in text, a number out of range).
    Invalid(String),
    /// A deadlock or serialization failure (PostgreSQL 40P01/40001): the transaction was
    /// rolled back whole and may simply be run again (commits and spend batches do, a few
    /// times, before reporting it).
    Conflict(String),
    Db(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Duplicate { field, value } => write!(f, "duplicate {field} {value:?}"),
            StoreError::Stale => write!(f, "the row changed concurrently"),
            StoreError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            StoreError::Invalid(m) => write!(f, "value refused by the database: {m}"),
            StoreError::Conflict(m) => write!(f, "transaction conflict: {m}"),
            StoreError::Db(m) => write!(f, "database error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// One write of a commit.
#[derive(Debug, Clone)]
pub enum Op {
    Insert {
        table: &'static Table,
        record: Record,
    },
    /// Replaces the row whose primary key is `id` and whose version is `version`, except
    /// its ledger-owned columns ([`crate::schema::LEDGER_COLS`]: `spend`), which the spend
    /// ledger adds to concurrently; change those with [`Op::AddSpend`].
    Update {
        table: &'static Table,
        id: String,
        version: i64,
        record: Record,
    },
    Delete {
        table: &'static Table,
        id: String,
    },
    /// Deletes every row whose `col` equals `value` (a team's keys, a user's memberships).
    DeleteWhere {
        table: &'static Table,
        col: &'static str,
        value: String,
    },
    /// Marks every row whose `col` equals `value` as changed (the keys of a changed team or
    /// user: their internal records embed the team's and user's fields).
    Touch {
        table: &'static Table,
        col: &'static str,
        value: String,
    },
    /// Adds `nano` nano-dollars (possibly negative) to the `spend` of row `id`: an admin's
    /// change of `spend`, relative to the value its update was computed from, so spend the
    /// ledger added meanwhile is kept.
    AddSpend {
        table: &'static Table,
        id: String,
        nano: i64,
    },
    /// Sets the `spend` of row `to` to the current `spend` of row `from`, read inside the
    /// transaction (a regenerated key takes over its old row's spend; run it after an op
    /// that wrote `from`, which holds the row's lock from then on).
    CopySpend {
        table: &'static Table,
        from: String,
        to: String,
    },
    /// Sets `col` to NULL in every row whose `col` equals `value`, marking them changed
    /// (a deleted budget's links: LiteLLM's relation is `SetNull`).
    ClearWhere {
        table: &'static Table,
        col: &'static str,
        value: String,
    },
    /// Copies the period spend of key `from` (and of its model budgets) to key `to` (a
    /// regenerated key keeps its budget periods' spend, as its `spend`); run it after an
    /// op that wrote `from`: the key row is locked before its `budget_spend` rows, the
    /// ledger's order.
    CopyBudgetSpend {
        from: String,
        to: String,
    },
}

/// A spend the internal API reads for a budget, exact (nano-dollars).
#[derive(Debug, Clone)]
pub enum SpentQuery {
    /// An entity's lifetime `spend` (0 when the row is gone).
    Lifetime { table: &'static Table, id: String },
    /// A period's spend (0 when nothing was recorded in it).
    Period { kind: String, id: String, start_ms: i64 },
}

/// The [`Op::AddSpend`] that turns a row read with `old` into one with `new`'s spend, if
/// they differ (money in the records is dollars).
pub fn spend_change(table: &'static Table, id: &str, old: &Record, new: &Record) -> Option<Op> {
    if !table.ledger_owned("spend") {
        return None;
    }
    let nano = |r: &Record| r.get("spend").and_then(Value::as_f64).map_or(0, to_nano);
    let delta = nano(new).saturating_sub(nano(old));
    (delta != 0).then(|| Op::AddSpend { table, id: id.to_owned(), nano: delta })
}

#[derive(Debug, Clone)]
pub enum Filter {
    Eq(&'static str, Value),
    In(&'static str, Vec<String>),
}

#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    pub seq: i64,
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// The last sequence number committed.
    pub latest: i64,
}

pub trait Store: Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// One round trip to the database (readiness).
    fn ping(&self) -> BoxFut<'_, ()>;
    fn get<'a>(&'a self, table: &'static Table, id: &'a str) -> BoxFut<'a, Option<Record>>;
    /// Rows matching every filter, oldest first, and how many match in all.
    fn find(&self, table: &'static Table, filters: Vec<Filter>, page: Option<Page>) -> BoxFut<'_, (Vec<Record>, i64)>;
    /// Applies the ops in one transaction under one new change sequence number, which it
    /// returns; every inserted, updated, deleted or touched row of a table with a change
    /// kind gets a `change_feed` row and that number as its `version`.
    fn commit(&self, ops: Vec<Op>) -> BoxFut<'_, i64>;
    /// Changes after `since`, at most `limit` sequence numbers' worth (a sequence number's
    /// changes are never split), and the latest sequence number.
    fn changes(&self, since: i64, limit: i64) -> BoxFut<'_, ChangePage>;
    /// The sequence number just before the first change made at or after `at` (unix
    /// seconds), or the latest if none was: where a follower that started at `at` begins.
    fn seq_before(&self, at: i64) -> BoxFut<'_, i64>;
    /// Hands out window grants ([`grants`]) for `window` (a unix minute), all in one
    /// transaction, in the order asked.
    fn grant(&self, window: i64, asks: Vec<grants::GrantAsk>) -> BoxFut<'_, Vec<grants::Grant>>;
    /// Forgets the grants of windows before `window`.
    fn sweep_windows(&self, before: i64) -> BoxFut<'_, u64>;
    /// Stores a batch of usage records in one transaction ([`ledger`]): each inserted at
    /// most once, the aggregates moved only for those inserted. `now_ms` is stamped as
    /// their `recorded_ms`.
    fn record_spend(&self, records: Vec<SpendRecord>, now_ms: i64) -> BoxFut<'_, SpendOutcome>;
    /// Ledger rows, newest first, at most `limit`.
    fn spend_logs(&self, query: LogQuery) -> BoxFut<'_, Vec<SpendLogRow>>;
    /// Sums of `daily_spend` rows, grouped.
    fn spend_rollup(&self, query: RollupQuery) -> BoxFut<'_, Vec<RollupRow>>;
    /// Deletes at most `batch` ledger rows that started before `before_ms` (retention);
    /// rollups and entity spend are kept.
    fn prune_spend_logs(&self, before_ms: i64, batch: i64) -> BoxFut<'_, u64>;
    /// The spends asked for, in order ([`SpentQuery`]).
    fn budget_spent(&self, queries: Vec<SpentQuery>) -> BoxFut<'_, Vec<i64>>;
    /// Deletes at most `batch` period rows of periods that ended before `before_ms` (no
    /// record can be counted in them any more: the ledger refuses records that old).
    fn prune_budget_spend(&self, before_ms: i64, batch: i64) -> BoxFut<'_, u64>;
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// A value as bound to a statement: NULLs carry their column's type (PostgreSQL checks).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlVal {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
}

/// A record's field → the value bound for its column.
pub(crate) fn to_sql(ty: ColTy, v: Option<&Value>) -> SqlVal {
    let v = v.filter(|v| !v.is_null());
    match ty {
        ColTy::Text => SqlVal::Text(v.map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
        ColTy::Int => SqlVal::Int(v.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))),
        ColTy::Money => SqlVal::Int(v.and_then(Value::as_f64).map(to_nano)),
        ColTy::Bool => SqlVal::Bool(v.and_then(Value::as_bool).unwrap_or(false)),
        ColTy::Json => SqlVal::Text(v.map(Value::to_string)),
    }
}

/// A column's value as read → the record's field.
pub(crate) fn from_sql(ty: ColTy, v: SqlVal) -> Value {
    match (ty, v) {
        (ColTy::Json, SqlVal::Text(Some(s))) => serde_json::from_str(&s).unwrap_or(Value::Null),
        (ColTy::Money, SqlVal::Int(Some(n))) => Value::from(from_nano(n)),
        (_, SqlVal::Text(Some(s))) => Value::String(s),
        (_, SqlVal::Int(Some(n))) => Value::from(n),
        (_, SqlVal::Bool(b)) => Value::Bool(b),
        _ => Value::Null,
    }
}

/// The values of a record for every column of `table`, in column order; fields that are
/// not columns go into `extra` (a JSON object, or NULL when there are none).
pub(crate) fn record_values(table: &Table, record: &Record) -> Vec<SqlVal> {
    let mut extra = Map::new();
    for (k, v) in record {
        if table.col(k).is_none() {
            extra.insert(k.clone(), v.clone());
        }
    }
    table
        .cols
        .iter()
        .map(|c| {
            if c.name == "extra" {
                SqlVal::Text((!extra.is_empty()).then(|| Value::Object(extra.clone()).to_string()))
            } else {
                to_sql(c.ty, record.get(c.name))
            }
        })
        .collect()
}

/// Reassembles a record: the columns, then `extra`'s fields.
pub(crate) fn build_record(table: &Table, values: Vec<SqlVal>) -> Record {
    let mut record = Map::new();
    let mut extra = None;
    for (c, v) in table.cols.iter().zip(values) {
        let value = from_sql(c.ty, v);
        if c.name == "extra" {
            extra = Some(value);
        } else {
            record.insert(c.name.to_owned(), value);
        }
    }
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            record.entry(k).or_insert(v);
        }
    }
    record
}

/// Opens the store `url` names (`sqlite:…` or `postgres://…`) and brings its schema up to
/// date with the embedded migrations.
pub async fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(PgStore::open(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Box::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::Db("DATABASE_URL must start with sqlite: or postgres://".to_owned()))
    }
}
