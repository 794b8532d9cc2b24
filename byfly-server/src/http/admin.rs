//! The admin API (`Authorization: Bearer <admin token>`): sources, terminals, payment methods and
//! payments (the webhook outbox is in `outbox.rs`, the review queue in `review.rs`). Closed while no
//! admin token is configured.

use super::openapi::errors::error_set;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use byfly_core::error::ApiError;
use byfly_core::wire::{
    AddTerminalRequest, AdminMethodView, CreateSourceRequest, CreatedSource, Envelope, RegistrationView,
    SourceView, TerminalHoldView, TerminalView, UpdateMethodRequest, UpdateSourceRequest,
    UpdateTerminalRequest,
};
use byfly_core::{ApiToken, ErrorCode};

use super::errors::HttpError;
use super::extract::{JsonBody, RowId, bearer_matches};
use super::state::AppState;
use crate::random::OsRandom;
use crate::store::{
    NewTerminal, RegistrationStart, RegistrationState, SourceRecord, TerminalHold, TerminalRecord,
    TerminalTls,
};
use crate::store::{SourceId, TerminalId};

/// Proof that the request carries the admin token, or comes from a live console session (with its
/// CSRF token, for a change).
#[derive(Debug, Clone)]
pub struct Admin {
    /// Who, for the record of what they decide: a console session's operator (with the session
    /// and its address), or the admin token itself, which names nobody.
    pub actor: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.settings.admin_token else {
            // No admin token configured: the admin API and the console are closed.
            return Err(HttpError::code(ErrorCode::InvalidAdminToken));
        };
        if bearer_matches(expected, &parts.headers) {
            return Ok(Admin {
                actor: "admin token".to_owned(),
            });
        }
        // The console's session cookie; a change through it must carry its CSRF token.
        match super::console::live_session(parts, state).await? {
            Some((token, session)) if super::console::csrf_allows(parts, &token) => {
                if parts.method != axum::http::Method::GET {
                    // Who changed what through the console: the session and its address.
                    tracing::info!(
                        session = session.id,
                        client = session.client.as_deref().unwrap_or("-"),
                        method = %parts.method,
                        path = %parts.uri.path(),
                        "console change"
                    );
                }
                let operator = session.operator.as_deref().unwrap_or("без имени");
                let client = session.client.as_deref().unwrap_or("-");
                Ok(Admin {
                    actor: format!("{operator} (сессия #{}, {client})", session.id),
                })
            }
            Some(_) => Err(HttpError::code(ErrorCode::InvalidCsrfToken)),
            None => Err(HttpError::code(ErrorCode::InvalidAdminToken)),
        }
    }
}

pub(super) fn not_found() -> HttpError {
    HttpError::code(ErrorCode::NotFound)
}

fn source_view(source: SourceRecord, state: &AppState) -> SourceView {
    SourceView {
        id: source.id.get(),
        name: source.name,
        webhook_json: source.webhook_json,
        active: source.active,
        created_at: state.settings.offset.format(source.created_at),
    }
}

/// One terminal as the admin API shows it, with the operation holding it (read for it alone).
async fn one_terminal_view(terminal: TerminalRecord, state: &AppState) -> Result<TerminalView, HttpError> {
    let holds = state.store.terminal_holds().await?;
    Ok(terminal_view(terminal, &holds, state))
}

/// A terminal as the admin API shows it; `holds`: the operations holding terminals.
fn terminal_view(terminal: TerminalRecord, holds: &[TerminalHold], state: &AppState) -> TerminalView {
    let offset = state.settings.offset;
    let busy_with = holds
        .iter()
        .find(|hold| hold.terminal_id == terminal.id)
        .map(|hold| TerminalHoldView {
            operation_id: hold.operation_id.get(),
            transaction_id: hold.transaction_id.clone(),
            kind: if hold.refund { "refund" } else { "payment" }.to_owned(),
            state: hold.state.as_str().to_owned(),
            started_at: offset.format(hold.started_at),
            needs_review: hold.needs_review,
        });
    let needs_registration = terminal.needs_registration();
    let (tls, tls_server_name) = match terminal.terminal.tls {
        TerminalTls::Verify { server_name } => ("verify", server_name),
        TerminalTls::Insecure => ("insecure", None),
    };
    TerminalView {
        id: terminal.id.get(),
        name: terminal.terminal.name,
        base_url: terminal.terminal.base_url,
        camera_url: terminal.terminal.camera_url,
        tls: tls.to_owned(),
        tls_server_name,
        enabled: terminal.enabled,
        healthy: terminal.healthy,
        last_error: terminal.last_error,
        registered: terminal.tokens.is_some(),
        needs_registration,
        registration: terminal.registration.map(|registration| {
            // Pending for longer than it can wait: the process that waited stopped meanwhile.
            let wait = i64::try_from(state.pool.timing().register_timeout.as_secs()).unwrap_or(i64::MAX);
            let abandoned = registration.state == RegistrationState::Pending
                && state.now() - registration.started_at > wait.saturating_add(60);
            RegistrationView {
                state: if abandoned {
                    "failed"
                } else {
                    registration.state.as_str()
                }
                .to_owned(),
                message: if abandoned {
                    Some("Сервер остановился, пока ждал кассира: запустите регистрацию снова".to_owned())
                } else {
                    registration.message
                },
                started_at: offset.format(registration.started_at),
                finished_at: registration.finished_at.map(|at| offset.format(at)),
            }
        }),
        busy_with,
    }
}

error_set!(SourcesErrors: [ADMIN]);

/// `GET /api/admin/sources`.
#[utoipa::path(
    get, path = "/admin/sources", tag = "admin: sources", operation_id = "listSources", summary = "Sources",
    security(("admin_token" = [])),
    responses((status = 200, description = "Every source", body = Envelope<Vec<SourceView>>), SourcesErrors)
)]
pub async fn sources(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Envelope<Vec<SourceView>>>, HttpError> {
    let sources = state.store.sources().await?;
    Ok(Json(Envelope::data(
        sources.into_iter().map(|s| source_view(s, &state)).collect(),
    )))
}

error_set!(CreateSourceErrors: [ADMIN, BODY] ValidationError);

/// A name for people (a source's, a key's): 1 to 255 characters once trimmed.
pub(super) fn person_name(name: &str) -> Result<&str, HttpError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(HttpError::from(ApiError::with_message(
            ErrorCode::ValidationError,
            "name: от 1 до 255 символов",
        )));
    }
    Ok(name)
}

/// `POST /api/admin/sources`: the token is in this answer only.
#[utoipa::path(
    post, path = "/admin/sources", tag = "admin: sources", operation_id = "createSource", summary = "Create a source",
    description = "Its API token is in this answer only (stored as a hash).",
    request_body = CreateSourceRequest,
    security(("admin_token" = [])),
    responses((status = 201, description = "The source and its token", body = Envelope<CreatedSource>), CreateSourceErrors)
)]
pub async fn create_source(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateSourceRequest>,
) -> Result<Response, HttpError> {
    let name = person_name(&request.name)?;
    let token = ApiToken::generate(&mut OsRandom);
    let source = state
        .store
        .create_source(name, &token.hash(), request.webhook_json, state.now())
        .await?;
    let created = CreatedSource {
        source: source_view(source, &state),
        api_token: token.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(Envelope::data(created))).into_response())
}

error_set!(UpdateSourceErrors: [ADMIN, ROW, BODY] ValidationError);

/// `PATCH /api/admin/sources/{id}`: change the encoding, or revoke (`"active": false`).
#[utoipa::path(
    patch, path = "/admin/sources/{id}", tag = "admin: sources", operation_id = "updateSource", summary = "Change a source's webhook encoding, or revoke it",
    params(("id" = i64, Path, minimum = 1, description = "The source's id")),
    request_body = UpdateSourceRequest,
    security(("admin_token" = [])),
    responses((status = 200, description = "The source", body = Envelope<SourceView>), UpdateSourceErrors)
)]
pub async fn update_source(
    _: Admin,
    State(state): State<AppState>,
    RowId(id): RowId<SourceId>,
    JsonBody(request): JsonBody<UpdateSourceRequest>,
) -> Result<Json<Envelope<SourceView>>, HttpError> {
    let source = state
        .store
        .update_source(id, request.webhook_json, request.active)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(Envelope::data(source_view(source, &state))))
}

error_set!(TerminalsErrors: [ADMIN]);

/// `GET /api/admin/terminals`.
#[utoipa::path(
    get, path = "/admin/terminals", tag = "admin: terminals", operation_id = "listTerminals", summary = "Terminals with their health",
    security(("admin_token" = [])),
    responses((status = 200, description = "Every terminal", body = Envelope<Vec<TerminalView>>), TerminalsErrors)
)]
pub async fn terminals(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Envelope<Vec<TerminalView>>>, HttpError> {
    let holds = state.store.terminal_holds().await?;
    Ok(Json(Envelope::data(
        state
            .store
            .terminals()
            .await?
            .into_iter()
            .map(|terminal| terminal_view(terminal, &holds, &state))
            .collect(),
    )))
}

error_set!(AddTerminalErrors: [ADMIN, BODY] ValidationError);

/// `POST /api/admin/terminals`: added to the pool, waiting for an operator to register it
/// (`POST /api/admin/terminals/{id}/register`: a cashier accepts on the terminal's screen).
#[utoipa::path(
    post, path = "/admin/terminals", tag = "admin: terminals", operation_id = "addTerminal", summary = "Add a terminal",
    description = "Added to the pool, waiting for an operator to register it.",
    request_body = AddTerminalRequest,
    security(("admin_token" = [])),
    responses((status = 201, description = "The terminal", body = Envelope<TerminalView>), AddTerminalErrors)
)]
pub async fn add_terminal(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<AddTerminalRequest>,
) -> Result<Response, HttpError> {
    let invalid =
        |message: &str| HttpError::from(ApiError::with_message(ErrorCode::ValidationError, message));
    for url in [&request.base_url, &request.camera_url] {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("base_url и camera_url: абсолютные http(s) адреса"));
        }
    }
    let tls = match request.tls.as_deref() {
        None | Some("verify") => TerminalTls::Verify {
            server_name: request.tls_server_name,
        },
        Some("insecure") => TerminalTls::Insecure,
        Some(_) => return Err(invalid("tls: verify или insecure")),
    };
    let terminal = NewTerminal {
        name: request.name.trim().to_owned(),
        base_url: request.base_url,
        camera_url: request.camera_url,
        tls,
    };
    if terminal.name.is_empty() {
        return Err(invalid("name: обязательное поле"));
    }
    let added = state
        .store
        .add_terminal(&terminal, state.now())
        .await?
        .ok_or_else(|| invalid("Терминал с таким именем уже есть"))?;
    Ok((
        StatusCode::CREATED,
        Json(Envelope::data(one_terminal_view(added, &state).await?)),
    )
        .into_response())
}

/// `tls` and `tls_server_name` of a request into the stored form.
fn tls_setting(tls: Option<&str>, server_name: Option<String>) -> Result<TerminalTls, HttpError> {
    match tls {
        None | Some("verify") => Ok(TerminalTls::Verify {
            server_name: server_name.filter(|name| !name.trim().is_empty()),
        }),
        Some("insecure") => Ok(TerminalTls::Insecure),
        Some(_) => Err(HttpError::from(ApiError::with_message(
            ErrorCode::ValidationError,
            "tls: verify или insecure",
        ))),
    }
}

fn check_urls(urls: [&str; 2]) -> Result<(), HttpError> {
    if urls
        .iter()
        .all(|url| url.starts_with("http://") || url.starts_with("https://"))
    {
        Ok(())
    } else {
        Err(HttpError::from(ApiError::with_message(
            ErrorCode::ValidationError,
            "base_url и camera_url: абсолютные http(s) адреса",
        )))
    }
}

error_set!(UpdateTerminalErrors: [ADMIN, ROW, BODY] ValidationError);

/// `PATCH /api/admin/terminals/{id}`: enable/disable, or point the terminal at new settings.
#[utoipa::path(
    patch, path = "/admin/terminals/{id}", tag = "admin: terminals", operation_id = "updateTerminal", summary = "Enable or disable a terminal, or change its settings",
    params(("id" = i64, Path, minimum = 1, description = "The terminal's id")),
    request_body = UpdateTerminalRequest,
    security(("admin_token" = [])),
    responses((status = 200, description = "The terminal", body = Envelope<TerminalView>), UpdateTerminalErrors)
)]
pub async fn update_terminal(
    _: Admin,
    State(state): State<AppState>,
    RowId(id): RowId<TerminalId>,
    JsonBody(request): JsonBody<UpdateTerminalRequest>,
) -> Result<Json<Envelope<TerminalView>>, HttpError> {
    let current = state.store.terminal(id).await?.ok_or_else(not_found)?;
    let edits = request.base_url.is_some()
        || request.camera_url.is_some()
        || request.tls.is_some()
        || request.tls_server_name.is_some();
    if edits {
        let current_name = match &current.terminal.tls {
            TerminalTls::Verify { server_name } => server_name.clone(),
            TerminalTls::Insecure => None,
        };
        let current_mode = if current.terminal.tls == TerminalTls::Insecure {
            "insecure"
        } else {
            "verify"
        };
        let edited = NewTerminal {
            name: current.terminal.name.clone(),
            base_url: request.base_url.unwrap_or(current.terminal.base_url.clone()),
            camera_url: request.camera_url.unwrap_or(current.terminal.camera_url.clone()),
            tls: tls_setting(
                Some(request.tls.as_deref().unwrap_or(current_mode)),
                request.tls_server_name.or(current_name),
            )?,
        };
        check_urls([&edited.base_url, &edited.camera_url])?;
        state.store.edit_terminal(id, &edited).await?;
    }
    if let Some(enabled) = request.enabled {
        state.store.set_terminal_enabled(id, enabled).await?;
    }
    let terminal = state.store.terminal(id).await?.ok_or_else(not_found)?;
    Ok(Json(Envelope::data(one_terminal_view(terminal, &state).await?)))
}

error_set!(TerminalErrors: [ADMIN, ROW]);

/// `GET /api/admin/terminals/{id}`: one terminal, with its registration's progress.
#[utoipa::path(
    get, path = "/admin/terminals/{id}", tag = "admin: terminals", operation_id = "getTerminal", summary = "One terminal, with its registration's progress",
    params(("id" = i64, Path, minimum = 1, description = "The terminal's id")),
    security(("admin_token" = [])),
    responses((status = 200, description = "The terminal", body = Envelope<TerminalView>), TerminalErrors)
)]
pub async fn terminal(
    _: Admin,
    State(state): State<AppState>,
    RowId(id): RowId<TerminalId>,
) -> Result<Json<Envelope<TerminalView>>, HttpError> {
    let terminal = state.store.terminal(id).await?.ok_or_else(not_found)?;
    Ok(Json(Envelope::data(one_terminal_view(terminal, &state).await?)))
}

error_set!(MethodsErrors: [ADMIN]);

/// `GET /api/admin/payment-methods`: all methods, active or not.
#[utoipa::path(
    get, path = "/admin/payment-methods", tag = "admin: methods", operation_id = "listPaymentMethods", summary = "All payment methods, active or not",
    security(("admin_token" = [])),
    responses((status = 200, description = "Every method", body = Envelope<Vec<AdminMethodView>>), MethodsErrors)
)]
pub async fn methods(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Envelope<Vec<AdminMethodView>>>, HttpError> {
    let methods = state.store.payment_methods().await?;
    Ok(Json(Envelope::data(
        methods
            .into_iter()
            .map(|(method, is_active)| AdminMethodView { method, is_active })
            .collect(),
    )))
}

error_set!(UpdateMethodErrors: [ADMIN, ROW, BODY] ValidationError);

/// `PATCH /api/admin/payment-methods/{id}`: percents and the active flag. Operations already
/// started keep the percent they were priced with.
#[utoipa::path(
    patch, path = "/admin/payment-methods/{id}", tag = "admin: methods", operation_id = "updatePaymentMethod", summary = "Edit a method's percents or active flag",
    description = "Operations already started keep the percent they were priced with.",
    params(("id" = i64, Path, minimum = 1, description = "The method's id")),
    request_body = UpdateMethodRequest,
    security(("admin_token" = [])),
    responses((status = 200, description = "The method", body = Envelope<AdminMethodView>), UpdateMethodErrors)
)]
pub async fn update_method(
    _: Admin,
    State(state): State<AppState>,
    RowId(id): RowId<i64>,
    JsonBody(patch): JsonBody<UpdateMethodRequest>,
) -> Result<Json<Envelope<AdminMethodView>>, HttpError> {
    let methods = state.store.payment_methods().await?;
    let (current, _) = methods
        .iter()
        .find(|(method, _)| method.id == id)
        .ok_or_else(not_found)?;
    let mut edited = current.clone();
    if let Some(percent) = patch.commission_percent {
        edited.commission_percent = percent;
    }
    if let Some(percent) = patch.credit_commission_percent {
        edited.credit_commission_percent = percent;
    }
    if let Some(percent) = patch.installment_commission_percent {
        edited.installment_commission_percent = percent;
    }
    // Each part is 0..100 by its type; their sum is what a customer pays on top, and the rule for
    // what a dearer product credits divides by it: more than 100 % is refused, never stored.
    if edited.effective_percent() > byfly_core::Percent::whole(100) {
        return Err(HttpError::from(ApiError::with_message(
            ErrorCode::ValidationError,
            format!(
                "Итоговая комиссия способа оплаты ({} %) не может быть больше 100 %",
                edited.effective_percent()
            ),
        )));
    }
    let (method, is_active) = state
        .store
        .update_method(id, &patch)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(Envelope::data(AdminMethodView { method, is_active })))
}

error_set!(RegisterTerminalErrors: [ADMIN, ROW]);

/// `POST /api/admin/terminals/{id}/register`: starts registering the terminal and answers `202`
/// at once with the registration `pending`. On the terminal's screen a prompt waits for a cashier
/// to accept (up to `terminal_register_timeout_secs`); follow it with
/// `GET /api/admin/terminals/{id}` until it is `approved`, `declined`, `already_registered` (with
/// the on-terminal remedy), `timed_out` or `failed`. A second call while one waits joins it.
#[utoipa::path(
    post, path = "/admin/terminals/{id}/register", tag = "admin: terminals", operation_id = "registerTerminal", summary = "Start registering a terminal",
    description = "Answers at once (`registration.state` pending) while a cashier accepts on the terminal's screen; follow `GET /admin/terminals/{id}`. A second call while one waits joins it.",
    params(("id" = i64, Path, minimum = 1, description = "The terminal's id")),
    security(("admin_token" = [])),
    responses((status = 202, description = "Registration started", body = Envelope<TerminalView>), RegisterTerminalErrors)
)]
pub async fn register_terminal(
    _: Admin,
    State(state): State<AppState>,
    RowId(id): RowId<TerminalId>,
) -> Result<Response, HttpError> {
    let t = state.now();
    let timing = state.pool.timing();
    // A registration left pending longer than it can wait belongs to a process that stopped.
    let stale_before = t - i64::try_from(timing.register_timeout.as_secs()).unwrap_or(i64::MAX) - 60;
    let terminal = match state.store.begin_registration(id, t, stale_before).await? {
        RegistrationStart::Started(terminal) => {
            let pool = state.pool.clone();
            let record = (*terminal).clone();
            // Not tied to this request: the cashier may take minutes, and the outcome is stored.
            tokio::spawn(async move {
                if let Err(err) = pool.register(&record).await {
                    tracing::error!(terminal = record.id.get(), %err, "could not record a registration");
                }
            });
            *terminal
        }
        RegistrationStart::AlreadyPending(terminal) => *terminal,
        RegistrationStart::NotFound => return Err(not_found()),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(Envelope::data(one_terminal_view(terminal, &state).await?)),
    )
        .into_response())
}
