//! The one SQL text both backends run: `?` placeholders numbered for PostgreSQL.

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `sqlite://path`.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl Dialect {
    /// The backend a database URL names, if it is one of ours.
    pub fn of_url(url: &str) -> Option<Dialect> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else {
            None
        }
    }

    /// `sql` as this backend takes it: `?` placeholders numbered `$1, $2, …` for PostgreSQL (a `?`
    /// inside a quoted literal is left alone).
    pub(super) fn sql(self, sql: &'static str) -> SqlStr {
        match self {
            Dialect::Sqlite => SqlStr::from_static(sql),
            Dialect::Postgres => {
                let mut numbered = String::with_capacity(sql.len() + 16);
                let (mut n, mut quoted) = (0, false);
                for c in sql.chars() {
                    match c {
                        '\'' => {
                            quoted = !quoted;
                            numbered.push(c);
                        }
                        '?' if !quoted => {
                            n += 1;
                            numbered.push('$');
                            numbered.push_str(&n.to_string());
                        }
                        other => numbered.push(other),
                    }
                }
                AssertSqlSafe(numbered).into_sql_str()
            }
        }
    }
}
