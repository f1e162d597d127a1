//! The HTTP surface: health, the LiteLLM-compatible admin API (master key) with its
//! budgets (`/budget/*`) and the spend ledger's reads ([`spend`]), the internal API for the Envoy filter (loopback +
//! shared secret) with its usage batches, and errors in the OpenAI shape for everything
//! else (unknown path 404, wrong method 405, body over 1 MiB 413).

mod admin;
mod budgets;
mod internal;
mod render;
pub mod spend;

use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::keys::secret_matches;
use crate::store::Store;

/// Largest admin request body.
pub const MAX_BODY: usize = 1 << 20;

pub struct AppState {
    pub store: Box<dyn Store>,
    pub master_key: Option<String>,
    pub internal_secret: Option<String>,
    /// The last minute whose old rate windows were swept.
    pub swept_window: AtomicI64,
    /// `SPEND_LOG_RETENTION_DAYS`: ledger rows older than this are deleted (0: kept).
    pub spend_retention_days: i64,
}

/// `SPEND_LOG_RETENTION_DAYS`'s default.
pub const DEFAULT_SPEND_RETENTION_DAYS: i64 = 90;

impl AppState {
    pub fn new(store: Box<dyn Store>, master_key: Option<String>, internal_secret: Option<String>) -> Shared {
        Self::with_retention(store, master_key, internal_secret, DEFAULT_SPEND_RETENTION_DAYS)
    }

    pub fn with_retention(
        store: Box<dyn Store>,
        master_key: Option<String>,
        internal_secret: Option<String>,
        spend_retention_days: i64,
    ) -> Shared {
        Arc::new(AppState { store, master_key, internal_secret, swept_window: AtomicI64::new(0), spend_retention_days })
    }
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let mut admin = Router::new()
        .route("/key/generate", post(admin::key_generate))
        .route("/key/update", post(admin::key_update))
        .route("/key/delete", post(admin::key_delete))
        .route("/key/info", get(admin::key_info))
        .route("/key/list", get(admin::key_list))
        .route("/key/block", post(admin::key_block))
        .route("/key/unblock", post(admin::key_unblock))
        .route("/key/regenerate", post(admin::key_regenerate))
        .route("/key/{key}/regenerate", post(admin::key_regenerate_path))
        .route("/team/new", post(admin::team_new))
        .route("/team/update", post(admin::team_update))
        .route("/team/delete", post(admin::team_delete))
        .route("/team/info", get(admin::team_info))
        .route("/team/list", get(admin::team_list))
        .route("/team/member_add", post(admin::team_member_add))
        .route("/team/member_delete", post(admin::team_member_delete))
        .route("/team/block", post(admin::team_block))
        .route("/team/unblock", post(admin::team_unblock))
        .route("/user/new", post(admin::user_new))
        .route("/user/update", post(admin::user_update))
        .route("/user/delete", post(admin::user_delete))
        .route("/user/info", get(admin::user_info))
        .route("/user/list", get(admin::user_list))
        .route("/budget/new", post(budgets::budget_new))
        .route("/budget/update", post(budgets::budget_update))
        .route("/budget/delete", post(budgets::budget_delete))
        .route("/budget/info", post(budgets::budget_info))
        .route("/budget/list", get(budgets::budget_list))
        .route("/budget/settings", get(budgets::budget_settings))
        .route("/spend/logs", get(spend::logs))
        .route("/global/spend/report", get(spend::report));
    for prefix in ["/customer", "/end_user"] {
        admin = admin
            .route(&format!("{prefix}/new"), post(admin::customer_new))
            .route(&format!("{prefix}/update"), post(admin::customer_update))
            .route(&format!("{prefix}/delete"), post(admin::customer_delete))
            .route(&format!("{prefix}/info"), get(admin::customer_info))
            .route(&format!("{prefix}/list"), get(admin::customer_list))
            .route(&format!("{prefix}/block"), post(admin::customer_block))
            .route(&format!("{prefix}/unblock"), post(admin::customer_unblock));
    }
    let admin = admin.route_layer(middleware::from_fn_with_state(state.clone(), require_master_key));
    let internal = Router::new()
        .route("/internal/v1/keys/{hash}", get(internal::key))
        .route("/internal/v1/changes", get(internal::changes))
        .route("/internal/v1/customers", get(internal::customers))
        .route("/internal/v1/customers/{id}", get(internal::customer))
        .route("/internal/v1/grants", post(internal::grants))
        .route("/internal/v1/spend", post(spend::record))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_internal));
    Router::new()
        .route("/health/liveliness", get(liveliness))
        .route("/health/liveness", get(liveliness))
        .route("/health/readiness", get(readiness))
        .merge(admin)
        .merge(internal)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// A 200 with a JSON body.
pub fn ok(v: Value) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The request body as a JSON object (an empty body is an empty object).
pub async fn read_json(body: Body) -> Result<Map<String, Value>, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request_error",
            format!("the request body is over {MAX_BODY} bytes"),
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
    }
}

/// A query string's pairs, percent-decoded (`+` is a space).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|h| char::from(*h).to_digit(16));
        match c {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The master key (or a virtual key) a request carries: `Authorization: Bearer …`, or
/// LiteLLM's `x-litellm-api-key` (with or without `Bearer `).
fn presented_key(headers: &HeaderMap) -> Option<String> {
    for name in [header::AUTHORIZATION.as_str(), "x-litellm-api-key"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            let v = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim();
            if !v.is_empty() {
                return Some(v.to_owned());
            }
        }
    }
    None
}

async fn require_master_key(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let Some(master) = s.master_key.as_deref() else {
        return ApiError::unauthorized(
            "the admin API is disabled: set SWITCHYARD_MASTER_KEY (or LITELLM_MASTER_KEY) on the sidecar",
        )
        .into_response();
    };
    match presented_key(req.headers()) {
        None => ApiError::unauthorized("no API key passed in: send the master key as Authorization: Bearer <key>")
            .into_response(),
        Some(k) if secret_matches(&k, master) => next.run(req).await,
        Some(_) => ApiError::unauthorized("invalid master key: the admin API needs the master key").into_response(),
    }
}

async fn require_internal(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| req.extensions().get::<MockConnectInfo<SocketAddr>>().map(|c| c.0));
    let loopback = peer.is_some_and(|a| a.ip().is_loopback());
    if !loopback {
        return ApiError::forbidden("the internal API answers loopback clients only").into_response();
    }
    let Some(secret) = s.internal_secret.as_deref() else {
        return ApiError::forbidden("the internal API is disabled: set SWITCHYARD_INTERNAL_SECRET").into_response();
    };
    let presented = req.headers().get("x-switchyard-internal").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if presented.is_empty() || !secret_matches(presented, secret) {
        return ApiError::unauthorized("missing or wrong x-switchyard-internal header").into_response();
    }
    next.run(req).await
}

/// LiteLLM answers `"I'm alive!"`.
async fn liveliness() -> Response {
    ok(json!("I'm alive!"))
}

async fn readiness(State(s): State<Shared>) -> Response {
    match s.store.ping().await {
        Ok(()) => ok(json!({"status": "healthy", "db": "connected", "backend": s.store.backend()})),
        Err(e) => {
            let body = json!({"status": "unhealthy", "db": "unreachable", "backend": s.store.backend(), "error": e.to_string()});
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found_error", "unknown path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "bad_request_error", "method not allowed on this path")
}

/// The route a request took, for the log: only known route templates, never the raw path
/// or query (a key can sit in either: `/key/sk-…/regenerate`, `/key/info?key=sk-…`).
pub fn log_route(path: &str) -> &'static str {
    const STATIC: &[&str] = &[
        "/health/liveliness",
        "/health/liveness",
        "/health/readiness",
        "/key/generate",
        "/key/update",
        "/key/delete",
        "/key/info",
        "/key/list",
        "/key/block",
        "/key/unblock",
        "/key/regenerate",
        "/team/new",
        "/team/update",
        "/team/delete",
        "/team/info",
        "/team/list",
        "/team/member_add",
        "/team/member_delete",
        "/team/block",
        "/team/unblock",
        "/user/new",
        "/user/update",
        "/user/delete",
        "/user/info",
        "/user/list",
        "/customer/new",
        "/customer/update",
        "/customer/delete",
        "/customer/info",
        "/customer/list",
        "/customer/block",
        "/customer/unblock",
        "/end_user/new",
        "/end_user/update",
        "/end_user/delete",
        "/end_user/info",
        "/end_user/list",
        "/end_user/block",
        "/end_user/unblock",
        "/budget/new",
        "/budget/update",
        "/budget/delete",
        "/budget/info",
        "/budget/list",
        "/budget/settings",
        "/internal/v1/changes",
        "/internal/v1/customers",
        "/internal/v1/grants",
        "/internal/v1/spend",
        "/spend/logs",
        "/global/spend/report",
    ];
    if let Some(known) = STATIC.iter().find(|r| **r == path) {
        return known;
    }
    if path.starts_with("/internal/v1/keys/") {
        "/internal/v1/keys/{hash}"
    } else if path.starts_with("/internal/v1/customers/") {
        "/internal/v1/customers/{id}"
    } else if path.starts_with("/key/") && path.ends_with("/regenerate") {
        "/key/{key}/regenerate"
    } else {
        "(other)"
    }
}

async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = log_route(req.uri().path());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(method = %method, route, status, ms, "request");
    } else {
        tracing::info!(method = %method, route, status, ms, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(
            query_pairs(Some("key=sk-a%2Bb&x=1+2&flag")),
            vec![("key".into(), "sk-a+b".into()), ("x".into(), "1 2".into()), ("flag".into(), "".into())]
        );
        assert_eq!(query_pairs(Some("a=%zz%")), vec![("a".into(), "%zz%".into())]);
    }

    #[test]
    fn logged_routes_never_carry_keys() {
        assert_eq!(log_route("/key/sk-secret/regenerate"), "/key/{key}/regenerate");
        assert_eq!(log_route("/internal/v1/keys/abcdef"), "/internal/v1/keys/{hash}");
        assert_eq!(log_route("/sk-secret"), "(other)");
        assert_eq!(log_route("/key/info"), "/key/info");
    }

    #[test]
    fn master_key_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-litellm-api-key", HeaderValue::from_static("sk-m"));
        assert_eq!(presented_key(&h).as_deref(), Some("sk-m"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer sk-a"));
        assert_eq!(presented_key(&h).as_deref(), Some("sk-a"));
    }
}
