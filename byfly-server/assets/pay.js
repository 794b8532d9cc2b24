// The hosted payment page of ByFly Payment Center. It uses only the public API
// (GET /api/payment/{id}, /status, /quotes, /qr.svg, POST /kaspi) and, in demo mode,
// POST /api/dev/simulate/{id}. Every text from the server is put in the page with
// textContent, never as HTML.
'use strict';

(() => {
  const app = document.getElementById('app');
  const id = app.dataset.transactionId;
  const demo = app.dataset.demo === 'true';
  const POLL_MS = 1000;
  const FINAL = ['paid', 'expired', 'cancelled', 'refunded'];

  const state = {
    view: null,
    quotes: [],
    choosing: false, // the customer asked to switch method while an operation runs
    starting: null, // the method being started
    error: null, // {text, retry}
    pollTimer: null,
    deadline: null,
  };

  // ---- helpers -------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = value;
      else if (key === 'className') node.className = value;
      else if (key === 'onclick') node.addEventListener('click', value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child) node.append(child);
    }
    return node;
  }

  /** 114000 → «114 000 ₸», 12281.25 → «12 281,25 ₸» (no-break spaces). */
  function tenge(amount) {
    const text = String(amount);
    if (!/^-?\d+(\.\d+)?$/.test(text)) return `${text}\u00a0₸`;
    const [whole, fraction] = text.split('.');
    const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, '\u00a0');
    return `${grouped}${fraction ? `,${fraction}` : ''}\u00a0₸`;
  }

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message || code || `HTTP ${status}`);
      this.status = status;
      this.code = code;
      // Seconds until the first busy terminal is expected to be free (terminals_busy).
      this.retryAfter = typeof retryAfter === 'number' ? retryAfter : null;
    }
  }

  /** "через 3 мин" / "через 40 с": when a busy terminal is expected to be free. */
  function inAbout(seconds) {
    return seconds >= 60 ? `примерно через ${Math.ceil(seconds / 60)} мин` : `примерно через ${seconds} с`;
  }

  async function call(method, path, body) {
    let response;
    try {
      response = await fetch(`/api${path}`, {
        method,
        cache: 'no-store',
        headers: body ? { 'Content-Type': 'application/json' } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (_) {
      throw new ApiError(0, 'network', null);
    }
    let json = null;
    try {
      json = await response.json();
    } catch (_) {
      json = null;
    }
    if (!response.ok || !json || json.success === false) {
      throw new ApiError(response.status, json && json.code, json && json.message, json && json.retry_after);
    }
    return json.data;
  }

  /** What a customer reads for an API error. */
  function explain(error) {
    switch (error.code) {
      case 'terminals_busy':
        // A terminal stays taken until its operation ends on the terminal itself (it cannot be
        // cancelled remotely), so the wait can be minutes: say how long.
        return error.retryAfter
          ? `Сейчас все кассы заняты другими покупателями. Ближайшая освободится ${inAbout(error.retryAfter)}.`
          : 'Сейчас все кассы заняты другими покупателями. Попробуйте через минуту.';
      case 'terminal_unavailable':
        return 'Касса временно не отвечает. Попробуйте ещё раз чуть позже.';
      case 'qr_not_found':
        return 'Не получилось подготовить QR-код. Попробуйте ещё раз.';
      case 'rate_limited':
        return 'Слишком много попыток подряд. Подождите минуту и попробуйте снова.';
      case 'network':
        return 'Нет связи с сервером. Проверьте интернет и попробуйте снова.';
      default:
        return error.message || 'Что-то пошло не так. Попробуйте ещё раз.';
    }
  }

  // ---- data ----------------------------------------------------------------

  async function load() {
    try {
      const view = await call('GET', `/payment/${id}`);
      const wantsQuotes = ['pending', 'failed', 'partially_paid', 'processing'].includes(view.status);
      state.quotes = wantsQuotes ? await call('GET', `/payment/${id}/quotes`) : [];
      state.view = view;
      state.deadline =
        typeof view.operation_expires_in === 'number' ? Date.now() + view.operation_expires_in * 1000 : null;
    } catch (error) {
      if (error.status === 404) {
        state.view = { status: 'not_found' };
      } else {
        state.error = { text: explain(error), retry: load };
      }
    }
    render();
    schedulePoll();
  }

  async function poll() {
    state.pollTimer = null;
    if (document.visibilityState !== 'visible' || !state.view || FINAL.includes(state.view.status)) return;
    if (state.view.status === 'not_found') return;
    try {
      const status = await call('GET', `/payment/${id}/status`);
      // A terminal draws its QR a moment after the operation starts (its screen may still show the
      // previous one): while processing without a QR, reload the view until it has one.
      const waitingForQr = state.view.status === 'processing' && !state.view.qr_code;
      if (waitingForQr || status.status !== state.view.status || status.paid_amount !== state.view.paid_amount) {
        state.choosing = false;
        await load();
        return;
      }
    } catch (_) {
      // A missed poll is retried on the next tick.
    }
    schedulePoll();
  }

  function schedulePoll() {
    if (state.pollTimer) clearTimeout(state.pollTimer);
    state.pollTimer = null;
    const status = state.view && state.view.status;
    if (!status || FINAL.includes(status) || status === 'not_found') return;
    if (document.visibilityState !== 'visible') return;
    state.pollTimer = setTimeout(poll, POLL_MS);
  }

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') poll();
    else if (state.pollTimer) {
      clearTimeout(state.pollTimer);
      state.pollTimer = null;
    }
  });

  async function choose(method) {
    state.starting = method;
    state.error = null;
    render();
    try {
      await call('POST', `/payment/${id}/kaspi`, { payment_method: method });
      state.choosing = false;
      state.starting = null;
      await load();
    } catch (error) {
      state.starting = null;
      if (['already_paid', 'payment_cancelled', 'payment_expired', 'payment_refunded'].includes(error.code)) {
        await load();
        return;
      }
      state.error = { text: explain(error), retry: () => choose(method) };
      render();
    }
  }

  async function simulate(action) {
    try {
      await call('POST', `/dev/simulate/${id}`, action);
    } catch (error) {
      state.error = { text: explain(error), retry: null };
      render();
    }
    poll();
  }

  // ---- views ---------------------------------------------------------------

  function header(view) {
    const amount = el('p', { className: 'amount', 'data-test': 'amount', text: tenge(view.amount) });
    const lines = [
      view.merchant_name ? el('p', { className: 'merchant', text: view.merchant_name }) : null,
      view.description ? el('h1', { text: view.description }) : el('h1', { text: 'Оплата заказа' }),
      amount,
    ];
    if (view.commission_amount > 0) {
      lines.push(
        el('p', {
          className: 'muted',
          text: `${tenge(view.original_amount)} + комиссия ${tenge(view.commission_amount)}`,
        }),
      );
    }
    return el('header', {}, ...lines);
  }

  function errorBox() {
    if (!state.error) return null;
    const { text, retry } = state.error;
    return el(
      'div',
      { className: 'notice error', role: 'alert', 'data-test': 'error' },
      el('p', { text }),
      retry
        ? el('button', {
            className: 'secondary',
            type: 'button',
            text: 'Повторить',
            onclick: () => {
              state.error = null;
              retry();
            },
          })
        : null,
    );
  }

  function methods(title) {
    const list = el('div', { className: 'methods' });
    for (const quote of state.quotes) {
      const commission =
        Number(quote.commission_percent) > 0 ? `+${String(quote.commission_percent).replace('.', ',')} %` : 'без комиссии';
      list.append(
        el(
          'button',
          {
            type: 'button',
            className: 'method',
            'data-method': quote.payment_method,
            disabled: state.starting !== null,
            onclick: () => choose(quote.payment_method),
          },
          el('span', { className: 'method-name', text: `${quote.icon_emoji} ${quote.name}`.trim() }),
          el('span', { className: 'method-commission', text: commission }),
          el('span', { className: 'method-total', text: tenge(quote.amount) }),
        ),
      );
    }
    const starting = state.starting
      ? el('p', { className: 'muted', 'data-test': 'starting', text: 'Готовим кассу и QR-код…' })
      : null;
    return el('section', {}, el('h2', { text: title }), list, starting);
  }

  function countdownText() {
    if (!state.deadline) return '';
    const left = Math.max(0, Math.round((state.deadline - Date.now()) / 1000));
    if (left === 0) return 'Время на оплату истекло';
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, '0');
    return `Осталось ${minutes}:${seconds}`;
  }

  function operation(view) {
    if (!view.qr_code || !view.payment_url) {
      return el('section', {}, el('p', { className: 'muted', text: 'Готовим QR-код…' }));
    }
    const qr = el('img', {
      className: 'qr',
      'data-test': 'qr',
      alt: 'QR-код для оплаты в приложении Kaspi',
      width: 240,
      height: 240,
      src: `/api/payment/${id}/qr.svg?c=${encodeURIComponent(view.qr_code.slice(-16))}`,
    });
    const open = el('a', {
      className: 'button primary',
      'data-test': 'open-kaspi',
      href: view.payment_url,
      rel: 'noopener',
      text: 'Открыть в Kaspi',
    });
    const countdown = el('p', { className: 'countdown', 'data-test': 'countdown', text: countdownText() });
    const switchMethod = el('button', {
      type: 'button',
      className: 'link',
      text: 'Выбрать другой способ оплаты',
      onclick: () => {
        state.choosing = true;
        render();
      },
    });
    return el(
      'section',
      { className: 'operation' },
      el('p', { className: 'status', 'data-test': 'status', text: 'Ожидаем оплату в приложении Kaspi' }),
      el('p', { className: 'muted', text: 'Отсканируйте QR-код приложением Kaspi.kz или откройте ссылку на телефоне.' }),
      qr,
      open,
      countdown,
      switchMethod,
    );
  }

  function demoPanel(view) {
    if (!demo || view.status !== 'processing') return null;
    const half = Math.max(1, Math.floor(view.remaining_amount / 2));
    const action = (label, body) =>
      el('button', { type: 'button', className: 'secondary', text: label, onclick: () => simulate(body) });
    return el(
      'section',
      { className: 'demo', 'data-test': 'demo' },
      el('h2', { text: 'Демо: действия покупателя' }),
      action('Оплатить Kaspi Gold', { product: 'Gold' }),
      action('Оплатить в кредит', { product: 'Loan' }),
      action(`Оплатить частично (${tenge(half)})`, { product: 'Gold', amount: half }),
      action('Отказаться', { outcome: 'fail' }),
    );
  }

  function receipt(view) {
    const rows = [
      ['Сумма', tenge(view.amount)],
      ['Оплачено', tenge(view.paid_amount)],
    ];
    if (view.overpaid_amount > 0) rows.push(['Переплата', tenge(view.overpaid_amount)]);
    if (view.paid_at) rows.push(['Дата', view.paid_at]);
    rows.push(['Номер платежа', view.transaction_id]);
    if (view.merchant_name) rows.push(['Продавец', view.merchant_name]);
    const table = el('dl', { className: 'receipt' });
    for (const [label, value] of rows) table.append(el('dt', { text: label }), el('dd', { text: value }));
    return el(
      'section',
      { className: 'done' },
      el('p', { className: 'status success', 'data-test': 'status', text: 'Оплачено' }),
      el('p', { className: 'muted', text: 'Спасибо! Платёж получен, продавец уже знает об оплате.' }),
      table,
    );
  }

  function finalMessage(title, text) {
    return el(
      'section',
      { className: 'final' },
      el('p', { className: 'status', 'data-test': 'status', text: title }),
      el('p', { className: 'muted', text }),
    );
  }

  function render() {
    const view = state.view;
    const parts = [];
    if (!view) {
      parts.push(el('p', { className: 'muted', text: 'Загрузка…' }), errorBox());
      app.replaceChildren(...parts.filter(Boolean));
      return;
    }
    switch (view.status) {
      case 'not_found':
        parts.push(finalMessage('Платёж не найден', 'Проверьте ссылку или попросите продавца прислать её ещё раз.'));
        break;
      case 'expired':
        parts.push(header(view), finalMessage('Срок действия ссылки истёк', 'Попросите продавца прислать новую ссылку на оплату.'));
        break;
      case 'cancelled':
        parts.push(header(view), finalMessage('Платёж отменён', 'Продавец отменил этот платёж. Деньги не списывались.'));
        break;
      case 'refunded':
        parts.push(header(view), finalMessage('Платёж возвращён', `Возвращено ${tenge(view.refunded_amount)}.`));
        break;
      case 'paid':
        parts.push(header(view), receipt(view));
        break;
      case 'processing':
        parts.push(header(view), errorBox());
        parts.push(state.choosing ? methods('Выберите другой способ оплаты') : operation(view));
        parts.push(demoPanel(view));
        break;
      case 'partially_paid':
        parts.push(
          header(view),
          el(
            'div',
            { className: 'notice warning', 'data-test': 'partial' },
            el('p', { text: `Получено ${tenge(view.paid_amount)} из ${tenge(view.amount)}.` }),
            el('p', { className: 'strong', text: `Требуется доплата ${tenge(view.remaining_amount)}` }),
          ),
          errorBox(),
          methods('Доплатить'),
        );
        break;
      case 'failed':
        parts.push(
          header(view),
          el(
            'div',
            { className: 'notice error', 'data-test': 'failed' },
            el('p', { text: 'Оплата не прошла. Попробуйте ещё раз или выберите другой способ.' }),
          ),
          errorBox(),
          methods('Попробовать снова'),
        );
        break;
      default:
        parts.push(header(view), errorBox(), methods('Выберите способ оплаты'));
    }
    app.replaceChildren(...parts.filter(Boolean));
  }

  setInterval(() => {
    const countdown = app.querySelector('[data-test="countdown"]');
    if (countdown) countdown.textContent = countdownText();
  }, 1000);

  load();
})();
