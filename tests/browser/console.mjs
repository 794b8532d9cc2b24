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
//   BYFLY_CHROMIUM, SCREENSHOT_DIR
// Assertions are on the page's text and elements, never on pixels.

import assert from 'node:assert/strict';
import { runScenarios, waitForText } from './harness.mjs';

const origin = process.env.BYFLY_ORIGIN;
const adminToken = process.env.BYFLY_ADMIN_TOKEN;

async function login(page) {
  await page.goto(`${origin}/admin`);
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

  async 'an operator decides an operation under review'(page) {
    await login(page);
    page.on('dialog', (dialog) => dialog.accept());
    await page.getByRole('link', { name: 'Проверка' }).click();
    const row = page.locator(`tr[data-operation="${process.env.BYFLY_REVIEW_ID}"]`);
    await row.waitFor();
    await row.getByRole('button', { name: 'Не оплачено' }).click();
    await waitForText(page, `Операция #${process.env.BYFLY_REVIEW_ID}: решение записано.`);
    assert.equal(await row.count(), 0, 'it left the queue');
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
