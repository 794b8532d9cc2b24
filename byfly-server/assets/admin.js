// The operator's console (GET /admin). Plain script, no framework and nothing from elsewhere:
// it logs in once with the admin token (exchanged for a session cookie the script cannot read),
// then calls the admin API with the session's CSRF token on every change. Pages are addressed by
// the URL's hash (#/payments?q=…, #/payment/ID, #/terminals, #/review, #/webhooks?state=…,
// #/sources, #/methods), so the back
// button and a copied link work. Every text from the server goes through textContent, never HTML.
"use strict";

const app = document.getElementById("app");
let csrf = null;

/** An element: `el("td", {class: "num"}, "57 000 ₸", child…)`. */
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function money(value, currency) {
  if (value === null || value === undefined) return "—";
  const [whole, cents] = String(value).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, "\u00a0");
  return `${grouped}${cents ? "," + cents : ""}\u00a0${currency === "KZT" || !currency ? "₸" : currency}`;
}

const STATUS_NAMES = {
  pending: "ожидает",
  processing: "оплачивается",
  partially_paid: "частично оплачен",
  paid: "оплачен",
  failed: "ошибка",
  cancelled: "отменён",
  expired: "истёк",
  refunded: "возвращён",
};

function statusBadge(status) {
  return el("span", { class: `badge status-${status}` }, STATUS_NAMES[status] || status);
}

/** The admin API: `{status, body}`; a missing session shows the login form. A CSRF token that
 * went stale (a login in another tab replaced the session) is fetched again and the call retried
 * once. */
async function api(method, path, body, retried) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const response = await fetch(`/api${path}`, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let parsed = null;
  try {
    parsed = await response.json();
  } catch (_) {
    parsed = { success: false, message: `Ответ ${response.status} не в JSON` };
  }
  if (response.status === 403 && parsed.code === "invalid_csrf_token" && !retried) {
    const session = await api("GET", "/admin/session", undefined, true);
    if (session.status === 200) {
      csrf = session.body.data.csrf_token;
      return api(method, path, body, true);
    }
  }
  if (response.status === 401 && path !== "/admin/session") {
    csrf = null;
    showLogin("Сессия закончилась: войдите снова.");
    throw new Error("session ended");
  }
  return { status: response.status, body: parsed };
}

/** Runs `action` with `button` disabled, so a double click does not send twice. */
async function busy(button, action) {
  if (button.disabled) return;
  button.disabled = true;
  try {
    await action();
  } finally {
    button.disabled = false;
  }
}

function errorLine(answer) {
  const body = answer.body || {};
  return el("p", { class: "error", role: "alert" }, `${body.message || "Ошибка"}${body.code ? ` (${body.code})` : ""}`);
}

// ---------------------------------------------------------------------------------------------
// Login, layout, routing

function showLogin(message) {
  const token = el("input", {
    type: "password",
    id: "token",
    name: "token",
    autocomplete: "current-password",
    required: true,
    placeholder: "Токен администратора",
  });
  // Who logs in: the admin token is shared, so the name is what decisions are recorded under.
  const operator = el("input", {
    type: "text",
    id: "operator",
    name: "operator",
    autocomplete: "username",
    required: true,
    maxlength: 100,
    placeholder: "Ваше имя",
    value: localStorage.getItem("byfly-operator") || "",
  });
  const notice = el("div", { id: "login-message" }, message ? el("p", { class: "muted" }, message) : null);
  const form = el(
    "form",
    {
      class: "login",
      onsubmit: async (event) => {
        event.preventDefault();
        const answer = await api("POST", "/admin/session", { token: token.value, operator: operator.value.trim() });
        if (answer.status === 200) {
          csrf = answer.body.data.csrf_token;
          localStorage.setItem("byfly-operator", operator.value.trim());
          route();
        } else {
          notice.replaceChildren(errorLine(answer));
          token.value = "";
          token.focus();
        }
      },
    },
    el("h1", {}, "ByFly — админка"),
    el("label", { for: "operator" }, "Кто вы (имя попадёт в журнал решений)"),
    operator,
    el("label", { for: "token" }, "Токен администратора"),
    token,
    el("button", { type: "submit" }, "Войти"),
    notice,
  );
  app.replaceChildren(form);
  (operator.value ? token : operator).focus();
}

const SECTIONS = [
  ["payments", "Платежи"],
  ["review", "Проверка"],
  ["terminals", "Терминалы"],
  ["webhooks", "Вебхуки"],
  ["sources", "Источники"],
  ["methods", "Способы оплаты"],
];

function layout(section, ...content) {
  const nav = el(
    "nav",
    {},
    SECTIONS.map(([id, name]) => el("a", { href: `#/${id}`, class: id === section ? "active" : null }, name)),
    el(
      "button",
      {
        class: "link",
        id: "logout",
        onclick: async () => {
          const answer = await api("DELETE", "/admin/session");
          if (answer.status !== 200) return alert(`Не удалось выйти: ${answer.body.message || answer.status}`);
          csrf = null;
          showLogin("Вы вышли.");
        },
      },
      "Выйти",
    ),
  );
  app.replaceChildren(el("header", {}, el("strong", {}, "ByFly"), nav), el("main", {}, ...content));
}

/** Counts pages shown: a wait started on one page stops once another is shown. */
let shownPage = 0;

async function route() {
  shownPage += 1;
  if (!csrf) {
    const session = await api("GET", "/admin/session");
    if (session.status !== 200) return showLogin();
    csrf = session.body.data.csrf_token;
  }
  const [path, query] = (location.hash.replace(/^#\/?/, "") || "payments").split("?");
  const params = new URLSearchParams(query || "");
  const [section, id] = path.split("/");
  try {
    if (section === "payment" && id) await paymentPage(safeDecode(id));
    else if (section === "terminals") await terminalsPage();
    else if (section === "review") await reviewPage();
    else if (section === "webhooks") await webhooksPage(params);
    else if (section === "sources") await sourcesPage();
    else if (section === "methods") await methodsPage();
    else await paymentsPage(params);
  } catch (error) {
    if (error.message !== "session ended") throw error;
  }
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch (_) {
    return text;
  }
}

function table(columns, rows, empty) {
  if (rows.length === 0) return el("p", { class: "muted" }, empty || "Ничего не найдено.");
  return el(
    "div",
    { class: "table" },
    el("table", {}, el("thead", {}, el("tr", {}, columns.map((name) => el("th", {}, name)))), el("tbody", {}, rows)),
  );
}

// ---------------------------------------------------------------------------------------------
// Payments: search and list

async function paymentsPage(params) {
  const query = new URLSearchParams();
  for (const name of ["q", "status", "from", "to", "cursor"]) if (params.get(name)) query.set(name, params.get(name));
  query.set("limit", "25");
  const answer = await api("GET", `/admin/payments?${query}`);
  const q = el("input", { type: "search", name: "q", id: "search", value: params.get("q") || "", placeholder: "Телефон, номер заказа, e-mail, имя или ID платежа" });
  const status = el(
    "select",
    { name: "status", id: "status" },
    el("option", { value: "" }, "Любой статус"),
    Object.entries(STATUS_NAMES).map(([value, name]) => el("option", { value, selected: params.get("status") === value }, name)),
  );
  const from = el("input", { type: "date", name: "from", id: "from", value: (params.get("from") || "").slice(0, 10) });
  const to = el("input", { type: "date", name: "to", id: "to", value: (params.get("to") || "").slice(0, 10) });
  const form = el(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        if (q.value.trim()) next.set("q", q.value.trim());
        if (status.value) next.set("status", status.value);
        if (from.value) next.set("from", `${from.value} 00:00:00`);
        if (to.value) next.set("to", `${to.value} 23:59:59`);
        location.hash = `#/payments?${next}`;
      },
    },
    q,
    status,
    el("label", {}, "с ", from),
    el("label", {}, "по ", to),
    el("button", { type: "submit" }, "Найти"),
  );
  if (answer.status !== 200) return layout("payments", el("h1", {}, "Платежи"), form, errorLine(answer));
  const page = answer.body.data;
  const rows = page.items.map((p) =>
    el(
      "tr",
      { class: "clickable", "data-id": p.transaction_id, onclick: () => (location.hash = `#/payment/${p.transaction_id}`) },
      el("td", {}, el("a", { href: `#/payment/${p.transaction_id}` }, p.transaction_id)),
      el("td", {}, statusBadge(p.status)),
      el("td", { class: "num" }, money(p.amount, p.currency)),
      el("td", { class: "num" }, money(p.paid_amount, p.currency)),
      el("td", {}, p.customer ? [p.customer.name || "", el("br"), el("span", { class: "muted" }, p.customer.phone || "")] : ""),
      el("td", {}, p.description || ""),
      el("td", { class: "nowrap" }, p.created_at),
    ),
  );
  const more = page.next_cursor
    ? el("a", { class: "button", href: `#/payments?${new URLSearchParams({ ...Object.fromEntries(query), cursor: page.next_cursor })}` }, "Дальше →")
    : null;
  layout(
    "payments",
    el("h1", {}, "Платежи"),
    form,
    // `data-query`: what this list answers, so that a reader (a test) knows which search it shows.
    el("section", { id: "results", "data-query": query.toString() }, table(["ID", "Статус", "Сумма", "Оплачено", "Клиент", "Описание", "Создан"], rows)),
    more,
  );
  q.focus();
}

// ---------------------------------------------------------------------------------------------
// One payment: figures, operations, webhook log, actions

function fields(pairs) {
  return el("dl", { class: "fields" }, pairs.filter(([, value]) => value !== undefined).map(([name, value]) => [el("dt", {}, name), el("dd", {}, value ?? "—")]));
}

/** A terminal's answer as received: pretty JSON where it is JSON, else the text itself. */
function prettyAnswer(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (_) {
    return text;
  }
}

/** What the terminal answered about an operation, oldest first, in a closed `details`. */
function answersList(answers, title, open) {
  if (answers.length === 0) return el("p", { class: "muted" }, "Терминал ещё не отвечал.");
  return el(
    "details",
    { class: "answers", open },
    el("summary", {}, title),
    el(
      "ol",
      {},
      answers.map((a) =>
        el(
          "li",
          {},
          el("span", { class: "muted" }, a.times > 1 ? `${a.first_at} — ${a.last_at} · ${a.times} раз` : a.first_at),
          el("pre", {}, prettyAnswer(a.answer)),
        ),
      ),
    ),
  );
}

/** Whether an operation still waits for an operator: flagged, undecided, and not settled by the
 * terminal's own answer meanwhile. */
function waitsForOperator(op) {
  return op.needs_review && !op.decision && (op.holds_terminal || !["succeeded", "failed"].includes(op.state));
}

/** An operator's decision: what, by whom, when, and why. */
function decisionLine(decision, currency) {
  if (!decision) return null;
  const what = decision.outcome === "paid" ? `оплачено ${money(decision.amount, currency)}` : "не оплачено";
  return el(
    "div",
    { class: "decision" },
    el("strong", {}, `Решение: ${what}`),
    ` · ${decision.decided_by} · ${decision.decided_at}`,
    decision.transaction_id ? ` · transactionId ${decision.transaction_id}` : null,
    decision.note ? el("div", { class: "muted" }, `«${decision.note}»`) : null,
  );
}

async function paymentPage(id) {
  const [detail, webhooks] = await Promise.all([
    api("GET", `/admin/payments/${encodeURIComponent(id)}`),
    api("GET", `/admin/payments/${encodeURIComponent(id)}/webhooks`),
  ]);
  if (detail.status !== 200) return layout("payments", el("h1", {}, `Платёж ${id}`), errorLine(detail));
  const { payment, operations, customer, metadata, source_id } = detail.body.data;
  const c = payment.currency;
  const notice = el("div", { id: "notice" });
  const summary = fields([
    ["Статус", statusBadge(payment.status)],
    ["Сумма", money(payment.amount, c)],
    ["Без комиссии", money(payment.original_amount, c)],
    ["Оплачено", money(payment.paid_amount, c)],
    ["Осталось", money(payment.remaining_amount, c)],
    ["Возвращено", money(payment.refunded_amount, c)],
    ["Описание", payment.description],
    ["Клиент", [customer.name || "—", " · ", customer.phone || "—", " · ", customer.email || "—"]],
    ["Источник", `#${source_id}`],
    ["Создан", payment.created_at],
    ["Оплачен", payment.paid_at],
    ["Metadata", metadata ? el("code", {}, JSON.stringify(metadata)) : "—"],
  ]);
  const operationRows = operations.map((op) =>
    el(
      "tr",
      {},
      el("td", {}, `#${op.id}`, op.current ? " ✓" : ""),
      el("td", {}, op.kind),
      el("td", {}, op.method),
      el("td", { class: "num" }, money(op.amount, c)),
      el("td", {}, op.state, waitsForOperator(op) ? el("span", { class: "badge warn" }, "проверка") : null, decisionLine(op.decision, c)),
      el("td", { class: "num" }, money(op.credited_amount, c)),
      el("td", {}, `терминал ${op.terminal_id}`),
      el("td", { class: "nowrap" }, op.started_at),
      el(
        "td",
        {},
        answersList(op.answers || [], `Ответы терминала (${(op.answers || []).length})`),
        el("details", {}, el("summary", {}, "JSON операции"), el("pre", {}, JSON.stringify(op, null, 2))),
      ),
    ),
  );
  const events = webhooks.status === 200 ? webhooks.body.data : [];
  const eventRows = events.map((event) => {
    const attempts = event.attempts.map((a) =>
      el(
        "li",
        {},
        `${a.at} · попытка ${a.attempt} (${a.trigger === "manual" ? "вручную" : "автоматически"}) · `,
        a.response_code ? el("strong", {}, `HTTP ${a.response_code}`) : el("span", { class: "error" }, a.error || "нет ответа"),
        ` · ${a.duration_ms} мс`,
        a.response_body ? el("details", {}, el("summary", {}, "ответ"), el("pre", {}, a.response_body)) : null,
      ),
    );
    return el(
      "tr",
      { "data-event": event.event_id },
      el("td", {}, event.sequence),
      el("td", {}, event.event),
      el("td", {}, el("span", { class: `badge webhook-${event.state}` }, event.state)),
      el("td", { class: "nowrap" }, event.created_at),
      el("td", {}, attempts.length ? el("ul", { class: "attempts" }, attempts) : el("span", { class: "muted" }, "попыток не было")),
      el(
        "td",
        {},
        el(
          "button",
          {
            class: "resend",
            onclick: (click) => busy(click.currentTarget, async () => {
              const answer = await api("POST", `/admin/webhooks/${encodeURIComponent(event.event_id)}/retry`);
              if (answer.status === 200) {
                const code = answer.body.data.response_code;
                await paymentPage(id);
                document
                  .getElementById("notice")
                  .replaceChildren(el("p", { class: "ok", role: "status" }, `Отправлено повторно: ${code ? `HTTP ${code}` : answer.body.data.error || "нет ответа"}`));
              } else notice.replaceChildren(errorLine(answer));
            }),
          },
          "Отправить снова",
        ),
      ),
    );
  });
  // Actions on the payment: a refund (amount, then a confirmation) and a cancel (confirmed).
  const refundAmount = el("input", { type: "text", inputmode: "decimal", id: "refund-amount", name: "amount", placeholder: "вся сумма", size: 10 });
  const refundable = Number(payment.paid_amount) > Number(payment.refunded_amount);
  const actions = el(
    "div",
    { class: "actions payment-actions" },
    refundable
      ? [
          refundAmount,
          el(
            "button",
            {
              id: "refund",
              onclick: (click) => busy(click.currentTarget, async () => {
                const amount = refundAmount.value.trim().replace(",", ".");
                const what = amount ? money(amount, c) : `всю полученную сумму (${money(Number(payment.paid_amount) - Number(payment.refunded_amount), c)})`;
                if (!confirm(`Вернуть клиенту ${what}? Клиент подтвердит возврат в приложении Kaspi.`)) return;
                const answer = await api("POST", `/admin/payments/${encodeURIComponent(id)}/refund`, amount ? { amount } : {});
                if (answer.status !== 200) return notice.replaceChildren(errorLine(answer));
                await paymentPage(id);
                document.getElementById("notice").replaceChildren(el("p", { class: "ok", role: "status" }, `${answer.body.message}: ${money(answer.body.data.amount, c)}`));
              }),
            },
            "Вернуть",
          ),
        ]
      : null,
    ["pending", "processing", "partially_paid"].includes(payment.status)
      ? el(
          "button",
          {
            id: "cancel",
            onclick: (click) => busy(click.currentTarget, async () => {
              if (!confirm(`Отменить платёж ${payment.transaction_id}?`)) return;
              const answer = await api("POST", `/admin/payments/${encodeURIComponent(id)}/cancel`);
              if (answer.status !== 200) return notice.replaceChildren(errorLine(answer));
              await paymentPage(id);
              document.getElementById("notice").replaceChildren(el("p", { class: "ok", role: "status" }, "Платёж отменён."));
            }),
          },
          "Отменить платёж",
        )
      : null,
  );
  layout(
    "payments",
    el("p", {}, el("a", { href: "#/payments" }, "← Платежи")),
    el("h1", {}, `Платёж ${payment.transaction_id}`),
    el(
      "p",
      { class: "jump" },
      el("button", { class: "link", onclick: () => document.getElementById("webhook-log").scrollIntoView() }, `Вебхуки (${events.length})`),
      " · ",
      el("button", { class: "link", onclick: () => document.getElementById("operations").scrollIntoView() }, `Операции (${operations.length})`),
    ),
    notice,
    summary,
    actions,
    el("h2", { id: "operations" }, "Операции на терминалах"),
    table(["", "Вид", "Способ", "Сумма", "Состояние", "Зачислено", "Терминал", "Начата", ""], operationRows, "Операций не было."),
    el(
      "section",
      { id: "webhook-log" },
      el("h2", {}, "Вебхуки"),
      table(["№", "Событие", "Состояние", "Создано", "Попытки", ""], eventRows, "Событий нет."),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Terminals

async function terminalsPage() {
  const answer = await api("GET", "/admin/terminals");
  if (answer.status !== 200) return layout("terminals", el("h1", {}, "Терминалы"), errorLine(answer));
  const notice = el("div", { id: "notice" });
  const rows = answer.body.data.map((t) => {
    const registration = t.registration
      ? `${t.registration.state}${t.registration.message ? ": " + t.registration.message : ""}`
      : "";
    const busyWith = t.busy_with
      ? el(
          "span",
          { class: "busy" },
          el("span", { class: "badge warn" }, t.busy_with.needs_review ? "занят, ждёт решения" : "занят"),
          " ",
          el("a", { href: `#/payment/${t.busy_with.transaction_id}` }, t.busy_with.transaction_id),
          el("br"),
          el("span", { class: "muted" }, `${t.busy_with.kind === "refund" ? "возврат" : "оплата"} #${t.busy_with.operation_id} с ${t.busy_with.started_at}`),
        )
      : el("span", { class: "badge ok" }, "свободен");
    return el(
      "tr",
      { "data-terminal": t.id },
      el("td", {}, `#${t.id}`),
      el("td", {}, t.name, el("br"), el("span", { class: "muted" }, t.base_url)),
      el("td", {}, t.enabled ? (t.healthy ? el("span", { class: "badge ok" }, "в сети") : el("span", { class: "badge warn" }, "недоступен")) : el("span", { class: "badge" }, "выключен")),
      el("td", {}, busyWith),
      el("td", {}, t.registered ? "зарегистрирован" : el("span", { class: "badge warn" }, "нужна регистрация"), el("div", { class: "muted registration" }, registration)),
      el("td", {}, t.last_error || ""),
      el(
        "td",
        { class: "actions" },
        el(
          "button",
          {
            class: "register",
            onclick: async () => {
              notice.replaceChildren(el("p", { class: "muted", role: "status" }, `Терминал ${t.name}: кассир должен подтвердить интеграцию на экране терминала…`));
              const started = await api("POST", `/admin/terminals/${t.id}/register`);
              if (started.status !== 202) return notice.replaceChildren(errorLine(started));
              await waitForRegistration(t.id, notice);
            },
          },
          "Зарегистрировать",
        ),
        el(
          "button",
          {
            class: "toggle",
            onclick: async () => {
              const changed = await api("PATCH", `/admin/terminals/${t.id}`, { enabled: !t.enabled });
              if (changed.status === 200) await terminalsPage();
              else notice.replaceChildren(errorLine(changed));
            },
          },
          t.enabled ? "Выключить" : "Включить",
        ),
        terminalEditor(t, notice),
      ),
    );
  });
  layout("terminals", el("h1", {}, "Терминалы"), notice, table(["", "Терминал", "Связь", "Операция", "Регистрация", "Ошибка", ""], rows, "Терминалов нет."));
}

/** The terminal's settings in a closed `details`: its addresses and how its certificate is checked. */
function terminalEditor(t, notice) {
  const input = (name, value, label) => el("label", {}, label, el("input", { type: "text", name, value: value || "", size: 32 }));
  const form = el(
    "form",
    {
      class: "edit-terminal",
      onsubmit: async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const changes = {};
        for (const name of ["base_url", "camera_url", "tls", "tls_server_name"]) {
          const value = String(data.get(name) || "").trim();
          if (value !== String(t[name] || "")) changes[name] = value;
        }
        if (Object.keys(changes).length === 0) return notice.replaceChildren(el("p", { class: "muted", role: "status" }, "Ничего не изменилось."));
        if (changes.base_url && !confirm(`Новый адрес — другой терминал: его токены будут сброшены и понадобится регистрация. Сохранить?`)) return;
        const changed = await api("PATCH", `/admin/terminals/${t.id}`, changes);
        if (changed.status !== 200) return notice.replaceChildren(errorLine(changed));
        await terminalsPage();
        document.getElementById("notice").replaceChildren(el("p", { class: "ok", role: "status" }, `Терминал ${t.name}: настройки сохранены.`));
      },
    },
    input("base_url", t.base_url, "Адрес "),
    input("camera_url", t.camera_url, "Камера "),
    el(
      "label",
      {},
      "TLS ",
      el("select", { name: "tls" }, ["verify", "insecure"].map((mode) => el("option", { value: mode, selected: t.tls === mode }, mode === "verify" ? "проверять сертификат" : "не проверять"))),
    ),
    input("tls_server_name", t.tls_server_name, "Имя в сертификате "),
    el("button", { type: "submit" }, "Сохранить"),
  );
  return el("details", { class: "edit" }, el("summary", {}, "Изменить"), form);
}

/** Asks about the registration every second until the cashier answers (or it ends). */
async function waitForRegistration(id, notice) {
  const page = shownPage;
  for (;;) {
    if (page !== shownPage) return;
    const answer = await api("GET", `/admin/terminals/${id}`);
    const registration = answer.status === 200 ? answer.body.data.registration : null;
    if (!registration || registration.state !== "pending") {
      await terminalsPage();
      const state = registration ? registration.state : "unknown";
      const text = state === "approved" ? "Кассир подтвердил: терминал зарегистрирован." : `Регистрация: ${state}${registration && registration.message ? " — " + registration.message : ""}`;
      document.getElementById("notice").replaceChildren(el("p", { class: state === "approved" ? "ok" : "error", role: "status" }, text));
      return;
    }
    notice.replaceChildren(el("p", { class: "muted", role: "status" }, `Ждём кассира (с ${registration.started_at})…`));
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// ---------------------------------------------------------------------------------------------
// Review queue

async function reviewPage() {
  const answer = await api("GET", "/admin/operations/review");
  if (answer.status !== 200) return layout("review", el("h1", {}, "Проверка"), errorLine(answer));
  const notice = el("div", { id: "notice" });
  const rows = answer.body.data.map((op) => {
    const amount = el("input", { type: "text", inputmode: "decimal", name: "amount", placeholder: "сумма по чеку", size: 10 });
    const transaction = el("input", { type: "text", name: "transaction_id", placeholder: "transactionId терминала", size: 14 });
    const note = el("input", { type: "text", name: "note", maxlength: 1000, placeholder: "Основание: с кем сверили, что видно в истории терминала" });
    const decide = async (outcome) => {
      if (!note.value.trim()) {
        note.focus();
        return notice.replaceChildren(el("p", { class: "error", role: "alert" }, `Операция #${op.id}: запишите основание решения.`));
      }
      const body = outcome === "paid" ? { outcome, amount: amount.value.trim().replace(",", "."), transaction_id: transaction.value.trim() } : { outcome };
      body.note = note.value.trim();
      if (outcome === "paid" && !confirm(`Отметить операцию #${op.id} оплаченной на ${body.amount}?`)) return;
      if (outcome === "not_paid" && !confirm(`Отметить операцию #${op.id} неоплаченной?`)) return;
      const decided = await api("POST", `/admin/operations/${op.id}/resolve`, body);
      if (decided.status === 200) {
        await reviewPage();
        document.getElementById("notice").replaceChildren(el("p", { class: "ok", role: "status" }, `Операция #${op.id}: решение записано.`));
      } else notice.replaceChildren(errorLine(decided));
    };
    return el(
      "tr",
      { "data-operation": op.id },
      el("td", {}, `#${op.id}`),
      el("td", {}, el("a", { href: `#/payment/${op.transaction_id}` }, op.transaction_id)),
      el("td", { class: "num" }, money(op.amount)),
      el("td", {}, op.state),
      el("td", {}, op.review_reason || "", answersList((op.answers || []).slice(-3), "Последние ответы терминала", true)),
      el("td", { class: "nowrap" }, op.unknown_since || op.started_at),
      el(
        "td",
        { class: "actions" },
        amount,
        transaction,
        note,
        el("button", { class: "paid", onclick: (click) => busy(click.currentTarget, () => decide("paid")) }, "Оплачено"),
        el("button", { class: "not-paid", onclick: (click) => busy(click.currentTarget, () => decide("not_paid")) }, "Не оплачено"),
      ),
    );
  });
  layout(
    "review",
    el("h1", {}, "Проверка"),
    el("p", { class: "muted" }, "Операции, которые терминал не довёл до конца: сверьте с историей терминала и примите решение."),
    notice,
    table(["", "Платёж", "Сумма", "Состояние", "Причина", "С", "Решение"], rows, "Очередь пуста."),
  );
}

// ---------------------------------------------------------------------------------------------
// Undelivered webhooks, and their recovery after a receiver's outage

const EVENT_STATES = { "": "Все недоставленные", failed: "С ошибкой (повторяются)", exhausted: "Исчерпаны попытки", pending: "Ждут отправки" };

async function webhooksPage(params) {
  const state = params.get("state") || "";
  const query = new URLSearchParams({ limit: "100" });
  if (state) query.set("state", state);
  const [answer, sources] = await Promise.all([api("GET", `/admin/webhooks?${query}`), api("GET", "/admin/sources")]);
  if (answer.status !== 200) return layout("webhooks", el("h1", {}, "Вебхуки"), errorLine(answer));
  const notice = el("div", { id: "notice" });
  const filter = el(
    "select",
    { id: "event-state", onchange: (event) => (location.hash = event.target.value ? `#/webhooks?state=${event.target.value}` : "#/webhooks") },
    Object.entries(EVENT_STATES).map(([value, name]) => el("option", { value, selected: value === state }, name)),
  );
  const rows = answer.body.data.items.map((event) =>
    el(
      "tr",
      { "data-event": event.event_id },
      el("td", {}, el("a", { href: `#/payment/${event.transaction_id}` }, event.transaction_id)),
      el("td", {}, `#${event.source_id}`),
      el("td", {}, event.event),
      el("td", {}, el("span", { class: `badge webhook-${event.state}` }, event.state)),
      el("td", {}, event.attempts),
      el("td", {}, event.last_result || ""),
      el("td", { class: "nowrap" }, event.created_at),
      el("td", { class: "nowrap" }, event.next_attempt_at || "—"),
    ),
  );
  // Bulk recovery: every failed or exhausted event of one source since a time goes out again,
  // each payment's in order (POST /admin/webhooks/recover).
  const sourceList = sources.status === 200 ? sources.body.data : [];
  const source = el("select", { name: "source_id", id: "recover-source", required: true }, sourceList.map((s) => el("option", { value: s.id }, `#${s.id} ${s.name}`)));
  const since = el("input", { type: "date", name: "since", id: "recover-since", required: true });
  const recover = el(
    "form",
    {
      class: "filters recover",
      onsubmit: (event) => {
        event.preventDefault();
        const button = event.submitter || recover.querySelector("button");
        busy(button, async () => {
          const chosen = sourceList.find((s) => String(s.id) === source.value);
          if (!chosen || !since.value) return;
          if (!confirm(`Отправить заново все недоставленные вебхуки источника «${chosen.name}» с ${since.value}?`)) return;
          const done = await api("POST", "/admin/webhooks/recover", { source_id: chosen.id, since: `${since.value} 00:00:00` });
          if (done.status !== 200) return notice.replaceChildren(errorLine(done));
          await webhooksPage(params);
          document.getElementById("notice").replaceChildren(el("p", { class: "ok", role: "status" }, `Запланировано к отправке: ${done.body.data.recovered}`));
        });
      },
    },
    el("label", {}, "Источник ", source),
    el("label", {}, "с ", since),
    el("button", { type: "submit", id: "recover" }, "Отправить заново"),
  );
  layout(
    "webhooks",
    el("h1", {}, "Недоставленные вебхуки"),
    notice,
    el("h2", {}, "После сбоя у получателя"),
    el("p", { class: "muted" }, "Вебхуки с ошибкой и исчерпанные уходят снова, по порядку внутри каждого платежа."),
    recover,
    el("h2", {}, "События"),
    el("p", {}, filter),
    // `data-state`: which events this list shows, so that a reader (a test) knows the filter's
    // list has replaced the one before it.
    el(
      "section",
      { id: "events", "data-state": state },
      table(["Платёж", "Источник", "Событие", "Состояние", "Попыток", "Последний ответ", "Создано", "Следующая попытка"], rows, "Все вебхуки доставлены."),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Sources: the merchants' systems, their tokens and webhook encoding

const ENCODINGS = { php: "PHP (json_encode)", js: "JavaScript (JSON.stringify)" };

async function sourcesPage() {
  const answer = await api("GET", "/admin/sources");
  if (answer.status !== 200) return layout("sources", el("h1", {}, "Источники"), errorLine(answer));
  const notice = el("div", { id: "notice" });
  const rows = answer.body.data.map((source) =>
    el(
      "tr",
      { "data-source": source.id },
      el("td", {}, `#${source.id}`),
      el("td", {}, source.name),
      el(
        "td",
        {},
        el(
          "select",
          {
            class: "encoding",
            disabled: !source.active,
            onchange: async (event) => {
              const changed = await api("PATCH", `/admin/sources/${source.id}`, { webhook_json: event.target.value });
              if (changed.status !== 200) return notice.replaceChildren(errorLine(changed));
              notice.replaceChildren(el("p", { class: "ok", role: "status" }, `«${source.name}»: вебхуки в кодировке ${ENCODINGS[changed.body.data.webhook_json]}.`));
            },
          },
          Object.entries(ENCODINGS).map(([value, name]) => el("option", { value, selected: source.webhook_json === value }, name)),
        ),
      ),
      el("td", {}, source.active ? el("span", { class: "badge ok" }, "действует") : el("span", { class: "badge" }, "отозван")),
      el("td", { class: "nowrap" }, source.created_at),
      el(
        "td",
        { class: "actions" },
        source.active
          ? el(
              "button",
              {
                class: "revoke",
                onclick: (click) => busy(click.currentTarget, async () => {
                  if (!confirm(`Отозвать источник «${source.name}»? Его токены перестанут работать сразу.`)) return;
                  const changed = await api("PATCH", `/admin/sources/${source.id}`, { active: false });
                  if (changed.status !== 200) return notice.replaceChildren(errorLine(changed));
                  await sourcesPage();
                  document.getElementById("notice").replaceChildren(el("p", { class: "ok", role: "status" }, `Источник «${source.name}» отозван.`));
                }),
              },
              "Отозвать",
            )
          : null,
      ),
    ),
  );
  const name = el("input", { type: "text", name: "name", id: "source-name", required: true, maxlength: 255, placeholder: "Название: CRM турагентства" });
  const encoding = el("select", { name: "webhook_json", id: "source-encoding" }, Object.entries(ENCODINGS).map(([value, label]) => el("option", { value }, label)));
  const create = el(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        busy(create.querySelector("button"), async () => {
          const created = await api("POST", "/admin/sources", { name: name.value.trim(), webhook_json: encoding.value });
          if (created.status !== 201) return notice.replaceChildren(errorLine(created));
          const { source, api_token } = created.body.data;
          await sourcesPage();
          // The token exists in clear only in this answer: shown once, never stored.
          document.getElementById("notice").replaceChildren(
            el(
              "div",
              { class: "token-once", role: "status" },
              el("p", {}, el("strong", {}, `Источник «${source.name}» создан. Токен API — скопируйте его сейчас: он больше не будет показан.`)),
              el("code", { id: "new-token" }, api_token),
            ),
          );
        });
      },
    },
    name,
    encoding,
    el("button", { type: "submit", id: "create-source" }, "Создать источник"),
  );
  layout("sources", el("h1", {}, "Источники"), notice, el("h2", {}, "Новый источник"), create, el("h2", {}, "Все"), table(["", "Название", "Кодировка вебхуков", "Состояние", "Создан", ""], rows, "Источников нет."));
}

// ---------------------------------------------------------------------------------------------
// Payment methods: commissions and which are offered

/** A percent as typed: 0 to 100 with at most two decimals (`14`, `14,5`); `null` if not one. */
function parsePercent(text) {
  const value = text.trim().replace(",", ".");
  if (!/^\d{1,3}(\.\d{1,2})?$/.test(value) || Number(value) > 100) return null;
  return value;
}

async function methodsPage() {
  const answer = await api("GET", "/admin/payment-methods");
  if (answer.status !== 200) return layout("methods", el("h1", {}, "Способы оплаты"), errorLine(answer));
  const notice = el("div", { id: "notice" });
  const rows = answer.body.data.map(({ method, is_active }) => {
    const percentInput = (name, value, enabled) =>
      enabled ? el("input", { type: "text", inputmode: "decimal", name, value, size: 6, "aria-label": name }) : el("span", { class: "muted" }, "—");
    const base = percentInput("commission_percent", method.commission_percent, true);
    const credit = percentInput("credit_commission_percent", method.credit_commission_percent, method.has_credit);
    const installment = percentInput("installment_commission_percent", method.installment_commission_percent, method.has_installment);
    const added = el("input", { type: "checkbox", name: "add_commission_to_amount", checked: method.add_commission_to_amount });
    const active = el("input", { type: "checkbox", name: "is_active", checked: is_active });
    const save = el(
      "button",
      {
        class: "save",
        onclick: (click) => busy(click.currentTarget, async () => {
          const changes = { add_commission_to_amount: added.checked, is_active: active.checked };
          let total = 0;
          for (const input of [base, credit, installment]) {
            if (input.tagName !== "INPUT") continue;
            const percent = parsePercent(input.value);
            if (percent === null) {
              input.focus();
              return notice.replaceChildren(el("p", { class: "error", role: "alert" }, `${method.name}: процент — число от 0 до 100, не больше двух знаков после запятой.`));
            }
            changes[input.name] = percent;
            total += Number(percent);
          }
          if (total > 100) return notice.replaceChildren(el("p", { class: "error", role: "alert" }, `${method.name}: итоговая комиссия ${total} % больше 100 %.`));
          const changed = await api("PATCH", `/admin/payment-methods/${method.id}`, changes);
          if (changed.status !== 200) return notice.replaceChildren(errorLine(changed));
          await methodsPage();
          document.getElementById("notice").replaceChildren(el("p", { class: "ok", role: "status" }, `${method.name}: сохранено. Начатые операции сохраняют прежний процент.`));
        }),
      },
      "Сохранить",
    );
    return el(
      "tr",
      { "data-method": method.id },
      el("td", {}, method.icon_emoji, " ", method.name, el("br"), el("span", { class: "muted" }, method.code)),
      el("td", {}, base),
      el("td", {}, credit),
      el("td", {}, installment),
      el("td", {}, added),
      el("td", {}, active),
      el("td", { class: "actions" }, save),
    );
  });
  layout(
    "methods",
    el("h1", {}, "Способы оплаты"),
    el("p", { class: "muted" }, "Комиссия в процентах: базовая, плюс за кредит и рассрочку, где они есть; вместе не больше 100 %."),
    notice,
    table(["Способ", "Базовая %", "Кредит %", "Рассрочка %", "К сумме клиента", "Предлагается", ""], rows, "Способов нет."),
  );
}

window.addEventListener("hashchange", () => route());
route();
