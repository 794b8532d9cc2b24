//! `outbox.rs` again, on PostgreSQL: tests/common runs every `pg_*` binary against a fresh
//! PostgreSQL database (`BYFLY_TEST_DATABASE_URL`, else 127.0.0.1:5432) instead of a SQLite file.

#[path = "outbox.rs"]
mod suite;
