// Drives the hosted payment page in headless Chromium against a running demo server.
// Started by tests/tests/payment_page.rs, which passes:
//   BYFLY_ORIGIN      http://127.0.0.1:PORT (the server; the API is under /api)
//   BYFLY_API_TOKEN   the demo source's token (to create payments)
//   BYFLY_EXPIRED_ID  a payment the test expired beforehand
//   BYFLY_CHROMIUM    the Chromium binary
//   SCREENSHOT_DIR    where each scenario's final state is saved
// Assertions are on the page's text, never on pixels. Exit code 0 when every scenario passed.

import assert from 'node:assert/strict';
import { TIMEOUT, runScenarios, waitForText } from './harness.mjs';

const origin = process.env.BYFLY_ORIGIN;
const token = process.env.BYFLY_API_TOKEN;
const screenshots = process.env.SCREENSHOT_DIR;

async function createPayment(amount, description) {
  const response = await fetch(`${origin}/api/payment/init`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Token': token },
    body: JSON.stringify({ amount, description }),
  });
  const body = await response.json();
  assert.equal(response.status, 201, JSON.stringify(body));
  assert.equal(body.data.payment_page_url, `${origin}/pay/${body.data.transaction_id}`);
  return body.data.payment_page_url;
}

async function choose(page, method) {
  await page.locator(`button[data-method="${method}"]`).click();
  await page.locator('[data-test="qr"]').waitFor({ timeout: TIMEOUT });
}

async function demoAction(page, label) {
  await page.getByRole('button', { name: label }).click();
}

const scenarios = {
  async 'full Gold payment'(page) {
    await page.goto(await createPayment(50000, 'Тур в Дубай #12345'));
    let shown = await waitForText(page, 'Выберите способ оплаты');
    assert.match(shown, /50 000 ₸/);
    assert.match(shown, /Тур в Дубай #12345/);
    assert.match(shown, /Demo/, 'the merchant name');
    await choose(page, 'kaspi_gold');
    shown = await waitForText(page, 'Ожидаем оплату');
    assert.match(shown, /Осталось \d+:\d\d/);
    const href = await page.locator('[data-test="open-kaspi"]').getAttribute('href');
    assert.match(href, /^https:\/\/pay\.kaspi\.kz\//);
    assert.ok(await page.locator('[data-test="qr"]').evaluate((img) => img.complete && img.naturalWidth > 0), 'QR loaded');
    await demoAction(page, 'Оплатить Kaspi Gold');
    shown = await waitForText(page, 'Оплачено');
    assert.match(shown, /Оплачено\s+50 000 ₸/);
    assert.match(shown, /Номер платежа/);
  },

  async 'Кредит with the 14 % total shown before choosing'(page) {
    await page.goto(await createPayment(100000, 'Тур в Анталью'));
    await waitForText(page, 'Выберите способ оплаты');
    const kredit = (await page.locator('button[data-method="kaspi_kredit"]').innerText()).replace(/\u00a0/g, ' ');
    assert.match(kredit, /Kaspi Кредит/);
    assert.match(kredit, /\+14 %/);
    assert.match(kredit, /114 000 ₸/);
    const gold = (await page.locator('button[data-method="kaspi_gold"]').innerText()).replace(/\u00a0/g, ' ');
    assert.match(gold, /без комиссии/);
    assert.match(gold, /100 000 ₸/);
    await choose(page, 'kaspi_kredit');
    let shown = await waitForText(page, 'Ожидаем оплату');
    assert.match(shown, /114 000 ₸/);
    assert.match(shown, /100 000 ₸ \+ комиссия 14 000 ₸/);
    await demoAction(page, 'Оплатить в кредит');
    shown = await waitForText(page, 'Оплачено');
    assert.match(shown, /Оплачено\s+114 000 ₸/);
  },

  async 'partial payment then top-up to paid'(page) {
    await page.goto(await createPayment(100000, 'Частичная оплата'));
    await waitForText(page, 'Выберите способ оплаты');
    await choose(page, 'kaspi_gold');
    await waitForText(page, 'Ожидаем оплату');
    await demoAction(page, 'Оплатить частично (50 000 ₸)');
    let shown = await waitForText(page, 'Требуется доплата 50 000 ₸');
    assert.match(shown, /Получено 50 000 ₸ из 100 000 ₸/);
    assert.match(shown, /Доплатить/);
    const topUp = (await page.locator('button[data-method="kaspi_gold"]').innerText()).replace(/\u00a0/g, ' ');
    assert.match(topUp, /50 000 ₸/);
    await choose(page, 'kaspi_gold');
    await waitForText(page, 'Ожидаем оплату');
    await demoAction(page, 'Оплатить Kaspi Gold');
    shown = await waitForText(page, 'Оплачено');
    assert.match(shown, /Оплачено\s+100 000 ₸/);
  },

  async 'failure then retry'(page) {
    await page.goto(await createPayment(30000, 'Повтор после отказа'));
    await waitForText(page, 'Выберите способ оплаты');
    await choose(page, 'kaspi_red');
    await waitForText(page, 'Ожидаем оплату');
    await demoAction(page, 'Отказаться');
    let shown = await waitForText(page, 'Оплата не прошла');
    assert.match(shown, /Попробовать снова/);
    await choose(page, 'kaspi_gold');
    await waitForText(page, 'Ожидаем оплату');
    await demoAction(page, 'Оплатить Kaspi Gold');
    shown = await waitForText(page, 'Оплачено');
    assert.match(shown, /30 000 ₸/);
  },

  async 'status polling pauses while hidden and stops at a final status'(page) {
    const url = await createPayment(4000, 'Опрос статуса');
    const id = url.split('/').pop();
    const polls = [];
    page.on('request', (request) => {
      if (request.url().endsWith(`/payment/${id}/status`)) polls.push(Date.now());
    });
    await page.goto(url);
    await waitForText(page, 'Выберите способ оплаты');
    const polled = async (count) => {
      const deadline = Date.now() + TIMEOUT;
      while (polls.length < count) {
        assert.ok(Date.now() < deadline, `fewer than ${count} status polls`);
        await page.waitForTimeout(50);
      }
    };
    await polled(2);
    await page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    const whenHidden = polls.length;
    await page.waitForTimeout(2500); // an absence: nothing to wait for but time
    assert.ok(polls.length <= whenHidden + 1, `polled while hidden: ${polls.length - whenHidden}`);
    await page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { value: 'visible', configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await polled(polls.length + 1);
    // Paid from elsewhere (the API): the page follows, then stops asking.
    const started = await fetch(`${origin}/api/payment/${id}/kaspi`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"payment_method":"kaspi_gold"}',
    });
    assert.equal(started.status, 200);
    await waitForText(page, 'Ожидаем оплату');
    await demoAction(page, 'Оплатить Kaspi Gold');
    await waitForText(page, 'Оплачено');
    const whenPaid = polls.length;
    await page.waitForTimeout(2500);
    assert.equal(polls.length, whenPaid, 'no polling after a final status');
  },

  async 'expired link'(page) {
    await page.goto(`${origin}/pay/${process.env.BYFLY_EXPIRED_ID}`);
    const shown = await waitForText(page, 'Срок действия ссылки истёк');
    assert.match(shown, /новую ссылку/);
    assert.equal(await page.locator('button[data-method]').count(), 0, 'no way to pay');
  },

  async 'cancelled by the merchant'(page) {
    const url = await createPayment(7000, 'Отменённый заказ');
    const id = url.split('/').pop();
    const cancelled = await fetch(`${origin}/api/payment/${id}/cancel`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-API-Token': token },
      body: '{}',
    });
    assert.equal(cancelled.status, 200);
    await page.goto(url);
    await waitForText(page, 'Платёж отменён');
    assert.equal(await page.locator('button[data-method]').count(), 0, 'no way to pay');
  },

  async 'unknown link'(page) {
    const response = await page.goto(`${origin}/pay/FFFFFFFFFFFF`);
    assert.equal(response.status(), 404);
    await waitForText(page, 'Платёж не найден');
  },

  async '360 px phone: QR and button visible without horizontal scrolling'(page) {
    await page.setViewportSize({ width: 360, height: 740 });
    await page.goto(await createPayment(250000, 'Очень длинное описание заказа: тур на двоих в Стамбул, 7 ночей, завтраки, трансфер из аэропорта'));
    await waitForText(page, 'Выберите способ оплаты');
    await choose(page, 'kaspi_rassrochka');
    await waitForText(page, 'Ожидаем оплату');
    const layout = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
    }));
    assert.ok(layout.scrollWidth <= layout.innerWidth, `horizontal scroll: ${JSON.stringify(layout)}`);
    for (const selector of ['[data-test="qr"]', '[data-test="open-kaspi"]']) {
      const target = page.locator(selector);
      assert.ok(await target.isVisible(), `${selector} visible`);
      const box = await target.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= 360, `${selector} inside the width: ${JSON.stringify(box)}`);
    }
    const qr = await page.locator('[data-test="qr"]').boundingBox();
    assert.ok(qr.width >= 200, `QR large enough to scan: ${qr.width}px`);
  },

  // Last: it leaves both demo terminals taken.
  async 'busy terminals in words a customer understands, with a retry'(page) {
    // Other customers take every free terminal (an earlier scenario may still hold one).
    const holders = [];
    for (let n = 0; n < 3; n += 1) {
      const id = (await createPayment(1000 + n, `Другой покупатель ${n}`)).split('/').pop();
      const started = await fetch(`${origin}/api/payment/${id}/kaspi`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{"payment_method":"kaspi_gold"}',
      });
      if (started.status !== 200) {
        assert.equal((await started.json()).code, 'terminals_busy');
        break;
      }
      holders.push(id);
    }
    assert.ok(holders.length > 0, 'at least one terminal was free');
    await page.goto(await createPayment(5000, 'Все кассы заняты'));
    await waitForText(page, 'Выберите способ оплаты');
    await page.locator('button[data-method="kaspi_gold"]').click();
    let shown = await waitForText(page, 'все кассы заняты');
    assert.match(shown, /Повторить/);
    assert.match(shown, /освободится примерно через \d+ (мин|с)/, 'says when a terminal is expected to be free');
    // A terminal frees up (its customer refuses); the retry then succeeds.
    const firstId = holders[0];
    await fetch(`${origin}/api/dev/simulate/${firstId}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"outcome":"fail"}',
    });
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
      const status = await (await fetch(`${origin}/api/payment/${firstId}/status`)).json();
      if (status.data.status === 'failed') break;
      assert.ok(Date.now() < deadline, 'the refused operation ends');
      await page.waitForTimeout(100);
    }
    await page.getByRole('button', { name: 'Повторить' }).click();
    await page.locator('[data-test="qr"]').waitFor({ timeout: TIMEOUT });
    shown = await waitForText(page, 'Ожидаем оплату');
  },
};

await runScenarios(scenarios, { screenshots });
