//! Demo mode: the whole system on one machine with nothing to install — SQLite in a folder,
//! simulated Kaspi terminals with cameras, a demo source, and the `/api/dev/*` routes that play the
//! customer and receive webhooks.
//!
//! `byfly-server demo` runs it for people; [`RunningDemo::start`] runs it on a throwaway database
//! for the SDK's and the CLI's tests and for examples, so they talk to the real server over real
//! HTTP, exactly as an integrator would.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use byfly_core::{ApiToken, BodyEncoding};
use byfly_terminal::simulator::{Simulator, SimulatorConfig};
use tokio::net::TcpListener;

use crate::clock::{SystemClock, unix_now};
use crate::config::{Config, Settings};
use crate::random::OsRandom;
use crate::store::{NewTerminal, RegistrationStart, RegistrationState, Store, TerminalRecord, TerminalTls};
use crate::terminals::TerminalPool;

/// What a demo is made of.
#[derive(Debug, Clone)]
pub struct DemoSetup {
    /// Settings from the usual sources; the demo overrides the database (a file in `data_dir`),
    /// allows webhooks to private hosts (its own receiver is on 127.0.0.1) and sets the admin token.
    pub config: Config,
    /// Where the SQLite file lives; kept between runs, so a restarted demo keeps its payments.
    pub data_dir: PathBuf,
    /// How many simulated terminals to start.
    pub terminals: usize,
    /// The demo source's API token; generated when absent.
    pub token: Option<String>,
    /// The admin token; generated when absent.
    pub admin_token: Option<String>,
}

/// A prepared demo: database migrated, simulators listening and registered, source created.
pub struct Demo {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Checked settings, with `demo_mode` on.
    pub settings: Settings,
    /// The simulated terminals; they stop when dropped, so the demo owns them.
    pub simulators: Vec<Simulator>,
    /// The demo source's token.
    pub token: ApiToken,
    /// The admin token.
    pub admin_token: String,
}

impl Demo {
    /// Opens (or creates) the database, starts the simulators on 127.0.0.1 and registers them,
    /// and makes sure the demo source exists.
    pub async fn prepare(setup: DemoSetup) -> anyhow::Result<Demo> {
        let DemoSetup {
            config,
            data_dir,
            terminals,
            token,
            admin_token,
        } = setup;
        std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
        let admin_token =
            admin_token.unwrap_or_else(|| ApiToken::generate(&mut OsRandom).expose().to_owned());
        let config = Config {
            database_url: format!("sqlite://{}", data_dir.join("byfly.db").display()).into(),
            allow_private_webhook_hosts: true,
            admin_token: Some(admin_token.clone().into()),
            ..config
        };
        let mut settings = config.validate().context("configuration")?;
        settings.demo_mode = true;
        let store = crate::open_store(&settings).await.context("database")?;

        // Realistic simulators (no remote cancel, registration that waits for the cashier, ...),
        // registered as an operator would, the demo playing the cashier who accepts.
        let pool = TerminalPool::with_timing(store.clone(), settings.terminals, SystemClock::shared());
        let mut simulators = Vec::with_capacity(terminals);
        for n in 1..=terminals {
            let simulator = Simulator::start_local(SimulatorConfig::default()).await?;
            let terminal = NewTerminal {
                name: format!("Демо-терминал {n}"),
                base_url: simulator.base_url(),
                camera_url: simulator.camera_url(),
                tls: TerminalTls::Verify { server_name: None },
            };
            let record = store.upsert_terminal(&terminal, unix_now()).await?;
            let state = register_simulated(&store, &pool, &record, &simulator).await?;
            anyhow::ensure!(
                state == RegistrationState::Approved,
                "registering {}: {}",
                terminal.name,
                state.as_str()
            );
            simulators.push(simulator);
        }

        let token = match token {
            Some(given) => ApiToken::parse(&given).context("--token must be 64 characters [A-Za-z0-9]")?,
            None => ApiToken::generate(&mut OsRandom),
        };
        if store
            .source_by_token_hash(&token.hash(), unix_now())
            .await?
            .is_none()
        {
            store
                .create_source("Demo", &token.hash(), BodyEncoding::Php, unix_now())
                .await?;
        }
        Ok(Demo {
            store,
            settings,
            simulators,
            token,
            admin_token,
        })
    }

    /// Serves until `shutdown` resolves; the simulators live as long as the server.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Demo {
            store,
            settings,
            simulators,
            ..
        } = self;
        let served = crate::run(listener, store, settings, shutdown).await;
        drop(simulators);
        served
    }
}

/// Registers a simulated terminal the way an operator registers a real one — the registration is
/// marked pending and the terminal is asked, which puts a prompt on its screen — while the
/// simulator plays the cashier who accepts it. Returns how the registration ended.
pub async fn register_simulated(
    store: &Arc<dyn Store>,
    pool: &TerminalPool,
    terminal: &TerminalRecord,
    simulator: &Simulator,
) -> anyhow::Result<RegistrationState> {
    let t = unix_now();
    let record = match store.begin_registration(terminal.id, t, t).await? {
        RegistrationStart::Started(record) | RegistrationStart::AlreadyPending(record) => *record,
        RegistrationStart::NotFound => anyhow::bail!("terminal {} not found", terminal.id),
    };
    let cashier = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !simulator.registration_pending() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        simulator.approve_registration().ok();
    };
    let (state, ()) = tokio::join!(pool.register(&record), cashier);
    Ok(state?)
}

/// A demo serving on a random port of 127.0.0.1 in the background, on a database in a fresh
/// temporary folder that is removed when it is dropped (which also stops the server).
pub struct RunningDemo {
    /// `http://127.0.0.1:PORT/api`.
    pub api_url: String,
    /// The demo source's token.
    pub token: String,
    /// The admin token.
    pub admin_token: String,
    /// The database, for assertions on what the API does not show.
    pub store: Arc<dyn Store>,
    /// The simulated terminals (to inject faults).
    pub simulators: Vec<Simulator>,
    data_dir: PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl RunningDemo {
    /// Starts a demo with `terminals` simulators; `configure` adjusts the settings (timings,
    /// `public_base_url`, ...). Must be called inside a Tokio runtime, which then runs the server.
    pub async fn start(terminals: usize, configure: impl FnOnce(&mut Config)) -> anyhow::Result<RunningDemo> {
        let mut suffix = [0u8; 6];
        rand::fill(&mut suffix);
        let data_dir = std::env::temp_dir().join(format!("byfly-demo-{}", hex::encode(suffix)));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", listener.local_addr()?);
        let mut config = Config {
            qr_scan_interval_ms: 50,
            qr_scan_deadline_ms: 5_000,
            public_base_url: Some(origin.clone()),
            ..Config::default()
        };
        configure(&mut config);
        let mut demo = Demo::prepare(DemoSetup {
            config,
            data_dir: data_dir.clone(),
            terminals,
            token: None,
            admin_token: None,
        })
        .await?;
        let api_url = format!("{origin}/api");
        let simulators = std::mem::take(&mut demo.simulators);
        let (token, admin_token, store) = (
            demo.token.expose().to_owned(),
            demo.admin_token.clone(),
            demo.store.clone(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(demo.serve(listener, async {
            stopped.await.ok();
        }));
        Ok(RunningDemo {
            api_url,
            token,
            admin_token,
            store,
            simulators,
            data_dir,
            _stop: stop,
        })
    }

    /// The folder of the demo's database.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.data_dir).ok();
    }
}

// Tokens are secrets: the Debug forms leave them out.
impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("settings", &self.settings)
            .field("terminals", &self.simulators.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RunningDemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningDemo")
            .field("api_url", &self.api_url)
            .field("data_dir", &self.data_dir)
            .field("terminals", &self.simulators.len())
            .finish_non_exhaustive()
    }
}
