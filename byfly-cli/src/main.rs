//! `byfly`: the operator and integrator command line, on top of byfly-client.
//!
//! Every command prints a readable summary, or with `--json` exactly one JSON document on stdout:
//! the answer's `data` on success, the API's error envelope on failure. Exit codes are listed on
//! [`ExitCode`] and in `byfly --help`.

mod admin;
mod listen;
mod profiles;
mod render;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use byfly_client::{Client, Error, IdempotencyKey, WaitOptions, WaitUntil};
use byfly_core::wire::{InitPaymentRequest, PaymentListQuery};
use byfly_core::{ErrorCode, Money, PaymentStatus, TransactionId};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};

const EXIT_CODES: &str = "Exit codes:
  0  success
  1  unexpected failure (an answer that could not be read, a local file)
  2  usage error (a missing or invalid argument)
  3  the server refused the request (its message and code are printed)
  4  not found (payment, refund, source, terminal, event)
  5  not authorized (missing or invalid API / admin token)
  6  server unavailable (cannot connect, timeout, HTTP 5xx)
  7  a wait's deadline passed: `status --wait` before the awaited status, `admin terminals
     register` before the cashier answered
  8  `webhook verify`: the signature is missing, wrong or stale";

#[derive(Debug, Parser)]
#[command(name = "byfly", version, about = "ByFly Payment Center: payments on Kaspi terminals from the command line", after_help = EXIT_CODES)]
struct Cli {
    /// The server's API root (`/api` is added when missing) [default: the profile's, else
    /// http://127.0.0.1:8080/api].
    #[arg(long, global = true, env = "BYFLY_API_URL")]
    api_url: Option<String>,
    /// A profile of the config file: its server URL and tokens fill in for flags and variables
    /// not given [default: the file's `default`].
    #[arg(long, global = true, env = "BYFLY_PROFILE")]
    profile: Option<String>,
    /// The config file of profiles [default: $XDG_CONFIG_HOME/byfly/config.toml, else
    /// ~/.config/byfly/config.toml].
    #[arg(long, global = true, env = "BYFLY_CLI_CONFIG")]
    config: Option<PathBuf>,
    /// The chosen profile's `webhook_secret` (filled in after parsing).
    #[arg(skip)]
    profile_webhook_secret: Option<String>,
    /// The merchant source's API token (init, cancel, refund, list).
    #[arg(long, global = true, env = "BYFLY_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The operator's admin token (admin commands).
    #[arg(long, global = true, env = "BYFLY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Print one JSON document (the answer's data, or the error envelope) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Draw QR codes for a terminal with a light background (dark modules drawn).
    #[arg(long, global = true)]
    light: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a payment (POST /payment/init).
    Init(InitArgs),
    /// Print a completion script for SHELL, e.g. `byfly completions bash > /etc/bash_completion.d/byfly`
    /// or `byfly completions zsh > "${fpath[1]}/_byfly"`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages — byfly.1 and one per command (byfly-kaspi.1, …) — into DIR, e.g.
    /// `byfly man --dir /usr/local/share/man/man1`.
    Man {
        /// Where to write them (created when missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Start a payment (or its top-up) on a Kaspi terminal and show the link and its QR.
    Kaspi {
        /// The payment's transaction id.
        id: String,
        /// kaspi_gold, kaspi_red, kaspi_kredit or kaspi_rassrochka.
        #[arg(long, default_value = "kaspi_gold")]
        method: String,
        /// Do not draw the QR.
        #[arg(long)]
        no_qr: bool,
    },
    /// The payment's status (the server asks the terminal while it is processing).
    Status {
        /// The payment's transaction id.
        id: String,
        /// Wait until the customer's attempt is over (or until --until).
        #[arg(long)]
        wait: bool,
        /// Stop waiting at one of these statuses instead (repeatable); a final status always stops.
        #[arg(long, value_parser = parse_status, requires = "wait")]
        until: Vec<PaymentStatus>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600, requires = "wait")]
        timeout: u64,
    },
    /// The payment's full public view.
    Show {
        /// The payment's transaction id.
        id: String,
    },
    /// What each active method would charge now (on what remains after a partial payment).
    Quotes {
        /// The payment's transaction id.
        id: String,
    },
    /// The source's payments, newest first.
    List(ListArgs),
    /// Active payment methods with their commissions.
    Methods,
    /// Cancel a payment (a terminal operation in flight is ended first).
    Cancel {
        /// The payment's transaction id.
        id: String,
    },
    /// Refund all or part of what was received; the customer confirms in the Kaspi app.
    Refund {
        /// The payment's transaction id.
        id: String,
        /// How much (default: everything received and not yet refunded).
        #[arg(long, value_parser = parse_money)]
        amount: Option<Money>,
        /// Follow an earlier refund instead of starting one.
        #[arg(long, conflicts_with = "amount")]
        check: Option<String>,
    },
    /// Demo mode: make the simulated customer act on the payment's terminal.
    Simulate {
        /// The payment's transaction id.
        id: String,
        /// What the customer pays with: Gold, Red, Loan or Installment.
        #[arg(long, default_value = "Gold")]
        product: String,
        /// Gross amount paid in whole tenge (default: what the terminal asked for).
        #[arg(long)]
        amount: Option<i64>,
        /// success, fail or unknown.
        #[arg(long, default_value = "success")]
        outcome: String,
    },
    /// The server's health: database and terminal pool.
    Health,
    /// Webhook tools for receivers.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Receive webhooks on this machine: print each delivery, verify its signatures with
    /// --secret, and with --forward-to pass it on to your own receiver.
    Listen(listen::ListenArgs),
    /// The config file's profiles (never their tokens).
    Profiles,
    /// Run a standalone Kaspi terminal simulator (protocol, camera and /sim control) until Ctrl-C.
    SimTerminal {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: SocketAddr,
    },
    /// Operator commands (admin token).
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Amount in tenge, without commission (`50000`, `12281.25`).
    #[arg(long, value_parser = parse_money)]
    amount: Money,
    /// Shown to the customer and sent in webhooks.
    #[arg(long)]
    description: Option<String>,
    /// Default KZT.
    #[arg(long)]
    currency: Option<String>,
    #[arg(long)]
    customer_name: Option<String>,
    #[arg(long)]
    customer_phone: Option<String>,
    #[arg(long)]
    customer_email: Option<String>,
    /// Preferred payment method id.
    #[arg(long)]
    method_id: Option<i64>,
    /// Where webhooks go.
    #[arg(long)]
    webhook_url: Option<String>,
    /// HMAC key of the webhooks.
    #[arg(long)]
    webhook_secret: Option<String>,
    /// Metadata entry `key=value` (repeatable; kept in order, values are strings).
    #[arg(long = "meta", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// Makes a repeated command answer the first payment instead of creating another.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only payments in this status.
    #[arg(long, value_parser = parse_status)]
    status: Option<PaymentStatus>,
    /// Page size, 1..=100.
    #[arg(long)]
    limit: Option<u32>,
    /// `next cursor` printed with the previous page.
    #[arg(long)]
    cursor: Option<String>,
}

impl ListArgs {
    fn query(&self) -> PaymentListQuery {
        PaymentListQuery {
            status: self.status,
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Check a received webhook's signatures against the exact body bytes.
    Verify {
        /// The webhook secret given at init [default: the profile's `webhook_secret`].
        #[arg(long)]
        secret: Option<String>,
        /// The body as received, from a file, or `-` for stdin.
        #[arg(long, default_value = "-")]
        body_file: PathBuf,
        /// The `X-Webhook-Signature` header.
        #[arg(long)]
        signature: Option<String>,
        /// The `X-Webhook-Signature-V2` header.
        #[arg(long)]
        signature_v2: Option<String>,
        /// Accepted clock difference in seconds (0 skips the freshness check, for old deliveries).
        #[arg(long, default_value_t = byfly_core::webhook::signature::DEFAULT_TOLERANCE_SECS)]
        tolerance: i64,
    },
}

fn parse_money(text: &str) -> Result<Money, String> {
    Money::parse(text.trim()).map_err(|err| format!("not an amount: {err}"))
}

fn parse_status(text: &str) -> Result<PaymentStatus, String> {
    PaymentStatus::parse(text).ok_or_else(|| {
        let known: Vec<&str> = PaymentStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status; one of {}", known.join(", "))
    })
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| "expected key=value".to_owned())
}

/// Why a command failed, and so its exit code.
#[derive(Debug)]
enum Failure {
    /// From the SDK.
    Client(Error),
    /// An invalid argument found after parsing.
    Usage(String),
    /// A local problem (reading a file).
    Local(String),
    /// `webhook verify` refused the signature.
    Signature(String),
    /// The server did what was asked, but the outcome is not the one wanted (a registration the
    /// cashier declined): exit 3, or 7 for `wait_deadline`, with the answer kept as `data`.
    Outcome {
        /// Our code (`registration_declined`, `wait_deadline`, ...).
        code: String,
        /// For people.
        message: String,
        /// The answer.
        data: Value,
    },
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        Failure::Client(err)
    }
}

/// The documented exit codes (see [`EXIT_CODES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum ExitCode {
    Unexpected = 1,
    Usage = 2,
    Refused = 3,
    NotFound = 4,
    Unauthorized = 5,
    Unavailable = 6,
    WaitDeadline = 7,
    BadSignature = 8,
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Client(err) => match err {
                Error::Api(failure) => match failure.status {
                    401 | 403 => ExitCode::Unauthorized,
                    404 => ExitCode::NotFound,
                    500..=599 => ExitCode::Unavailable,
                    _ => ExitCode::Refused,
                },
                Error::Transport(_) | Error::Timeout(_) => ExitCode::Unavailable,
                Error::Decode { status, .. } if *status >= 500 => ExitCode::Unavailable,
                Error::Decode { .. } => ExitCode::Unexpected,
                Error::Config(_) => ExitCode::Usage,
                Error::MissingCredential(_) => ExitCode::Unauthorized,
                Error::WaitDeadline { .. } => ExitCode::WaitDeadline,
                _ => ExitCode::Unexpected,
            },
            Failure::Usage(_) => ExitCode::Usage,
            Failure::Local(_) => ExitCode::Unexpected,
            Failure::Signature(_) => ExitCode::BadSignature,
            Failure::Outcome { code, .. } if code == "wait_deadline" => ExitCode::WaitDeadline,
            Failure::Outcome { .. } => ExitCode::Refused,
        }
    }

    /// The error as the API's envelope (our own codes for failures that never reached it).
    fn envelope(&self) -> Value {
        let (message, status, code, last) = match self {
            Failure::Client(Error::Api(failure)) => (
                failure.message.clone(),
                failure.status,
                failure.code_text.clone(),
                None,
            ),
            Failure::Client(Error::WaitDeadline { last }) => (
                self.to_string(),
                0,
                "wait_deadline".into(),
                serde_json::to_value(last).ok(),
            ),
            Failure::Client(err) => {
                let code = match err {
                    Error::Transport(_) => "transport_error",
                    Error::Timeout(_) => "timeout",
                    Error::Decode { .. } => "undecodable_answer",
                    Error::MissingCredential(_) => "missing_credential",
                    _ => "invalid_setting",
                };
                (self.to_string(), err.status().unwrap_or(0), code.into(), None)
            }
            Failure::Usage(_) => (self.to_string(), 0, "usage".into(), None),
            Failure::Local(_) => (self.to_string(), 0, "local_error".into(), None),
            Failure::Signature(_) => (self.to_string(), 0, "signature_invalid".into(), None),
            Failure::Outcome { code, message, data } => {
                (message.clone(), 0, code.clone(), Some(data.clone()))
            }
        };
        let mut envelope = json!({"success": false, "message": message, "error_code": status, "code": code});
        if let Some(last) = last {
            envelope["data"] = last;
        }
        envelope
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Client(err) => write!(f, "{err}"),
            Failure::Usage(message) | Failure::Local(message) => f.write_str(message),
            Failure::Signature(message) => write!(f, "invalid webhook: {message}"),
            Failure::Outcome { message, code, .. } => write!(f, "{message} ({code})"),
        }
    }
}

/// `println!` that ignores a closed stdout (`byfly list | head -1`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use say;

/// How results are printed.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
    light: bool,
}

impl Output {
    /// Prints `data` as JSON, or `human` text.
    fn emit<T: Serialize>(&self, data: &T, human: impl FnOnce(&T) -> String) -> Result<(), Failure> {
        if self.json {
            let text = serde_json::to_string_pretty(data).map_err(|err| Failure::Local(err.to_string()))?;
            say!("{text}");
        } else {
            say!("{}", human(data));
        }
        Ok(())
    }
}

/// A transaction id as typed by a person: surrounding spaces and lowercase forgiven. A string that
/// cannot be one is "not found", as the server itself answers.
fn transaction_id(text: &str) -> Result<TransactionId, Failure> {
    TransactionId::parse(&text.trim().to_ascii_uppercase()).map_err(|_| {
        Failure::Client(Error::Api(byfly_client::ApiFailure {
            status: 404,
            code: Some(ErrorCode::TransactionNotFound),
            code_text: ErrorCode::TransactionNotFound.as_str().into(),
            message: ErrorCode::TransactionNotFound.message().into(),
            request_id: None,
            retry_after: None,
        }))
    })
}

fn client(cli: &Cli) -> Result<Client, Failure> {
    let api_url = cli.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
    let mut builder = Client::builder(api_url).user_agent(concat!("byfly-cli/", env!("CARGO_PKG_VERSION")));
    if let Some(token) = &cli.token {
        builder = builder.api_token(token);
    }
    if let Some(token) = &cli.admin_token {
        builder = builder.admin_token(token);
    }
    Ok(builder.build()?)
}

/// Where the API is when neither a flag, `BYFLY_API_URL` nor a profile says.
const DEFAULT_API_URL: &str = "http://127.0.0.1:8080/api";

/// The config file `--config` names, else the default one (`None`: no home to look in).
fn config_path(cli: &Cli) -> Option<(PathBuf, bool)> {
    match &cli.config {
        Some(path) => Some((path.clone(), true)),
        None => profiles::default_path().map(|path| (path, false)),
    }
}

/// Fills what neither a flag nor its variable set from the chosen profile (see `profiles`).
fn apply_profile(cli: &mut Cli) -> Result<(), String> {
    let file = match config_path(cli) {
        Some((path, named)) => profiles::load(&path, named)?,
        None => None,
    };
    let Some(profile) = profiles::select(file.as_ref(), cli.profile.as_deref())? else {
        return Ok(());
    };
    cli.api_url = cli.api_url.take().or(profile.api_url);
    cli.token = cli.token.take().or(profile.token);
    cli.admin_token = cli.admin_token.take().or(profile.admin_token);
    cli.profile_webhook_secret = profile.webhook_secret;
    Ok(())
}

/// A command's `--secret`, else the profile's `webhook_secret`.
fn webhook_secret(cli: &Cli, given: Option<&String>) -> Option<String> {
    given.cloned().or_else(|| cli.profile_webhook_secret.clone())
}

/// `byfly profiles`: each profile's name, server and which tokens it holds.
fn list_profiles(cli: &Cli, output: Output) -> Result<(), Failure> {
    let (path, named) =
        config_path(cli).ok_or_else(|| Failure::Local("no home directory to look in".into()))?;
    let file = profiles::load(&path, named)
        .map_err(Failure::Usage)?
        .unwrap_or_default();
    let listed: Vec<Value> = file
        .profiles
        .iter()
        .map(|(name, p)| {
            json!({
                "name": name,
                "default": file.default.as_deref() == Some(name.as_str()),
                "api_url": p.api_url,
                "token": p.token.is_some(),
                "admin_token": p.admin_token.is_some(),
                "webhook_secret": p.webhook_secret.is_some(),
            })
        })
        .collect();
    output.emit(&listed, |listed| {
        let yes = |value: &Value| if value.as_bool() == Some(true) { "yes" } else { "-" }.to_owned();
        let rows: Vec<Vec<String>> = listed
            .iter()
            .map(|p| {
                vec![
                    format!(
                        "{}{}",
                        p["name"].as_str().unwrap_or(""),
                        if p["default"] == json!(true) { " *" } else { "" }
                    ),
                    p["api_url"].as_str().unwrap_or("-").to_owned(),
                    yes(&p["token"]),
                    yes(&p["admin_token"]),
                    yes(&p["webhook_secret"]),
                ]
            })
            .collect();
        format!(
            "{}\n{} (* the default)",
            render::table(
                &["profile", "api_url", "token", "admin token", "webhook secret"],
                &rows
            ),
            path.display()
        )
    })
}

/// Now, in Unix seconds, for signature freshness.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

/// `byfly completions` and `byfly man`: generated from the CLI's own definition, no server asked.
fn describe_itself(command: &Command) -> Option<std::process::ExitCode> {
    use clap::CommandFactory;
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "byfly", &mut std::io::stdout());
            Some(std::process::ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            let written =
                std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
            Some(match written {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!(
                        "error: cannot write the manual pages into {}: {err}",
                        dir.display()
                    );
                    std::process::ExitCode::from(ExitCode::Unexpected as u8)
                }
            })
        }
        _ => None,
    }
}

fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    if let Some(code) = describe_itself(&cli.command) {
        return code;
    }
    if let Err(problem) = apply_profile(&mut cli) {
        eprintln!("error: {problem}");
        return std::process::ExitCode::from(ExitCode::Usage as u8);
    }
    let output = Output {
        json: cli.json,
        light: cli.light,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start: {err}");
            return std::process::ExitCode::from(ExitCode::Unexpected as u8);
        }
    };
    match runtime.block_on(run(&cli, output)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            if output.json {
                say!(
                    "{}",
                    serde_json::to_string_pretty(&failure.envelope()).unwrap_or_default()
                );
            } else {
                match &failure {
                    Failure::Client(Error::Api(api)) => match &api.request_id {
                        // The id every server log line of the request carries, for the operator.
                        Some(request) => {
                            eprintln!("error: {} ({}); request {request}", api.message, api.code_text)
                        }
                        None => eprintln!("error: {} ({})", api.message, api.code_text),
                    },
                    other => eprintln!("error: {other}"),
                }
                if let Failure::Client(Error::WaitDeadline { last }) = &failure {
                    eprintln!("{}", render::status(last));
                }
            }
            std::process::ExitCode::from(failure.exit_code() as u8)
        }
    }
}

async fn run(cli: &Cli, output: Output) -> Result<(), Failure> {
    match &cli.command {
        // Answered by `describe_itself` before anything starts.
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
        Command::Init(args) => init(&client(cli)?, args, output).await,
        Command::Kaspi { id, method, no_qr } => {
            let answer = client(cli)?
                .start_kaspi(&transaction_id(id)?, Some(method))
                .await?;
            output.emit(&answer, |a| render::kaspi(method, a, output.light, !no_qr))
        }
        Command::Status {
            id,
            wait,
            until,
            timeout,
        } => {
            let client = client(cli)?;
            let id = transaction_id(id)?;
            let view = if *wait {
                let options = WaitOptions {
                    until: if until.is_empty() {
                        WaitUntil::Settled
                    } else {
                        WaitUntil::AnyOf(until.clone())
                    },
                    timeout: Duration::from_secs(*timeout),
                    initial_interval: Duration::from_millis(250),
                    max_interval: Duration::from_secs(2),
                };
                wait_with_spinner(&client, &id, &options).await?
            } else {
                client.status(&id).await?
            };
            output.emit(&view, render::status)
        }
        Command::Show { id } => {
            let view = client(cli)?.payment(&transaction_id(id)?).await?;
            output.emit(&view, render::payment)
        }
        Command::Quotes { id } => {
            let quotes = client(cli)?.quotes(&transaction_id(id)?).await?;
            output.emit(&quotes, |quotes| {
                let rows: Vec<Vec<String>> = quotes
                    .iter()
                    .map(|q| {
                        vec![
                            q.payment_method.clone(),
                            q.name.clone(),
                            format!("{} %", q.commission_percent),
                            render::tenge(q.commission_amount),
                            render::tenge(q.amount),
                        ]
                    })
                    .collect();
                render::table(&["method", "name", "commission", "added", "to pay"], &rows)
            })
        }
        Command::List(args) => {
            let page = client(cli)?.payments(&args.query()).await?;
            output.emit(&page, render_list)
        }
        Command::Methods => {
            let methods = client(cli)?.active_methods().await?;
            output.emit(&methods, |methods| {
                let rows: Vec<Vec<String>> = methods
                    .iter()
                    .map(|m| {
                        vec![
                            m.id.to_string(),
                            m.code.to_string(),
                            m.name.clone(),
                            format!("{} %", m.effective_percent()),
                            if m.effective_percent().as_decimal().is_zero() {
                                "—".into()
                            } else if m.add_commission_to_amount {
                                "customer".into()
                            } else {
                                "merchant".into()
                            },
                        ]
                    })
                    .collect();
                render::table(&["id", "code", "name", "commission", "paid by"], &rows)
            })
        }
        Command::Cancel { id } => {
            let answer = client(cli)?.cancel(&transaction_id(id)?).await?;
            output.emit(&answer, |a| format!("{}  {}", a.transaction_id, a.status))
        }
        Command::Refund { id, amount, check } => {
            let client = client(cli)?;
            let id = transaction_id(id)?;
            let refund = match check {
                Some(refund_id) => client.refund_status(&id, refund_id).await?,
                None => client.refund(&id, *amount).await?,
            };
            output.emit(&refund, |r| render::refund(r, output.light))
        }
        Command::Simulate {
            id,
            product,
            amount,
            outcome,
        } => {
            let mut action = json!({"product": product, "outcome": outcome});
            if let Some(amount) = amount {
                action["amount"] = json!(amount);
            }
            let answer = client(cli)?.demo_simulate(&transaction_id(id)?, &action).await?;
            output.emit(&answer, |_| {
                format!("the simulated customer acted: {product}, {outcome} (see `byfly status {id}`)")
            })
        }
        Command::Health => {
            let health = client(cli)?.health().await?;
            output.emit(&health, |h| {
                format!(
                    "{} (database {}, version {})\n{}",
                    h.status,
                    h.database,
                    h.version,
                    render::fields(&[
                        ("terminals", h.terminals.total.to_string()),
                        ("healthy", h.terminals.healthy.to_string()),
                        ("busy", h.terminals.busy.to_string()),
                        ("needs registration", h.terminals.needs_registration.to_string(),),
                    ])
                )
            })
        }
        Command::Webhook {
            command:
                WebhookCommand::Verify {
                    secret,
                    body_file,
                    signature,
                    signature_v2,
                    tolerance,
                },
        } => verify_webhook(
            &webhook_secret(cli, secret.as_ref()).ok_or_else(|| {
                Failure::Usage("--secret is required (or a profile's webhook_secret)".into())
            })?,
            body_file,
            signature.as_deref(),
            signature_v2.as_deref(),
            *tolerance,
            output,
        ),
        Command::SimTerminal { bind } => sim_terminal(*bind).await,
        Command::Listen(args) => {
            listen::listen(args, webhook_secret(cli, args.secret.as_ref()), output).await
        }
        Command::Profiles => list_profiles(cli, output),
        Command::Admin { command } => admin::run(&client(cli)?, command, output).await,
    }
}

async fn init(client: &Client, args: &InitArgs, output: Output) -> Result<(), Failure> {
    let metadata = (!args.meta.is_empty()).then(|| {
        Value::Object(
            args.meta
                .iter()
                .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                .collect(),
        )
    });
    let request = InitPaymentRequest {
        amount: args.amount,
        currency: args.currency.clone(),
        description: args.description.clone(),
        customer_name: args.customer_name.clone(),
        customer_phone: args.customer_phone.clone(),
        customer_email: args.customer_email.clone(),
        payment_method_id: args.method_id,
        webhook_url: args.webhook_url.clone(),
        webhook_secret: args.webhook_secret.clone(),
        metadata,
    };
    let key = args
        .idempotency_key
        .as_deref()
        .map(IdempotencyKey::new)
        .transpose()
        .map_err(|err| Failure::Usage(err.to_string()))?;
    let created = client.create_payment(&request, key).await?;
    output.emit(&created, |c| {
        let mut pairs = vec![
            ("amount", render::tenge(c.amount)),
            ("currency", c.currency.clone()),
            ("expires at", c.expires_at.clone()),
        ];
        if let Some(page) = &c.payment_page_url {
            pairs.push(("payment page", page.clone()));
        }
        format!(
            "{}  {}\n{}\nNext: byfly kaspi {} --method kaspi_gold",
            c.transaction_id,
            c.status,
            render::fields(&pairs),
            c.transaction_id
        )
    })
}

/// Waits, showing a spinner with the live status on stderr when it is a terminal.
async fn wait_with_spinner(
    client: &Client,
    id: &TransactionId,
    options: &WaitOptions,
) -> Result<byfly_core::wire::PaymentStatusView, Failure> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message(format!("{id}: waiting"));
    let waited = client
        .wait_for_payment_with(id, options, |view| {
            spinner.set_message(format!(
                "{id}: {} — received {} of {}",
                view.status,
                render::tenge(view.paid_amount),
                render::tenge(view.amount)
            ));
        })
        .await;
    spinner.finish_and_clear();
    Ok(waited?)
}

fn render_list(page: &byfly_core::wire::PaymentList) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|p| {
            vec![
                p.transaction_id.to_string(),
                p.status.to_string(),
                render::tenge(p.amount),
                render::tenge(p.paid_amount),
                p.created_at.clone(),
                p.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = render::table(
        &["id", "status", "amount", "paid", "created", "description"],
        &rows,
    );
    if let Some(cursor) = &page.next_cursor {
        out.push_str(&format!("\nnext page: --cursor {cursor}"));
    }
    out
}

fn verify_webhook(
    secret: &str,
    body_file: &PathBuf,
    signature: Option<&str>,
    signature_v2: Option<&str>,
    tolerance: i64,
    output: Output,
) -> Result<(), Failure> {
    use byfly_core::webhook::signature::{ReceivedSignatures, verify};
    let mut body = Vec::new();
    let read = if body_file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body)
    } else {
        std::fs::File::open(body_file).and_then(|mut file| file.read_to_end(&mut body))
    };
    read.map_err(|err| Failure::Local(format!("cannot read {}: {err}", body_file.display())))?;
    let now = unix_now();
    let received = ReceivedSignatures {
        signature,
        signature_v2,
        standard: None,
    };
    // A zero tolerance means "do not check freshness".
    let tolerance = if tolerance == 0 { i64::MAX } else { tolerance };
    let timestamp = verify(secret.as_bytes(), &body, received, now, tolerance)
        .map_err(|err| Failure::Signature(err.to_string()))?;
    let payload: Option<byfly_core::WebhookPayload> = serde_json::from_slice(&body).ok();
    let report = json!({
        "valid": true,
        "timestamp": timestamp,
        "event": payload.as_ref().map(|p| p.event.as_str()),
        "event_id": payload.as_ref().map(|p| p.event_id.clone()),
        "transaction_id": payload.as_ref().map(|p| p.transaction_id.to_string()),
    });
    output.emit(&report, |_| match &payload {
        Some(p) => format!(
            "valid: {} for {} (event id {}, signed at {timestamp})",
            p.event, p.transaction_id, p.event_id
        ),
        None => format!("valid signature (signed at {timestamp}); the body is not a webhook payload"),
    })
}

async fn sim_terminal(bind: SocketAddr) -> Result<(), Failure> {
    use byfly_terminal::simulator::{Simulator, SimulatorConfig};
    let simulator = Simulator::start(SimulatorConfig::default(), bind)
        .await
        .map_err(|err| Failure::Local(format!("cannot listen on {bind}: {err}")))?;
    say!("Kaspi terminal simulator on {}", simulator.base_url());
    say!("  camera:  {}", simulator.camera_url());
    say!(
        "  control: POST {0}/sim/pay {{\"product\": \"Gold\"}}, POST {0}/sim/fault, POST {0}/sim/config, GET {0}/sim/state",
        simulator.base_url()
    );
    say!(
        "  as harsh as a real terminal: `register` waits for POST {0}/sim/approve-registration (the cashier), \
         no remote cancel; friendlier: POST {0}/sim/config {{\"register\": \"auto\", \"remote_cancel\": true}}",
        simulator.base_url()
    );
    say!(
        "  add it:  byfly admin terminals add --name NAME --url {} --camera-url {}",
        simulator.base_url(),
        simulator.camera_url()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|err| Failure::Local(err.to_string()))?;
    drop(simulator);
    Ok(())
}
