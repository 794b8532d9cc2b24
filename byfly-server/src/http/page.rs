//! The customer's side: the hosted payment page `GET /pay/{id}` (HTML shell; its script and style
//! are compiled into the binary and served from `/pay/assets/`, so the page works offline and
//! under a strict Content-Security-Policy), the current operation's QR as SVG, and the quotes the
//! page shows before the customer chooses a method.
//!
//! The page only calls the public endpoints, so it can show nothing they do not.

use super::openapi::errors::error_set;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byfly_core::ErrorCode;
use byfly_core::wire::{Envelope, MethodQuoteView};

use super::errors::HttpError;
use super::extract::{PathSegments, PaymentPath, find_payment};
use super::payments::active;
use super::state::AppState;
use crate::services::settle::ledger_of;

const PAGE_JS: &str = include_str!("../../assets/pay.js");
const PAGE_CSS: &str = include_str!("../../assets/pay.css");

/// The page's policy: nothing but this server's own script, style, images and API; no inline
/// code, no frames, no forms posting elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Headers every page response carries.
fn with_page_headers(response: Response, content_type: &'static str, cache: &'static str) -> Response {
    secured(response, content_type, cache, CONTENT_SECURITY_POLICY)
}

/// `response` as a page of ours is served (the payment page's, the console's): its type, caching,
/// policy, and no sniffing, referrer or framing.
pub(super) fn secured(
    mut response: Response,
    content_type: &'static str,
    cache: &'static str,
    policy: &'static str,
) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, cache),
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Escapes text for HTML element content and attribute values (also the documentation page's).
pub(in crate::http) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The HTML shell; `id` is checked by the caller (12 uppercase hex digits) but escaped anyway.
fn shell(id: &str, demo: bool, version: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="ru">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Оплата через Kaspi</title>
<link rel="stylesheet" href="/pay/assets/pay.css?v={version}">
<script src="/pay/assets/pay.js?v={version}" defer></script>
</head>
<body>
<main id="app" data-transaction-id="{id}" data-demo="{demo}" aria-live="polite">
<p class="muted">Загрузка…</p>
<noscript><p>Для оплаты включите JavaScript в браузере.</p></noscript>
</main>
</body>
</html>
"#,
        id = escape(id),
        version = escape(version),
    )
}

error_set!(PayPageErrors: []);

/// `GET /pay/{id}`: the payment page. An id that cannot exist gets the same page with a 404
/// status; the script then shows «Платёж не найден».
#[utoipa::path(
    get, path = "/pay/{id}", tag = "page", operation_id = "paymentPage", summary = "The payment page",
    description = "The same page for an id that names nothing, with status 404 (the page then says «Платёж не найден»).",
    params(("id" = String, Path, description = "The payment's transaction_id")),
    responses((status = 200, description = "The page", content_type = "text/html", body = String), (status = 404, description = "The page, for a payment that does not exist", content_type = "text/html", body = String), PayPageErrors)
)]
pub async fn pay_page(State(state): State<AppState>, path: PathSegments) -> Response {
    let id = path.get("id");
    let status = match find_payment(&state, id).await {
        Ok(_) => StatusCode::OK,
        // A failure inside is the envelope's 500 (logged once with the request), not a 404 page.
        Err(failure) if failure.is_internal() => return failure.into_response(),
        Err(_) => StatusCode::NOT_FOUND,
    };
    let html = shell(id, state.settings.demo_mode, env!("CARGO_PKG_VERSION"));
    with_page_headers(
        (status, html).into_response(),
        "text/html; charset=utf-8",
        "no-store",
    )
}

error_set!(ScriptErrors: []);

/// `GET /pay/assets/pay.js`.
#[utoipa::path(
    get, path = "/pay/assets/pay.js", tag = "page", operation_id = "paymentPageScript", summary = "The payment page's script",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String), ScriptErrors)
)]
pub async fn script() -> Response {
    with_page_headers(
        PAGE_JS.into_response(),
        "text/javascript; charset=utf-8",
        "public, max-age=300",
    )
}

error_set!(StyleErrors: []);

/// `GET /pay/assets/pay.css`.
#[utoipa::path(
    get, path = "/pay/assets/pay.css", tag = "page", operation_id = "paymentPageStyle", summary = "The payment page's style sheet",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String), StyleErrors)
)]
pub async fn style() -> Response {
    with_page_headers(
        PAGE_CSS.into_response(),
        "text/css; charset=utf-8",
        "public, max-age=300",
    )
}

error_set!(QrErrors: [PAYMENT] NotFound);

/// `GET /api/payment/{id}/qr.svg` (public): the current operation's QR, drawn by the server so
/// the page needs no QR library. 404 when no operation is running.
#[utoipa::path(
    get, path = "/payment/{id}/qr.svg", tag = "page", operation_id = "paymentQr", summary = "The current operation's QR code as an SVG image",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    responses((status = 200, description = "The QR", content_type = "image/svg+xml", body = String), QrErrors)
)]
pub async fn qr_svg(
    State(state): State<AppState>,
    PaymentPath(record): PaymentPath,
) -> Result<Response, HttpError> {
    let (_, current) = super::payments::figures(&state, &record).await?;
    let text = current
        .and_then(|op| op.qr_code)
        .ok_or_else(|| HttpError::code(ErrorCode::NotFound))?;
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|err| HttpError::internal(err.to_string()))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    Ok(with_page_headers(
        svg.into_response(),
        "image/svg+xml",
        "no-store",
    ))
}

error_set!(QuotesErrors: [PAYMENT]);

/// `GET /api/payment/{id}/quotes` (public): for each active method, what `/kaspi` would charge
/// now — on the whole amount, or on what remains after a partial payment. Empty when nothing is
/// left to pay.
#[utoipa::path(
    get, path = "/payment/{id}/quotes", tag = "methods", operation_id = "paymentQuotes", summary = "What each active method would charge now",
    description = "On the whole amount, or on what remains after a partial payment; empty when nothing is left to pay.",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    responses((status = 200, description = "One quote per active method", body = Envelope<Vec<MethodQuoteView>>), QuotesErrors)
)]
pub async fn quotes(
    State(state): State<AppState>,
    PaymentPath(record): PaymentPath,
) -> Result<Json<Envelope<Vec<MethodQuoteView>>>, HttpError> {
    let operations = state.store.operations(record.id).await?;
    let (ledger, _) = ledger_of(&record, &operations);
    let quotes = active(state.store.payment_methods().await?)
        .iter()
        .filter_map(|method| {
            let quote = ledger.quote_next(method).ok()?;
            Some(MethodQuoteView {
                payment_method: method.code.to_string(),
                name: method.name.clone(),
                icon_emoji: method.icon_emoji.clone(),
                commission_percent: method.charged_percent(),
                original_amount: quote.base,
                commission_amount: quote.commission,
                amount: quote.charge,
            })
        })
        .collect();
    Ok(Json(Envelope::data(quotes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_escapes_what_it_embeds() {
        let html = shell(r#"<x y="1">"#, true, "1.0");
        assert!(html.contains(r#"data-transaction-id="&lt;x y=&quot;1&quot;&gt;""#));
        assert!(html.contains(r#"data-demo="true""#));
        assert!(!html.contains("<script>"), "no inline script");
    }
}
