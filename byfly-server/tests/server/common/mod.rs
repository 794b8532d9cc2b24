//! Shared helpers of the server's end-to-end tests: a server on a fresh SQLite file with simulated
//! terminals, a source, and typed request helpers.

// Each test binary uses a different part of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use byfly_core::wire::{KaspiResponse, PaymentStatusView};
use byfly_core::{ApiToken, BodyEncoding, PaymentStatus, TransactionId, WebhookEvent};
use byfly_server::config::Config;
use byfly_server::random::OsRandom;
use byfly_server::store::UnixSeconds;
use byfly_server::store::{NewTerminal, Store, TerminalTls};
use byfly_server::terminals::TerminalPool;
use byfly_terminal::simulator::{Outcome, PayRequest, Simulator, SimulatorConfig};
use serde_json::{Value, json};

pub struct App {
    pub base: String,
    pub token: String,
    pub store: Arc<dyn Store>,
    pub simulators: Vec<Simulator>,
    pub http: reqwest::Client,
    server: Option<RunningServer>,
    settings: byfly_server::config::Settings,
    /// The server's business time (the wall clock unless the test holds it).
    clock: byfly_server::clock::SharedClock,
    dir: std::path::PathBuf,
}

/// A server process of the test: its stop signal and its task.
struct RunningServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a server on `store` at a new local port: its API base URL and handle.
async fn start_server(
    store: Arc<dyn Store>,
    settings: byfly_server::config::Settings,
    clock: byfly_server::clock::SharedClock,
) -> (String, RunningServer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(byfly_server::run_with_clock(
        listener,
        store,
        settings,
        clock,
        async {
            stopped.await.ok();
        },
    ));
    (base, RunningServer { stop, task })
}

impl Drop for App {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
        drop_database(&self.dir);
    }
}

/// A fresh, empty folder under the system's temp folder (the caller removes it).
pub fn temp_dir(prefix: &str) -> std::path::PathBuf {
    let mut suffix = [0u8; 6];
    rand::fill(&mut suffix);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(suffix)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the suite runs on PostgreSQL: `BYFLY_TEST_BACKEND=postgres`; `sqlite` or unset is the
/// embedded default. Any other value stops the run instead of quietly testing the wrong backend.
pub fn on_postgres() -> bool {
    static BACKEND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BACKEND.get_or_init(|| match std::env::var("BYFLY_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(std::env::VarError::NotPresent) => false,
        other => panic!("BYFLY_TEST_BACKEND must be sqlite or postgres, not {other:?}"),
    })
}

/// The PostgreSQL server the suite uses on that backend: `BYFLY_TEST_DATABASE_URL`, else this machine's
/// (`postgres://postgres@127.0.0.1:5432/test`). Unreachable is a failure, never a skip.
fn postgres_admin_url() -> String {
    std::env::var("BYFLY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The name of the test database that belongs to `dir` (its own, fresh).
fn database_name(dir: &std::path::Path) -> String {
    let stamp = dir
        .file_name()
        .map(|name| {
            name.to_string_lossy()
                .rsplit('-')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    format!("byfly_t_{stamp}")
}

/// `admin_url` with its database replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("a postgres URL names a database");
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// Runs `statement` on the admin database, from a thread of its own (callers may be inside a
/// runtime, or in `Drop`).
fn admin_statement(statement: String) {
    use sqlx::Connection;
    let url = postgres_admin_url();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut connection = sqlx::postgres::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|err| {
                    panic!(
                        "PostgreSQL at {url} is unreachable ({err}); start it with \
                     `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                     or set BYFLY_TEST_DATABASE_URL"
                    )
                });
            sqlx::Executor::execute(&mut connection, sqlx::AssertSqlSafe(statement))
                .await
                .unwrap();
        });
    })
    .join()
    .unwrap();
}

/// Runs `statement` on the database at `url` directly, as an operator's hand (or a fault) would.
pub async fn execute_sql(url: &str, statement: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// The URL of the database that belongs to `dir`: a SQLite file in it, or — on the PostgreSQL
/// backend — a fresh PostgreSQL database named after it (created here, dropped with the app).
pub fn database_url(dir: &std::path::Path) -> String {
    if on_postgres() {
        postgres_url(dir)
    } else {
        format!("sqlite://{}", dir.join("byfly.db").display())
    }
}

/// A fresh PostgreSQL database that belongs to `dir` (created on the first call; dropped by
/// [`drop_postgres_database`]).
pub fn postgres_url(dir: &std::path::Path) -> String {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(drop_leftover_databases);
    let name = database_name(dir);
    let marker = dir.join("postgres-database");
    if !marker.exists() {
        admin_statement(format!("CREATE DATABASE {name}"));
        std::fs::write(&marker, &name).unwrap();
    }
    with_database(&postgres_admin_url(), &name)
}

/// Drops the test databases earlier runs left (tests that manage their own folder do not drop
/// theirs); called once per test binary, before it creates any.
fn drop_leftover_databases() {
    use sqlx::Connection;
    let url = postgres_admin_url();
    let names: Vec<String> = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let Ok(mut connection) = sqlx::postgres::PgConnection::connect(&url).await else {
                return Vec::new(); // reported by the first CREATE DATABASE
            };
            sqlx::query_scalar("SELECT datname::TEXT FROM pg_database WHERE datname LIKE 'byfly\\_t\\_%'")
                .fetch_all(&mut connection)
                .await
                .unwrap()
        })
    })
    .join()
    .unwrap();
    for name in names {
        admin_statement(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

/// Drops the PostgreSQL database of `dir`, if the suite runs on PostgreSQL.
pub fn drop_database(dir: &std::path::Path) {
    if on_postgres() {
        drop_postgres_database(dir);
    }
}

/// Drops the PostgreSQL database of `dir`.
pub fn drop_postgres_database(dir: &std::path::Path) {
    admin_statement(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        database_name(dir)
    ));
}

/// Starts `count` realistic simulated terminals, adds them to the pool as `Касса 1`, … and
/// registers them as an operator would, each simulator playing the cashier who accepts on its
/// screen (which also checks them).
pub async fn simulated_terminals(store: &Arc<dyn Store>, count: usize) -> Vec<Simulator> {
    let pool = TerminalPool::new(store.clone());
    let mut simulators = Vec::new();
    for n in 1..=count {
        let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
        let terminal = NewTerminal {
            name: format!("Касса {n}"),
            base_url: simulator.base_url(),
            camera_url: simulator.camera_url(),
            tls: TerminalTls::Verify { server_name: None },
        };
        let record = store
            .add_terminal(&terminal, UnixSeconds(0))
            .await
            .unwrap()
            .unwrap();
        let registered = byfly_server::demo::register_simulated(store, &pool, &record, &simulator)
            .await
            .unwrap();
        assert_eq!(registered, byfly_server::store::RegistrationState::Approved);
        simulators.push(simulator);
    }
    simulators
}

pub async fn spawn_app(terminals: usize) -> App {
    spawn_app_with(terminals, false, |_| {}).await
}

pub async fn spawn_app_with(terminals: usize, demo_mode: bool, configure: impl FnOnce(&mut Config)) -> App {
    spawn_app_on(
        terminals,
        demo_mode,
        byfly_server::clock::SystemClock::shared(),
        configure,
    )
    .await
}

/// [`spawn_app_with`] on `clock` (a test's clock that moves only when told).
pub async fn spawn_app_on(
    terminals: usize,
    demo_mode: bool,
    clock: byfly_server::clock::SharedClock,
    configure: impl FnOnce(&mut Config),
) -> App {
    // Server logs go to the test's output, shown when a test fails.
    tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("byfly_server=info")
        .try_init()
        .ok();
    let dir = temp_dir("byfly-e2e");
    let mut config = Config {
        database_url: database_url(&dir).into(),
        qr_scan_interval_ms: 50,
        qr_scan_deadline_ms: 5_000,
        allow_private_webhook_hosts: true,
        ..Config::default()
    };
    configure(&mut config);
    let settings = config.validate().unwrap();
    let settings = byfly_server::config::Settings {
        demo_mode,
        ..settings
    };
    let store = byfly_server::open_store(&settings).await.unwrap();
    let token = ApiToken::generate(&mut OsRandom);
    store
        .create_source("CRM", &token.hash(), BodyEncoding::Php, UnixSeconds(0))
        .await
        .unwrap();
    let simulators = simulated_terminals(&store, terminals).await;
    let (base, server) = start_server(store.clone(), settings.clone(), clock.clone()).await;
    App {
        base,
        token: token.expose().to_owned(),
        store,
        simulators,
        http: reqwest::Client::new(),
        server: Some(server),
        settings,
        clock,
        dir,
    }
}

impl App {
    /// Stops the server (gracefully: its workers end between two rounds) and starts a new process
    /// on the same database, at a new port, as after a deploy.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.store = byfly_server::open_store(&self.settings).await.unwrap();
        let (base, server) =
            start_server(self.store.clone(), self.settings.clone(), self.clock.clone()).await;
        self.base = base;
        self.server = Some(server);
    }

    /// [`App::restart`] with settings changed by `change` (as an operator edits the configuration).
    pub async fn reconfigure(&mut self, change: impl FnOnce(&mut byfly_server::config::Settings)) {
        change(&mut self.settings);
        self.restart().await;
    }

    /// Stops the server as SIGTERM would, and waits until it has.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop.send(()).ok();
            server.task.await.unwrap().unwrap();
        }
    }

    /// Creates a payment with `body` as `token`'s source and returns its transaction id.
    pub async fn init_as(&self, token: &str, body: Value) -> String {
        let created: Value = self
            .http
            .post(format!("{}/payment/init", self.base))
            .header("X-API-Token", token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["data"]["transaction_id"]
            .as_str()
            .unwrap_or_else(|| panic!("init failed: {created}"))
            .to_owned()
    }

    pub async fn init(&self, amount: i64) -> String {
        self.init_as(&self.token, json!({"amount": amount})).await
    }

    pub async fn kaspi(&self, id: &str, method: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/payment/{id}/kaspi", self.base))
            .json(&json!({"payment_method": method}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// `/kaspi` that must succeed: status 200 and the guide's message asserted, the data typed.
    pub async fn kaspi_ok(&self, id: &str, method: &str) -> KaspiResponse {
        let (code, body) = self.kaspi(id, method).await;
        assert_eq!(code, 200, "/kaspi {method}: {body}");
        assert_eq!(body["message"], json!("Платеж инициирован"), "{body}");
        serde_json::from_value(body["data"].clone()).unwrap()
    }

    /// [`App::settled`], typed.
    pub async fn settled_view(&self, id: &str) -> PaymentStatusView {
        serde_json::from_value(self.settled(id).await).unwrap()
    }

    /// `GET {base}{path}` as the app's source (`X-API-Token`), the whole JSON answer.
    pub async fn get_json_as(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .header("X-API-Token", &self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET {base}{path}`, the whole JSON answer.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST /payment/{id}/refund` with `body`, as the app's source: status and JSON answer.
    pub async fn refund(&self, id: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/payment/{id}/refund", self.base))
            .header("X-API-Token", &self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// `POST /payment/{id}/cancel` as `token`'s source: status and JSON answer.
    pub async fn cancel_as(&self, token: &str, id: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/payment/{id}/cancel", self.base))
            .header("X-API-Token", token)
            .header("Content-Type", "application/json")
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// `POST /payment/{id}/cancel` as the test's source.
    pub async fn cancel(&self, id: &str) -> (u16, Value) {
        self.cancel_as(&self.token, id).await
    }

    /// The app's database URL, for a test that works on it directly.
    pub fn database_url(&self) -> &str {
        self.settings.database_url.expose()
    }

    /// Runs `statement` on the app's database directly, as an operator's hand (or a fault) would.
    pub async fn execute_sql(&self, statement: &str) {
        execute_sql(self.settings.database_url.expose(), statement).await;
    }

    /// The payment as stored.
    pub async fn payment_row(&self, id: &str) -> byfly_server::store::PaymentRecord {
        self.store
            .payment(&TransactionId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap()
    }

    /// Polls `/status` until the payment is in `status` (bounded) and returns that view.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        eventually(&format!("{id} becomes {status}"), || async {
            let view = self.status(id).await;
            (view["status"] == json!(status)).then_some(view)
        })
        .await
    }

    pub async fn status(&self, id: &str) -> Value {
        self.get_json(&format!("/payment/{id}/status")).await["data"].clone()
    }

    /// Polls `/status` (which asks the terminal) until the payment leaves `processing` (bounded).
    pub async fn settled(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.status(id).await;
            if status["status"] != "processing" || Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The simulator running this payment's current operation.
    pub fn simulator_with(&self, qr: &str) -> &Simulator {
        self.simulators
            .iter()
            .find(|s| s.state()["current"]["qr"] == json!(qr))
            .expect("a terminal shows this QR")
    }

    pub async fn events(&self, id: &str) -> Vec<(WebhookEvent, PaymentStatus, String, String, String)> {
        let payment = self
            .store
            .payment(&TransactionId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        self.store
            .webhook_events(payment.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.event,
                    e.status,
                    e.figures.paid_amount.to_string(),
                    e.figures.remaining_amount.to_string(),
                    e.actual_amount_received.to_string(),
                )
            })
            .collect()
    }
}

/// A new payment of `tenge` with nothing optional given, created at `now` and due in an hour: the
/// row `init` stores, for a test that stores it by hand.
pub fn new_payment_row(
    transaction_id: TransactionId,
    source_id: byfly_server::store::SourceId,
    tenge: i64,
    now: UnixSeconds,
) -> byfly_server::store::NewPaymentRow {
    byfly_server::store::NewPaymentRow {
        transaction_id,
        source_id,
        payment: byfly_core::wire::NewPayment {
            amount: byfly_core::Money::from_tenge(tenge),
            currency: "KZT".to_owned(),
            description: None,
            customer_name: None,
            customer_phone: None,
            customer_email: None,
            payment_method_id: None,
            webhook_url: None,
            webhook_secret: None,
            metadata: None,
        },
        created_at: now,
        expires_at: now + 3600,
    }
}

/// A store on a fresh database of its own, with no server: the store, its folder (the caller
/// removes it) and its URL.
pub async fn fresh_store(prefix: &str) -> (Arc<dyn Store>, std::path::PathBuf, String) {
    let dir = temp_dir(prefix);
    let url = database_url(&dir);
    let settings = Config {
        database_url: url.clone().into(),
        ..Config::default()
    }
    .validate()
    .unwrap();
    (byfly_server::open_store(&settings).await.unwrap(), dir, url)
}

/// Opens a Gold operation on `payment` by hand, as `/kaspi` does once a terminal answered with
/// `process_id`: claims a free terminal and records the start. Returns the operation's id.
pub async fn start_by_hand(
    store: &Arc<dyn Store>,
    payment: &byfly_server::store::PaymentRecord,
    process_id: &str,
) -> byfly_server::store::OperationId {
    let methods = store.payment_methods().await.unwrap();
    let (gold, _) = methods
        .iter()
        .find(|(m, _)| m.code.as_str() == "kaspi_gold")
        .unwrap();
    let quote = byfly_core::ledger::Ledger::new(payment.original_amount)
        .quote_next(gold)
        .unwrap();
    let now = byfly_server::clock::unix_now();
    let claim = byfly_server::store::TerminalClaim {
        payment_id: payment.id,
        expected_status: PaymentStatus::Pending,
        terminal_amount: quote.terminal_amount(),
        quote,
        excluded_terminals: Vec::new(),
        replace_operation: None,
        now,
        deadline_at: now + 300,
    };
    let byfly_server::store::ClaimOutcome::Claimed { operation_id, .. } =
        store.claim_terminal(&claim).await.unwrap()
    else {
        panic!("no terminal claimed");
    };
    assert!(
        store
            .operation_started(
                operation_id,
                process_id,
                now,
                PaymentStatus::Pending,
                PaymentStatus::Processing
            )
            .await
            .unwrap()
    );
    operation_id
}

/// An answer read whole: its status, `Content-Type` (empty when absent) and body text.
pub async fn read_answer(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// The admin token of the apps whose configuration sets one.
pub const ADMIN: &str = "admin-token-0123456789";

/// `{method} {base}/admin{path}` with the admin token: status and JSON answer.
pub async fn admin(app: &App, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, format!("{}/admin{path}", app.base))
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Waits (bounded: 20 s) until `probe` returns something, checking every 20 ms.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn pay(product: &str, amount: Option<i64>) -> PayRequest {
    PayRequest {
        product: product.to_owned(),
        amount,
        outcome: Outcome::Success,
        after_ms: 0,
        ..PayRequest::default()
    }
}

/// A fresh store on its own SQLite file (or PostgreSQL database), without a server.
pub async fn store() -> (Arc<dyn Store>, std::path::PathBuf) {
    let dir = temp_dir("byfly-pool");
    let settings = Config {
        database_url: database_url(&dir).into(),
        ..Config::default()
    }
    .validate()
    .unwrap();
    (byfly_server::open_store(&settings).await.unwrap(), dir)
}

/// A simulator as a terminal to add.
pub fn simulated(name: &str, simulator: &Simulator) -> NewTerminal {
    NewTerminal {
        name: name.to_owned(),
        base_url: simulator.base_url(),
        camera_url: simulator.camera_url(),
        tls: TerminalTls::Verify { server_name: None },
    }
}

/// A simulated terminal added to `store` as `name` and registered (the cashier accepts), with a
/// pool of short timeouts.
pub async fn registered(
    store: &Arc<dyn Store>,
    name: &str,
) -> (Simulator, byfly_server::store::TerminalRecord, TerminalPool) {
    let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
    let added = store
        .add_terminal(&simulated(name, &simulator), UnixSeconds(0))
        .await
        .unwrap()
        .unwrap();
    let pool = TerminalPool::with_timeouts(
        store.clone(),
        Duration::from_millis(500),
        Duration::from_millis(1500),
    );
    byfly_server::demo::register_simulated(store, &pool, &added, &simulator)
        .await
        .unwrap();
    (simulator, added, pool)
}
