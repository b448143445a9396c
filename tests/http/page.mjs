// page.mjs — elm-httpd's chat page in a real browser: Debian's chromium, headless, driven by
// playwright-core (pinned in package-lock.json; it downloads no browser of its own).
// tests/integration/test_httpd_chat.c runs
//   node page.mjs NPM_DIR URL MODEL MESSAGE EXPECTED_FILE SCREENSHOT
// It opens URL/, checks the model picker lists MODEL, sets temperature 0 and 32 tokens, types
// MESSAGE, waits for the streamed reply and checks its text equals EXPECTED_FILE (the API's
// greedy answer to the same request), saves a screenshot, then sends another message and
// presses Stop while it streams. Any script error or console error on the page fails it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [npmDir, url, model, message, expectedFile, screenshot] = process.argv.slice(2);
const require = createRequire(join(npmDir, 'package.json'));
const { chromium } = require('playwright-core');
const expected = readFileSync(expectedFile, 'utf8');

function check(what, got, want) {
  if (got !== want) {
    console.log(`FAIL ${what}:\n  got:  ${JSON.stringify(got)}\n  want: ${JSON.stringify(want)}`);
    process.exitCode = 1;
    throw new Error(what);
  }
  console.log(`ok ${what}`);
}

const profile = mkdtempSync(join(tmpdir(), 'elm-page-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  chromiumSandbox: false,
  args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  viewport: { width: 900, height: 640 },
});
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });

  await page.goto(`${url}/`);
  await page.waitForSelector('#model option', { state: 'attached' });
  check('model picker', (await page.$$eval('#model option', (o) => o.map((x) => x.value))).join(','),
    model);
  await page.fill('#temp', '0');
  await page.fill('#max', '32');
  await page.fill('#msg', message);
  await page.click('#send');
  const idle = () => document.body.dataset.state === 'idle' &&
    document.querySelector('.turn.assistant, .turn.error') !== null;
  await page.waitForFunction(idle);
  check('reply is not an error', await page.locator('.turn.error').count(), 0);
  check('user turn', await page.textContent('.turn.user'), message);
  check('streamed reply equals the API\'s', await page.textContent('.turn.assistant'), expected);
  await page.screenshot({ path: screenshot });
  console.log(`ok screenshot ${screenshot}`);

  // Stop: a long reply, stopped once it has begun (or already over: stop does nothing then)
  await page.fill('#temp', '0.8');
  await page.fill('#max', '2000');
  await page.fill('#msg', 'Tell me a long story.');
  await page.click('#send');
  await page.waitForFunction(() => {
    const replies = document.querySelectorAll('.turn.assistant, .turn.error');
    return replies.length === 2 &&
      (replies[1].textContent.length > 0 || document.body.dataset.state === 'idle');
  });
  await page.click('#stop', { force: true });
  await page.waitForFunction(() => document.body.dataset.state === 'idle');
  const errors = await page.$$eval('.turn.error', (e) => e.map((x) => x.textContent).join('\n'));
  check('stopped reply is kept, not an error', errors, '');
  check('page problems', problems.join('\n'), '');
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
