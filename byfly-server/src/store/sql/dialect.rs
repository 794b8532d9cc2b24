//! The one SQL text both backends run: `?` placeholders numbered for PostgreSQL, row locks
//! (`FOR UPDATE …`) taken only there.

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
    /// inside a quoted literal is left alone); on SQLite without its row locks, which SQLite has
    /// no syntax for and no need of (its one writer at a time is what the locks give PostgreSQL).
    pub(super) fn sql(self, sql: &'static str) -> SqlStr {
        match self {
            Dialect::Sqlite if has_row_lock(sql) => AssertSqlSafe(without_row_locks(sql)).into_sql_str(),
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

/// How a row lock clause begins; it runs to the end of its `SELECT` (a `)` or the end of the text).
const ROW_LOCKS: [&str; 2] = [" FOR UPDATE", " FOR NO KEY UPDATE"];

/// Whether `sql` takes a row lock.
fn has_row_lock(sql: &str) -> bool {
    ROW_LOCKS.iter().any(|lock| sql.contains(lock))
}

/// `sql` with every `FOR [NO KEY] UPDATE [OF …] [SKIP LOCKED]` clause left out.
pub(super) fn without_row_locks(sql: &str) -> String {
    let mut kept = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = ROW_LOCKS.iter().filter_map(|lock| rest.find(lock)).min() {
        kept.push_str(&rest[..start]);
        rest = &rest[start..];
        rest = &rest[rest.find(')').unwrap_or(rest.len())..];
    }
    kept.push_str(rest);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_locks_are_postgresql_only() {
        let sql = "UPDATE t SET a = ? WHERE id IN (SELECT id FROM t WHERE b = ? LIMIT ? FOR UPDATE SKIP LOCKED) \
                   RETURNING *";
        assert_eq!(
            Dialect::Sqlite.sql(sql).as_str(),
            "UPDATE t SET a = ? WHERE id IN (SELECT id FROM t WHERE b = ? LIMIT ?) RETURNING *"
        );
        assert_eq!(
            Dialect::Postgres.sql(sql).as_str(),
            "UPDATE t SET a = $1 WHERE id IN (SELECT id FROM t WHERE b = $2 LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING *"
        );
        assert_eq!(
            Dialect::Sqlite
                .sql("SELECT id FROM payments WHERE id = ? FOR NO KEY UPDATE OF payments")
                .as_str(),
            "SELECT id FROM payments WHERE id = ?"
        );
        assert_eq!(Dialect::Sqlite.sql("SELECT 1").as_str(), "SELECT 1");
        // Only lock clauses are cut: other text with FOR in it stays.
        let other = "SELECT 'PAID FOR TOUR' AS note, id FROM payments WHERE id = ?";
        assert_eq!(Dialect::Sqlite.sql(other).as_str(), other);
    }
}
