//! Payment methods, their pricing, and the Kaspi products a customer can actually pay with.
//!
//! A method is the merchant-facing choice ("Kaspi Кредит, +14 %"); a product is what the Kaspi app
//! really used (`addInfo.ProductType` of the terminal's answer). The two can differ — a customer
//! shown a Gold price may pay by credit — and the ledger uses both percents to credit the payment.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::money::Percent;

/// The code of a payment method (`kaspi_gold`, `kaspi_kredit`, ...). Methods are editable data, so
/// the code is an open set; the seeded ones are associated constants.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MethodCode(String);

impl MethodCode {
    /// Kaspi Gold: a debit card, no commission.
    pub const GOLD: &'static str = "kaspi_gold";
    /// Kaspi Red: a card, no commission.
    pub const RED: &'static str = "kaspi_red";
    /// Kaspi Кредит: credit, +14 % paid by the customer.
    pub const KREDIT: &'static str = "kaspi_kredit";
    /// Kaspi Рассрочка: installments, +14 % paid by the customer.
    pub const RASSROCHKA: &'static str = "kaspi_rassrochka";

    /// A method code as given (no alias resolution; see [`MethodCode::resolve`]).
    pub fn new(code: impl Into<String>) -> MethodCode {
        MethodCode(code.into())
    }

    /// The code a `/kaspi` request names, with the deployed system's codes accepted as aliases and
    /// an absent or blank one meaning Kaspi Gold (`spec/API.md` §3.3).
    pub fn resolve(requested: Option<&str>) -> MethodCode {
        let code = requested
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or(Self::GOLD);
        let canonical = match code {
            "kaspi_credit" => Self::KREDIT,
            "kaspi_installment_12" | "kaspi_installment_24" => Self::RASSROCHKA,
            other => other,
        };
        MethodCode(canonical.to_owned())
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MethodCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MethodCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MethodCode({})", self.0)
    }
}

/// A payment method exactly as `GET /api/payment-methods/active` shows it in the guide: the same
/// fields, names, types and order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    /// Stable numeric id; `payment_method_id` of an init request names it.
    pub id: i64,
    /// The code a `/kaspi` request names.
    pub code: MethodCode,
    /// Display name (`Kaspi Кредит`).
    pub name: String,
    /// `card`, `credit` or `installment`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `kaspi` for now; kept because the guide's clients read it.
    pub provider: String,
    /// The guide's country reference (1 = Kazakhstan).
    pub country_id: i64,
    /// The currency the terminal charges in; an init request's currency must match an active method's.
    pub payment_currency: String,
    /// Shown on the payment page.
    pub icon_emoji: String,
    /// Base commission percent of the method.
    pub commission_percent: Percent,
    /// Whether the credit percent applies.
    pub has_credit: bool,
    /// Percent added for credit.
    pub credit_commission_percent: Percent,
    /// Whether the installment percent applies.
    pub has_installment: bool,
    /// Offered terms, e.g. `"3,6,12"`.
    pub installment_months: Option<String>,
    /// Percent added for installments.
    pub installment_commission_percent: Percent,
    /// Whether the commission is added to what the customer is charged (else the merchant absorbs it).
    pub add_commission_to_amount: bool,
}

impl PaymentMethod {
    /// `p = commission + (credit ? credit % : 0) + (installment ? installment % : 0)`.
    pub fn effective_percent(&self) -> Percent {
        let credit = if self.has_credit {
            self.credit_commission_percent
        } else {
            Percent::ZERO
        };
        let installment = if self.has_installment {
            self.installment_commission_percent
        } else {
            Percent::ZERO
        };
        self.commission_percent.plus(credit).plus(installment)
    }

    /// The percent added to the customer's charge: the effective percent, or zero when the
    /// merchant absorbs the commission.
    pub fn charged_percent(&self) -> Percent {
        if self.add_commission_to_amount {
            self.effective_percent()
        } else {
            Percent::ZERO
        }
    }

    /// The four methods a new installation starts with (`spec/API.md` §7).
    pub fn seeded() -> Vec<PaymentMethod> {
        let base = |id, code: &str, name: &str, kind: &str, icon: &str| PaymentMethod {
            id,
            code: MethodCode::new(code),
            name: name.to_owned(),
            kind: kind.to_owned(),
            provider: "kaspi".to_owned(),
            country_id: 1,
            payment_currency: "KZT".to_owned(),
            icon_emoji: icon.to_owned(),
            commission_percent: Percent::ZERO,
            has_credit: false,
            credit_commission_percent: Percent::ZERO,
            has_installment: false,
            installment_months: None,
            installment_commission_percent: Percent::ZERO,
            add_commission_to_amount: false,
        };
        vec![
            base(1, MethodCode::GOLD, "Kaspi Gold", "card", "💳"),
            base(2, MethodCode::RED, "Kaspi Red", "card", "💳"),
            PaymentMethod {
                has_credit: true,
                credit_commission_percent: Percent::whole(14),
                add_commission_to_amount: true,
                ..base(3, MethodCode::KREDIT, "Kaspi Кредит", "credit", "💰")
            },
            PaymentMethod {
                has_installment: true,
                installment_months: Some("3,6,12".to_owned()),
                installment_commission_percent: Percent::whole(14),
                add_commission_to_amount: true,
                ..base(4, MethodCode::RASSROCHKA, "Kaspi Рассрочка", "installment", "📅")
            },
        ]
    }
}

/// The Kaspi product a customer actually paid with, from the terminal's `addInfo.ProductType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProductType {
    /// `Gold`.
    Gold,
    /// `Red`.
    Red,
    /// `Loan` or `Credit`.
    Credit,
    /// `Installment`.
    Installment,
}

impl ProductType {
    /// Reads the terminal's text leniently (case and surrounding spaces ignored); `None` for an
    /// absent or unknown product, in which case the operation's own method is assumed.
    pub fn from_terminal(text: &str) -> Option<ProductType> {
        match text.trim().to_ascii_lowercase().as_str() {
            "gold" => Some(ProductType::Gold),
            "red" => Some(ProductType::Red),
            "loan" | "credit" => Some(ProductType::Credit),
            "installment" => Some(ProductType::Installment),
            _ => None,
        }
    }

    /// The text the terminal (and the simulator) uses for this product.
    pub fn terminal_name(self) -> &'static str {
        match self {
            ProductType::Gold => "Gold",
            ProductType::Red => "Red",
            ProductType::Credit => "Loan",
            ProductType::Installment => "Installment",
        }
    }

    /// The method whose effective percent applies to money paid with this product.
    pub fn method_code(self) -> MethodCode {
        MethodCode::new(match self {
            ProductType::Gold => MethodCode::GOLD,
            ProductType::Red => MethodCode::RED,
            ProductType::Credit => MethodCode::KREDIT,
            ProductType::Installment => MethodCode::RASSROCHKA,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_default_resolve_to_seeded_codes() {
        assert_eq!(MethodCode::resolve(None).as_str(), "kaspi_gold");
        assert_eq!(MethodCode::resolve(Some("  ")).as_str(), "kaspi_gold");
        assert_eq!(MethodCode::resolve(Some("kaspi_credit")).as_str(), "kaspi_kredit");
        assert_eq!(
            MethodCode::resolve(Some("kaspi_installment_12")).as_str(),
            "kaspi_rassrochka"
        );
        assert_eq!(
            MethodCode::resolve(Some("kaspi_installment_24")).as_str(),
            "kaspi_rassrochka"
        );
        assert_eq!(MethodCode::resolve(Some("kaspi_red")).as_str(), "kaspi_red");
        assert_eq!(MethodCode::resolve(Some("paypal")).as_str(), "paypal");
    }

    #[test]
    fn seeded_methods_have_the_guides_percents() {
        let methods = PaymentMethod::seeded();
        let percent = |code: &str| {
            let method = methods.iter().find(|m| m.code.as_str() == code).unwrap();
            (method.effective_percent(), method.charged_percent())
        };
        assert_eq!(percent("kaspi_gold"), (Percent::ZERO, Percent::ZERO));
        assert_eq!(percent("kaspi_red"), (Percent::ZERO, Percent::ZERO));
        assert_eq!(percent("kaspi_kredit"), (Percent::whole(14), Percent::whole(14)));
        assert_eq!(
            percent("kaspi_rassrochka"),
            (Percent::whole(14), Percent::whole(14))
        );
    }

    #[test]
    fn absorbed_commission_is_not_charged() {
        let mut kredit = PaymentMethod::seeded().remove(2);
        kredit.add_commission_to_amount = false;
        assert_eq!(kredit.effective_percent(), Percent::whole(14));
        assert_eq!(kredit.charged_percent(), Percent::ZERO);
    }

    #[test]
    fn serializes_like_the_guides_example() {
        let kredit = &PaymentMethod::seeded()[2];
        let expected = r#"{"id":3,"code":"kaspi_kredit","name":"Kaspi Кредит","type":"credit","provider":"kaspi","country_id":1,"payment_currency":"KZT","icon_emoji":"💰","commission_percent":0,"has_credit":true,"credit_commission_percent":14,"has_installment":false,"installment_months":null,"installment_commission_percent":0,"add_commission_to_amount":true}"#;
        assert_eq!(serde_json::to_string(kredit).unwrap(), expected);
        let back: PaymentMethod = serde_json::from_str(expected).unwrap();
        assert_eq!(&back, kredit);
    }

    #[test]
    fn products_map_to_methods() {
        for (text, code) in [
            ("Gold", "kaspi_gold"),
            ("red", "kaspi_red"),
            ("Loan", "kaspi_kredit"),
            ("Credit", "kaspi_kredit"),
            (" Installment ", "kaspi_rassrochka"),
        ] {
            assert_eq!(
                ProductType::from_terminal(text).unwrap().method_code().as_str(),
                code,
                "{text}"
            );
        }
        assert_eq!(ProductType::from_terminal("Bonus"), None);
        assert_eq!(ProductType::from_terminal(""), None);
    }
}
