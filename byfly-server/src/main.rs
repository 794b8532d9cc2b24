//! `byfly-server`: serve the API, migrate and back up the database, create sources, add terminals.

use std::path::PathBuf;

use anyhow::Context;
use byfly_core::{ApiToken, BodyEncoding};
use byfly_server::config::{Config, LogFormat, Settings};
use byfly_server::random::OsRandom;
use byfly_server::store::{Backup, NewTerminal, TerminalTls};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a request allocates and frees a few hundred small blocks
/// on whichever runtime thread runs it, where glibc's malloc, free and free-list merging were 6–7 %
/// of the server's time under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "byfly-server",
    version,
    about = "ByFly Payment Center reference server"
)]
struct Cli {
    /// TOML configuration file; BYFLY_* variables override it, defaults fill in the rest.
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
    /// Print a configuration file with every setting at its default, each explained.
    ExampleConfig,
    /// Ask a running server whether it is ready (a container's or a supervisor's health check):
    /// exit 0 when it answers 2xx, 1 otherwise.
    Healthcheck {
        /// The readiness URL to ask.
        #[arg(long, default_value = "http://127.0.0.1:8080/api/health/ready")]
        url: String,
    },
    /// Write a consistent copy of the SQLite database to a new file while the server runs, and
    /// check it (on PostgreSQL: how to use pg_dump).
    Backup {
        /// The copy to write (must not exist yet), e.g. `/var/backups/byfly-2026-12-01.db`.
        destination: PathBuf,
    },
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
    /// Run a complete demo on this machine: SQLite under --data-dir, two simulated terminals with
    /// cameras, a demo source, and `POST /api/dev/simulate/{id}` to play the customer.
    #[cfg(feature = "demo")]
    Demo {
        /// Where the demo database lives (kept between runs).
        #[arg(long, default_value = "./byfly-demo")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
        /// The demo source's API token (64 characters [A-Za-z0-9]); generated and printed when absent.
        #[arg(long)]
        token: Option<String>,
        /// The admin token (at least 16 characters); generated and printed when absent.
        #[arg(long)]
        admin_token: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TerminalCommand {
    /// Add a terminal to the pool; then register it with `byfly admin terminals register ID`
    /// while a cashier stands at the terminal to accept the prompt on its screen.
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

/// The process's log on stderr; colours only on a terminal, never escape codes into a file or a
/// journal. Lines are written by a thread of their own through a buffer that is flushed whenever
/// no more lines are waiting: one line at a time when the server is quiet, many to a write under
/// load (a write to stderr each was a twentieth of a `/status`; BENCHMARKS.md). Nothing is
/// dropped: a request waits when 128 000 lines are waiting. The guard returned flushes what is
/// left as `main` returns; a process killed outright loses the lines of its last moment, never a
/// stored write.
#[must_use = "the log's last lines are written when the guard is dropped"]
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BYFLY_LOG").unwrap_or_else(|_| "info".into());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
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

/// `byfly-server healthcheck`: one GET, bounded, no configuration or database needed.
async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let response = client.get(url).send().await.context("not answering")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("ready ({status})");
        Ok(())
    } else {
        anyhow::bail!("not ready ({status}): {body}")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::ExampleConfig = cli.command {
        print!("{}", byfly_server::config::example_file());
        return Ok(());
    }
    if let Command::Healthcheck { url } = &cli.command {
        return healthcheck(url).await;
    }
    let config = Config::load(cli.config.as_deref(), |name| std::env::var(name).ok())?;
    #[cfg(feature = "demo")]
    if let Command::Demo {
        data_dir,
        bind,
        token,
        admin_token,
    } = cli.command
    {
        return demo::run(config, data_dir, bind, token, admin_token).await;
    }
    let settings: Settings = config.validate().context("configuration")?;
    let _log = init_logging(settings.log_format);
    let store = byfly_server::open_store(&settings).await.context("database")?;
    match cli.command {
        Command::Migrate => {
            println!("database is up to date: {:?}", settings.database_url);
        }
        Command::ExampleConfig | Command::Healthcheck { .. } => {}
        Command::Backup { destination } => match store.backup(&destination).await? {
            Backup::Copied { bytes, payments } => println!(
                "backup written and checked: {} ({bytes} bytes, {payments} payments, integrity ok)",
                destination.display()
            ),
            Backup::ByTheDatabasesTools => anyhow::bail!(
                "the database is PostgreSQL: back it up with its own tools while the servers run, e.g. \
                 `pg_dump --format=custom --file={} \"$BYFLY_DATABASE_URL\"` (restore into an empty database with \
                 `pg_restore --dbname=…`), or continuously with WAL archiving / a streaming replica",
                destination.display()
            ),
        },
        Command::Source {
            command: SourceCommand::Create { name, webhook_json },
        } => {
            let token = ApiToken::generate(&mut OsRandom);
            let encoding = BodyEncoding::parse(&webhook_json).unwrap_or_default();
            let source = store
                .create_source(&name, &token.hash(), encoding, byfly_server::clock::unix_now())
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
            match store
                .add_terminal(&terminal, byfly_server::clock::unix_now())
                .await?
            {
                Some(added) => {
                    println!("terminal #{} {:?} added", added.id, added.terminal.name);
                    println!(
                        "register it (a cashier accepts on the terminal's screen): byfly admin terminals register {}",
                        added.id
                    );
                }
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
        #[cfg(feature = "demo")]
        Command::Demo { .. } => {}
    }
    Ok(())
}

#[cfg(feature = "demo")]
mod demo {
    //! `byfly-server demo`: everything on one machine, nothing to install.

    use std::net::SocketAddr;
    use std::path::PathBuf;

    use anyhow::Context;
    use byfly_server::config::Config;
    use byfly_server::demo::{Demo, DemoSetup};

    pub async fn run(
        config: Config,
        data_dir: PathBuf,
        bind: SocketAddr,
        token: Option<String>,
        admin_token: Option<String>,
    ) -> anyhow::Result<()> {
        let _log = super::init_logging(config.log_format);
        let public_base_url = config
            .public_base_url
            .clone()
            .or_else(|| Some(format!("http://{bind}")));
        let demo = Demo::prepare(DemoSetup {
            config: Config {
                public_base_url,
                ..config
            },
            data_dir: data_dir.clone(),
            terminals: 2,
            token,
            admin_token,
        })
        .await?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("bind {bind}"))?;
        let base = format!("http://{}/api", listener.local_addr()?);
        let t = demo.token.expose().to_owned();
        println!(
            "ByFly Payment Center demo: {base} (SQLite in {}, 2 simulated terminals)",
            data_dir.display()
        );
        println!("  API token:   {t}");
        println!("  admin token: {}", demo.admin_token);
        let secret = byfly_server::http::dev::DEMO_WEBHOOK_SECRET;
        println!(
            "Walkthrough (Kaspi Кредит, 100 000 ₸ + 14 %, webhook to the demo's own verifying receiver):"
        );
        println!(
            "  curl -s -X POST {base}/payment/init -H 'X-API-Token: {t}' -H 'Content-Type: application/json' \\\n    -d '{{\"amount\": 100000, \"description\": \"Тур в Турцию\", \"webhook_url\": \"{base}/dev/webhooks\", \"webhook_secret\": \"{secret}\"}}'"
        );
        println!("  ID=<transaction_id from the answer>");
        println!(
            "  curl -s -X POST {base}/payment/$ID/kaspi -H 'Content-Type: application/json' -d '{{\"payment_method\": \"kaspi_kredit\"}}'"
        );
        println!(
            "  curl -s -X POST {base}/dev/simulate/$ID -H 'Content-Type: application/json' -d '{{\"product\": \"Loan\"}}'"
        );
        println!("  curl -s {base}/payment/$ID/status");
        println!("  curl -s {base}/dev/webhooks        # the paid webhook, with \"verified\": true");
        println!(
            "Or open the payment page the init answer links to (payment_page_url): http://{bind}/pay/$ID"
        );
        println!(
            "CLI: export BYFLY_API_URL={base} BYFLY_API_TOKEN={t} BYFLY_ADMIN_TOKEN={}",
            demo.admin_token
        );
        demo.serve(listener, super::shutdown_signal()).await?;
        Ok(())
    }
}
