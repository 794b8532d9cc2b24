//! The two webhook body encodings.
//!
//! The guide tells receivers to verify `HMAC(secret, json_encode(json_decode(body, true)))` (PHP)
//! or `HMAC(secret, JSON.stringify(JSON.parse(body)))` (Node): they hash a *re-serialization* of
//! the body, not the bytes received. Those two re-serializations disagree (PHP escapes `/` and
//! non-ASCII, turns `{}` into `[]`, keeps integers exact; JavaScript reorders integer-like keys and
//! reads every number as a double), so no single body satisfies both. Each source therefore picks
//! one ([`BodyEncoding`]), and the body we send is already the fixed point of that runtime's
//! re-serialization: decoding and re-encoding it there gives back exactly our bytes, so the
//! guide's own verification code accepts our signature.
//!
//! Numbers follow the runtime's own semantics on purpose (JavaScript has only doubles; PHP keeps
//! integers that fit 64 bits and reads the rest as doubles). Money amounts are unaffected: they
//! have at most 15 significant digits, which a double holds exactly, so both forms print them as
//! the exact decimal.

use std::str::FromStr;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Number;
use serde_json::value::RawValue;

/// How a source's webhook bodies are written.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// Byte-compatible with the deployed PHP system and PHP receivers: equals
    /// `json_encode(json_decode($body, true))` with default flags.
    #[default]
    Php,
    /// Equals `JSON.stringify(JSON.parse(body))`.
    Js,
}

impl BodyEncoding {
    /// `php` or `js`.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyEncoding::Php => "php",
            BodyEncoding::Js => "js",
        }
    }

    /// Parses `php` or `js`.
    pub fn parse(text: &str) -> Option<BodyEncoding> {
        match text {
            "php" => Some(BodyEncoding::Php),
            "js" => Some(BodyEncoding::Js),
            _ => None,
        }
    }

    /// Writes `value` as this runtime would re-serialize it.
    pub fn encode(self, value: &Json) -> String {
        let mut out = String::new();
        match self {
            BodyEncoding::Php => write_php(value, &mut out),
            BodyEncoding::Js => write_js(value, &mut out),
        }
        out
    }

    /// Parses a JSON text and writes it as this runtime would re-serialize it.
    pub fn encode_text(self, json: &str) -> Result<String, serde_json::Error> {
        Ok(self.encode(&Json::parse(json)?))
    }
}

// ---------------------------------------------------------------------------------------------
// A JSON tree that keeps what both runtimes need: key order, and each number's exact token (PHP
// reads `-0` as the integer 0 but `-0.0` as the float -0; a parsed double cannot tell them apart).

/// A parsed JSON value with object keys in order (duplicates merged as both runtimes merge them:
/// the first position, the last value) and numbers as their source tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written in the source (`-0`, `1.50`, `1e3`).
    Number(String),
    /// A string, unescaped.
    String(String),
    /// `[...]`.
    Array(Vec<Json>),
    /// `{...}`, in source order.
    Object(Vec<(String, Json)>),
}

/// The members of one object, each value still as raw text.
struct RawMembers<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = RawMembers<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(RawMembers(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

impl Json {
    /// Parses a JSON text (one value, surrounding white space allowed).
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        Json::from_raw(raw)
    }

    fn from_raw(raw: &RawValue) -> Result<Json, serde_json::Error> {
        let text = raw.get().trim();
        Ok(match text.as_bytes().first() {
            Some(b'{') => {
                let RawMembers(members) = serde_json::from_str(text)?;
                let mut object: Vec<(String, Json)> = Vec::with_capacity(members.len());
                for (key, value) in members {
                    let value = Json::from_raw(value)?;
                    match object.iter_mut().find(|(existing, _)| *existing == key) {
                        Some(slot) => slot.1 = value,
                        None => object.push((key, value)),
                    }
                }
                Json::Object(object)
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text)?;
                Json::Array(items.into_iter().map(Json::from_raw).collect::<Result<_, _>>()?)
            }
            Some(b'"') => Json::String(serde_json::from_str(text)?),
            Some(b't' | b'f') => Json::Bool(serde_json::from_str(text)?),
            Some(b'n') => Json::Null,
            _ => Json::Number(text.to_owned()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers: shortest round-trip digits, laid out by each runtime's rules.

/// A finite double as its shortest round-trip digits: `value = 0.DIGITS × 10^point`.
struct ShortestDigits {
    negative: bool,
    digits: String,
    point: i32,
}

impl ShortestDigits {
    /// Splits Rust's shortest exponential form (`-1.2345e3`), which is the same shortest,
    /// closest digit string that JavaScript and PHP (`serialize_precision = -1`) choose.
    fn of(token: &str) -> Option<ShortestDigits> {
        let value = Number::from_str(token).ok()?.as_f64()?;
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e')?;
        let negative = mantissa.starts_with('-');
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let exponent: i32 = exponent.parse().ok()?;
        Some(ShortestDigits {
            negative,
            digits,
            point: exponent + 1,
        })
    }

    fn is_zero(&self) -> bool {
        self.digits.bytes().all(|b| b == b'0')
    }

    /// `d.ddd` of an exponential form: the first digit, a point, the rest (or `fallback`).
    fn scientific_mantissa(&self, fallback: &str) -> String {
        let (first, rest) = self.digits.split_at(1);
        let rest = if rest.is_empty() { fallback } else { rest };
        if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{rest}")
        }
    }

    /// `0.000ddd` for a point at or below zero, `ddd00` or `dd.d` otherwise.
    fn positional(&self) -> String {
        let len = self.digits.len() as i32;
        if self.point <= 0 {
            format!("0.{}{}", "0".repeat((-self.point) as usize), self.digits)
        } else if self.point >= len {
            format!("{}{}", self.digits, "0".repeat((self.point - len) as usize))
        } else {
            let (int, frac) = self.digits.split_at(self.point as usize);
            format!("{int}.{frac}")
        }
    }
}

/// JavaScript's `Number.prototype.toString` (ECMAScript `Number::toString`, radix 10).
fn js_number(token: &str) -> String {
    let Some(shortest) = ShortestDigits::of(token) else {
        return "null".to_owned();
    };
    if shortest.is_zero() {
        return "0".to_owned(); // -0 prints as 0
    }
    let sign = if shortest.negative { "-" } else { "" };
    let body = if (-5..=21).contains(&shortest.point) {
        shortest.positional()
    } else {
        let exponent = shortest.point - 1;
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{exp_sign}{}",
            shortest.scientific_mantissa(""),
            exponent.abs()
        )
    };
    format!("{sign}{body}")
}

/// PHP's `json_encode` of a value `json_decode` produced: integers that fit 64 bits stay exact,
/// anything else is a double printed by `php_gcvt` with `serialize_precision = -1` (17 digits
/// of room before the exponential form, which always shows a fraction: `1.0e+25`).
fn php_number(token: &str) -> String {
    let is_integer_token = !token.contains(['.', 'e', 'E']);
    if let Some(integer) = is_integer_token.then(|| token.parse::<i64>().ok()).flatten() {
        return integer.to_string();
    }
    let Some(shortest) = ShortestDigits::of(token) else {
        return "0".to_owned();
    };
    if shortest.is_zero() {
        // PHP prints the float -0.0 as `-0`, but a receiver reads `-0` back as the integer 0 and
        // prints `0`: the body must already be what the receiver prints, so `0` it is.
        return "0".to_owned();
    }
    let sign = if shortest.negative { "-" } else { "" };
    let body = if shortest.point < -3 || shortest.point > 17 {
        let exponent = shortest.point - 1;
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{exp_sign}{}",
            shortest.scientific_mantissa("0"),
            exponent.abs()
        )
    } else {
        shortest.positional()
    };
    format!("{sign}{body}")
}

// ---------------------------------------------------------------------------------------------
// Strings.

/// Escapes shared by both runtimes: quote, backslash, the five short control escapes, and
/// `\u00xx` (lowercase) for the other control characters. `None` for characters each runtime
/// treats its own way.
fn common_escape(c: char) -> Option<String> {
    Some(match c {
        '"' => "\\\"".to_owned(),
        '\\' => "\\\\".to_owned(),
        '\u{8}' => "\\b".to_owned(),
        '\u{c}' => "\\f".to_owned(),
        '\n' => "\\n".to_owned(),
        '\r' => "\\r".to_owned(),
        '\t' => "\\t".to_owned(),
        c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32),
        _ => return None,
    })
}

/// `JSON.stringify` of a string: only quote, backslash and control characters are escaped.
fn write_js_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match common_escape(c) {
            Some(escape) => out.push_str(&escape),
            None => out.push(c),
        }
    }
    out.push('"');
}

/// `json_encode` of a string with default flags: also `/` as `\/`, and every non-ASCII character
/// as lowercase `\uXXXX` UTF-16 units (astral characters as a surrogate pair).
fn write_php_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        if let Some(escape) = common_escape(c) {
            out.push_str(&escape);
        } else if c == '/' {
            out.push_str("\\/");
        } else if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Containers.

/// Writes `[a,b,…]` or `{"k":v,…}` with the runtime's own string and value writers.
fn write_sequence<T>(
    open: char,
    close: char,
    items: impl Iterator<Item = T>,
    out: &mut String,
    mut write_item: impl FnMut(T, &mut String),
) {
    out.push(open);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_item(item, out);
    }
    out.push(close);
}

/// A key JavaScript treats as an array index: `0`, or a non-zero digit then digits, below 2³² − 1.
/// Objects list such keys first, in ascending numeric order, before all other keys.
fn js_array_index(key: &str) -> Option<u32> {
    let canonical =
        key == "0" || (!key.starts_with('0') && !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()));
    if !canonical {
        return None;
    }
    key.parse::<u32>().ok().filter(|&index| index < u32::MAX)
}

fn write_js(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(token) => out.push_str(&js_number(token)),
        Json::String(s) => write_js_string(s, out),
        Json::Array(items) => write_sequence('[', ']', items.iter(), out, write_js),
        Json::Object(members) => {
            let mut indexed: Vec<(u32, &(String, Json))> = members
                .iter()
                .filter_map(|entry| js_array_index(&entry.0).map(|i| (i, entry)))
                .collect();
            indexed.sort_by_key(|(index, _)| *index);
            let named = members.iter().filter(|(key, _)| js_array_index(key).is_none());
            let ordered = indexed.into_iter().map(|(_, entry)| entry).chain(named);
            write_sequence('{', '}', ordered, out, |(key, value), out| {
                write_js_string(key, out);
                out.push(':');
                write_js(value, out);
            });
        }
    }
}

/// PHP decodes objects into arrays: one whose keys are exactly `"0"…"n-1"` in order is a list
/// again when encoded, and so is an empty one (`{}` → `[]`).
fn php_is_list(members: &[(String, Json)]) -> bool {
    members
        .iter()
        .enumerate()
        .all(|(i, (key, _))| *key == i.to_string())
}

fn write_php(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(token) => out.push_str(&php_number(token)),
        Json::String(s) => write_php_string(s, out),
        Json::Array(items) => write_sequence('[', ']', items.iter(), out, write_php),
        Json::Object(members) if php_is_list(members) => {
            write_sequence('[', ']', members.iter().map(|(_, value)| value), out, write_php)
        }
        Json::Object(members) => write_sequence('{', '}', members.iter(), out, |(key, value), out| {
            write_php_string(key, out);
            out.push(':');
            write_php(value, out);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn php(json: &str) -> String {
        BodyEncoding::Php.encode_text(json).unwrap()
    }

    fn js(json: &str) -> String {
        BodyEncoding::Js.encode_text(json).unwrap()
    }

    #[test]
    fn numbers_as_each_runtime_prints_them() {
        for (input, in_php, in_js) in [
            ("57000", "57000", "57000"),
            ("87719.3", "87719.3", "87719.3"),
            ("12281.25", "12281.25", "12281.25"),
            ("0.01", "0.01", "0.01"),
            ("99999999.99", "99999999.99", "99999999.99"),
            ("1.0", "1", "1"),
            ("1e3", "1000", "1000"),
            ("-0", "0", "0"),
            ("-0.0", "0", "0"),
            ("0.0001", "0.0001", "0.0001"),
            ("0.00001", "1.0e-5", "0.00001"),
            ("0.0000001", "1.0e-7", "1e-7"),
            ("1.5e-7", "1.5e-7", "1.5e-7"),
            ("1e21", "1.0e+21", "1e+21"),
            ("1e20", "1.0e+20", "100000000000000000000"),
            ("123456789012345678", "123456789012345678", "123456789012345680"),
            (
                "9223372036854775807",
                "9223372036854775807",
                "9223372036854776000",
            ),
            (
                "9223372036854775808",
                "9.223372036854776e+18",
                "9223372036854776000",
            ),
            (
                "-9223372036854775808",
                "-9223372036854775808",
                "-9223372036854776000",
            ),
            (
                "1.7976931348623157e308",
                "1.7976931348623157e+308",
                "1.7976931348623157e+308",
            ),
            ("0.1", "0.1", "0.1"),
            ("100000000000000000.5", "1.0e+17", "100000000000000000"),
        ] {
            assert_eq!(php(input), in_php, "php {input}");
            assert_eq!(js(input), in_js, "js {input}");
        }
    }

    #[test]
    fn strings_as_each_runtime_escapes_them() {
        let input = r#""Дубай / é \u2028 😀 <a&b> \" \\ \b\f\n\r\t \u001f \u007f""#;
        assert_eq!(
            php(input),
            concat!(
                r#""\u0414\u0443\u0431\u0430\u0439 \/ \u00e9 \u2028 \ud83d\ude00 <a&b> \" \\ \b\f\n\r\t \u001f "#,
                "\u{7f}\""
            )
        );
        assert_eq!(
            js(input),
            "\"Дубай / é \u{2028} 😀 <a&b> \\\" \\\\ \\b\\f\\n\\r\\t \\u001f \u{7f}\""
        );
    }

    #[test]
    fn containers_as_each_runtime_rebuilds_them() {
        assert_eq!(php("{}"), "[]");
        assert_eq!(js("{}"), "{}");
        assert_eq!(php(r#"{"0":"a","1":"b"}"#), r#"["a","b"]"#);
        assert_eq!(js(r#"{"0":"a","1":"b"}"#), r#"{"0":"a","1":"b"}"#);
        assert_eq!(php(r#"{"1":"a","0":"b"}"#), r#"{"1":"a","0":"b"}"#);
        assert_eq!(
            js(r#"{"b":1,"2":2,"a":3,"1":4,"01":5,"4294967295":6,"4294967294":7}"#),
            r#"{"1":4,"2":2,"4294967294":7,"b":1,"a":3,"01":5,"4294967295":6}"#
        );
        assert_eq!(php(r#"{"a":{"x":{}},"b":[{}]}"#), r#"{"a":{"x":[]},"b":[[]]}"#);
        // Duplicate keys: the first position, the last value — in both runtimes.
        assert_eq!(php(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
        assert_eq!(js(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
        assert_eq!(php("[1,[],{},null,true,false]"), "[1,[],[],null,true,false]");
        assert_eq!(php(" { \"a\" : [ 1 , 2 ] } "), r#"{"a":[1,2]}"#);
    }

    #[test]
    fn parse_keeps_tokens_and_merges_duplicates() {
        let tree = Json::parse(r#"{"b":-0,"a":[1.50,"x"],"b":-0.0}"#).unwrap();
        assert_eq!(
            tree,
            Json::Object(vec![
                ("b".into(), Json::Number("-0.0".into())),
                (
                    "a".into(),
                    Json::Array(vec![Json::Number("1.50".into()), Json::String("x".into())])
                ),
            ])
        );
        assert!(Json::parse("{").is_err());
        assert!(Json::parse("[1,]").is_err());
        assert!(Json::parse("1 2").is_err());
    }

    #[test]
    fn encoding_names() {
        assert_eq!(BodyEncoding::parse("php"), Some(BodyEncoding::Php));
        assert_eq!(BodyEncoding::parse("js"), Some(BodyEncoding::Js));
        assert_eq!(BodyEncoding::parse("JSON"), None);
        assert_eq!(BodyEncoding::default().as_str(), "php");
    }
}
