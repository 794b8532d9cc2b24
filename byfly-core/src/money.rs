//! Exact amounts and percents.
//!
//! The deployed system lost tenge through float arithmetic and three different rounding rules.
//! Here every amount is a [`Decimal`] rounded once, on entry, to 2 places half away from zero, and
//! every later figure is computed exactly. The JSON form is a number written as JavaScript's
//! `JSON.stringify` would write the same value (`57000`, `87719.3`, `12281.25`), so receivers that
//! re-serialize a webhook get the bytes we signed; it is read back from a JSON number or a numeric
//! string without ever passing through a binary float.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Sub};
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Why a text or JSON value is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Empty, `NaN`, `Infinity`, `1,5`, `0x10`, `1_000`: anything that is not a plain decimal literal.
    #[error("not a decimal number: {0:?}")]
    NotANumber(String),
    /// A JSON value of the wrong kind: `true`, `null`, an object or an array.
    #[error("expected a number or a numeric string, found {0}")]
    WrongType(&'static str),
    /// Beyond [`Money::LIMIT`] in magnitude: no real payment comes near it, and refusing it keeps
    /// every later sum far away from overflow.
    #[error("amount out of range: {0}")]
    OutOfRange(String),
}

/// An exact amount of money in the payment's currency, with at most 2 decimal places.
///
/// Construction rounds half away from zero to 2 places; arithmetic between amounts is exact.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    /// Zero tenge.
    pub const ZERO: Money = Money(Decimal::ZERO);
    /// The largest magnitude accepted from outside (10^15 tenge, exclusive): far above any real
    /// payment, and small enough that minor units always fit an `i64`.
    pub const LIMIT: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);

    /// Rounds `value` to 2 places, half away from zero.
    pub fn from_decimal(value: Decimal) -> Result<Money, MoneyError> {
        let rounded = round_half_away(value, 2);
        if rounded.abs() >= Self::LIMIT {
            return Err(MoneyError::OutOfRange(value.to_string()));
        }
        Ok(Money(rounded.normalize()))
    }

    /// An amount from integer minor units (tiyn), the form the database stores.
    pub fn from_minor(minor: i64) -> Money {
        Money(Decimal::new(minor, 2).normalize())
    }

    /// A whole number of tenge.
    pub fn from_tenge(tenge: i64) -> Money {
        Money(Decimal::from(tenge))
    }

    /// The amount in integer minor units (tiyn). Exact, since every `Money` has at most 2 places and
    /// stays below [`Money::LIMIT`].
    pub fn to_minor(self) -> i64 {
        let mut scaled = self.0;
        scaled.rescale(2);
        // |mantissa| < 10^17 by the LIMIT invariant, so it always fits.
        i64::try_from(scaled.mantissa()).unwrap_or(i64::MAX)
    }

    /// The exact decimal value.
    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    /// The smallest whole number of tenge not below this amount: what a terminal, which only takes
    /// whole tenge, is asked to charge so that the merchant never receives less than priced.
    pub fn ceil_tenge(self) -> i64 {
        self.0.ceil().to_i64().unwrap_or(i64::MAX)
    }

    /// The whole tenge in this amount, tiyn dropped: what a terminal can give back of it.
    pub fn floor_tenge(self) -> Money {
        Money(self.0.floor().normalize())
    }

    /// Rounded to whole tenge, half away from zero.
    pub fn round_tenge(self) -> Money {
        Money(round_half_away(self.0, 0).normalize())
    }

    /// `round2(self × percent / 100)`: a commission on this amount.
    pub fn percent_of(self, percent: Percent) -> Money {
        let exact = self.0 * percent.0 / Decimal::ONE_HUNDRED;
        Money(round_half_away(exact, 2).normalize())
    }

    /// `max(0, self − other)`.
    pub fn saturating_sub(self, other: Money) -> Money {
        if other >= self { Money::ZERO } else { self - other }
    }

    /// True for amounts above zero.
    pub fn is_positive(self) -> bool {
        self.0 > Decimal::ZERO
    }

    /// True for zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses a decimal literal as a JSON number or a merchant's numeric string would hold it:
    /// optional sign, digits with an optional fraction, an optional exponent (`1.5e3`).
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        Money::from_decimal(parse_decimal_literal(text)?)
    }
}

/// Rounds to `places`, half away from zero: the one rounding rule of the whole system.
pub(crate) fn round_half_away(value: Decimal, places: u32) -> Decimal {
    value.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero)
}

/// Parses a plain decimal literal (the grammar of a JSON number, plus a leading `+`, a bare
/// leading or trailing point, and surrounding spaces) into an exact decimal.
pub(crate) fn parse_decimal_literal(text: &str) -> Result<Decimal, MoneyError> {
    let trimmed = text.trim();
    let not_a_number = || MoneyError::NotANumber(text.to_owned());
    let unsigned = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() && frac_part.is_empty() || !all_digits(int_part) || !all_digits(frac_part) {
        return Err(not_a_number());
    }
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || !all_digits(digits) {
            return Err(not_a_number());
        }
        // Decimal's scientific parser takes the same grammar once the leading `+` is gone.
        let normal = trimmed.strip_prefix('+').unwrap_or(trimmed);
        return Decimal::from_scientific(normal).map_err(|_| MoneyError::OutOfRange(text.to_owned()));
    }
    // Too many digits for 96 bits: reject as out of range (no amount needs 28 digits).
    let normal = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let normal = normal.strip_suffix('.').unwrap_or(normal);
    Decimal::from_str(normal).map_err(|_| MoneyError::OutOfRange(text.to_owned()))
}

/// Writes a decimal as JavaScript's `Number#toString` writes the same value, for values that a
/// double holds exactly enough (at most 15 significant digits, below 10^21): no exponent, no
/// trailing zeros, no `-0`.
fn write_js_decimal(value: Decimal, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if value.is_zero() {
        return f.write_str("0");
    }
    fmt::Display::fmt(&value.normalize(), f)
}

impl fmt::Display for Money {
    /// The JSON form: `57000`, `87719.3`, `12281.25`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_js_decimal(self.0, f)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

/// A percent such as a method's commission (`14`, `12.5`), exact, 0 to 100 with up to 4 places.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent(Decimal);

impl Percent {
    /// No commission.
    pub const ZERO: Percent = Percent(Decimal::ZERO);

    /// A percent from a decimal in 0..=100, rounded to 4 places.
    pub fn new(value: Decimal) -> Result<Percent, MoneyError> {
        let rounded = round_half_away(value, 4).normalize();
        if rounded < Decimal::ZERO || rounded > Decimal::ONE_HUNDRED {
            return Err(MoneyError::OutOfRange(value.to_string()));
        }
        Ok(Percent(rounded))
    }

    /// A whole percent (`Percent::whole(14)`); values above 100 are clamped to 100.
    pub fn whole(value: u8) -> Percent {
        Percent(Decimal::from(value.min(100)))
    }

    /// Parses `"14"`, `"12.5"`.
    pub fn parse(text: &str) -> Result<Percent, MoneyError> {
        Percent::new(parse_decimal_literal(text)?)
    }

    /// The exact decimal value.
    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    /// The sum of two percents (an effective percent is a sum of a method's parts); capped at 100
    /// is not wanted here — 14 + 14 is a legitimate 28 % — so the sum is unchecked above 100.
    pub fn plus(self, other: Percent) -> Percent {
        Percent(self.0 + other.0)
    }

    /// `self − other`, which may be negative (used only inside the credited-amount rule).
    pub(crate) fn minus(self, other: Percent) -> Decimal {
        self.0 - other.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_js_decimal(self.0, f)
    }
}

impl fmt::Debug for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Percent({self})")
    }
}

/// Serializes a value through its `Display` as a raw JSON number token, so the exact decimal text
/// is what a receiver reads; no float is ever built.
fn serialize_number_token<S: Serializer>(text: String, serializer: S) -> Result<S::Ok, S::Error> {
    let raw = RawValue::from_string(text).map_err(serde::ser::Error::custom)?;
    raw.serialize(serializer)
}

/// Reads a JSON number or numeric string exactly, from its raw token.
fn deserialize_number_token<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    decimal_from_json_token(raw.get()).map_err(serde::de::Error::custom)
}

/// An exact decimal from one JSON token: a number, or a string holding a number.
pub fn decimal_from_json_token(token: &str) -> Result<Decimal, MoneyError> {
    let token = token.trim();
    match token.as_bytes().first() {
        Some(b'"') => {
            let text: String =
                serde_json::from_str(token).map_err(|_| MoneyError::NotANumber(token.to_owned()))?;
            parse_decimal_literal(&text)
        }
        Some(b'-' | b'0'..=b'9') => parse_decimal_literal(token),
        Some(b't' | b'f') => Err(MoneyError::WrongType("a boolean")),
        Some(b'n') => Err(MoneyError::WrongType("null")),
        Some(b'{') => Err(MoneyError::WrongType("an object")),
        Some(b'[') => Err(MoneyError::WrongType("an array")),
        _ => Err(MoneyError::NotANumber(token.to_owned())),
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_number_token(self.to_string(), serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = deserialize_number_token(deserializer)?;
        Money::from_decimal(value).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_number_token(self.to_string(), serializer)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = deserialize_number_token(deserializer)?;
        Percent::new(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    #[test]
    fn rounds_half_away_from_zero_to_two_places() {
        assert_eq!(m("12281.255").to_string(), "12281.26");
        assert_eq!(m("12281.254").to_string(), "12281.25");
        assert_eq!(m("-0.005").to_string(), "-0.01");
        assert_eq!(m("0.004").to_string(), "0");
        assert_eq!(m("1.5e3").to_string(), "1500");
        assert_eq!(m("+50000.").to_string(), "50000");
        assert_eq!(m(".5").to_string(), "0.5");
    }

    #[test]
    fn writes_the_shortest_javascript_form() {
        for (input, shown) in [
            ("57000", "57000"),
            ("57000.00", "57000"),
            ("87719.30", "87719.3"),
            ("12281.25", "12281.25"),
            ("0.01", "0.01"),
            ("99999999.99", "99999999.99"),
            ("-0", "0"),
            ("100000000", "100000000"),
        ] {
            assert_eq!(m(input).to_string(), shown, "{input}");
            assert_eq!(serde_json::to_string(&m(input)).unwrap(), shown, "{input}");
        }
    }

    #[test]
    fn reads_numbers_and_numeric_strings_exactly() {
        let read = |json: &str| serde_json::from_str::<Money>(json);
        assert_eq!(read("50000").unwrap(), m("50000"));
        assert_eq!(read("\"50000.5\"").unwrap(), m("50000.5"));
        assert_eq!(read("0.1").unwrap().to_minor(), 10);
        // 17 significant digits: a float would have lost the last ones before rounding.
        assert_eq!(read("1234567.0050000001").unwrap().to_string(), "1234567.01");
        assert_eq!(read("\"\\u0031\"").unwrap(), m("1"));
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        for bad in [
            "",
            " ",
            "NaN",
            "Infinity",
            "-Infinity",
            "1,5",
            "0x10",
            "1_000",
            "abc",
            "1e",
            "--1",
            "1.2.3",
            "e5",
            ".",
        ] {
            assert!(
                matches!(Money::parse(bad), Err(MoneyError::NotANumber(_))),
                "{bad:?}"
            );
        }
        for (json, kind) in [
            ("true", "a boolean"),
            ("null", "null"),
            ("{}", "an object"),
            ("[1]", "an array"),
        ] {
            let err = decimal_from_json_token(json).unwrap_err();
            assert_eq!(err, MoneyError::WrongType(kind));
        }
        assert!(serde_json::from_str::<Money>("\"NaN\"").is_err());
        assert!(matches!(Money::parse("1e400"), Err(MoneyError::OutOfRange(_))));
        assert!(matches!(
            Money::parse("1000000000000000"),
            Err(MoneyError::OutOfRange(_))
        ));
        assert!(Money::parse("999999999999999.99").is_ok());
    }

    #[test]
    fn minor_units_round_trip() {
        for text in [
            "0",
            "0.01",
            "12281.25",
            "99999999.99",
            "-10",
            "999999999999999.99",
        ] {
            let money = m(text);
            assert_eq!(Money::from_minor(money.to_minor()), money, "{text}");
        }
        assert_eq!(m("12281.25").to_minor(), 1_228_125);
    }

    #[test]
    fn whole_tenge_helpers() {
        assert_eq!(m("114000").ceil_tenge(), 114_000);
        assert_eq!(m("12281.01").ceil_tenge(), 12_282);
        assert_eq!(m("87719.5").round_tenge(), m("87720"));
        assert_eq!(m("87719.49").round_tenge(), m("87719"));
    }

    #[test]
    fn percent_of_rounds_once() {
        assert_eq!(m("100000").percent_of(Percent::whole(14)), m("14000"));
        assert_eq!(m("12281").percent_of(Percent::whole(14)), m("1719.34"));
        assert_eq!(m("0.05").percent_of(Percent::parse("10").unwrap()), m("0.01"));
        assert!(Percent::parse("100.5").is_err());
        assert!(Percent::parse("-1").is_err());
        assert_eq!(
            serde_json::to_string(&Percent::parse("12.50").unwrap()).unwrap(),
            "12.5"
        );
    }
}
