//! Human output: amounts in tenge with thousands separators, aligned tables, QR codes drawn with
//! Unicode half blocks, and the summaries of payments, operations and refunds.

use byfly_core::Money;
use byfly_core::wire::{KaspiResponse, PaymentStatusView, PaymentView, RefundView};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// `114 000 ₸`, `12 281.25 ₸`, `-500 ₸`: groups of three digits, the tenge sign after.
pub fn tenge(amount: Money) -> String {
    let text = amount.to_string();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (position, digit) in whole.chars().enumerate() {
        if position > 0 && (whole.len() - position) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(fraction) => format!("{sign}{grouped}.{fraction} ₸"),
        None => format!("{sign}{grouped} ₸"),
    }
}

/// A QR code as text: two modules per character cell with `▀ ▄ █`, light modules drawn, so that
/// it scans off a terminal with a dark background; `light_background` swaps them. The quiet zone
/// is included (scanners need it).
pub fn qr(text: &str, light_background: bool) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let (dark, light) = if light_background {
        (Dense1x2::Dark, Dense1x2::Light)
    } else {
        (Dense1x2::Light, Dense1x2::Dark)
    };
    Some(
        code.render::<Dense1x2>()
            .dark_color(dark)
            .light_color(light)
            .quiet_zone(true)
            .build(),
    )
}

/// Columns padded to their widest cell (counted in characters), two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// `label   value` lines, labels padded to the longest.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(label, value)| format!("  {label}{}  {value}", " ".repeat(width - label.chars().count())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The amount line: `114 000 ₸ (100 000 ₸ + commission 14 000 ₸)` when a commission was added.
fn amount_line(amount: Money, original: Money, commission: Money) -> String {
    if commission.is_zero() {
        tenge(amount)
    } else {
        format!(
            "{} ({} + commission {})",
            tenge(amount),
            tenge(original),
            tenge(commission)
        )
    }
}

/// What `status` prints: the status and the figures, and what is still to pay.
pub fn status(view: &PaymentStatusView) -> String {
    let mut pairs = vec![
        (
            "amount",
            amount_line(view.amount, view.original_amount, view.commission_amount),
        ),
        ("paid", tenge(view.paid_amount)),
        ("remaining", tenge(view.remaining_amount)),
    ];
    if view.overpaid_amount.is_positive() {
        pairs.push(("overpaid", tenge(view.overpaid_amount)));
    }
    if view.refunded_amount.is_positive() {
        pairs.push(("refunded", tenge(view.refunded_amount)));
    }
    if let Some(paid_at) = &view.paid_at {
        pairs.push(("paid at", paid_at.clone()));
    }
    let mut out = format!("{}  {}\n{}", view.transaction_id, view.status, fields(&pairs));
    if view.status == byfly_core::PaymentStatus::PartiallyPaid {
        out.push_str(&format!(
            "\nTop-up needed: {} (byfly kaspi {} to start it)",
            tenge(view.remaining_amount),
            view.transaction_id
        ));
    }
    out
}

/// What `show` prints: the whole public view.
pub fn payment(view: &PaymentView) -> String {
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "—".into());
    let mut pairs = vec![
        (
            "amount",
            amount_line(view.amount, view.original_amount, view.commission_amount),
        ),
        ("paid", tenge(view.paid_amount)),
        ("remaining", tenge(view.remaining_amount)),
        ("overpaid", tenge(view.overpaid_amount)),
        ("refunded", tenge(view.refunded_amount)),
        ("currency", view.currency.clone()),
        ("description", optional(&view.description)),
        ("method", optional(&view.payment_method)),
        ("payment link", optional(&view.payment_url)),
        ("created at", view.created_at.clone()),
        ("expires at", view.expires_at.clone()),
        ("paid at", optional(&view.paid_at)),
    ];
    if let Some(ends) = &view.operation_expires_at {
        pairs.push(("operation ends", ends.clone()));
    }
    format!("{}  {}\n{}", view.transaction_id, view.status, fields(&pairs))
}

/// What `kaspi` prints: what the terminal charges, the link, and the QR to scan off the screen.
pub fn kaspi(method: &str, answer: &KaspiResponse, light_background: bool, with_qr: bool) -> String {
    let charge = if answer.commission_amount.is_zero() {
        tenge(answer.amount)
    } else {
        format!(
            "{} ({} + {} % commission {})",
            tenge(answer.amount),
            tenge(answer.original_amount),
            answer.commission_percent,
            tenge(answer.commission_amount)
        )
    };
    let mut out = format!(
        "{}: {method} on terminal #{}\n{}",
        answer.transaction_id,
        answer.terminal_id,
        fields(&[
            ("to pay", charge),
            ("payment link", answer.payment_url.clone()),
            ("QR", answer.qr_code.clone()),
            (
                "operation ends",
                answer.expires_at.clone().unwrap_or_else(|| "—".into())
            ),
        ])
    );
    if with_qr && let Some(drawn) = qr(&answer.qr_code, light_background) {
        out.push_str("\nScan with the Kaspi app:\n");
        out.push_str(&drawn);
    }
    out
}

/// What `refund` prints; while the customer must confirm, the confirmation link and its QR.
pub fn refund(view: &RefundView, light_background: bool) -> String {
    let status_text = |status: byfly_core::wire::RefundStatus| {
        serde_json::to_value(status)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let mut pairs = vec![
        ("payment", view.transaction_id.to_string()),
        ("amount", tenge(view.amount)),
        ("status", status_text(view.status)),
        ("refunded", tenge(view.refunded_amount)),
        ("created at", view.created_at.clone()),
    ];
    if let Some(url) = &view.refund_url {
        pairs.push(("confirm link", url.clone()));
    }
    let mut out = format!("refund {}\n{}", view.refund_id, fields(&pairs));
    // A request spanning operations: each terminal refund in the order they run.
    if view.parts.len() > 1 {
        out.push_str("\n  parts:");
        for (at, part) in view.parts.iter().enumerate() {
            out.push_str(&format!(
                "\n    {}. {} — {}",
                at + 1,
                tenge(part.amount),
                status_text(part.status)
            ));
        }
    }
    if let Some(drawn) = view
        .qr_code
        .as_deref()
        .and_then(|text| qr(text, light_background))
    {
        out.push_str("\nThe customer confirms it by scanning with the Kaspi app:\n");
        out.push_str(&drawn);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_grouped_by_thousands() {
        let cases = [
            ("0", "0 ₸"),
            ("500", "500 ₸"),
            ("1000", "1 000 ₸"),
            ("114000", "114 000 ₸"),
            ("12281.25", "12 281.25 ₸"),
            ("100000000", "100 000 000 ₸"),
            ("1234567.5", "1 234 567.5 ₸"),
        ];
        for (amount, expected) in cases {
            assert_eq!(tenge(Money::parse(amount).unwrap()), expected, "{amount}");
        }
    }

    #[test]
    fn a_refund_spanning_operations_lists_its_parts_in_order() {
        use byfly_core::wire::{RefundPart, RefundStatus};
        let part = |amount: i64, status| RefundPart {
            amount: Money::from_tenge(amount),
            status,
            refund_url: None,
            qr_code: None,
        };
        let view = RefundView {
            refund_id: "rf_1".into(),
            transaction_id: byfly_core::TransactionId::parse("1C47E6366F5D").unwrap(),
            amount: Money::from_tenge(100_000),
            status: RefundStatus::WaitingConfirmation,
            refund_url: None,
            qr_code: None,
            created_at: "2026-12-01 12:00:00".into(),
            refunded_amount: Money::from_tenge(87_719),
            parts: vec![
                part(87_719, RefundStatus::Completed),
                part(12_281, RefundStatus::WaitingConfirmation),
            ],
        };
        let out = refund(&view, true);
        assert!(out.contains("refunded    87 719 ₸"), "{out}");
        assert!(
            out.ends_with("  parts:\n    1. 87 719 ₸ — completed\n    2. 12 281 ₸ — waiting_confirmation"),
            "{out}"
        );
    }

    #[test]
    fn tables_align_on_characters_not_bytes() {
        let rows = vec![
            vec!["1".into(), "Kaspi Кредит".into()],
            vec!["22".into(), "Gold".into()],
        ];
        assert_eq!(
            table(&["id", "name"], &rows),
            "id  name\n1   Kaspi Кредит\n22  Gold"
        );
    }
}
