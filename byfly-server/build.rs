//! Rebuilds the server when a migration is added: `sqlx_macros::migrate!` embeds the files of
//! `migrations/`, and cargo would not otherwise notice a new one.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
