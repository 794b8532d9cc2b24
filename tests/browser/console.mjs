// Drives the operator's console (/admin) in headless Chromium against a running demo server.
// Started by tests/tests/console.rs, which passes:
//   BYFLY_ORIGIN       http://127.0.0.1:PORT
//   BYFLY_ADMIN_TOKEN  the admin token
//   BYFLY_PHONE        a customer's phone as the operator types it (the payment was made with it)
//   BYFLY_PAID_ID      that payment: paid, its `paid` webhook delivered to the demo's receiver
//   BYFLY_REVIEW_ID    an operation waiting for an operator's decision
//   BYFLY_REFUND_ID    a paid payment to refund part of
//   BYFLY_PENDING_ID   a pending payment to cancel
//   BYFLY_SIM_URL      a simulated terminal, added but not registered, whose cashier the test plays
//   BYFLY_SIM_TERMINAL its terminal id
//   BYFLY_OUTAGE_ID    a paid payment whose webhook failed: its receiver was down
//   BYFLY_RECEIVER     that receiver: `POST /up` brings it back
//   BYFLY_SOURCE_ID    the demo's source (the one those payments came from)
//   BYFLY_REVIEW_TX    the payment of BYFLY_REVIEW_ID
//   BYFLY_CHROMIUM, SCREENSHOT_DIR
// Assertions are on the page's text and elements, never on pixels.

import assert from 'node:assert/strict';
import { runScenarios, text, waitForText } from './harness.mjs';

const origin = process.env.BYFLY_ORIGIN;
const adminToken = process.env.BYFLY_ADMIN_TOKEN;
/** Who logs in: what the operator's decisions are recorded under. */
const OPERATOR = 'Дана Касымова';

async function login(page) {
  await page.goto(`${origin}/admin`);
  await page.locator('#operator').fill(OPERATOR);
  await page.locator('#token').fill(adminToken);
  await page.getByRole('button', { name: 'Войти' }).click();
  await waitForText(page, 'Платежи');
  await page.locator('#search').waitFor();
}

/** Counts the clicks an operator makes. */
function counted() {
  let clicks = 0;
  return {
    click: async (locator) => {
      clicks += 1;
      await locator.click();
    },
    get clicks() {
      return clicks;
    },
  };
}

const scenarios = {
  async 'a wrong token is refused'(page) {
    await page.goto(`${origin}/admin`);
    await page.locator('#operator').fill(OPERATOR);
    await page.locator('#token').fill('not-the-admin-token');
    await page.getByRole('button', { name: 'Войти' }).click();
    const shown = await waitForText(page, 'invalid_admin_token');
    assert.match(shown, /Invalid admin token/);
    assert.equal(await page.locator('#search').count(), 0, 'nothing behind the login');
    // The page keeps no token of its own: nothing in storage, and the cookie is not readable.
    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
    assert.equal(await page.evaluate(() => document.cookie), '');
  },

  async 'from a phone number to the webhook log in three clicks'(page) {
    await login(page);
    const operator = counted();
    await page.locator('#search').fill(process.env.BYFLY_PHONE);
    await operator.click(page.getByRole('button', { name: 'Найти' }));
    // The list of that search (not the one shown before it, which has every payment).
    const results = page.locator('#results[data-query*="q="]');
    await results.waitFor();
    const row = results.locator(`tr[data-id="${process.env.BYFLY_PAID_ID}"]`);
    await row.waitFor();
    assert.equal(await results.locator('tbody tr').count(), 1, 'the phone finds that one payment');
    await operator.click(row);
    const shown = await waitForText(page, `Платёж ${process.env.BYFLY_PAID_ID}`);
    assert.match(shown, /оплачен/);
    assert.match(shown, /57 000 ₸/);
    await operator.click(page.getByRole('button', { name: /^Вебхуки/ }));
    const log = await waitForText(page, 'HTTP 200', '#webhook-log');
    assert.match(log, /paid/);
    assert.ok(await page.locator('#webhook-log').isVisible());
    assert.ok(operator.clicks <= 3, `${operator.clicks} clicks`);
  },

  async 'resend a webhook'(page) {
    await login(page);
    await page.goto(`${origin}/admin#/payment/${process.env.BYFLY_PAID_ID}`);
    await waitForText(page, 'Отправить снова');
    const before = await page.locator('.attempts li').count();
    await page.locator('button.resend').first().click();
    await waitForText(page, 'Отправлено повторно: HTTP 200');
    await page.waitForFunction((n) => document.querySelectorAll('.attempts li').length > n, before);
    const shown = await waitForText(page, 'вручную');
    assert.match(shown, /попытка 2 \(вручную\)/);
  },

  async 'a terminal shows the operation holding it, and its settings are edited'(page) {
    await login(page);
    await page.getByRole('link', { name: 'Терминалы' }).click();
    // The `unknown` operation holds its terminal until an operator decides (another scenario).
    const busy = page.locator('tr[data-terminal]', { hasText: 'занят' });
    await busy.first().waitFor();
    const row = page.locator(`tr[data-terminal="${process.env.BYFLY_SIM_TERMINAL}"]`);
    await row.locator('summary', { hasText: 'Изменить' }).click();
    await row.locator('input[name=camera_url]').fill(`${process.env.BYFLY_SIM_URL}/camera/snapshot.jpg?edited=1`);
    await row.getByRole('button', { name: 'Сохранить' }).click();
    await waitForText(page, 'настройки сохранены');
    await row.locator('summary', { hasText: 'Изменить' }).click();
    assert.match(await row.locator('input[name=camera_url]').inputValue(), /edited=1$/);
    // An address that is not one is refused in the API's words.
    await row.locator('input[name=camera_url]').fill('камера');
    await row.getByRole('button', { name: 'Сохранить' }).click();
    await waitForText(page, 'validation_error');
  },

  async 'an operator decides an operation under review, recorded with who, when and why'(page) {
    await login(page);
    const dialogs = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      dialog.accept();
    });
    await page.getByRole('link', { name: 'Проверка' }).click();
    const row = page.locator(`tr[data-operation="${process.env.BYFLY_REVIEW_ID}"]`);
    await row.waitFor();
    // What the terminal said last is in front of the operator: it does not know (`unknown`).
    assert.match(await row.innerText(), /Последние ответы терминала[\s\S]*"unknown"/);
    // No decision without its reason.
    await row.getByRole('button', { name: 'Не оплачено' }).click();
    await waitForText(page, 'запишите основание решения');
    assert.equal(dialogs.length, 0, 'nothing asked, nothing sent');
    await row.locator('input[name=note]').fill('Сверено с историей терминала: операции нет');
    await row.getByRole('button', { name: 'Не оплачено' }).click();
    await waitForText(page, `Операция #${process.env.BYFLY_REVIEW_ID}: решение записано.`);
    assert.equal(await row.count(), 0, 'it left the queue');
    // The payment's page shows the decision with its author, time and note, and the answers.
    await page.getByRole('link', { name: 'Платежи' }).click();
    await page.goto(`${origin}/admin#/payment/${process.env.BYFLY_REVIEW_TX}`);
    const decision = await waitForText(page, 'Решение: не оплачено', '#operations + .table');
    assert.match(decision, new RegExp(`${OPERATOR} \\(сессия #\\d+, 127\\.0\\.0\\.1\\) · \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d`));
    assert.match(decision, /«Сверено с историей терминала: операции нет»/);
    await page.getByText(/^Ответы терминала \(\d+\)$/).first().click();
    assert.match(await text(page, '.answers'), /"status": "unknown"/);
  },

  async 'a terminal is registered while the cashier accepts on its screen'(page) {
    await login(page);
    await page.getByRole('link', { name: 'Терминалы' }).click();
    const row = page.locator(`tr[data-terminal="${process.env.BYFLY_SIM_TERMINAL}"]`);
    await row.waitFor();
    assert.match(await row.innerText(), /нужна регистрация/);
    await row.getByRole('button', { name: 'Зарегистрировать' }).click();
    await waitForText(page, 'Ждём кассира');
    const approved = await fetch(`${process.env.BYFLY_SIM_URL}/sim/approve-registration`, { method: 'POST' });
    assert.equal(approved.status, 200);
    await waitForText(page, 'Кассир подтвердил: терминал зарегистрирован.');
    assert.match(await row.innerText(), /зарегистрирован/);
  },

  async 'a refund with its confirmation step'(page) {
    await login(page);
    const dialogs = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      dialog.accept();
    });
    await page.goto(`${origin}/admin#/payment/${process.env.BYFLY_REFUND_ID}`);
    await waitForText(page, 'Вернуть');
    await page.locator('#refund-amount').fill('5000');
    await page.locator('#refund').click();
    const shown = await waitForText(page, 'Возврат создан');
    assert.match(shown, /Возврат создан: клиент подтверждает его в приложении Kaspi: 5 000 ₸/);
    assert.equal(dialogs.length, 1);
    assert.match(dialogs[0].replace(/[\u00a0\u202f]/g, ' '), /Вернуть клиенту 5 000 ₸\?/);
    assert.match(shown, /refund/, 'the refund is an operation of the payment now');
  },

  async 'an operator cancels a pending payment'(page) {
    await login(page);
    page.on('dialog', (dialog) => dialog.accept());
    await page.goto(`${origin}/admin#/payment/${process.env.BYFLY_PENDING_ID}`);
    await waitForText(page, 'Отменить платёж');
    await page.locator('#cancel').click();
    const shown = await waitForText(page, 'Платёж отменён.');
    assert.match(shown, /отменён/);
    assert.equal(await page.locator('#cancel').count(), 0, 'nothing left to cancel');
  },

  async 'a change without the CSRF token is refused'(page) {
    await login(page);
    // The session's cookie alone, as another page's forged request would carry it (were it sent).
    const answer = await page.evaluate(async () => {
      const response = await fetch('/api/admin/payment-methods/1', {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ commission_percent: '99' }),
      });
      return { status: response.status, body: await response.json() };
    });
    assert.equal(answer.status, 403);
    assert.equal(answer.body.code, 'invalid_csrf_token');
    assert.equal(answer.body.success, false);
  },

  async 'a source is created (its token shown once) and revoked'(page) {
    await login(page);
    page.on('dialog', (dialog) => dialog.accept());
    await page.getByRole('link', { name: 'Источники' }).click();
    await page.locator('#source-name').fill('Сайт магазина');
    await page.locator('#source-encoding').selectOption('js');
    await page.locator('#create-source').click();
    await waitForText(page, 'он больше не будет показан');
    const token = (await page.locator('#new-token').innerText()).trim();
    assert.ok(token.length >= 32, token);
    // The token works for the new source…
    const listed = await fetch(`${origin}/api/payments`, { headers: { 'X-API-Token': token } });
    assert.equal(listed.status, 200);
    const row = page.locator('tr[data-source]', { hasText: 'Сайт магазина' });
    assert.equal(await row.locator('select.encoding').inputValue(), 'js');
    // …is nowhere once the page is shown again…
    await page.reload();
    await row.waitFor();
    assert.ok(!(await text(page)).includes(token), 'shown once');
    // …and stops working when the source is revoked.
    await row.getByRole('button', { name: 'Отозвать' }).click();
    await waitForText(page, 'Источник «Сайт магазина» отозван.');
    assert.match(await row.innerText(), /отозван/);
    const refused = await fetch(`${origin}/api/payments`, { headers: { 'X-API-Token': token } });
    assert.equal(refused.status, 401);
  },

  async 'commissions are edited, and a wrong percent is refused'(page) {
    await login(page);
    await page.getByRole('link', { name: 'Способы оплаты' }).click();
    const credit = page.locator('tr[data-method]', { hasText: 'kaspi_kredit' });
    await credit.waitFor();
    await credit.locator('input[name=credit_commission_percent]').fill('14,5 %');
    await credit.getByRole('button', { name: 'Сохранить' }).click();
    await waitForText(page, 'процент — число от 0 до 100');
    await credit.locator('input[name=credit_commission_percent]').fill('95');
    await credit.locator('input[name=commission_percent]').fill('10');
    await credit.getByRole('button', { name: 'Сохранить' }).click();
    await waitForText(page, 'больше 100 %');
    await credit.locator('input[name=commission_percent]').fill('0');
    await credit.locator('input[name=credit_commission_percent]').fill('14,5');
    await credit.getByRole('button', { name: 'Сохранить' }).click();
    await waitForText(page, 'Kaspi Кредит: сохранено.');
    assert.equal(await credit.locator('input[name=credit_commission_percent]').inputValue(), '14.5');
    // What customers are offered now.
    const methods = await (await fetch(`${origin}/api/payment-methods/active`)).json();
    const offered = methods.data.find((method) => method.code === 'kaspi_kredit');
    assert.equal(String(offered.credit_commission_percent), '14.5');
  },

  async 'webhooks that failed during an outage are sent again in bulk'(page) {
    await login(page);
    page.on('dialog', (dialog) => dialog.accept());
    await page.getByRole('link', { name: 'Вебхуки' }).click();
    await page.locator('#event-state').selectOption('failed');
    // The filtered list, not the one before it (the page is drawn again when it arrives, and a
    // form filled in before that would be replaced).
    const failed = page.locator('#events[data-state="failed"] tr[data-event]', { hasText: process.env.BYFLY_OUTAGE_ID });
    await failed.first().waitFor();
    // The receiver is back.
    assert.equal((await fetch(`${process.env.BYFLY_RECEIVER}/up`, { method: 'POST' })).status, 200);
    await page.locator('#recover-source').selectOption(process.env.BYFLY_SOURCE_ID);
    await page.locator('#recover-since').fill('2020-01-01');
    await page.locator('#recover').click();
    const shown = await waitForText(page, 'Запланировано к отправке:');
    assert.match(shown, /Запланировано к отправке: [1-9]/);
  },

  async 'logout ends the session'(page) {
    await login(page);
    await page.locator('#logout').click();
    await waitForText(page, 'Вы вышли.');
    await page.reload();
    await page.locator('#token').waitFor();
    const status = await page.evaluate(async () => (await fetch('/api/admin/payments')).status);
    assert.equal(status, 401, 'the old session is gone');
  },

  async 'the payments list on a phone (390 px)'(page) {
    await login(page);
    await page.locator('#search').fill(process.env.BYFLY_PHONE);
    await page.getByRole('button', { name: 'Найти' }).click();
    await page.locator(`#results[data-query*="q="] tr[data-id="${process.env.BYFLY_PAID_ID}"]`).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
    await page.locator(`tr[data-id="${process.env.BYFLY_PAID_ID}"]`).click();
    await waitForText(page, 'Отправить снова');
    const detail = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(detail <= 0, `the payment's page is ${detail}px wider than the phone`);
  },
};
scenarios['the payments list on a phone (390 px)'].viewport = { width: 390, height: 844 };

await runScenarios(scenarios, { screenshots: process.env.SCREENSHOT_DIR, prefix: 'console_' });
