// page.mjs — elm-httpd's chat page in a real browser: Debian's chromium, headless, driven by
// playwright-core (pinned in package-lock.json; it downloads no browser of its own).
// tests/integration/test_httpd_chat.c runs
//   node page.mjs NPM_DIR URL MODEL MESSAGE EXPECTED_FILE SCREENSHOT
// It opens URL/, checks the model picker lists MODEL, sets temperature 0 and 32 tokens, types
// MESSAGE, waits for the streamed reply and checks its text equals EXPECTED_FILE (the API's
// greedy answer to the same request), saves a screenshot, then sends another message and
// presses Stop while it streams: the reply stays as far as it got, on the page and in the next
// request's conversation. Any script error or console error on the page fails it.
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
  // every failed request with the network's reason (Stop's is net::ERR_ABORTED), so a failure
  // says which side broke the stream
  page.on('requestfailed', (r) => console.log(`request failed: ${r.method()} ${r.url()} ` +
    `${r.failure() ? r.failure().errorText : ''}`));

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

  // Stop: a long reply, stopped while it streams. The test model writes its ~400 tokens in a
  // fraction of a second, so the page's network is slowed meanwhile (DevTools throttling) to
  // keep the reply in flight when Stop is pressed.
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions',
    { offline: false, latency: 0, downloadThroughput: 16 << 10, uploadThroughput: -1 });
  await page.fill('#max', '2000'); // greedy still: its ~450 tokens run to the context's end
  await page.fill('#msg', 'Tell me a long story.');
  await page.click('#send');
  await page.waitForFunction(() => {
    const replies = document.querySelectorAll('.turn.assistant, .turn.error');
    return replies.length === 2 &&
      (replies[1].textContent.length > 0 || document.body.dataset.state === 'idle');
  });
  // in one step in the page: whether the reply still streams, and the press
  check('Stop pressed while the reply streams', await page.evaluate(() => {
    const streaming = document.body.dataset.state === 'streaming';
    document.getElementById('stop').click();
    return streaming;
  }), true);
  await page.waitForFunction(() => document.body.dataset.state === 'idle');
  await cdp.send('Network.emulateNetworkConditions',
    { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  const errors = await page.$$eval('.turn.error', (e) => e.map((x) => x.textContent).join('\n'));
  check('stopped reply is kept, not an error', errors, '');
  // and it stays in the conversation as far as it got: the next request carries it
  const stopped = await page.$$eval('.turn.assistant', (e) => e[e.length - 1].textContent);
  const next = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions'));
  await page.fill('#max', '4');
  await page.fill('#msg', 'And then?');
  await page.click('#send');
  const sent = JSON.parse((await next).postData()).messages;
  check('stopped reply in the next request', JSON.stringify(sent[sent.length - 2]),
    JSON.stringify({ role: 'assistant', content: stopped }));
  await page.waitForFunction(() => document.body.dataset.state === 'idle');
  check('page problems', problems.join('\n'), '');
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
