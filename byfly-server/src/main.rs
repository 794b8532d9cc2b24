//! `byfly-server`: serve the API, migrate the database, create sources.

use std::path::PathBuf;

use anyhow::Context;
use byfly_core::{ApiToken, BodyEncoding};
use byfly_server::config::{Config, LogFormat, Settings};
use byfly_server::random::OsRandom;
use byfly_server::store::{NewTerminal, TerminalTls};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "byfly-server",
    version,
    about = "ByFly Payment Center reference server"
)]
struct Cli {
    /// TOML configuration file (settings not in it come from BYFLY_* variables, then defaults).
    #[arg(long, global = true, env = "BYFLY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage merchant systems.
    Source {
        #[command(subcommand)]
        command: SourceCommand,
    },
    /// Manage the terminal pool.
    Terminal {
        #[command(subcommand)]
        command: TerminalCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TerminalCommand {
    /// Add a terminal to the pool (it is registered and checked by the running server).
    Add {
        /// A unique name for people (`Касса 1`).
        #[arg(long)]
        name: String,
        /// The terminal's base URL, e.g. `https://192.168.1.50:8080`.
        #[arg(long)]
        url: String,
        /// The snapshot URL of the camera pointed at its screen.
        #[arg(long)]
        camera_url: String,
        /// `verify` the certificate (default) or accept any (`insecure`).
        #[arg(long, default_value = "verify", value_parser = ["verify", "insecure"])]
        tls: String,
        /// Verify the certificate as this name (e.g. `pos.kaspipos.kz`) while connecting by IP.
        #[arg(long)]
        tls_server_name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SourceCommand {
    /// Create a source and print its API token (shown once, stored only as a hash).
    Create {
        /// A name for people.
        #[arg(long)]
        name: String,
        /// Body encoding of its webhooks.
        #[arg(long, default_value = "php", value_parser = ["php", "js"])]
        webhook_json: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BYFLY_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or(());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = Config::load(cli.config.as_deref(), |name| std::env::var(name).ok())?
        .validate()
        .context("configuration")?;
    init_logging(settings.log_format);
    let store = byfly_server::open_store(&settings).await.context("database")?;
    match cli.command {
        Command::Migrate => {
            println!("database is up to date: {}", settings.database_url);
        }
        Command::Source {
            command: SourceCommand::Create { name, webhook_json },
        } => {
            let token = ApiToken::generate(&mut OsRandom);
            let encoding = BodyEncoding::parse(&webhook_json).unwrap_or_default();
            let source = store
                .create_source(&name, &token.hash(), encoding, byfly_server::http::now())
                .await?;
            println!(
                "source #{} {:?} created (webhook_json = {})",
                source.id,
                source.name,
                encoding.as_str()
            );
            println!("API token (shown once, keep it safe): {}", token.expose());
        }
        Command::Terminal {
            command:
                TerminalCommand::Add {
                    name,
                    url,
                    camera_url,
                    tls,
                    tls_server_name,
                },
        } => {
            let tls = match tls.as_str() {
                "insecure" => TerminalTls::Insecure,
                _ => TerminalTls::Verify {
                    server_name: tls_server_name,
                },
            };
            let terminal = NewTerminal {
                name,
                base_url: url,
                camera_url,
                tls,
            };
            match store.add_terminal(&terminal, byfly_server::http::now()).await? {
                Some(added) => println!("terminal #{} {:?} added", added.id, added.terminal.name),
                None => anyhow::bail!("a terminal named {:?} already exists", terminal.name),
            }
        }
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(settings.bind)
                .await
                .with_context(|| format!("bind {}", settings.bind))?;
            tracing::info!(address = %listener.local_addr()?, "listening");
            byfly_server::run(listener, store, settings, shutdown_signal()).await?;
            tracing::info!("stopped");
        }
    }
    Ok(())
}
