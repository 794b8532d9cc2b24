//! The operator's console (issue 16): `GET /admin`, a page in Russian whose script and style are
//! compiled into the binary (`assets/admin.*`, served from `/admin/assets/`) under a strict CSP,
//! and its session: the admin token typed once into a password field is exchanged
//! (`POST /api/admin/session`) for a random session token in a cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` behind https), so the page never keeps the admin token. The
//! console then calls the admin API like any client; the [`Admin`](super::admin::Admin) guard
//! takes the cookie as it takes the bearer token, and asks every change for the session's CSRF
//! token in `X-CSRF-Token`.
//!
//! Sessions live in the database (every process of a deployment knows them), end after
//! `admin_session_idle_secs` without a request, after `admin_session_max_secs` however busy, or at
//! logout. Failed logins are limited per client address ([`LOGINS_PER_MINUTE`]; then every login
//! from it is refused for the rest of the minute) and each refusal is logged at warn, with the
//! address and never the token.

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use byfly_core::ErrorCode;
use byfly_core::ids::TokenHash;
use byfly_core::wire::Envelope;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::errors::HttpError;
use super::extract::JsonBody;
use super::limits::{LOGINS_PER_MINUTE, Peer};
use super::openapi::errors::error_set;
use super::state::AppState;
use crate::store::AdminSessionRecord;

const CONSOLE_JS: &str = include_str!("../../assets/admin.js");
const CONSOLE_CSS: &str = include_str!("../../assets/admin.css");

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "byfly_admin";
/// The header every change made through a session carries.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Nothing but this server's own script, style and API; no inline code, no frames, no forms
/// posting anywhere (the login is sent by the script).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn with_console_headers(response: Response, content_type: &'static str) -> Response {
    super::page::secured(response, content_type, "no-store", CONTENT_SECURITY_POLICY)
}

const SHELL: &str = r#"<!doctype html>
<html lang="ru">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>ByFly — админка</title>
<link rel="stylesheet" href="/admin/assets/admin.css">
<script src="/admin/assets/admin.js" defer></script>
</head>
<body>
<div id="app"><p class="muted">Загрузка…</p>
<noscript><p>Для работы админки включите JavaScript.</p></noscript></div>
</body>
</html>
"#;

error_set!(ShellErrors: []);

/// `GET /admin`: the console's page (it shows the login form until a session exists).
#[utoipa::path(
    get, path = "/admin", tag = "console", operation_id = "consolePage", summary = "The operator's console (HTML)",
    responses((status = 200, description = "The page", content_type = "text/html", body = String), ShellErrors)
)]
pub async fn shell() -> Response {
    with_console_headers(SHELL.into_response(), "text/html; charset=utf-8")
}

error_set!(ConsoleAssetErrors: []);

/// `GET /admin/assets/admin.js`.
#[utoipa::path(
    get, path = "/admin/assets/admin.js", tag = "console", operation_id = "consoleScript", summary = "The console's script",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String), ConsoleAssetErrors)
)]
pub async fn script() -> Response {
    with_console_headers(CONSOLE_JS.into_response(), "text/javascript; charset=utf-8")
}

/// `GET /admin/assets/admin.css`.
#[utoipa::path(
    get, path = "/admin/assets/admin.css", tag = "console", operation_id = "consoleStyle", summary = "The console's style sheet",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String), ConsoleAssetErrors)
)]
pub async fn style() -> Response {
    with_console_headers(CONSOLE_CSS.into_response(), "text/css; charset=utf-8")
}

/// `POST /api/admin/session` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// The server's `admin_token`.
    pub token: String,
    /// Who logs in (up to 100 characters, no control characters): the name this session's review
    /// decisions are recorded under. The admin token is shared, so this is the only way a
    /// decision says which person made it; the console asks for it.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub operator: Option<String>,
}

/// The longest operator name a login takes.
pub const OPERATOR_NAME_MAX_CHARS: usize = 100;

/// The login's operator name, trimmed; `None` when absent or blank.
fn operator_name(given: Option<&str>) -> Result<Option<String>, HttpError> {
    let Some(name) = given.map(str::trim).filter(|name| !name.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > OPERATOR_NAME_MAX_CHARS || name.chars().any(char::is_control) {
        return Err(HttpError::from(byfly_core::error::ApiError::with_message(
            ErrorCode::ValidationError,
            "operator: до 100 символов, без управляющих",
        )));
    }
    Ok(Some(name.to_owned()))
}

/// A session as the console sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Send it as `X-CSRF-Token` with every change.
    pub csrf_token: String,
    /// `YYYY-MM-DD HH:MM:SS`: the session ends then at the latest.
    pub expires_at: String,
    /// Seconds without a request after which it ends.
    pub idle_secs: i64,
    /// The name given at login.
    pub operator: Option<String>,
}

/// The CSRF token of the session whose cookie holds `session_token`: derived from it, so it
/// needs no storage, and useless without the cookie, which another site's page cannot send
/// (`SameSite=Strict`) nor read (`HttpOnly`).
pub fn csrf_token_of(session_token: &str) -> String {
    hex::encode(Sha256::digest(
        format!("byfly-console-csrf:{session_token}").as_bytes(),
    ))
}

/// The session token in the request's `Cookie`, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether the console is reached over https — through a proxy that says so, or at the
/// configured https public address (by its host) — so its cookie must be `Secure`. The same
/// console opened over plain http on an internal address gets a cookie the browser keeps.
fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let public_https_host = state
        .settings
        .public_base_url
        .as_deref()
        .and_then(|url| url.strip_prefix("https://"))
        .map(|rest| rest.split('/').next().unwrap_or(""));
    forwarded || (host.is_some() && host == public_https_host)
}

fn cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("byfly_admin=; Path=/; Max-Age=0"))
}

/// What a session records of the admin token it was opened with: a new admin token (a leaked
/// one replaced) ends every session of the old one. `None` while no admin token is configured.
fn admin_token_fingerprint(state: &AppState) -> Option<String> {
    let token = state.settings.admin_token.as_ref()?;
    Some(hex::encode(Sha256::digest(
        format!("byfly-session:{}", token.expose()).as_bytes(),
    )))
}

/// The live session the request's cookie names, with its token; `None` without one, or while no
/// admin token is configured (the console is then closed like the admin API).
pub async fn live_session(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<(String, AdminSessionRecord)>, HttpError> {
    let (Some(token), Some(issued_for)) = (session_cookie(&parts.headers), admin_token_fingerprint(state))
    else {
        return Ok(None);
    };
    let found = state
        .store
        .admin_session(
            &TokenHash::of(token),
            &issued_for,
            state.now(),
            state.settings.console.idle_secs,
        )
        .await?;
    Ok(found.map(|session| (token.to_owned(), session)))
}

/// Whether a request made through a session carries that session's CSRF token (reads need none).
pub fn csrf_allows(parts: &Parts, session_token: &str) -> bool {
    if matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        return true;
    }
    parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|presented| TokenHash::of(&csrf_token_of(session_token)).matches(presented))
}

error_set!(LoginErrors: [BODY] InvalidAdminToken, RateLimited, ValidationError);

/// `POST /api/admin/session`: log in with the admin token.
#[utoipa::path(
    post, path = "/admin/session", tag = "console", operation_id = "consoleLogin", summary = "Log in to the console",
    description = "Exchanges the admin token for a session cookie (HttpOnly, SameSite=Strict) and answers the session's CSRF token. After 10 failed attempts within a minute from one client address, every login from it is refused (429) until the oldest is a minute old.",
    request_body = LoginRequest,
    responses((status = 200, description = "Logged in; the cookie is set", body = Envelope<SessionView>), LoginErrors)
)]
pub async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Response, HttpError> {
    let client = state.kaspi_limiter.client_address(peer, &headers);
    let address = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
    if let Err(wait) = state.login_limiter.check(client) {
        tracing::warn!(client = %address, per_minute = LOGINS_PER_MINUTE, "console login refused: too many attempts");
        let mut refused = HttpError::code(ErrorCode::RateLimited).into_response();
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
            refused.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(refused);
    }
    let accepted = state
        .settings
        .admin_token
        .as_ref()
        .is_some_and(|expected| TokenHash::of(expected.expose()).matches(request.token.trim()));
    let Some(issued_for) = admin_token_fingerprint(&state).filter(|_| accepted) else {
        state.login_limiter.failed(client);
        tracing::warn!(client = %address, "console login refused: wrong admin token");
        return Err(HttpError::code(ErrorCode::InvalidAdminToken));
    };
    let operator = operator_name(request.operator.as_deref())?;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let session_token = hex::encode(bytes);
    let now = state.now();
    let limits = state.settings.console;
    let session = state
        .store
        .create_admin_session(
            &TokenHash::of(&session_token),
            &issued_for,
            now,
            now + limits.max_secs,
            client.map(|ip| ip.to_string()).as_deref(),
            operator.as_deref(),
        )
        .await?;
    tracing::info!(client = %address, session = session.id, operator = operator.as_deref().unwrap_or("-"), "console login");
    let view = SessionView {
        csrf_token: csrf_token_of(&session_token),
        expires_at: state.settings.offset.format(session.expires_at),
        idle_secs: limits.idle_secs,
        operator: session.operator,
    };
    let mut response = Json(Envelope::data(view)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&session_token, limits.max_secs, over_https(&state, &headers)),
    );
    Ok(response)
}

error_set!(SessionErrors: [] InvalidAdminToken);

/// `GET /api/admin/session`: the current session (the console asks on load).
#[utoipa::path(
    get, path = "/admin/session", tag = "console", operation_id = "consoleSession", summary = "The console's current session",
    responses((status = 200, description = "The session", body = Envelope<SessionView>), SessionErrors)
)]
pub async fn session(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Json<Envelope<SessionView>>, HttpError> {
    let (token, found) = live_session(&parts, &state)
        .await?
        .ok_or_else(|| HttpError::code(ErrorCode::InvalidAdminToken))?;
    Ok(Json(Envelope::data(SessionView {
        csrf_token: csrf_token_of(&token),
        expires_at: state.settings.offset.format(found.expires_at),
        idle_secs: state.settings.console.idle_secs,
        operator: found.operator,
    })))
}

error_set!(LogoutErrors: [] InvalidCsrfToken);

/// `DELETE /api/admin/session`: log out (the session ends in every process at once).
#[utoipa::path(
    delete, path = "/admin/session", tag = "console", operation_id = "consoleLogout", summary = "Log out of the console",
    description = "Needs the session's `X-CSRF-Token`. Without a session: nothing to end, the same answer.",
    responses((status = 200, description = "Logged out; the cookie is cleared: `{\"success\": true, \"data\": {}}`", content_type = "application/json"), LogoutErrors)
)]
pub async fn logout(State(state): State<AppState>, parts: Parts) -> Result<Response, HttpError> {
    if let Some(token) = session_cookie(&parts.headers) {
        if !csrf_allows(&parts, token) {
            return Err(HttpError::code(ErrorCode::InvalidCsrfToken));
        }
        state.store.end_admin_session(&TokenHash::of(token)).await?;
    }
    let mut response = Json(Envelope::data(serde_json::json!({}))).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie("", 0, over_https(&state, &parts.headers)),
    );
    Ok(response)
}
