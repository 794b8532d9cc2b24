//! A source's API keys (admin API): several per source, each with a name, an optional expiry and
//! a revocation. Rotating a token without downtime: create a key, switch the merchant system to
//! its token, revoke the old key — both work in between. A leaked token is revoked the same way,
//! and the source keeps its payments and their history. Tokens stay 64 characters (the guide's
//! clients check nothing else) and are stored only as their SHA-256.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use byfly_core::ApiToken;
use byfly_core::ErrorCode;
use byfly_core::error::ApiError;
use byfly_core::wire::{ApiKeyView, CreateApiKeyRequest, CreatedApiKey, Envelope};

use super::admin::{Admin, not_found, person_name};
use super::errors::HttpError;
use super::extract::{JsonBody, PathSegments, RowId, datetime};
use super::openapi::errors::error_set;
use super::state::AppState;
use crate::random::OsRandom;
use crate::store::{ApiKeyId, ApiKeyRecord, NewApiKey, SourceId};

fn key_view(key: ApiKeyRecord, state: &AppState) -> ApiKeyView {
    let offset = state.settings.offset;
    ApiKeyView {
        id: key.id.get(),
        source_id: key.source_id.get(),
        active: key.is_live(state.now()),
        name: key.name,
        hint: key.hint,
        created_at: offset.format(key.created_at),
        expires_at: key.expires_at.map(|at| offset.format(at)),
        revoked_at: key.revoked_at.map(|at| offset.format(at)),
        last_used_at: key.last_used_at.map(|at| offset.format(at)),
    }
}

/// The source the path names, which must exist.
async fn existing_source(state: &AppState, id: SourceId) -> Result<(), HttpError> {
    state.store.source(id).await?.map(|_| ()).ok_or_else(not_found)
}

error_set!(ListKeysErrors: [ADMIN, ROW]);

/// `GET /api/admin/sources/{id}/keys`.
#[utoipa::path(
    get, path = "/admin/sources/{id}/keys", tag = "admin: sources", operation_id = "listApiKeys", summary = "A source's API keys, oldest first",
    params(("id" = i64, Path, minimum = 1, description = "The source's id")),
    security(("admin_token" = [])),
    responses((status = 200, description = "Its keys (never their tokens)", body = Envelope<Vec<ApiKeyView>>), ListKeysErrors)
)]
pub async fn list_keys(
    _: Admin,
    State(state): State<AppState>,
    RowId(id): RowId<SourceId>,
) -> Result<Json<Envelope<Vec<ApiKeyView>>>, HttpError> {
    existing_source(&state, id).await?;
    let keys = state.store.api_keys(id).await?;
    Ok(Json(Envelope::data(
        keys.into_iter().map(|key| key_view(key, &state)).collect(),
    )))
}

error_set!(CreateKeyErrors: [ADMIN, ROW, BODY] ValidationError);

/// `POST /api/admin/sources/{id}/keys`: the token is in this answer only.
#[utoipa::path(
    post, path = "/admin/sources/{id}/keys", tag = "admin: sources", operation_id = "createApiKey", summary = "Add an API key to a source",
    description = "The new token works at once, beside the source's other keys: switch the merchant system to it, then revoke the old key. The token is in this answer only (stored as a hash).",
    params(("id" = i64, Path, minimum = 1, description = "The source's id")),
    request_body = CreateApiKeyRequest,
    security(("admin_token" = [])),
    responses((status = 201, description = "The key and its token", body = Envelope<CreatedApiKey>), CreateKeyErrors)
)]
pub async fn create_key(
    _: Admin,
    State(state): State<AppState>,
    RowId(id): RowId<SourceId>,
    JsonBody(request): JsonBody<CreateApiKeyRequest>,
) -> Result<Response, HttpError> {
    existing_source(&state, id).await?;
    let name = person_name(&request.name)?;
    let expires_at = match request.expires_at.as_deref() {
        None => None,
        Some(text) => {
            let at = datetime(&state, "expires_at", text)?;
            if at <= state.now() {
                return Err(HttpError::from(ApiError::with_message(
                    ErrorCode::ValidationError,
                    "expires_at: момент в будущем",
                )));
            }
            Some(at)
        }
    };
    let token = ApiToken::generate(&mut OsRandom);
    let text = token.expose();
    let hint = &text[text.len() - 4..];
    let key = NewApiKey {
        name,
        token_hash: &token.hash(),
        hint,
        expires_at,
    };
    let key = state.store.create_api_key(id, key, state.now()).await?;
    let created = CreatedApiKey {
        key: key_view(key, &state),
        api_token: text.to_owned(),
    };
    Ok((StatusCode::CREATED, Json(Envelope::data(created))).into_response())
}

error_set!(RevokeKeyErrors: [ADMIN, ROW]);

/// `POST /api/admin/sources/{id}/keys/{key_id}/revoke`.
#[utoipa::path(
    post, path = "/admin/sources/{id}/keys/{key_id}/revoke", tag = "admin: sources", operation_id = "revokeApiKey", summary = "Revoke one of a source's API keys",
    description = "Its token stops working at once in this process and within a second in every other; the source and its other keys go on. Revoking a revoked key changes nothing.",
    params(("id" = i64, Path, minimum = 1, description = "The source's id"), ("key_id" = i64, Path, minimum = 1, description = "The key's id")),
    security(("admin_token" = [])),
    responses((status = 200, description = "The key, revoked", body = Envelope<ApiKeyView>), RevokeKeyErrors)
)]
pub async fn revoke_key(
    _: Admin,
    State(state): State<AppState>,
    RowId(id): RowId<SourceId>,
    path: PathSegments,
) -> Result<Json<Envelope<ApiKeyView>>, HttpError> {
    let key_id = path.row_id("key_id").map(ApiKeyId).ok_or_else(not_found)?;
    let key = state
        .store
        .revoke_api_key(id, key_id, state.now())
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(Envelope::data(key_view(key, &state))))
}
