//! Ids of stored rows, and business time, as types of their own: a terminal's id cannot be passed
//! where an operation's is expected, nor a duration where a moment is. Each is stored as the
//! integer it wraps (binds and reads go through sqlx, or rusqlite, as that integer) and shown as it.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Any, Database, Decode, Encode, Type};

/// Declares an integer newtype stored and shown as its integer.
macro_rules! stored_integer {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The integer as stored (and as the API shows it).
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> $name {
                $name(id)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl Type<Any> for $name {
            fn type_info() -> <Any as Database>::TypeInfo {
                <i64 as Type<Any>>::type_info()
            }

            fn compatible(ty: &<Any as Database>::TypeInfo) -> bool {
                <i64 as Type<Any>>::compatible(ty)
            }
        }

        impl Encode<'_, Any> for $name {
            fn encode_by_ref(&self, buf: &mut <Any as Database>::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <i64 as Encode<'_, Any>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> Decode<'r, Any> for $name {
            fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                <i64 as Decode<'r, Any>>::decode(value).map($name)
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                i64::column_result(value).map($name)
            }
        }
    };
}

stored_integer!(
    /// A payment's row id (its public id is byfly-core's `TransactionId`).
    PaymentId
);
stored_integer!(
    /// An operation's row id.
    OperationId
);
stored_integer!(
    /// A terminal's row id (the API's `terminal_id`).
    TerminalId
);
stored_integer!(
    /// A source's row id.
    SourceId
);
stored_integer!(
    /// An API key's row id.
    ApiKeyId
);
stored_integer!(
    /// A moment of business time: Unix seconds. Durations stay plain seconds (`i64`): a moment
    /// plus seconds is a moment, a moment minus a moment is seconds.
    UnixSeconds
);

impl std::ops::Add<i64> for UnixSeconds {
    type Output = UnixSeconds;

    fn add(self, seconds: i64) -> UnixSeconds {
        UnixSeconds(self.0.saturating_add(seconds))
    }
}

impl std::ops::Sub<i64> for UnixSeconds {
    type Output = UnixSeconds;

    fn sub(self, seconds: i64) -> UnixSeconds {
        UnixSeconds(self.0.saturating_sub(seconds))
    }
}

impl std::ops::Sub for UnixSeconds {
    type Output = i64;

    fn sub(self, earlier: UnixSeconds) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl byfly_core::time::UnixMoment for UnixSeconds {
    fn unix_seconds(self) -> i64 {
        self.0
    }
}
