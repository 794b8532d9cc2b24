// What the browser tests share: headless Chromium (the Debian package), one fresh context per
// scenario, page errors and console errors (a CSP violation is one) counted as failures, a
// screenshot of every scenario's final state, and a summary line the Rust test checks.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

export const TIMEOUT = 20_000;

/** The text of `selector` with no-break spaces as plain spaces, so amounts read «114 000 ₸». */
export async function text(page, selector = '#app') {
  return (await page.locator(selector).innerText()).replace(/[\u00a0\u202f]/g, ' ');
}

/** Waits (bounded) until the page's text holds `expected`; the text then. */
export async function waitForText(page, expected, selector = '#app') {
  const deadline = Date.now() + TIMEOUT;
  let seen = '';
  while (Date.now() < deadline) {
    seen = await text(page, selector);
    if (seen.includes(expected)) return seen;
    await page.waitForTimeout(100);
  }
  throw new Error(`the page never showed «${expected}»; it shows:\n${seen}`);
}

/**
 * Runs each scenario `async (page) => …` in a context of its own (`viewport` by default, or
 * the scenario's `viewport` property), screenshots named `prefix` + the scenario's name, and
 * exits 0 when every scenario passed.
 */
export async function runScenarios(scenarios, { screenshots, prefix = '', viewport = { width: 1280, height: 900 } }) {
  mkdirSync(screenshots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.BYFLY_CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  let failed = 0;
  const saved = [];
  try {
    for (const [name, scenario] of Object.entries(scenarios)) {
      const context = await browser.newContext({ viewport: scenario.viewport || viewport, locale: 'ru-RU' });
      const page = await context.newPage();
      const problems = [];
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      page.on('console', (message) => {
        if (message.type() === 'error' && !/status of 4\d\d/.test(message.text())) problems.push(`console: ${message.text()}`);
      });
      const file = `${screenshots}/${prefix}${name.replace(/[^\p{L}\p{N}]+/gu, '_')}.png`;
      try {
        await scenario(page);
        assert.deepEqual(problems, [], 'no script errors or CSP violations');
        console.log(`ok: ${name}`);
      } catch (error) {
        failed += 1;
        console.log(`FAILED: ${name}\n${error.stack || error}`);
      } finally {
        await page.screenshot({ path: file, fullPage: true }).catch(() => {});
        saved.push(file);
        await context.close();
      }
    }
  } finally {
    await browser.close();
  }
  for (const file of saved) console.log(`screenshot: ${file}`);
  console.log(`${Object.keys(scenarios).length - failed} passed, ${failed} failed; screenshots in ${screenshots}`);
  process.exit(failed === 0 ? 0 : 1);
}
