//! `byfly-server backup`: an online, consistent copy of the SQLite database, read back before it
//! is called a backup; on PostgreSQL the command says how to use the database's own tools.

use std::process::{Command, Output};

use byfly_core::TransactionId;
use byfly_server::store::{Payments, SqlStore};

use crate::common::*;

/// Runs `byfly-server backup destination` on the database at `database_url`.
async fn backup(database_url: &str, destination: &std::path::Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_byfly-server"));
    command
        .arg("backup")
        .arg(destination)
        .env_remove("BYFLY_CONFIG")
        .env("BYFLY_DATABASE_URL", database_url)
        .env("BYFLY_LOG", "error");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Payments keep being created while the copy is taken: every one acknowledged before the backup
/// began is in the copy, the copy opens as a database of the server, and a second backup onto an
/// existing file is refused and leaves it as it was.
#[tokio::test]
async fn a_backup_taken_while_payments_are_made_holds_every_one_acknowledged_before_it() {
    let app = spawn_app(0).await;
    let mut before = Vec::new();
    for amount in 1..=20 {
        before.push(app.init(amount * 1_000).await);
    }
    let dir = temp_dir("byfly-backup");
    let copy = dir.join("copy.db");
    let writing = async {
        for amount in 1..=20 {
            app.init(amount * 500).await;
        }
    };
    let (output, ()) = tokio::join!(backup(app.database_url(), &copy), writing);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    if on_postgres() {
        assert!(!output.status.success(), "{stdout}");
        assert!(stderr.contains("pg_dump"), "{stderr}");
        assert!(!copy.exists());
        return;
    }
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("integrity ok"), "{stdout}");
    let copied = SqlStore::open(&format!("sqlite://{}", copy.display()))
        .await
        .unwrap();
    for id in &before {
        let found = copied.payment(&TransactionId::parse(id).unwrap()).await.unwrap();
        assert!(
            found.is_some(),
            "payment {id} acknowledged before the backup is missing from it"
        );
    }
    let size = std::fs::metadata(&copy).unwrap().len();

    let again = backup(app.database_url(), &copy).await;
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), size);
    std::fs::remove_dir_all(&dir).ok();
}
