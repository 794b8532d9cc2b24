//! `byfly admin …`: sources, terminals, payment methods, every source's payments, the webhook
//! log, manual retries, the undelivered events across payments and their bulk recovery.

use byfly_client::Client;
use byfly_core::wire::{
    AddTerminalRequest, ApiKeyView, CreateApiKeyRequest, CreateSourceRequest, OperationView,
    RecoverWebhooksRequest, ResolveOperationRequest, SourceView, TerminalView, UndeliveredEventList,
    UndeliveredEventsQuery, UpdateMethodRequest, UpdateSourceRequest, UpdateTerminalRequest,
    WebhookAttemptView, WebhookEventView,
};
use byfly_core::{BodyEncoding, Percent};
use clap::Subcommand;

use crate::render::{self, table, tenge};
use crate::{Failure, ListArgs, Output, transaction_id};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Merchant systems and their API tokens.
    Sources {
        #[command(subcommand)]
        command: SourceCommand,
    },
    /// The terminal pool.
    Terminals {
        #[command(subcommand)]
        command: TerminalCommand,
    },
    /// Payment methods and their commissions (active and inactive).
    Methods {
        #[command(subcommand)]
        command: MethodCommand,
    },
    /// Every source's payments, newest first.
    Payments {
        /// Only this source's.
        #[arg(long)]
        source_id: Option<i64>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// A payment with its terminal operations.
    Payment {
        /// The payment's transaction id.
        id: String,
    },
    /// A payment's webhook events with every delivery attempt (`webhooks <id>`), or the outbox
    /// across payments: `webhooks failed`, `webhooks recover`.
    #[command(args_conflicts_with_subcommands = true)]
    Webhooks {
        #[command(subcommand)]
        command: Option<WebhookCommand>,
        /// The payment's transaction id.
        id: Option<String>,
    },
    /// Send a webhook event again now (receivers de-duplicate by X-Webhook-Id).
    Retry {
        /// The event id (from `admin webhooks`).
        event_id: String,
    },
    /// Operations waiting for an operator: a long `unknown`, a process the terminal forgot after a
    /// customer could have paid, a payment start that got no answer.
    Review,
    /// Decide an operation under review after checking the terminal's history (or with Kaspi):
    /// settled like the terminal's own answer, with its webhook.
    Resolve {
        /// The operation id (from `admin review`).
        operation_id: i64,
        /// The customer paid this much (gross, as on the terminal's cheque).
        #[arg(long, conflicts_with = "not_paid", required_unless_present = "not_paid")]
        paid: Option<byfly_core::Money>,
        /// Nothing was paid.
        #[arg(long)]
        not_paid: bool,
        /// The terminal's transactionId of the payment (required with --paid: a refund names it).
        #[arg(long, required_unless_present = "not_paid")]
        transaction_id: Option<String>,
        /// Why, for the record.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Undelivered events across payments — pending, failed (retrying) and exhausted — oldest first.
    Failed {
        /// Only this source's payments.
        #[arg(long)]
        source_id: Option<i64>,
        /// pending, failed or exhausted (default: all three).
        #[arg(long, value_parser = ["pending", "failed", "exhausted"])]
        state: Option<String>,
        /// Only events created at or after this (`YYYY-MM-DD HH:MM:SS`, the server's offset).
        #[arg(long)]
        since: Option<String>,
        /// Page size (1..=100).
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// After a receiver's outage: everything of a source that failed since a time goes out again,
    /// in order, on a fresh schedule.
    Recover {
        /// The source.
        #[arg(long)]
        source_id: i64,
        /// Events created at or after this (`YYYY-MM-DD HH:MM:SS`, the server's offset).
        #[arg(long)]
        since: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// List sources.
    List,
    /// Create a source; its API token is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Body encoding of its webhooks: php (as the deployed system) or js.
        #[arg(long, default_value = "php", value_parser = ["php", "js"])]
        webhook_json: String,
    },
    /// Change a source's webhook encoding, or revoke / restore it.
    Update {
        id: i64,
        #[arg(long, value_parser = ["php", "js"])]
        webhook_json: Option<String>,
        #[arg(long)]
        active: Option<bool>,
    },
    /// A source's API keys (never their tokens).
    Keys { id: i64 },
    /// Add an API key to a source; its token is printed once. To rotate a token without downtime:
    /// `key-create`, switch the merchant system to the new token, then `key-revoke` the old key.
    KeyCreate {
        /// The source's id.
        id: i64,
        #[arg(long)]
        name: String,
        /// `YYYY-MM-DD HH:MM:SS` (the server's offset): the key stops working then.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Revoke one of a source's API keys: its token stops working, the source and its other keys
    /// go on.
    KeyRevoke {
        /// The source's id.
        id: i64,
        /// The key's id (`byfly admin sources keys ID`).
        key_id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TerminalCommand {
    /// List terminals with their health.
    List,
    /// One terminal, with its registration's progress.
    Show { id: i64 },
    /// Add a terminal (then register it: `admin terminals register ID`).
    Add {
        #[arg(long)]
        name: String,
        /// The terminal's base URL (`https://192.168.1.50:8080`).
        #[arg(long)]
        url: String,
        /// The snapshot URL of the camera pointed at its screen.
        #[arg(long)]
        camera_url: String,
        /// verify or insecure.
        #[arg(long, value_parser = ["verify", "insecure"])]
        tls: Option<String>,
        /// Verify the certificate as this name while connecting by IP.
        #[arg(long)]
        tls_server_name: Option<String>,
    },
    /// Change a terminal's URLs, TLS settings, or take it out of / back into the pool.
    Update {
        id: i64,
        #[arg(long)]
        enabled: Option<bool>,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        camera_url: Option<String>,
        #[arg(long, value_parser = ["verify", "insecure"])]
        tls: Option<String>,
        #[arg(long)]
        tls_server_name: Option<String>,
    },
    /// Register a terminal: the terminal shows a prompt that a cashier must accept on its screen;
    /// waits for the answer (approved, declined, or the name already registered there — with
    /// what to do on the terminal) unless `--no-wait`.
    Register {
        id: i64,
        /// Start it and return at once (follow with `admin terminals show ID`).
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the cashier (the server itself waits up to its
        /// `terminal_register_timeout_secs`, 180 by default).
        #[arg(long, default_value_t = 200)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum MethodCommand {
    /// List methods.
    List,
    /// Change a method's commissions or turn it on or off.
    Update {
        id: i64,
        #[arg(long, value_parser = parse_percent)]
        commission: Option<Percent>,
        #[arg(long, value_parser = parse_percent)]
        credit_commission: Option<Percent>,
        #[arg(long, value_parser = parse_percent)]
        installment_commission: Option<Percent>,
        /// Whether the customer pays the commission (else the merchant absorbs it).
        #[arg(long)]
        add_to_amount: Option<bool>,
        #[arg(long)]
        active: Option<bool>,
    },
}

fn parse_percent(text: &str) -> Result<Percent, String> {
    Percent::parse(text.trim().trim_end_matches('%').trim()).map_err(|err| format!("not a percent: {err}"))
}

fn encoding(text: &str) -> BodyEncoding {
    BodyEncoding::parse(text).unwrap_or_default()
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

fn sources_table(sources: &[SourceView]) -> String {
    let rows: Vec<Vec<String>> = sources
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.name.clone(),
                s.webhook_json.as_str().to_owned(),
                yes_no(s.active),
                s.created_at.clone(),
            ]
        })
        .collect();
    table(&["id", "name", "webhook_json", "active", "created"], &rows)
}

fn keys_table(keys: &[ApiKeyView]) -> String {
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.id.to_string(),
                k.name.clone(),
                if k.hint.is_empty() {
                    "-".to_owned()
                } else {
                    format!("…{}", k.hint)
                },
                yes_no(k.active),
                k.created_at.clone(),
                optional(&k.expires_at),
                optional(&k.revoked_at),
                optional(&k.last_used_at),
            ]
        })
        .collect();
    table(
        &[
            "id",
            "name",
            "token",
            "active",
            "created",
            "expires",
            "revoked",
            "last used",
        ],
        &rows,
    )
}

fn terminals_table(terminals: &[TerminalView]) -> String {
    let rows: Vec<Vec<String>> = terminals
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.base_url.clone(),
                yes_no(t.enabled),
                yes_no(t.healthy),
                yes_no(t.registered),
                t.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "id",
            "name",
            "url",
            "enabled",
            "healthy",
            "registered",
            "last error",
        ],
        &rows,
    )
}

/// A terminal as a table row, with its registration's progress and what to do about it.
fn terminal_details(terminal: &TerminalView) -> String {
    let mut text = terminals_table(std::slice::from_ref(terminal));
    if let Some(registration) = &terminal.registration {
        text.push_str(&format!(
            "\nregistration: {} (started {})",
            registration.state, registration.started_at
        ));
        if let Some(message) = &registration.message {
            text.push_str(&format!("\n  {message}"));
        }
    } else if terminal.needs_registration {
        text.push_str(&format!(
            "\nneeds registration: byfly admin terminals register {}",
            terminal.id
        ));
    }
    text
}

/// Waits for the cashier's answer, with a spinner on stderr saying what the terminal waits for.
async fn wait_for_cashier(
    admin: &byfly_client::Admin<'_>,
    id: i64,
    timeout: u64,
) -> Result<TerminalView, Failure> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let started = std::time::Instant::now();
    let waited = admin
        .wait_for_registration(id, std::time::Duration::from_secs(timeout), |view| {
            spinner.set_message(format!(
                "{}: waiting for a cashier to accept «ByFly Payment Center» on the terminal's screen ({} s)",
                view.name,
                started.elapsed().as_secs()
            ));
        })
        .await;
    spinner.finish_and_clear();
    Ok(waited?)
}

/// An approved registration is the answer; anything else fails with the terminal's words.
fn registration_outcome(view: TerminalView) -> Result<TerminalView, Failure> {
    let Some(registration) = view.registration.clone() else {
        return Ok(view);
    };
    let code = match registration.state.as_str() {
        "approved" => return Ok(view),
        "pending" => "wait_deadline".to_owned(),
        state => format!("registration_{state}"),
    };
    let message = registration
        .message
        .unwrap_or_else(|| format!("registration {}", registration.state));
    Err(Failure::Outcome {
        code,
        message,
        data: serde_json::to_value(&view).unwrap_or_default(),
    })
}

fn operations_table(operations: &[OperationView]) -> String {
    let rows: Vec<Vec<String>> = operations
        .iter()
        .map(|op| {
            vec![
                op.id.to_string(),
                op.transaction_id.to_string(),
                op.kind.clone(),
                op.terminal_id.to_string(),
                op.method.clone(),
                tenge(op.amount),
                op.state.clone(),
                op.credited_amount.map(tenge).unwrap_or_default(),
                op.started_at.clone(),
            ]
        })
        .collect();
    table(
        &[
            "op", "payment", "kind", "terminal", "method", "amount", "state", "credited", "started",
        ],
        &rows,
    )
}

fn attempt_line(attempt: &WebhookAttemptView) -> String {
    let outcome = match (attempt.response_code, &attempt.error) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(error)) => error.clone(),
        (None, None) => "no answer".into(),
    };
    format!(
        "    #{} {} {} in {} ms at {}",
        attempt.attempt, attempt.trigger, outcome, attempt.duration_ms, attempt.at
    )
}

fn undelivered_table(page: &UndeliveredEventList) -> String {
    if page.items.is_empty() {
        return "no undelivered webhook events".into();
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|e| {
            vec![
                e.event_id.clone(),
                e.transaction_id.to_string(),
                format!("#{}", e.source_id),
                format!("{} ({})", e.event, e.sequence),
                e.state.clone(),
                e.attempts.to_string(),
                e.last_result.clone().unwrap_or_default(),
                e.next_attempt_at.clone().unwrap_or_else(|| "—".into()),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "event",
            "payment",
            "source",
            "kind (seq)",
            "state",
            "attempts",
            "last result",
            "next attempt",
        ],
        &rows,
    );
    if let Some(cursor) = &page.next_cursor {
        out.push_str(&format!("\nmore: --cursor {cursor}"));
    }
    out
}

fn webhooks_log(events: &[WebhookEventView]) -> String {
    if events.is_empty() {
        return "no webhook events".into();
    }
    let mut lines = Vec::new();
    for event in events {
        lines.push(format!(
            "{}  {}  {}  created {}",
            event.event_id,
            event.event,
            if event.state.is_empty() {
                if event.delivered { "delivered" } else { "pending" }
            } else {
                event.state.as_str()
            },
            event.created_at
        ));
        lines.extend(event.attempts.iter().map(attempt_line));
    }
    lines.join("\n")
}

pub async fn run(client: &Client, command: &AdminCommand, output: Output) -> Result<(), Failure> {
    let admin = client.admin();
    match command {
        AdminCommand::Sources { command } => match command {
            SourceCommand::List => output.emit(&admin.sources().await?, |s| sources_table(s)),
            SourceCommand::Create { name, webhook_json } => {
                let request = CreateSourceRequest {
                    name: name.clone(),
                    webhook_json: encoding(webhook_json),
                };
                let created = admin.create_source(&request).await?;
                output.emit(&created, |c| {
                    format!(
                        "{}\nAPI token (shown once, keep it safe): {}",
                        sources_table(std::slice::from_ref(&c.source)),
                        c.api_token
                    )
                })
            }
            SourceCommand::Update {
                id,
                webhook_json,
                active,
            } => {
                let request = UpdateSourceRequest {
                    webhook_json: webhook_json.as_deref().map(encoding),
                    active: *active,
                };
                let source = admin.update_source(*id, &request).await?;
                output.emit(&source, |s| sources_table(std::slice::from_ref(s)))
            }
            SourceCommand::Keys { id } => output.emit(&admin.api_keys(*id).await?, |k| keys_table(k)),
            SourceCommand::KeyCreate { id, name, expires_at } => {
                let request = CreateApiKeyRequest {
                    name: name.clone(),
                    expires_at: expires_at.clone(),
                };
                let created = admin.create_api_key(*id, &request).await?;
                output.emit(&created, |c| {
                    format!(
                        "{}\nAPI token (shown once, keep it safe): {}",
                        keys_table(std::slice::from_ref(&c.key)),
                        c.api_token
                    )
                })
            }
            SourceCommand::KeyRevoke { id, key_id } => {
                let key = admin.revoke_api_key(*id, *key_id).await?;
                output.emit(&key, |k| keys_table(std::slice::from_ref(k)))
            }
        },
        AdminCommand::Terminals { command } => {
            let terminal = match command {
                TerminalCommand::List => {
                    return output.emit(&admin.terminals().await?, |t| terminals_table(t));
                }
                TerminalCommand::Add {
                    name,
                    url,
                    camera_url,
                    tls,
                    tls_server_name,
                } => {
                    let request = AddTerminalRequest {
                        name: name.clone(),
                        base_url: url.clone(),
                        camera_url: camera_url.clone(),
                        tls: tls.clone(),
                        tls_server_name: tls_server_name.clone(),
                    };
                    admin.add_terminal(&request).await?
                }
                TerminalCommand::Update {
                    id,
                    enabled,
                    url,
                    camera_url,
                    tls,
                    tls_server_name,
                } => {
                    let request = UpdateTerminalRequest {
                        enabled: *enabled,
                        base_url: url.clone(),
                        camera_url: camera_url.clone(),
                        tls: tls.clone(),
                        tls_server_name: tls_server_name.clone(),
                    };
                    admin.update_terminal(*id, &request).await?
                }
                TerminalCommand::Show { id } => admin.terminal(*id).await?,
                TerminalCommand::Register { id, no_wait, timeout } => {
                    let started = admin.register_terminal(*id).await?;
                    if *no_wait {
                        started
                    } else {
                        let waited = wait_for_cashier(&admin, *id, *timeout).await?;
                        registration_outcome(waited)?
                    }
                }
            };
            output.emit(&terminal, terminal_details)
        }
        AdminCommand::Methods { command } => {
            let methods = match command {
                MethodCommand::List => admin.methods().await?,
                MethodCommand::Update {
                    id,
                    commission,
                    credit_commission,
                    installment_commission,
                    add_to_amount,
                    active,
                } => {
                    let request = UpdateMethodRequest {
                        commission_percent: *commission,
                        credit_commission_percent: *credit_commission,
                        installment_commission_percent: *installment_commission,
                        add_commission_to_amount: *add_to_amount,
                        is_active: *active,
                    };
                    vec![admin.update_method(*id, &request).await?]
                }
            };
            output.emit(&methods, |methods| {
                let rows: Vec<Vec<String>> = methods
                    .iter()
                    .map(|m| {
                        vec![
                            m.method.id.to_string(),
                            m.method.code.to_string(),
                            m.method.name.clone(),
                            format!("{} %", m.method.effective_percent()),
                            yes_no(m.method.add_commission_to_amount),
                            yes_no(m.is_active),
                        ]
                    })
                    .collect();
                table(
                    &["id", "code", "name", "commission", "added to amount", "active"],
                    &rows,
                )
            })
        }
        AdminCommand::Payments { source_id, list } => {
            let page = admin.payments(*source_id, &list.query()).await?;
            output.emit(&page, crate::render_list)
        }
        AdminCommand::Payment { id } => {
            let view = admin.payment(&transaction_id(id)?).await?;
            output.emit(&view, |v| {
                format!(
                    "{}\n  source #{}\n{}",
                    render::payment(&v.payment),
                    v.source_id,
                    operations_table(&v.operations)
                )
            })
        }
        AdminCommand::Webhooks { command: None, id } => {
            let id = id.as_deref().ok_or_else(|| {
                Failure::Local("give a payment's transaction id, or `failed` / `recover`".into())
            })?;
            let events = admin.payment_webhooks(&transaction_id(id)?).await?;
            output.emit(&events, |e| webhooks_log(e))
        }
        AdminCommand::Webhooks {
            command:
                Some(WebhookCommand::Failed {
                    source_id,
                    state,
                    since,
                    limit,
                    cursor,
                }),
            ..
        } => {
            let query = UndeliveredEventsQuery {
                source_id: *source_id,
                state: state
                    .as_deref()
                    .and_then(|state| serde_json::from_value(serde_json::json!(state)).ok()),
                since: since.clone(),
                limit: *limit,
                cursor: cursor.clone(),
            };
            let page = admin.undelivered_webhooks(&query).await?;
            output.emit(&page, undelivered_table)
        }
        AdminCommand::Webhooks {
            command: Some(WebhookCommand::Recover { source_id, since }),
            ..
        } => {
            let request = RecoverWebhooksRequest {
                source_id: *source_id,
                since: since.clone(),
            };
            let recovered = admin.recover_webhooks(&request).await?;
            output.emit(&recovered, |r| {
                format!(
                    "{} event(s) of source #{source_id} since {since} rescheduled, in order",
                    r.recovered
                )
            })
        }
        AdminCommand::Retry { event_id } => {
            let attempt = admin.retry_webhook(event_id).await?;
            output.emit(&attempt, |a| format!("sent {event_id}\n{}", attempt_line(a)))
        }
        AdminCommand::Review => output.emit(&admin.review().await?, |ops| {
            if ops.is_empty() {
                return "nothing to review".into();
            }
            let reasons: Vec<String> = ops
                .iter()
                .filter_map(|op| {
                    op.review_reason
                        .as_ref()
                        .map(|why| format!("  #{}: {why}", op.id))
                })
                .collect();
            format!("{}\n{}", operations_table(ops), reasons.join("\n"))
        }),
        AdminCommand::Resolve {
            operation_id,
            paid,
            not_paid: _,
            transaction_id,
            note,
        } => {
            let request = ResolveOperationRequest {
                outcome: if paid.is_some() { "paid" } else { "not_paid" }.to_owned(),
                amount: *paid,
                transaction_id: transaction_id.clone(),
                method: None,
                note: note.clone(),
            };
            let resolved = admin.resolve_operation(*operation_id, &request).await?;
            output.emit(&resolved, |op| operations_table(std::slice::from_ref(op)))
        }
    }
}
