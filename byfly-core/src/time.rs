//! Date-times as the API writes them: `YYYY-MM-DD HH:MM:SS` in the server's configured UTC offset.
//!
//! The core never reads a clock: callers pass Unix seconds.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone};

/// A UTC offset in which the API shows date-times (`+00:00` by default, `+05:00` for Kazakhstan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayOffset(FixedOffset);

/// The offset text is not `±HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UTC offset (expected ±HH:MM): {0:?}")]
pub struct InvalidOffset(pub String);

impl Default for DisplayOffset {
    fn default() -> Self {
        DisplayOffset::utc()
    }
}

/// A moment as Unix seconds: what [`DisplayOffset::format`] shows (plain seconds, or a moment
/// type of the caller's).
pub trait UnixMoment {
    /// Unix seconds.
    fn unix_seconds(self) -> i64;
}

impl UnixMoment for i64 {
    fn unix_seconds(self) -> i64 {
        self
    }
}

impl DisplayOffset {
    /// `+00:00`.
    pub fn utc() -> DisplayOffset {
        DisplayOffset(chrono::Utc.fix())
    }

    /// Parses `+05:00`, `-03:30`, `+00:00`.
    pub fn parse(text: &str) -> Result<DisplayOffset, InvalidOffset> {
        let invalid = || InvalidOffset(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() != 6 || bytes[3] != b':' {
            return Err(invalid());
        }
        let sign = match bytes[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(invalid()),
        };
        let hours: i32 = text[1..3].parse().map_err(|_| invalid())?;
        let minutes: i32 = text[4..6].parse().map_err(|_| invalid())?;
        if hours > 14 || minutes > 59 {
            return Err(invalid());
        }
        FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
            .map(DisplayOffset)
            .ok_or_else(invalid)
    }

    /// Formats a moment as `YYYY-MM-DD HH:MM:SS` in this offset.
    pub fn format(self, at: impl UnixMoment) -> String {
        match DateTime::from_timestamp(at.unix_seconds(), 0) {
            Some(utc) => utc.with_timezone(&self.0).format("%Y-%m-%d %H:%M:%S").to_string(),
            None => String::new(),
        }
    }

    /// Reads `YYYY-MM-DD HH:MM:SS` in this offset back to Unix seconds.
    pub fn parse_datetime(self, text: &str) -> Option<i64> {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
        self.0
            .from_local_datetime(&naive)
            .single()
            .map(|dt| dt.timestamp())
    }

    /// The offset as `±HH:MM`.
    pub fn as_text(self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_the_configured_offset() {
        // The guide's webhook timestamp 1736775000 is 2025-01-13 13:30:00 UTC.
        assert_eq!(DisplayOffset::utc().format(1_736_775_000), "2025-01-13 13:30:00");
        let almaty = DisplayOffset::parse("+05:00").unwrap();
        assert_eq!(almaty.format(1_736_775_000), "2025-01-13 18:30:00");
        assert_eq!(almaty.parse_datetime("2025-01-13 18:30:00"), Some(1_736_775_000));
        assert_eq!(almaty.as_text(), "+05:00");
        assert_eq!(
            DisplayOffset::parse("-03:30").unwrap().format(0),
            "1969-12-31 20:30:00"
        );
    }

    #[test]
    fn refuses_malformed_offsets() {
        for bad in ["", "05:00", "+5:00", "+05:60", "+15:00", "UTC", "+05:00:00"] {
            assert!(DisplayOffset::parse(bad).is_err(), "{bad}");
        }
    }
}
