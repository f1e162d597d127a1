//! `switchyard-sidecar import-litellm <source>`: LiteLLM's virtual keys, teams, users and
//! end users into this store, so existing client keys keep working (LiteLLM stores keys
//! as the same unsalted SHA-256 Switchyard uses).
//!
//! Sources:
//! - `postgres://…` — a LiteLLM database, read directly (`row_to_json` of
//!   `LiteLLM_VerificationToken`, `LiteLLM_TeamTable`, `LiteLLM_UserTable`,
//!   `LiteLLM_EndUserTable`, `LiteLLM_BudgetTable`; absent tables are skipped);
//! - a `.json` file: `{"LiteLLM_VerificationToken": [rows], "LiteLLM_TeamTable": […], …}`,
//!   or a list of rows / one row per line, each row's table told by its columns
//!   (`token` → key, `members_with_roles`/`team_alias` → team, `user_role`/`user_email` →
//!   user, `allowed_model_region`/`alias` → end user);
//! - a `.csv` file with a header row, one table per file (as `\copy … CSV HEADER` writes
//!   it; PostgreSQL arrays `{a,b}` and JSON cells are understood); the table comes from the
//!   file name (`LiteLLM_VerificationToken.csv`) or else from its columns.
//!
//! Rows are upserted by primary key (running an import twice is harmless). A row that
//! cannot be read is reported and skipped; the others are imported. LiteLLM keeps
//! `model_rpm_limit`/`model_tpm_limit` inside `metadata`: they become columns here.
//! End users' limits live in LiteLLM's budget table: they are copied from the
//! `budget_id`'s row when that table is in the source. UI passwords are never imported.

use serde_json::{json, Map, Value};

use crate::schema::{member_id, ColTy, Table, END_USERS, KEYS, TEAMS, TEAM_MEMBERS, USERS};
use crate::store::{Op, Record, Store, StoreError};
use crate::time::{now, parse_timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Key,
    Team,
    User,
    EndUser,
    Budget,
}

const TABLE_NAMES: &[(&str, Kind)] = &[
    ("LiteLLM_VerificationToken", Kind::Key),
    ("LiteLLM_TeamTable", Kind::Team),
    ("LiteLLM_UserTable", Kind::User),
    ("LiteLLM_EndUserTable", Kind::EndUser),
    ("LiteLLM_BudgetTable", Kind::Budget),
];

#[derive(Default, Debug, serde::Serialize)]
pub struct Summary {
    pub keys: usize,
    pub teams: usize,
    pub users: usize,
    pub end_users: usize,
    pub memberships: usize,
    pub skipped: Vec<Value>,
}

fn kind_of_row(row: &Map<String, Value>) -> Option<Kind> {
    let has = |k: &str| row.contains_key(k);
    if has("token") {
        Some(Kind::Key)
    } else if has("members_with_roles") || has("team_alias") {
        Some(Kind::Team)
    } else if has("user_role") || has("user_email") || has("teams") {
        Some(Kind::User)
    } else if has("allowed_model_region") || has("alias") || has("default_model") {
        Some(Kind::EndUser)
    } else if has("budget_id") && has("max_budget") && !has("user_id") {
        Some(Kind::Budget)
    } else {
        None
    }
}

fn kind_of_name(name: &str) -> Option<Kind> {
    TABLE_NAMES.iter().find(|(n, _)| name.contains(n)).map(|(_, k)| *k)
}

/// Rows of a source, each with its table.
type Rows = Vec<(Kind, Map<String, Value>)>;

async fn load(source: &str) -> Result<(Rows, Vec<Value>), String> {
    if source.starts_with("postgres://") || source.starts_with("postgresql://") {
        return load_postgres(source).await.map(|r| (r, vec![]));
    }
    let text = std::fs::read_to_string(source).map_err(|e| format!("cannot read {source}: {e}"))?;
    let file_kind = kind_of_name(source);
    if source.to_ascii_lowercase().ends_with(".csv") {
        return load_csv(&text, file_kind);
    }
    load_json(&text, file_kind)
}

fn load_json(text: &str, file_kind: Option<Kind>) -> Result<(Rows, Vec<Value>), String> {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut push = |row: Value, kind: Option<Kind>, n: usize| match row {
        Value::Object(m) => match kind.or(file_kind).or_else(|| kind_of_row(&m)) {
            Some(k) => rows.push((k, m)),
            None => skipped.push(json!({"row": n, "reason": "cannot tell which LiteLLM table this row is from"})),
        },
        _ => skipped.push(json!({"row": n, "reason": "not a JSON object"})),
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(top)) if top.keys().any(|k| kind_of_name(k).is_some()) => {
            for (name, list) in top {
                let kind = kind_of_name(&name);
                for (i, row) in list.as_array().cloned().unwrap_or_default().into_iter().enumerate() {
                    push(row, kind, i);
                }
            }
        }
        Ok(Value::Array(list)) => {
            for (i, row) in list.into_iter().enumerate() {
                push(row, None, i);
            }
        }
        Ok(row @ Value::Object(_)) => push(row, None, 0),
        _ => {
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let row = serde_json::from_str::<Value>(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
                push(row, None, i);
            }
        }
    }
    Ok((rows, skipped))
}

/// RFC 4180 CSV: `,` separated, `"` quoted with `""` inside, newlines allowed in quotes.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            _ => field.push(c),
        }
    }
    if any {
        row.push(field);
        rows.push(row);
    }
    rows
}

fn load_csv(text: &str, file_kind: Option<Kind>) -> Result<(Rows, Vec<Value>), String> {
    let mut lines = parse_csv(text).into_iter();
    let header = lines.next().ok_or("the CSV file is empty")?;
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for (i, cells) in lines.enumerate() {
        if cells.iter().all(String::is_empty) {
            continue;
        }
        let mut m = Map::new();
        for (h, c) in header.iter().zip(cells) {
            // Empty cells are NULL (PostgreSQL's CSV default).
            m.insert(h.clone(), if c.is_empty() { Value::Null } else { Value::String(c) });
        }
        match file_kind.or_else(|| kind_of_row(&m)) {
            Some(k) => rows.push((k, m)),
            None => skipped.push(json!({"row": i + 1, "reason": "cannot tell which LiteLLM table this row is from"})),
        }
    }
    Ok((rows, skipped))
}

async fn load_postgres(url: &str) -> Result<Rows, String> {
    use sqlx::Row;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to the LiteLLM database: {e}"))?;
    let mut rows = Vec::new();
    for (name, kind) in TABLE_NAMES {
        let sql = format!("SELECT row_to_json(t)::text AS j FROM \"{name}\" t");
        match sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await {
            Ok(found) => {
                for r in found {
                    let text: String = r.try_get("j").map_err(|e| e.to_string())?;
                    if let Ok(Value::Object(m)) = serde_json::from_str(&text) {
                        rows.push((*kind, m));
                    }
                }
            }
            // 42P01: undefined table — a LiteLLM version without it.
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42P01") => {}
            Err(e) => return Err(format!("reading {name}: {e}")),
        }
    }
    pool.close().await;
    Ok(rows)
}

/// A PostgreSQL array literal (`{a,"b c"}`) → its elements.
fn pg_array(text: &str) -> Option<Vec<Value>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    if inner.is_empty() {
        return Some(vec![]);
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => cur.extend(chars.next()),
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(Value::String(std::mem::take(&mut cur))),
            _ => cur.push(c),
        }
    }
    out.push(Value::String(cur));
    Some(out)
}

const LIST_FIELDS: &[&str] = &[
    "models",
    "allowed_cache_controls",
    "allowed_routes",
    "teams",
    "admins",
    "members",
    "tags",
    "policies",
    "access_group_ids",
    "organizations",
];
const TIME_FIELDS: &[&str] = &["created_at", "updated_at", "budget_reset_at"];

/// One cell of a CSV (text) or of JSON → the value a column of `ty` holds.
fn coerce(field: &str, ty: Option<ColTy>, v: Value) -> Result<Value, String> {
    let bad = |what: &str| Err(format!("{field}: expected {what}"));
    if v.is_null() {
        return Ok(Value::Null);
    }
    if TIME_FIELDS.contains(&field) || field == "expires" || field == "expires_at" {
        return match &v {
            Value::String(s) => parse_timestamp(s).map(Value::from).ok_or_else(|| format!("{field}: not a timestamp")),
            Value::Number(_) => Ok(v),
            _ => bad("a timestamp"),
        };
    }
    let text = v.as_str().map(str::to_owned);
    match ty {
        // Int columns other than times are limits: non-negative, as the API requires.
        Some(ColTy::Int) => match (&v, text) {
            (Value::Number(n), _) if n.as_i64().is_some_and(|n| n >= 0) => Ok(v),
            (_, Some(t)) => t
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Value::from)
                .ok_or_else(|| format!("{field}: expected a non-negative integer")),
            _ => bad("a non-negative integer"),
        },
        Some(ColTy::Money) => match (&v, text) {
            (Value::Number(n), _) if n.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0) => Ok(v),
            (_, Some(t)) => t
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(Value::from)
                .ok_or_else(|| format!("{field}: expected a non-negative number")),
            _ => bad("a non-negative number"),
        },
        Some(ColTy::Bool) => match (&v, text.as_deref()) {
            (Value::Bool(_), _) => Ok(v),
            (_, Some("t" | "true" | "TRUE" | "True" | "1")) => Ok(json!(true)),
            (_, Some("f" | "false" | "FALSE" | "False" | "0")) => Ok(json!(false)),
            _ => bad("true or false"),
        },
        _ => match text {
            Some(t) if LIST_FIELDS.contains(&field) && t.starts_with('{') => {
                pg_array(&t).map(Value::Array).ok_or_else(|| format!("{field}: not a list"))
            }
            Some(t) if (t.starts_with('{') || t.starts_with('[')) && ty == Some(ColTy::Json) => {
                serde_json::from_str(&t).map_err(|_| format!("{field}: not JSON"))
            }
            Some(t) if (t.starts_with('{') || t.starts_with('[')) && ty.is_none() => {
                Ok(serde_json::from_str(&t).unwrap_or(Value::String(t)))
            }
            _ => Ok(v),
        },
    }
}

fn convert(table: &Table, row: Map<String, Value>) -> Result<Record, String> {
    let mut rec = Map::new();
    for (k, v) in row {
        let ty = table.col(&k).map(|c| c.ty);
        rec.insert(k.clone(), coerce(&k, ty, v)?);
    }
    for f in ["created_at", "updated_at"] {
        if rec.get(f).is_none_or(Value::is_null) {
            rec.insert(f.to_owned(), json!(now()));
        }
    }
    rec.remove("version");
    rec.remove("extra");
    Ok(rec)
}

/// LiteLLM keeps these request fields in `metadata`; here they are columns.
fn lift_metadata(rec: &mut Record) {
    let mut lifted = Vec::new();
    if let Some(Value::Object(meta)) = rec.get_mut("metadata") {
        for f in ["model_rpm_limit", "model_tpm_limit"] {
            if let Some(v) = meta.remove(f) {
                lifted.push((f, v));
            }
        }
    }
    for (f, v) in lifted {
        if rec.get(f).is_none_or(Value::is_null) {
            rec.insert(f.to_owned(), v);
        }
    }
}

async fn upsert(store: &dyn Store, table: &'static Table, rec: Record) -> Result<(), StoreError> {
    let id = rec.get(table.pk).and_then(Value::as_str).unwrap_or_default().to_owned();
    for _ in 0..4 {
        let ops = match store.get(table, &id).await? {
            // `spend` is the ledger's: the imported value replaces the one read, and spend
            // recorded meanwhile is kept on top.
            Some(old) => std::iter::once(Op::Update {
                table,
                id: id.clone(),
                version: old.get("version").and_then(Value::as_i64).unwrap_or(0),
                record: rec.clone(),
            })
            .chain(crate::store::spend_change(table, &id, &old, &rec))
            .collect(),
            None => vec![Op::Insert { table, record: rec.clone() }],
        };
        match store.commit(ops).await {
            Err(StoreError::Stale) => continue,
            other => return other.map(|_| ()),
        }
    }
    Err(StoreError::Stale)
}

pub async fn run(store: &dyn Store, source: &str) -> Result<Summary, String> {
    let (rows, skipped) = load(source).await?;
    let mut sum = Summary { skipped, ..Summary::default() };
    let budgets: Vec<Map<String, Value>> =
        rows.iter().filter(|(k, _)| *k == Kind::Budget).map(|(_, r)| r.clone()).collect();
    let mut memberships: Vec<(String, String, Option<String>, String)> = Vec::new();
    // Teams first (keys and users name them), then users, keys, end users.
    for order in [Kind::Team, Kind::User, Kind::Key, Kind::EndUser] {
        for (i, (_, row)) in rows.iter().enumerate().filter(|(_, (k, _))| *k == order) {
            let (table, pk) = match order {
                Kind::Team => (&TEAMS, "team_id"),
                Kind::User => (&USERS, "user_id"),
                Kind::Key => (&KEYS, "token"),
                _ => (&END_USERS, "user_id"),
            };
            let mut row = row.clone();
            let mut err = None;
            match order {
                Kind::Team => {
                    for m in row
                        .remove("members_with_roles")
                        .and_then(|v| match v {
                            Value::String(s) => serde_json::from_str::<Value>(&s).ok(),
                            other => Some(other),
                        })
                        .and_then(|v| v.as_array().cloned())
                        .unwrap_or_default()
                    {
                        if let (Some(tid), Some(uid)) =
                            (row.get("team_id").and_then(Value::as_str), m.get("user_id").and_then(Value::as_str))
                        {
                            memberships.push((
                                tid.to_owned(),
                                uid.to_owned(),
                                m.get("user_email").and_then(Value::as_str).map(str::to_owned),
                                m.get("role").and_then(Value::as_str).unwrap_or("user").to_owned(),
                            ));
                        }
                    }
                    row.remove("admins");
                    row.remove("members");
                }
                Kind::User => {
                    row.remove("password");
                    let teams =
                        coerce("teams", None, row.remove("teams").unwrap_or(Value::Null)).unwrap_or(Value::Null);
                    if let (Some(uid), Some(list)) = (row.get("user_id").and_then(Value::as_str), teams.as_array()) {
                        for t in list.iter().filter_map(Value::as_str) {
                            memberships.push((
                                t.to_owned(),
                                uid.to_owned(),
                                row.get("user_email").and_then(Value::as_str).map(str::to_owned),
                                "user".to_owned(),
                            ));
                        }
                    }
                }
                Kind::Key => {
                    if let Some(t) = row.get("token").and_then(Value::as_str).filter(|t| t.starts_with("sk-")) {
                        let h = crate::keys::hash_token(t);
                        row.insert("token".into(), Value::String(h));
                    }
                    if let Some(e) = row.remove("expires") {
                        row.insert("expires_at".into(), e);
                    }
                }
                _ => {
                    if let Some(b) = row
                        .get("budget_id")
                        .and_then(Value::as_str)
                        .and_then(|id| budgets.iter().find(|b| b.get("budget_id").and_then(Value::as_str) == Some(id)))
                    {
                        for f in [
                            "max_budget",
                            "soft_budget",
                            "tpm_limit",
                            "rpm_limit",
                            "tpd_limit",
                            "max_parallel_requests",
                            "budget_duration",
                            "model_max_budget",
                            "budget_reset_at",
                        ] {
                            if row.get(f).is_none_or(Value::is_null) {
                                row.insert(f.to_owned(), b.get(f).cloned().unwrap_or(Value::Null));
                            }
                        }
                    }
                    row.remove("litellm_budget_table");
                }
            }
            let id = row.get(pk).and_then(Value::as_str).unwrap_or_default().to_owned();
            if id.is_empty() {
                err = Some(format!("no {pk}"));
            }
            let rec = match err {
                Some(e) => Err(e),
                None => convert(table, row).map(|mut r| {
                    lift_metadata(&mut r);
                    r
                }),
            };
            let result = match rec {
                Ok(rec) => upsert(store, table, rec).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => match order {
                    Kind::Team => sum.teams += 1,
                    Kind::User => sum.users += 1,
                    Kind::Key => sum.keys += 1,
                    _ => sum.end_users += 1,
                },
                Err(reason) => sum.skipped.push(json!({"table": table.name, "row": i, "id": id, "reason": reason})),
            }
        }
    }
    memberships.sort();
    memberships.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    for (team_id, user_id, email, role) in memberships {
        let mid = member_id(&team_id, &user_id);
        if store.get(&TEAMS, &team_id).await.ok().flatten().is_none()
            || store.get(&TEAM_MEMBERS, &mid).await.ok().flatten().is_some()
        {
            continue;
        }
        let at = now();
        let rec = json!({"member_id": mid, "team_id": team_id, "user_id": user_id, "user_email": email, "role": role, "spend": 0.0, "created_at": at, "updated_at": at});
        if let Value::Object(rec) = rec {
            match store.commit(vec![Op::Insert { table: &TEAM_MEMBERS, record: rec }]).await {
                Ok(_) => sum.memberships += 1,
                Err(e) => sum.skipped.push(
                    json!({"table": "team_members", "id": format!("{team_id}/{user_id}"), "reason": e.to_string()}),
                ),
            }
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_arrays() {
        let rows = parse_csv("a,b,c\n1,\"x,\"\"y\"\"\",\r\n\"multi\nline\",\"{a,b}\",\n");
        assert_eq!(rows, vec![vec!["a", "b", "c"], vec!["1", "x,\"y\"", ""], vec!["multi\nline", "{a,b}", ""]]);
        assert_eq!(pg_array("{gpt-4o,\"a b\",\"q\\\"\"}"), Some(vec![json!("gpt-4o"), json!("a b"), json!("q\"")]));
        assert_eq!(pg_array("{}"), Some(vec![]));
    }

    #[test]
    fn coerces_csv_cells() {
        assert_eq!(coerce("rpm_limit", Some(ColTy::Int), json!("10")), Ok(json!(10)));
        assert_eq!(coerce("blocked", Some(ColTy::Bool), json!("t")), Ok(json!(true)));
        assert_eq!(coerce("spend", Some(ColTy::Money), json!("1.5")), Ok(json!(1.5)));
        assert_eq!(coerce("models", Some(ColTy::Json), json!("{a,b}")), Ok(json!(["a", "b"])));
        assert_eq!(coerce("metadata", Some(ColTy::Json), json!("{\"k\": 1}")), Ok(json!({"k": 1})));
        assert_eq!(coerce("expires", None, json!("2026-01-01 00:00:00")), Ok(json!(1_767_225_600)));
        assert!(coerce("rpm_limit", Some(ColTy::Int), json!("ten")).is_err());
        assert!(coerce("rpm_limit", Some(ColTy::Int), json!(-1)).is_err());
        assert!(coerce("spend", Some(ColTy::Money), json!(-1)).is_err());
    }
}
