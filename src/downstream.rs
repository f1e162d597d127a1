//! The downstream filter, once per client request, before routing. Its phases, in order:
//!
//! 1. **auth** (request headers): who is calling: the gateway key today.
//! 2. **parse** (the whole body): the operation, the model, validation.
//! 3. **admission**: may this caller do this now (limits, budgets): everything is
//!    admitted until governance arrives.
//! 4. **route**: the model-group header, client credentials stripped, and the hand-off of
//!    the request's facts to the upstream filter of each attempt ([`crate::handoff`]).
//!
//! Requests the gateway answers itself (`/v1/models`, errors) end at the phase that
//! knows the answer.

use std::borrow::Cow;
use std::rc::Rc;

use crate::callouts::{Event, KeyAnswer, Role, OWNERS};
use crate::config::{DownstreamConfig, ModelObject, ROUTE_HEADER};
use crate::customers::{self, Load, END_USER_HEADERS};
use crate::error::GatewayError;
use crate::handoff::{RequestInfo, HANDOFF};
use crate::headers::Headers;
use crate::host::{Flow, Host, HostResult, Stored};
use crate::json::parse_request;
use crate::keys::{self, CachedKey, KeyRecord};
use crate::limits::{self, Admission, Ask, GrantAnswer, Grants, Limited, Taken};
use crate::operation::Operation;
use crate::schema::openai::{ChatRequest, CompletionsRequest, EmbeddingsRequest};
use crate::upstream::{StallWatchdog, StreamWatch, STALLS, STATUS_HEADER};
use crate::{tokens, validate};

/// Set on streaming requests, so a model can have a stream route of its own.
pub const STREAM_HEADER: &str = "x-switchyard-stream";
/// The spend ledger's id for the request (LiteLLM's header for its call id): what
/// `/spend/logs?request_id=` finds it by.
pub const CALL_ID_HEADER: &str = "x-litellm-call-id";
/// Names the group a request was moved to because it exceeds its model's context window.
pub const CONTEXT_FALLBACK_HEADER: &str = "x-switchyard-context-fallback";

/// Client credentials: read here (gateway key), never forwarded to a provider.
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 6] =
    ["authorization", "x-api-key", "api-key", "x-goog-api-key", "openai-organization", "openai-project"];

/// What a request asks of the gateway, by method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Api(Operation),
    ListModels,
    GetModel(String),
    /// The admin API (`/key/*`, `/team/*`, …): Envoy routes it to the sidecar, which
    /// checks the master key itself.
    Admin,
    WrongMethod,
    Unknown,
}

/// LiteLLM's header for the admin key, which the sidecar reads beside `Authorization`.
const ADMIN_KEY_HEADER: &str = "x-litellm-api-key";

/// Path prefixes of the sidecar's LiteLLM-compatible admin API.
pub const ADMIN_PREFIXES: [&str; 9] =
    ["/key/", "/team/", "/user/", "/customer/", "/end_user/", "/budget/", "/spend/", "/global/", "/health/"];

fn route(method: &str, path: &str) -> Route {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if ADMIN_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Route::Admin;
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    // Clients configured with the gateway's root as base URL omit the `/v1`.
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let (route, allowed) = match path {
        "/chat/completions" => (Route::Api(Operation::Chat), "POST"),
        "/embeddings" => (Route::Api(Operation::Embeddings), "POST"),
        "/completions" => (Route::Api(Operation::Completions), "POST"),
        "/models" => (Route::ListModels, "GET"),
        _ => match path.strip_prefix("/models/") {
            Some(id) if !id.is_empty() => (Route::GetModel(percent_decode(id)), "GET"),
            _ => return Route::Unknown,
        },
    };
    if method == allowed {
        route
    } else {
        Route::WrongMethod
    }
}

pub struct DownstreamExchange {
    config: Rc<DownstreamConfig>,
    /// The proxy-wasm context of this request (who owns its sidecar calls).
    context_id: u32,
    /// What the request asks for, and its method and path (for errors).
    route: Route,
    method: String,
    path: String,
    /// The request headers came without a body.
    headers_end_stream: bool,
    /// Who is calling, once the auth phase knows.
    caller: Option<Caller>,
    /// The key lookup the auth phase waits for (its own call, or one it joined).
    key_wait: Option<KeyWait>,
    /// The whole body has arrived (its size), while the auth phase was still waiting.
    body_complete: Option<usize>,
    /// Client credential headers present on this request, to strip before routing.
    credentials_present: Vec<&'static str>,
    /// The group this request was moved to for its size, to tell the client.
    context_fallback: Option<String>,
    /// The client asked for a stream.
    stream: bool,
    /// The stall watchdog's entry for this stream (see `upstream::StreamWatch`): where
    /// the upstream filter leaves the error event that ends a stalled stream.
    stall_watch: Option<Rc<StreamWatch>>,
    /// Envoy's `x-request-id`, under which the hand-off keeps this request's facts for
    /// its retries.
    request_id: Option<String>,
    /// The request's facts as handed off (forgotten when it ends), where its answer's
    /// usage comes back.
    info: Option<Rc<RequestInfo>>,
    /// Room the request took in its rate limits, given back when it ends.
    taken: Vec<Taken>,
    /// The grant callout the admission phase waits for (global rate limits).
    grant_wait: Option<GrantWait>,
    /// The end user named by a header (before the body's `user`).
    end_user_header: Option<String>,
    /// Admission waits for the end users to be loaded (see `crate::customers`).
    end_users_wait: Option<(Operation, Requested, Grants, u8)>,
    /// The end users could not be loaded in time and the `allow` policy let this request
    /// through without their checks.
    end_users_unverified: bool,
    /// What the spend ledger records of a forwarded request, when it keeps one.
    ledger: Option<LedgerFacts>,
}

/// What the ledger's record needs that only the downstream filter knows.
#[derive(Debug)]
struct LedgerFacts {
    /// The ledger's id for the request, told to the client as LiteLLM's call id.
    id: String,
    model_group: String,
    end_user: Option<String>,
    start_ms: u64,
    /// The status the client got (0 until the answer's headers went by).
    status: u16,
}

/// Who is calling, as the auth phase established.
#[derive(Debug)]
enum Caller {
    /// No gateway key is configured: everyone may call.
    Anyone,
    /// The gateway's master key.
    Master,
    /// A virtual key, with what the sidecar says of it.
    Key(Rc<KeyRecord>),
    /// A key that could not be verified (the sidecar is down), let through by the
    /// `allow` policy.
    Unverified,
}

/// A key lookup in flight at the sidecar.
struct KeyWait {
    /// The call, if this request leads the lookup (`None`: it joined another request's).
    token: Option<u32>,
    hash: String,
    /// The cached record, too old to trust but still good while the sidecar is down.
    stale: Option<Rc<KeyRecord>>,
}

/// A window-grant callout in flight for the admission phase, and what the request needs
/// to carry on when it answers.
struct GrantWait {
    token: u32,
    asks: Vec<Ask>,
    /// Grant answers admission had before this ask (it asks twice at most).
    answers: u8,
    operation: Operation,
    requested: Requested,
}

/// What the admission phase decided.
enum Admit {
    Yes,
    Ask(Vec<Ask>),
    WaitForEndUsers,
}

thread_local! {
    /// This worker has seen the end users loaded: no need to check again.
    static END_USERS_LOADED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// What the auth phase could decide from the headers alone.
enum Auth {
    Known(Caller),
    /// A key neither cached nor known: the sidecar is asked (call `token`).
    Asking(KeyWait),
}

impl DownstreamExchange {
    pub fn new(config: Rc<DownstreamConfig>) -> Self {
        DownstreamExchange {
            config,
            context_id: 0,
            route: Route::Unknown,
            method: String::new(),
            path: String::new(),
            headers_end_stream: false,
            caller: None,
            key_wait: None,
            body_complete: None,
            credentials_present: Vec::new(),
            context_fallback: None,
            stream: false,
            stall_watch: None,
            request_id: None,
            info: None,
            taken: Vec::new(),
            grant_wait: None,
            end_user_header: None,
            end_users_wait: None,
            end_users_unverified: false,
            ledger: None,
        }
    }

    pub fn set_context_id(&mut self, context_id: u32) {
        self.context_id = context_id;
    }

    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Flow {
        let headers = match host.request_headers() {
            Ok(h) => h,
            Err(e) => return internal_error(host, &e.to_string()),
        };
        self.method = headers.get(":method").unwrap_or_default().to_string();
        self.path = headers.get(":path").unwrap_or_default().to_string();
        self.route = route(&self.method, &self.path);
        if self.route == Route::Admin {
            // The route removes `Authorization` from every request (it must never reach a
            // provider); the sidecar also reads the admin key from LiteLLM's own header.
            if let (Some(value), false) = (headers.get("authorization"), headers.contains(ADMIN_KEY_HEADER)) {
                if let Err(e) = host.set_request_header(ADMIN_KEY_HEADER, value) {
                    return internal_error(host, &e.to_string());
                }
            }
            return Flow::Continue;
        }
        self.headers_end_stream = end_of_stream;
        self.credentials_present = CLIENT_CREDENTIAL_HEADERS.into_iter().filter(|h| headers.contains(h)).collect();
        self.request_id = headers.get("x-request-id").map(str::to_string);
        if self.config.virtual_keys.is_some() {
            self.end_user_header = END_USER_HEADERS.iter().find_map(|h| headers.get(h)).map(str::to_string);
        }
        // Phase 1, auth.
        match self.authenticate(host, &headers) {
            Ok(Auth::Known(caller)) => self.caller = Some(caller),
            Ok(Auth::Asking(wait)) => {
                self.key_wait = Some(wait);
                return Flow::Pause;
            }
            Err(err) => return reply_error(host, &err),
        }
        self.after_auth(host)
    }

    /// Once the caller is known: answer what the gateway answers itself, or wait for the
    /// body of an API call.
    fn after_auth(&mut self, host: &dyn Host) -> Flow {
        match self.route.clone() {
            Route::Api(_) if self.headers_end_stream => {
                reply_error(host, &GatewayError::InvalidJson { detail: "the request body is empty".into() })
            }
            Route::Api(_) => match self.body_complete {
                Some(size) => self.on_body(host, size),
                None => Flow::Pause,
            },
            // A virtual key sees the model groups it (and its team) may use, as in LiteLLM.
            Route::ListModels => match &self.caller {
                Some(Caller::Key(record)) => {
                    let usable = self.config.models().iter().filter(|m| record.may_use(&m.id).is_ok());
                    reply(host, 200, &crate::config::render_models(usable))
                }
                _ => reply(host, 200, &self.config.models_list_body),
            },
            Route::GetModel(id) => match self.config.model(&id) {
                Some(model) if matches!(&self.caller, Some(Caller::Key(r)) if r.may_use(&model.id).is_err()) => {
                    reply_error(host, &GatewayError::ModelNotFound { model: id })
                }
                Some(model) => {
                    let body = serde_json::to_vec(&ModelObject::from(model)).unwrap_or_default();
                    reply(host, 200, &body)
                }
                None => reply_error(host, &GatewayError::ModelNotFound { model: id }),
            },
            Route::WrongMethod => reply_error(
                host,
                &GatewayError::MethodNotAllowed { method: self.method.clone(), path: self.path.clone() },
            ),
            Route::Admin => Flow::Continue,
            Route::Unknown => {
                reply_error(host, &GatewayError::UnknownUrl { method: self.method.clone(), path: self.path.clone() })
            }
        }
    }

    /// Phase 1, auth: the caller's key against the gateway's master key, else against
    /// the virtual keys (cached in shared data; on a miss, the sidecar is asked).
    fn authenticate(&self, host: &dyn Host, headers: &Headers) -> Result<Auth, GatewayError> {
        let Some(expected) = &self.config.master_key else { return Ok(Auth::Known(Caller::Anyone)) };
        let Some(key) = keys::presented_key(headers) else {
            return Err(GatewayError::Unauthorized {
                message: "Missing API key. Send it as 'Authorization: Bearer <key>'.",
            });
        };
        if constant_time_eq(key.as_bytes(), expected.as_bytes()) {
            return Ok(Auth::Known(Caller::Master));
        }
        let Some(vk) = &self.config.virtual_keys else { return Err(incorrect_key()) };
        let hash = keys::hash(key);
        let now = host.now_unix();
        let entry_key = keys::cache_key(&hash);
        let cached = match host.shared_data(&entry_key) {
            Ok(shared) => keys::decode_entry(&entry_key, shared.cas, shared.value.as_deref()),
            Err(e) => {
                log::warn!("downstream filter: could not read the key cache: {e}");
                None
            }
        };
        let stale = match cached {
            Some(CachedKey::Answer { fetched_at, record }) => {
                if now.saturating_sub(fetched_at) < if record.is_some() { vk.cache_ttl } else { vk.negative_cache_ttl }
                {
                    return known_key(record, now);
                }
                // A record past its time still serves while the sidecar cannot answer; one
                // the change feed marked as changed does not.
                record.filter(|_| now.saturating_sub(fetched_at) < vk.stale_ttl.max(vk.cache_ttl))
            }
            Some(CachedKey::Changed { .. }) | None => None,
        };
        // A lookup of this key in flight on this worker: wait for its answer.
        if OWNERS.with(|o| o.borrow_mut().lead_or_join(&hash, self.context_id)) == Role::Join {
            return Ok(Auth::Asking(KeyWait { token: None, hash, stale }));
        }
        let path = format!("/internal/v1/keys/{hash}");
        let headers = [
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", SIDECAR_AUTHORITY),
            (INTERNAL_SECRET_HEADER, vk.internal_secret.as_str()),
        ];
        match self.call(host, vk, &headers, b"") {
            Ok(token) => Ok(Auth::Asking(KeyWait { token: Some(token), hash, stale })),
            Err(e) => {
                log::warn!("downstream filter: could not ask the sidecar about a key: {e}");
                OWNERS.with(|o| o.borrow_mut().finish(&hash, self.context_id, &KeyAnswer::Failed));
                sidecar_down(host, vk, stale, now)
            }
        }
    }

    /// A call to the sidecar, owned by this request.
    fn call(
        &self,
        host: &dyn Host,
        vk: &crate::config::VirtualKeys,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HostResult<u32> {
        let token = host.http_call(&vk.sidecar_cluster, headers, body, vk.timeout_ms)?;
        let deadline = host.now_nanos() / 1_000_000 + u64::from(vk.timeout_ms);
        OWNERS.with(|o| o.borrow_mut().made(token, self.context_id, deadline));
        Ok(token)
    }

    /// A sidecar call of this request answered (`body_size`), or it never will (`None`:
    /// its deadline passed, see [`crate::callouts`]).
    pub fn on_http_call_response(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        self.on_call_answer(host, token, Some(body_size));
    }

    /// A sidecar call of this request will not be answered.
    pub fn on_call_lost(&mut self, host: &dyn Host, token: u32) {
        self.on_call_answer(host, token, None);
    }

    fn on_call_answer(&mut self, host: &dyn Host, token: u32, body_size: Option<usize>) {
        OWNERS.with(|o| o.borrow_mut().answered(token));
        if let Some(wait) = self.grant_wait.take_if(|w| w.token == token) {
            return self.on_grants(host, wait, body_size);
        }
        let Some(wait) = self.key_wait.take_if(|w| w.token == Some(token)) else { return };
        let Some(vk) = self.config.virtual_keys.clone() else { return };
        let now = host.now_unix();
        let status = if body_size.is_some() { call_status(host) } else { 0 };
        // What the sidecar said, cached for every worker and handed to the requests that
        // joined this lookup.
        let answer = match status {
            200 => {
                let body = host.http_call_response_body(body_size.unwrap_or(0)).unwrap_or_default();
                match serde_json::from_slice::<KeyRecord>(&body) {
                    Ok(record) => {
                        cache(host, &wait.hash, record.version, CachedKey::encode_answer(now, Some(&body)));
                        KeyAnswer::Found(Rc::new(record))
                    }
                    Err(e) => {
                        log::warn!("downstream filter: the sidecar's key record is unreadable: {e}");
                        KeyAnswer::Failed
                    }
                }
            }
            404 => {
                cache(host, &wait.hash, 0, CachedKey::encode_answer(now, None));
                KeyAnswer::NotFound
            }
            other => {
                log::warn!("downstream filter: the sidecar answered a key lookup with status {other}");
                KeyAnswer::Failed
            }
        };
        OWNERS.with(|o| o.borrow_mut().finish(&wait.hash, self.context_id, &answer));
        self.after_lookup(host, &vk, wait, answer);
    }

    /// What this request waited for has happened (see [`crate::callouts`]): the key lookup
    /// it joined has its answer, or the end users are loaded (or late).
    pub fn on_wake(&mut self, host: &dyn Host, event: Event) {
        let Some(vk) = self.config.virtual_keys.clone() else { return };
        match event {
            Event::Key(answer) => {
                let Some(wait) = self.key_wait.take_if(|w| w.token.is_none()) else { return };
                self.after_lookup(host, &vk, wait, answer);
            }
            Event::EndUsersLoaded | Event::EndUsersLate => {
                let Some((operation, requested, grants, answers)) = self.end_users_wait.take() else { return };
                if event == Event::EndUsersLoaded {
                    END_USERS_LOADED.set(true);
                }
                if event == Event::EndUsersLate {
                    if !vk.allow_when_sidecar_down {
                        let _ = reply_error(
                            host,
                            &GatewayError::Unavailable {
                                message: "The gateway cannot check this request's end user right now.".into(),
                                retry_after_secs: 1,
                            },
                        );
                        return;
                    }
                    host.count("switchyard.end_users.unverified_allowed");
                    self.end_users_unverified = true;
                }
                if self.admit_and_forward(host, operation, requested, grants, answers) == Flow::Continue {
                    if let Err(e) = host.resume_request() {
                        log::error!("downstream filter: could not resume the request: {e}");
                    }
                }
            }
        }
    }

    /// Carries on with the request (or refuses it) once its key lookup has an answer.
    fn after_lookup(&mut self, host: &dyn Host, vk: &crate::config::VirtualKeys, wait: KeyWait, answer: KeyAnswer) {
        let now = host.now_unix();
        let outcome = match answer {
            KeyAnswer::Found(record) => known_key(Some(record), now),
            KeyAnswer::NotFound => Err(incorrect_key()),
            KeyAnswer::Failed => sidecar_down(host, vk, wait.stale, now),
            // The request that led the lookup ended first: ask again (or join anew).
            KeyAnswer::Retry => match host.request_headers() {
                Ok(headers) => self.authenticate(host, &headers),
                Err(e) => {
                    log::error!("downstream filter: could not read the request again: {e}");
                    sidecar_down(host, vk, wait.stale, now)
                }
            },
        };
        match outcome {
            Ok(Auth::Known(caller)) => {
                self.caller = Some(caller);
                let flow = self.after_auth(host);
                // A request whose body waited for the key goes on now; one that still
                // waits for its body goes on from `on_request_body`.
                if flow == Flow::Continue && matches!(self.route, Route::Api(_)) && self.body_complete.is_some() {
                    if let Err(e) = host.resume_request() {
                        log::error!("downstream filter: could not resume the request: {e}");
                    }
                }
            }
            Ok(Auth::Asking(wait)) => self.key_wait = Some(wait),
            Err(err) => {
                let _ = reply_error(host, &err);
            }
        }
    }

    pub fn on_request_body(&mut self, host: &dyn Host, body_size: usize, end_of_stream: bool) -> Flow {
        if !matches!(self.route, Route::Api(_)) {
            return Flow::Continue;
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        if self.caller.is_none() {
            // The auth phase is waiting for the sidecar: the body waits too.
            self.body_complete = Some(body_size);
            return Flow::Pause;
        }
        self.on_body(host, body_size)
    }

    /// Phases 2 to 4 on the complete body.
    fn on_body(&mut self, host: &dyn Host, body_size: usize) -> Flow {
        let Route::Api(operation) = self.route else { return Flow::Continue };
        let body = match host.request_body(body_size) {
            Ok(b) => b,
            Err(e) => return internal_error(host, &e.to_string()),
        };
        // Phase 2, parse.
        let config = Rc::clone(&self.config);
        let count_tokens = matches!(&self.caller, Some(Caller::Key(record)) if record.limits_tokens());
        let mut requested = match inspect(&config, operation, &body, count_tokens) {
            Ok(r) => r,
            Err(err) => return reply_error(host, &err),
        };
        if let Some(id) = self.end_user_header.take() {
            requested.end_user = Some(id);
        }
        let grants = match &self.config.virtual_keys {
            Some(vk) if vk.global_limits => Grants::MayAsk,
            _ => Grants::Unused,
        };
        self.admit_and_forward(host, operation, requested, grants, 0)
    }

    /// Phases 3 and 4: admission (which may first ask the sidecar for window grants, in
    /// global scope; `answers`: grant answers had so far), then the route.
    fn admit_and_forward(
        &mut self,
        host: &dyn Host,
        operation: Operation,
        requested: Requested,
        grants: Grants,
        answers: u8,
    ) -> Flow {
        // Phase 3, admission.
        let asks = match self.admit(host, &requested, grants) {
            Ok(Admit::Yes) => None,
            Ok(Admit::Ask(asks)) => Some(asks),
            Ok(Admit::WaitForEndUsers) => {
                let timeout = self.config.virtual_keys.as_ref().map_or(1000, |vk| u64::from(vk.timeout_ms));
                let deadline = host.now_nanos() / 1_000_000 + timeout;
                OWNERS.with(|o| o.borrow_mut().wait_for_end_users(self.context_id, deadline));
                self.end_users_wait = Some((operation, requested, grants, answers));
                return Flow::Pause;
            }
            Err(err) => return reply_error(host, &err),
        };
        if let Some(asks) = asks {
            match self.ask_for_grants(host, &asks) {
                Ok(token) => {
                    self.grant_wait = Some(GrantWait { token, asks, answers, operation, requested });
                    return Flow::Pause;
                }
                Err(()) => {
                    limits::hold_locally(host, &asks, host.now_nanos() / 1_000_000);
                    return self.admit_and_forward(host, operation, requested, Grants::Unused, answers);
                }
            }
        }
        // Phase 4, route.
        match self.forward(host, operation, &requested) {
            Ok(()) => Flow::Continue,
            Err(e) => internal_error(host, &e.to_string()),
        }
    }

    /// Sends a grant callout to the sidecar (`sidecar/README.md`, `/internal/v1/grants`).
    fn ask_for_grants(&self, host: &dyn Host, asks: &[Ask]) -> Result<u32, ()> {
        let vk = self.config.virtual_keys.as_ref().ok_or(())?;
        let body = limits::grant_request(asks, host.now_nanos() / 1_000_000);
        let headers = [
            (":method", "POST"),
            (":path", "/internal/v1/grants"),
            (":authority", SIDECAR_AUTHORITY),
            ("content-type", "application/json"),
            (INTERNAL_SECRET_HEADER, vk.internal_secret.as_str()),
        ];
        self.call(host, vk, &headers, &body).map_err(|e| {
            log::warn!("downstream filter: could not ask the sidecar for rate-limit grants: {e}");
        })
    }

    /// The sidecar answered a grant callout: apply it and admit again (or, if it could not
    /// grant, hold the limits per process), then let the request go on or refuse it.
    fn on_grants(&mut self, host: &dyn Host, wait: GrantWait, body_size: Option<usize>) {
        let now_ms = host.now_nanos() / 1_000_000;
        let status = if body_size.is_some() { call_status(host) } else { 0 };
        let answer = match status {
            200 => serde_json::from_slice::<GrantAnswer>(
                &host.http_call_response_body(body_size.unwrap_or(0)).unwrap_or_default(),
            )
            .ok()
            .filter(|a| a.grants.len() == wait.asks.len()),
            other => {
                log::warn!("downstream filter: the sidecar answered a grant callout with status {other}");
                None
            }
        };
        let answers = wait.answers + 1;
        let grants = match answer {
            Some(answer) => {
                limits::apply_grants(host, &wait.asks, &answer, now_ms);
                if answers < 2 {
                    Grants::MayAsk
                } else {
                    Grants::Final
                }
            }
            None => {
                host.count("switchyard.limits.held_locally");
                limits::hold_locally(host, &wait.asks, now_ms);
                Grants::Unused
            }
        };
        if self.admit_and_forward(host, wait.operation, wait.requested, grants, answers) == Flow::Continue {
            if let Err(e) = host.resume_request() {
                log::error!("downstream filter: could not resume the request: {e}");
            }
        }
    }

    /// Phase 3: may the caller do this, now? A virtual key (and its team) must be
    /// allowed the model group it named; the end user the request names must not be
    /// blocked and must be allowed the model group; and every rate limit of the key, its
    /// team, its user, the key's per-model limit and the end user must have room. Not
    /// decided yet: the sidecar is to be asked for more of some global limits first
    /// (`Ask`), or the end users are still being loaded (`WaitForEndUsers`).
    fn admit(&mut self, host: &dyn Host, requested: &Requested, grants: Grants) -> Result<Admit, GatewayError> {
        let Some(vk) = &self.config.virtual_keys else { return Ok(Admit::Yes) };
        let model = requested.asked_for.as_str();
        let mut entities = Vec::new();
        let mut tokens = requested.tokens;
        if let Some(Caller::Key(record)) = &self.caller {
            record.may_use(model)?;
            let key = &record.limits;
            entities.push(Limited::new(
                "api_key",
                &record.token,
                key.rpm_limit,
                key.tpm_limit,
                key.max_parallel_requests,
            ));
            let (model_rpm, model_tpm) =
                (key.model_rpm_limit.get(model).copied(), key.model_tpm_limit.get(model).copied());
            if model_rpm.is_some() || model_tpm.is_some() {
                let id = format!("{}:{model}", record.token);
                entities.push(Limited::new("model_per_key", &id, model_rpm, model_tpm, None));
            }
            if let Some(team) = &record.team {
                let l = &team.limits;
                entities.push(Limited::new("team", &team.team_id, l.rpm_limit, l.tpm_limit, l.max_parallel_requests));
            }
            if let Some(user) = &record.user {
                let l = &user.limits;
                entities.push(Limited::new("user", &user.user_id, l.rpm_limit, l.tpm_limit, l.max_parallel_requests));
            }
        }
        if let Some(id) = requested.end_user.as_deref().filter(|_| !self.end_users_unverified) {
            if !END_USERS_LOADED.get() {
                if Load::read(host) != Load::Done {
                    return Ok(Admit::WaitForEndUsers);
                }
                END_USERS_LOADED.set(true);
            }
            if let Some(end_user) = customers::lookup(host, id) {
                end_user.may_use(model)?;
                if end_user.tpm_limit.is_some() && tokens == 0 {
                    // Not counted for the key: about four bytes a token, an upper estimate.
                    tokens = requested.body_len / 4;
                }
                entities.push(Limited::new(
                    "end_user",
                    id,
                    end_user.rpm_limit,
                    end_user.tpm_limit,
                    end_user.max_parallel_requests,
                ));
            }
        }
        if entities.iter().any(Limited::limits_anything) {
            let now_ms = host.now_nanos() / 1_000_000;
            match limits::admit(host, &entities, tokens, now_ms, vk.parallel_slot_ttl * 1000, grants)? {
                Admission::Admitted(taken) => self.taken = taken,
                Admission::Ask(asks) => return Ok(Admit::Ask(asks)),
            }
        }
        Ok(Admit::Yes)
    }

    /// The request is over (answered, refused, reset or abandoned): give back its room in
    /// the rate limits, with its real token count when the provider reported one.
    pub fn on_done(&mut self, host: &dyn Host) {
        if self.ledger.is_some() {
            self.record_spend(host);
        }
        if self.taken.is_empty() {
            return;
        }
        let tokens = self.info.as_ref().and_then(|i| i.usage()).map(|u| u.total_tokens());
        limits::release(host, &std::mem::take(&mut self.taken), tokens, host.now_nanos() / 1_000_000);
    }

    /// Leaves the request's ledger record with this worker's ledger (see `crate::ledger`):
    /// every attempt's usage and cost, whoever answered, however the request ended.
    fn record_spend(&mut self, host: &dyn Host) {
        let (Some(facts), Some(info)) = (self.ledger.take(), &self.info) else { return };
        let attempts = info.attempts.borrow();
        let last = attempts.last();
        let (key_hash, team_id, user_id) = match &self.caller {
            Some(Caller::Key(record)) => (Some(record.token.clone()), record.team_id.clone(), record.user_id.clone()),
            _ => (None, None, None),
        };
        let record = crate::ledger::Record {
            id: facts.id,
            client_request_id: self.request_id.as_deref().map(crate::ledger::client_text),
            key_hash,
            team_id,
            user_id,
            end_user: facts.end_user.as_deref().map(crate::ledger::client_text),
            model_group: facts.model_group,
            provider: last.map(|a| a.provider),
            model: last.map(|a| a.model.clone()).filter(|m| !m.is_empty()),
            operation: info.operation.ledger_name(),
            status: facts.status,
            stream: info.stream,
            usage: info.usage().unwrap_or_default(),
            cost_nano: attempts.iter().filter_map(|a| a.cost).fold(0, u64::saturating_add),
            estimated: attempts.iter().any(|a| a.estimated),
            attempts: attempts.len() as u32,
            start_ms: facts.start_ms,
            end_ms: host.now_nanos() / 1_000_000,
        };
        drop(attempts);
        crate::ledger::LEDGER.with(|l| l.borrow_mut().add(&record));
    }

    /// Phase 4: sends the request to its model group's route, strips the client's
    /// credentials, and hands the request's facts to its attempts.
    fn forward(&mut self, host: &dyn Host, operation: Operation, requested: &Requested) -> HostResult<()> {
        if requested.route_to != requested.asked_for {
            self.context_fallback = Some(requested.route_to.clone());
        }
        // Single-header edits, not a whole-map write: only these make Envoy select the
        // route again (by the header just set).
        host.set_request_header(ROUTE_HEADER, &requested.route_to)?;
        self.stream = requested.stream;
        // Streams may have a route of their own (timeouts that suit a stream).
        if requested.stream {
            host.set_request_header(STREAM_HEADER, "true")?;
        }
        for name in &self.credentials_present {
            host.remove_request_header(name)?;
        }
        if self.config.virtual_keys.is_some() {
            self.ledger = Some(LedgerFacts {
                id: crate::ledger::new_id(),
                model_group: requested.route_to.clone(),
                end_user: requested.end_user.clone(),
                start_ms: host.now_nanos() / 1_000_000,
                status: 0,
            });
        }
        let info = RequestInfo {
            operation,
            stream: requested.stream,
            input_estimate: requested.input_estimate(),
            ..RequestInfo::default()
        };
        self.info = Some(HANDOFF.with(|h| h.publish(self.request_id.as_deref(), info)));
        Ok(())
    }
}

impl Drop for DownstreamExchange {
    fn drop(&mut self) {
        if let Some(info) = &self.info {
            let _ = HANDOFF.try_with(|h| h.forget(self.request_id.as_deref(), info));
        }
        // A request that ends while it waits: its calls are forgotten, a lookup it led
        // goes to the requests that joined it.
        if self.key_wait.is_some() || self.grant_wait.is_some() || self.end_users_wait.is_some() {
            let _ = OWNERS.try_with(|o| o.borrow_mut().ended(self.context_id));
        }
    }
}

/// What the downstream filter needs to know of a valid request to route it.
struct Requested {
    asked_for: String,
    /// The model group to route to: the one asked for, or a context-window fallback.
    route_to: String,
    stream: bool,
    /// Estimated input tokens (four characters a token): what token limits admit on.
    tokens: u64,
    /// The end user the request names (`user`, or a header).
    end_user: Option<String>,
    body_len: u64,
}

impl Requested {
    /// The input tokens an answer cut before its usage is metered by: the estimate when
    /// one was made, else about four bytes of body a token.
    fn input_estimate(&self) -> u64 {
        if self.tokens > 0 {
            self.tokens
        } else {
            self.body_len.div_ceil(4)
        }
    }
}

impl DownstreamExchange {
    /// The answer on its way to the client, whichever attempt produced it.
    pub fn on_response_headers(&mut self, host: &dyn Host) -> Flow {
        // The upstream filter that let these headers go on left its stream's watch here.
        let watch = STALLS.with(StallWatchdog::take_handoff);
        if self.stream {
            self.stall_watch = watch;
        }
        // A provider's 429 crosses the router as a 503 (so Envoy retries it and counts
        // it towards the deployment's cooldown); the client gets the 429 back.
        if let Ok(Some(status)) = host.response_header(STATUS_HEADER) {
            let valid = status.parse::<u16>().is_ok_and(|s| (400..600).contains(&s));
            let result = if valid { host.set_response_header(":status", &status) } else { Ok(()) }
                .and_then(|()| host.remove_response_header(STATUS_HEADER));
            if let Err(e) = result {
                log::error!("downstream filter: could not restore the provider's status: {e}");
            }
        }
        if let Some(group) = &self.context_fallback {
            let _ = host.set_response_header(CONTEXT_FALLBACK_HEADER, group);
        }
        if let Some(facts) = &mut self.ledger {
            facts.status = host.response_header(":status").ok().flatten().and_then(|s| s.parse().ok()).unwrap_or(0);
            let _ = host.set_response_header(CALL_ID_HEADER, &facts.id);
        }
        // The key's own limits, as OpenAI reports an account's: what is left this minute.
        if let Some(own) = self.taken.iter().find(|t| t.entity == "api_key") {
            let (rpm, requests_left, tpm, tokens_left) = own.remaining;
            let mut headers: Vec<(&str, String)> = Vec::with_capacity(4);
            if let Some(limit) = rpm {
                headers.push(("x-ratelimit-limit-requests", limit.to_string()));
                headers.push(("x-ratelimit-remaining-requests", requests_left.to_string()));
            }
            if let Some(limit) = tpm {
                headers.push(("x-ratelimit-limit-tokens", limit.to_string()));
                headers.push(("x-ratelimit-remaining-tokens", tokens_left.to_string()));
            }
            for (name, value) in headers {
                let _ = host.set_response_header(name, &value);
            }
        }
        Flow::Continue
    }
}

impl DownstreamExchange {
    /// The answer's body on its way to the client. Only a stream the stall watchdog gave
    /// up on is touched: its upstream filter context was resumed with nothing buffered,
    /// so Envoy passes an empty piece of body, into which the error event goes. No host
    /// call otherwise.
    pub fn on_response_body(&mut self, host: &dyn Host, body_size: usize, end_of_stream: bool) -> Flow {
        if body_size == 0 && !end_of_stream {
            if let Some(event) = self.stall_watch.as_ref().and_then(|w| w.take_error_event()) {
                if let Err(e) = host.set_response_body(0, &event) {
                    log::error!("downstream filter: could not end the stalled stream with an error event: {e}");
                }
            }
        }
        Flow::Continue
    }
}

/// Parses and validates a request for its operation and picks its model group.
/// `count_tokens`: estimate the input tokens even for a group without a context window
/// (a token rate limit needs them).
fn inspect(
    config: &DownstreamConfig,
    operation: Operation,
    body: &[u8],
    count_tokens: bool,
) -> Result<Requested, GatewayError> {
    // Input tokens are only estimated for groups with a known context window.
    let entry_for =
        |model: &str| config.model(model).ok_or_else(|| GatewayError::ModelNotFound { model: model.into() });
    // The upstream filter tells operations apart by their defining fields, so a body
    // must carry its own and no other (OpenAI rejects such fields as unrecognized too).
    // Each request type sees the others' fields, so this costs no second parse.
    let stray = |found: &[(bool, Operation)]| found.iter().find(|(present, _)| *present).map(|(_, op)| *op);
    let (asked_for, entry, stream, tokens, stray, end_user) = match operation {
        Operation::Chat => {
            let req: ChatRequest = parse_request(body)?;
            let other = |name: &str| req.other.iter().any(|(key, value)| key == name && value.get() != "null");
            let stray = stray(&[(other("input"), Operation::Embeddings), (other("prompt"), Operation::Completions)]);
            validate::chat_request(&req)?;
            let entry = entry_for(&req.model)?;
            let tokens = (entry.context_window.is_some() || count_tokens).then(|| tokens::chat(&req));
            (req.model.into_owned(), entry, req.stream, tokens, stray, req.user.map(Cow::into_owned))
        }
        Operation::Embeddings => {
            let req: EmbeddingsRequest = parse_request(body)?;
            let stray =
                stray(&[(req.messages.is_some(), Operation::Chat), (req.prompt.is_some(), Operation::Completions)]);
            validate::embeddings_request(&req)?;
            // About four bytes a token, the body's JSON included: an upper estimate.
            let tokens = count_tokens.then_some(body.len() as u64 / 4);
            let user = req.user.map(Cow::into_owned);
            (req.model.to_string(), entry_for(&req.model)?, false, tokens, stray, user)
        }
        Operation::Completions => {
            let req: CompletionsRequest = parse_request(body)?;
            let stray =
                stray(&[(req.messages.is_some(), Operation::Chat), (req.input.is_some(), Operation::Embeddings)]);
            validate::completions_request(&req)?;
            let entry = entry_for(&req.model)?;
            let tokens = (entry.context_window.is_some() || count_tokens).then(|| tokens::prompt(req.prompt));
            let user = req.user.map(Cow::into_owned);
            (req.model.into_owned(), entry, req.stream.unwrap_or(false), tokens, stray, user)
        }
    };
    if let Some(stray) = stray {
        let field = stray.defining_field();
        return Err(GatewayError::invalid(field, format!("Unrecognized request argument supplied: {field}")));
    }
    let route_to = match tokens.filter(|_| entry.context_window.is_some()) {
        Some(tokens) => config.fitting_model(entry, tokens).map_err(|window| GatewayError::InvalidRequest {
            message: format!(
                "This model's maximum context length is {window} tokens, but the request is estimated at {tokens} \
                 input tokens. Shorten the messages, or configure a context_window_fallback for {asked_for}."
            ),
            param: Some("messages".into()),
            code: "context_length_exceeded",
        })?,
        None => entry,
    };
    Ok(Requested {
        asked_for,
        route_to: route_to.id.clone(),
        stream,
        tokens: tokens.unwrap_or(0),
        end_user: end_user.filter(|u| !u.is_empty()),
        body_len: body.len() as u64,
    })
}

fn reply(host: &dyn Host, status: u16, body: &[u8]) -> Flow {
    if let Err(e) = host.send_response(status, &[("content-type", "application/json")], body) {
        log::error!("could not send a local reply: {e}");
    }
    Flow::Pause
}

pub fn reply_error(host: &dyn Host, err: &GatewayError) -> Flow {
    let extra = err.headers();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(1 + extra.len());
    headers.push(("content-type", "application/json"));
    headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    if let Err(e) = host.send_response(err.status(), &headers, &err.body()) {
        log::error!("could not send a local reply: {e}");
    }
    Flow::Pause
}

/// The `:status` of the callout answer being read (0 if it has none: the call failed).
fn call_status(host: &dyn Host) -> u16 {
    host.http_call_response_headers()
        .ok()
        .and_then(|h| h.get(":status").and_then(|s| s.parse::<u16>().ok()))
        .unwrap_or(0)
}

/// The `:authority` of calls to the sidecar's internal API.
const SIDECAR_AUTHORITY: &str = "switchyard-sidecar";
/// The internal API's shared secret travels in this header.
const INTERNAL_SECRET_HEADER: &str = "x-switchyard-internal";

fn incorrect_key() -> GatewayError {
    GatewayError::Unauthorized { message: "Incorrect API key provided." }
}

/// What a cache entry or a sidecar answer says of a key.
fn known_key(record: Option<Rc<KeyRecord>>, now: u64) -> Result<Auth, GatewayError> {
    let record = record.ok_or_else(incorrect_key)?;
    record.usable(now)?;
    Ok(Auth::Known(Caller::Key(record)))
}

/// The sidecar cannot answer: a key cached earlier keeps working for `stale_ttl`; an
/// unknown one is refused (503) unless the policy lets it through.
fn sidecar_down(
    host: &dyn Host,
    vk: &crate::config::VirtualKeys,
    stale: Option<Rc<KeyRecord>>,
    now: u64,
) -> Result<Auth, GatewayError> {
    if let Some(record) = stale {
        host.count("switchyard.keys.stale_used");
        return known_key(Some(record), now);
    }
    if vk.allow_when_sidecar_down {
        host.count("switchyard.keys.unverified_allowed");
        return Ok(Auth::Known(Caller::Unverified));
    }
    Err(GatewayError::Unavailable {
        message: "The gateway cannot verify the API key right now: its key store is unreachable. Retry shortly.".into(),
        retry_after_secs: 1,
    })
}

/// Caches a sidecar answer for every worker, unless the change feed has since marked the
/// key as changed after `version` (this answer was fetched before the change): an admin
/// change is never undone by a lookup that was in flight.
fn cache(host: &dyn Host, hash: &str, version: u64, entry: Vec<u8>) {
    let key = keys::cache_key(hash);
    for _ in 0..3 {
        let current = match host.shared_data(&key) {
            Ok(current) => current,
            Err(e) => return log::warn!("downstream filter: could not read the key cache: {e}"),
        };
        if current.value.as_deref().and_then(CachedKey::decode).is_some_and(|c| !c.superseded_by(version)) {
            return;
        }
        match host.set_shared_data(&key, &entry, Some(current.cas)) {
            Ok(Stored::Yes) => return,
            Ok(Stored::CasMismatch) => continue,
            Err(e) => return log::warn!("downstream filter: could not cache a key: {e}"),
        }
    }
}

fn internal_error(host: &dyn Host, detail: &str) -> Flow {
    log::error!("downstream filter: {detail}");
    reply_error(host, &GatewayError::Misconfigured { detail: "internal error in the gateway filter".into() })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes `%XX` escapes (model ids such as `org%2Fmodel` in `/v1/models/{id}`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
