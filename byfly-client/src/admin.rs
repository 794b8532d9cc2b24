//! The operator's API, `/api/admin/*` (`Authorization: Bearer <admin token>`).

use byfly_core::TransactionId;
use byfly_core::wire::{
    AddTerminalRequest, AdminMethodView, AdminPaymentView, ApiKeyView, CreateApiKeyRequest,
    CreateSourceRequest, CreatedApiKey, CreatedSource, OperationView, PaymentList, PaymentListQuery,
    RecoverWebhooksRequest, RecoveredWebhooks, ResolveOperationRequest, SourceView, TerminalView,
    UndeliveredEventList, UndeliveredEventsQuery, UpdateMethodRequest, UpdateSourceRequest,
    UpdateTerminalRequest, WebhookAttemptView, WebhookEventView,
};
use reqwest::Method;

use crate::{Auth, Call, Client, Error, list_query};

/// The admin endpoints, borrowed from a [`Client`] built with an admin token
/// ([`Client::admin`]).
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a> {
    client: &'a Client,
}

fn empty_body() -> serde_json::Value {
    serde_json::json!({})
}

impl<'a> Admin<'a> {
    pub(crate) fn new(client: &'a Client) -> Admin<'a> {
        Admin { client }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: String) -> Result<T, Error> {
        self.client.send(Call::get(path, Auth::Admin)).await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
        body: &impl serde::Serialize,
    ) -> Result<T, Error> {
        self.client.send(Call::post(path, Auth::Admin, body)?).await
    }

    async fn patch<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
        body: &impl serde::Serialize,
    ) -> Result<T, Error> {
        self.client
            .send(Call::with_body(Method::PATCH, path, Auth::Admin, body)?)
            .await
    }

    /// `GET /api/admin/sources`.
    pub async fn sources(&self) -> Result<Vec<SourceView>, Error> {
        self.get("/admin/sources".into()).await
    }

    /// `POST /api/admin/sources`: the answer holds the new source's API token, shown this once.
    pub async fn create_source(&self, request: &CreateSourceRequest) -> Result<CreatedSource, Error> {
        self.post("/admin/sources".into(), request).await
    }

    /// `PATCH /api/admin/sources/{id}`: webhook body encoding, active or revoked.
    pub async fn update_source(&self, id: i64, request: &UpdateSourceRequest) -> Result<SourceView, Error> {
        self.patch(format!("/admin/sources/{id}"), request).await
    }

    /// `GET /api/admin/sources/{id}/keys`: a source's API keys, oldest first (never their tokens).
    pub async fn api_keys(&self, source_id: i64) -> Result<Vec<ApiKeyView>, Error> {
        self.get(format!("/admin/sources/{source_id}/keys")).await
    }

    /// `POST /api/admin/sources/{id}/keys`: a new key, working at once beside the others; the
    /// answer holds its token, shown this once. Rotate by creating one, switching, then
    /// [`Admin::revoke_api_key`] on the old one.
    pub async fn create_api_key(
        &self,
        source_id: i64,
        request: &CreateApiKeyRequest,
    ) -> Result<CreatedApiKey, Error> {
        self.post(format!("/admin/sources/{source_id}/keys"), request)
            .await
    }

    /// `POST /api/admin/sources/{id}/keys/{key_id}/revoke`.
    pub async fn revoke_api_key(&self, source_id: i64, key_id: i64) -> Result<ApiKeyView, Error> {
        self.post(
            format!("/admin/sources/{source_id}/keys/{key_id}/revoke"),
            &empty_body(),
        )
        .await
    }

    /// `GET /api/admin/terminals`.
    pub async fn terminals(&self) -> Result<Vec<TerminalView>, Error> {
        self.get("/admin/terminals".into()).await
    }

    /// `POST /api/admin/terminals`.
    pub async fn add_terminal(&self, request: &AddTerminalRequest) -> Result<TerminalView, Error> {
        self.post("/admin/terminals".into(), request).await
    }

    /// `PATCH /api/admin/terminals/{id}`.
    pub async fn update_terminal(
        &self,
        id: i64,
        request: &UpdateTerminalRequest,
    ) -> Result<TerminalView, Error> {
        self.patch(format!("/admin/terminals/{id}"), request).await
    }

    /// `GET /api/admin/terminals/{id}`: one terminal, with its registration's progress.
    pub async fn terminal(&self, id: i64) -> Result<TerminalView, Error> {
        self.get(format!("/admin/terminals/{id}")).await
    }

    /// `POST /api/admin/terminals/{id}/register`: starts registering the terminal. The answer
    /// comes at once with the registration `pending`: the terminal shows a prompt that a cashier
    /// must accept (follow it with [`Admin::wait_for_registration`]).
    pub async fn register_terminal(&self, id: i64) -> Result<TerminalView, Error> {
        self.post(format!("/admin/terminals/{id}/register"), &empty_body())
            .await
    }

    /// Follows a terminal's registration (once a second) until it is decided or `timeout` passes,
    /// calling `on_wait` with each view while it is pending; returns the last view (check
    /// `registration.state`: `approved`, or why not).
    pub async fn wait_for_registration(
        &self,
        id: i64,
        timeout: std::time::Duration,
        mut on_wait: impl FnMut(&TerminalView),
    ) -> Result<TerminalView, Error> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let view = self.terminal(id).await?;
            let pending = view
                .registration
                .as_ref()
                .is_some_and(|registration| !registration.is_final());
            if !pending || std::time::Instant::now() >= deadline {
                return Ok(view);
            }
            on_wait(&view);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// `GET /api/admin/payment-methods` (active and inactive).
    pub async fn methods(&self) -> Result<Vec<AdminMethodView>, Error> {
        self.get("/admin/payment-methods".into()).await
    }

    /// `PATCH /api/admin/payment-methods/{id}`: commissions, active.
    pub async fn update_method(
        &self,
        id: i64,
        request: &UpdateMethodRequest,
    ) -> Result<AdminMethodView, Error> {
        self.patch(format!("/admin/payment-methods/{id}"), request).await
    }

    /// `GET /api/admin/payments`: every source's payments (or one source's), newest first.
    pub async fn payments(
        &self,
        source_id: Option<i64>,
        query: &PaymentListQuery,
    ) -> Result<PaymentList, Error> {
        let mut call = Call::get("/admin/payments".into(), Auth::Admin);
        call.query = list_query(query);
        if let Some(source_id) = source_id {
            call.query.push(("source_id", source_id.to_string()));
        }
        self.client.send(call).await
    }

    /// `GET /api/admin/payments/{id}`: the payment with its terminal operations.
    pub async fn payment(&self, id: &TransactionId) -> Result<AdminPaymentView, Error> {
        self.get(format!("/admin/payments/{id}")).await
    }

    /// `GET /api/admin/payments/{id}/webhooks`: its events and every delivery attempt.
    pub async fn payment_webhooks(&self, id: &TransactionId) -> Result<Vec<WebhookEventView>, Error> {
        self.get(format!("/admin/payments/{id}/webhooks")).await
    }

    /// `POST /api/admin/webhooks/{event_id}/retry`: sends the event now (even if delivered) and
    /// returns the attempt.
    pub async fn retry_webhook(&self, event_id: &str) -> Result<WebhookAttemptView, Error> {
        let path = format!("/admin/webhooks/{}/retry", crate::path_segment(event_id));
        self.post(path, &empty_body()).await
    }

    /// `GET /api/admin/webhooks`: undelivered events across payments (pending, failed, exhausted),
    /// oldest first; follow `next_cursor` for more.
    pub async fn undelivered_webhooks(
        &self,
        query: &UndeliveredEventsQuery,
    ) -> Result<UndeliveredEventList, Error> {
        let mut call = Call::get("/admin/webhooks".into(), Auth::Admin);
        // The state as the API spells it: its serde name.
        let state = query
            .state
            .and_then(|state| serde_json::to_value(state).ok())
            .and_then(|value| value.as_str().map(str::to_owned));
        let pairs = [
            ("source_id", query.source_id.map(|id| id.to_string())),
            ("state", state),
            ("since", query.since.clone()),
            ("limit", query.limit.map(|limit| limit.to_string())),
            ("cursor", query.cursor.clone()),
        ];
        call.query = pairs
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, value)))
            .collect();
        self.client.send(call).await
    }

    /// `POST /api/admin/webhooks/recover`: every failed or exhausted event of the source's payments
    /// since `since` gets a fresh schedule and goes out again, in order. Returns how many.
    pub async fn recover_webhooks(
        &self,
        request: &RecoverWebhooksRequest,
    ) -> Result<RecoveredWebhooks, Error> {
        self.post("/admin/webhooks/recover".into(), request).await
    }

    /// `GET /api/admin/operations/review`: operations waiting for an operator (a long `unknown`,
    /// a process the terminal forgot after a customer could have paid, a start without an answer).
    pub async fn review(&self) -> Result<Vec<OperationView>, Error> {
        self.get("/admin/operations/review".into()).await
    }

    /// `POST /api/admin/operations/{id}/resolve`: the operator's decision — paid (with the
    /// amount the terminal's history shows) or not paid — settled like a terminal's answer.
    pub async fn resolve_operation(
        &self,
        id: i64,
        request: &ResolveOperationRequest,
    ) -> Result<OperationView, Error> {
        self.post(format!("/admin/operations/{id}/resolve"), request)
            .await
    }
}
