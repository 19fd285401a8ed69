// SPDX-License-Identifier: MIT
// Browser tests of the qrlogin web pages: a headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) plays a TV (1920x1080) and a phone (360x780, touch, mobile UA)
// against a real `qrlogin serve` built with test hooks.
//
// Run through run.sh, which installs the pinned dependencies and sets QRLOGIN_BIN.
// QRL_SCREENSHOTS=1 writes the screenshots into docs/screenshots/, QRL_SCREENSHOT_DIR=DIR into
// DIR (otherwise a temp dir, removed at the end).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:net';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';

import { chromium } from 'playwright-core';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const BIN = process.env.QRLOGIN_BIN;
const CHROMIUM = process.env.QRL_CHROMIUM || '/usr/bin/chromium';
const STARTUP_TIMEOUT_MS = 15_000;
const PUSH_BUDGET_MS = 1_500; // from the phone's answer to what the TV shows

const USERS = {
  alice: { password: 'alice pass phrase 1', display: 'Alice' },
  bob: { password: 'bob pass phrase 2', display: 'Bob' },
  carol: { password: 'carol pass phrase 3', display: 'Carol' },
  dave: { password: 'dave pass phrase 4', display: 'Dave' },
};

const TV_UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
const PHONE_UA =
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) ' +
  'Chrome/131.0.0.0 Mobile Safari/537.36';
const TV_OPTS = { viewport: { width: 1920, height: 1080 }, userAgent: TV_UA, locale: 'en-GB' };
const LAPTOP_OPTS = { viewport: { width: 1366, height: 768 }, userAgent: TV_UA, locale: 'en-GB' };
const PHONE_OPTS = {
  viewport: { width: 360, height: 780 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  userAgent: PHONE_UA,
  locale: 'en-GB',
};

let tmp;
let server;
let serverExit;
let serverLog = '';
let port;
let base; // http://localhost:PORT
let browser;
let shotDir;
let evil; // the other origin's HTTP server
let evilBase;
let evilHtml = '<!doctype html><title>other site</title>';
const pageProblems = []; // CSP violations and script errors seen in any of our pages

function log(prefix, chunk) {
  serverLog += String(chunk)
    .split('\n')
    .filter((l) => l.length)
    .map((l) => `${prefix}${l}\n`)
    .join('');
}

function runCli(args, input) {
  const r = spawnSync(BIN, args, { input, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  assert.equal(r.status, 0, `qrlogin ${args.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

// The country database (tests/geoip): named by ctest, else installed here.
function geoipDb() {
  if (process.env.QRL_GEOIP_DB) return process.env.QRL_GEOIP_DB;
  const r = spawnSync(join(REPO, 'tests', 'geoip', 'install.sh'), { encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, `tests/geoip/install.sh failed\n${r.stderr}`);
  return r.stdout.trim();
}

function startServer(db) {
  // Behind a "proxy" on 127.0.0.1: a page that sends X-Forwarded-For is where it says it is,
  // and the others are this machine, which has no country.
  server = spawn(
    BIN,
    ['serve', '--db', db, '--listen', `127.0.0.1:${port}`, '--public-url', `http://localhost:${port}`,
      '--geoip', geoipDb(), '--trusted-proxy', '127.0.0.1/32'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  serverExit = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));
  server.stderr.on('data', (c) => log('[serve stderr] ', c));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "listening on" line within ${STARTUP_TIMEOUT_MS} ms\n${serverLog}`)),
      STARTUP_TIMEOUT_MS,
    );
    createInterface({ input: server.stdout }).on('line', (line) => {
      log('[serve stdout] ', line);
      if (/listening on/.test(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
    server.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    serverExit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`qrlogin serve exited early (code ${code}, signal ${signal})\n${serverLog}`));
    });
  });
}

before(async () => {
  assert.ok(BIN, 'QRLOGIN_BIN must name the qrlogin binary (run through tests/browser/run.sh)');
  tmp = mkdtempSync(join(tmpdir(), 'qrl-browser-'));
  const db = join(tmp, 'qrlogin.db');
  for (const [name, u] of Object.entries(USERS)) {
    runCli(['account', 'add', name, '--display-name', u.display, '--password-stdin', '--db', db], `${u.password}\n`);
  }
  port = await freePort();
  base = `http://localhost:${port}`;
  await startServer(db);

  shotDir = process.env.QRL_SCREENSHOT_DIR ||
    (process.env.QRL_SCREENSHOTS === '1' ? join(REPO, 'docs', 'screenshots') : join(tmp, 'screenshots'));
  mkdirSync(shotDir, { recursive: true });

  evil = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(evilHtml);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  evilBase = `http://127.0.0.1:${evil.address().port}`;

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (evil) evil.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    const t = setTimeout(() => server.kill('SIGKILL'), 10_000);
    await serverExit;
    clearTimeout(t);
  }
  // The server's and the pages' log of the last run, for a failure's post-mortem.
  writeFileSync(join(tmpdir(), 'qrl-browser-last.log'), serverLog);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// ---------- helpers ----------

function watchPage(page, who) {
  page.on('pageerror', (e) => {
    log(`[${who} pageerror] `, e.message);
    pageProblems.push(`${who} ${page.url()}: ${e.message}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
      pageProblems.push(`${who} ${page.url()}: ${m.text()}`);
    }
  });
}

async function shot(page, name, opts) {
  await page.evaluate(() => document.fonts && document.fonts.ready);
  await page.screenshot({ path: join(shotDir, `${name}.png`), ...opts });
}

async function tvPage(opts) {
  const ctx = await browser.newContext({ ...TV_OPTS, ...opts });
  const page = await ctx.newPage();
  watchPage(page, 'tv');
  await page.goto(`${base}/`);
  await waitQr(page);
  return page;
}

async function waitQr(page) {
  await page.locator('#qr-view').waitFor({ state: 'visible', timeout: 10_000 });
  await page.waitForFunction(() => {
    const i = document.getElementById('qr');
    return i && i.complete && i.naturalWidth > 0;
  });
}

async function phonePage(opts) {
  const ctx = await browser.newContext({ ...PHONE_OPTS, ...opts });
  const page = await ctx.newPage();
  watchPage(page, 'phone');
  return page;
}

async function userCode(tv) {
  return (await tv.locator('#user-code').textContent()).trim();
}

// Screenshots the QR code as the TV shows it and decodes it like a phone camera would.
async function decodeQr(tv) {
  const buf = await tv.locator('.qr-box').screenshot();
  const png = PNG.sync.read(buf);
  const data = new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length);
  const qr = jsQR(data, png.width, png.height);
  assert.ok(qr, 'the QR code on the TV page could not be decoded');
  return qr.data;
}

async function signInPhone(page, user) {
  await page.locator('#signin-username').fill(user);
  await page.locator('#signin-password').fill(USERS[user].password);
  await page.locator('#signin-submit').click();
  await page.locator('#signin-form').waitFor({ state: 'detached' });
}

// The phone opens the scanned link; signs in when it shows the sign-in form.
async function phoneOpens(phone, url, user) {
  await phone.goto(url);
  await phone.locator('#signin-form:visible, #request:visible, #done:visible').first().waitFor();
  if (await phone.locator('#signin-form').isVisible()) await signInPhone(phone, user);
  await phone.locator('#request:visible, #done:visible').first().waitFor();
  if (await phone.locator('#done').isVisible()) {
    assert.fail(`the phone shows "${await phone.locator('#done').innerText()}" instead of the request`);
  }
}

async function pickCode(phone, code) {
  await phone.locator('#choices button', { hasText: code }).click();
  await phone.locator('#confirm').waitFor({ state: 'visible' });
}

async function approveWithPassword(phone, user) {
  await phone.locator('#stepup-password').fill(USERS[user].password);
  const [resp] = await Promise.all([
    phone.waitForResponse((r) => r.url().endsWith('/web/lr/approve')),
    phone.locator('#approve').click(),
  ]);
  return resp;
}

// Signs a fresh TV in for `user` through the whole flow; returns {tv, phone}.
async function linkTv(user, phone, name) {
  const tv = await tvPage();
  if (name) await renameTv(tv, name);
  const url = await decodeQr(tv);
  const code = await userCode(tv);
  await phoneOpens(phone, url, user);
  await pickCode(phone, code);
  const resp = await approveWithPassword(phone, user);
  assert.equal(resp.status(), 200);
  await tv.waitForURL(`${base}/home`, { timeout: PUSH_BUDGET_MS * 2 });
  await tv.getByText(`Welcome back, ${USERS[user].display}`).waitFor();
  return tv;
}

async function renameTv(tv, name) {
  const before = await userCode(tv);
  await tv.locator('#rename').click();
  await tv.locator('#rename-input').fill(name);
  await tv.locator('#rename-save').click();
  await tv.waitForFunction((old) => {
    const c = document.getElementById('user-code').textContent.trim();
    return c && c !== old && !document.getElementById('qr-view').hidden;
  }, before);
  await waitQr(tv);
  assert.equal(await tv.locator('#device-name').textContent(), `\u201c${name}\u201d`);
}

async function clockAdvance(ms) {
  const r = await fetch(`${base}/_test/clock`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ advance_ms: ms }),
  });
  assert.equal(r.status, 200, `/_test/clock answered ${r.status}`);
}

// fetch() from inside a page of our origin, with or without the CSRF header.
function pagePost(page, path, body, { csrf = true, token } = {}) {
  return page.evaluate(
    async ({ path, body, csrf, token }) => {
      const headers = { 'Content-Type': 'application/json' };
      if (csrf) headers['X-CSRF-Token'] = token !== undefined ? token : window.QRL.csrf();
      const r = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) });
      let data = null;
      try {
        data = await r.json();
      } catch (e) {
        data = null;
      }
      return { status: r.status, data };
    },
    { path, body, csrf, token },
  );
}

async function stillWaiting(tv, ms = 1000) {
  await tv.waitForTimeout(ms);
  assert.equal(new URL(tv.url()).pathname, '/', 'the TV left the QR page');
  assert.equal(await tv.locator('#declined-view').isVisible(), false, 'the TV shows "declined"');
}

function b64urlDecode(s) {
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}
function b64urlEncode(b) {
  return Buffer.from(b).toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function addVirtualAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

// ---------- scenarios ----------

test('approve: the phone scans the TV, checks the code, approves with the password; the TV is signed in at once', { timeout: 90_000 }, async () => {
  const tv = await tvPage();
  // The QR code is big on a TV: at least 40 % of the screen height.
  const box = await tv.locator('#qr').boundingBox();
  assert.ok(box.height >= 1080 * 0.4, `QR is ${box.height}px high`);
  await renameTv(tv, 'Living Room TV');
  await shot(tv, 'tv-qr');

  const code = await userCode(tv);
  assert.match(code, /^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
  assert.match(await tv.locator('#countdown').textContent(), /^New code in [0-2]:[0-5]\d$/);
  const alt = await tv.locator('#qr').getAttribute('alt');
  assert.ok(alt.includes(code) && alt.includes(`localhost:${port}/device`), `alt text: ${alt}`);
  assert.match(await tv.locator('.or-line').textContent(), new RegExp(`Or go to localhost:${port}/device and enter`));

  const url = await decodeQr(tv);
  assert.match(url, new RegExp(`^http://localhost:${port}/s#qrl_ss_[A-Za-z0-9_-]+$`));

  const phone = await phonePage();
  await phone.goto(url);
  await phone.locator('#signin-form').waitFor({ state: 'visible' });
  await shot(phone, 'phone-signin');
  await signInPhone(phone, 'alice');
  await phone.locator('#request').waitFor({ state: 'visible' });
  assert.equal(await phone.evaluate(() => location.hash), '', 'the scan secret stays in the address bar');
  const q = await phone.locator('#question').textContent();
  assert.equal(q, 'Sign in on \u201cLiving Room TV\u201d?');
  // The kind and the platform the TV's browser reported, whatever the TV was named.
  assert.equal((await phone.locator('#fact-kind').textContent()).trim(), 'Web browser \u00b7 Chrome on Linux');
  assert.match(await phone.locator('#fact-from').textContent(), /^Requested from .+, \d+ seconds? ago$/);
  assert.match(await phone.locator('#grant').textContent(), /Living Room TV.* will stay signed in to your account until you remove it\./);
  assert.equal(await phone.locator('#warning').isVisible(), false, 'no warning on the same network');
  const choices = await phone.locator('#choices button').allTextContents();
  assert.equal(choices.length, 3);
  assert.ok(choices.includes(code), `the choices ${choices} hold the TV's code ${code}`);
  await shot(phone, 'phone-question', { fullPage: true });

  // The TV noticed the phone.
  await tv.locator('#confirm-view').waitFor({ state: 'visible', timeout: PUSH_BUDGET_MS });
  assert.equal((await tv.locator('#confirm-code').textContent()).trim(), code);
  await shot(tv, 'tv-confirm-on-phone');

  await pickCode(phone, code);
  await shot(phone, 'phone-step-up', { fullPage: true });
  const resp = await approveWithPassword(phone, 'alice');
  const t0 = Date.now();
  assert.equal(resp.status(), 200);
  await tv.waitForURL(`${base}/home`, { timeout: PUSH_BUDGET_MS });
  await tv.getByText('Welcome back, Alice').waitFor({ timeout: Math.max(1, PUSH_BUDGET_MS - (Date.now() - t0)) });
  await phone.locator('#done').waitFor({ state: 'visible' });
  assert.equal(
    await phone.locator('#done-title').textContent(),
    '\u201cLiving Room TV\u201d is signed in.',
  );
  assert.match(await phone.locator('#done-text').textContent(), /You can remove it any time under Devices\./);
  assert.match(await tv.locator('#this-device').textContent(), /Living Room TV/);
  await shot(phone, 'phone-approved');
  await shot(tv, 'tv-home');

  // Cookies: every session cookie is HttpOnly and SameSite=Strict; only qrl_csrf is readable.
  for (const ctx of [tv.context(), phone.context()]) {
    for (const c of await ctx.cookies()) {
      assert.equal(c.sameSite, 'Strict', `${c.name} SameSite`);
      assert.equal(c.httpOnly, c.name !== 'qrl_csrf', `${c.name} HttpOnly`);
    }
  }
  await tv.context().close();
  await phone.context().close();
});

test('deny: the TV says the sign-in was declined and offers a new code', { timeout: 60_000 }, async () => {
  const tv = await tvPage();
  const code = await userCode(tv);
  const url = await decodeQr(tv);
  const phone = await phonePage();
  await phoneOpens(phone, url, 'alice');
  // By keyboard: Tab to the Deny button, press Enter.
  let reached = false;
  for (let i = 0; i < 25 && !reached; i++) {
    await phone.keyboard.press('Tab');
    reached = await phone.evaluate(() => document.activeElement && document.activeElement.id === 'deny-early');
  }
  assert.ok(reached, 'Deny is reachable with Tab');
  const [resp] = await Promise.all([
    phone.waitForResponse((r) => r.url().endsWith('/web/lr/deny')),
    phone.keyboard.press('Enter'),
  ]);
  assert.equal(resp.status(), 200);
  await phone.locator('#done').waitFor({ state: 'visible' });
  assert.equal(await phone.locator('#done-title').textContent(), 'Declined');
  await shot(phone, 'phone-declined');

  await tv.getByRole('heading', { name: 'Sign-in was declined on the phone' }).waitFor({ timeout: PUSH_BUDGET_MS });
  await shot(tv, 'tv-declined');
  await tv.getByRole('button', { name: 'Show a new code' }).click();
  await waitQr(tv);
  const code2 = await userCode(tv);
  assert.notEqual(code2, code, 'a new code');
  assert.notEqual(await decodeQr(tv), url, 'a new QR code');
  await tv.context().close();
  await phone.context().close();
});

test('expiry: the TV shows a new code by itself, without a reload', { timeout: 60_000 }, async () => {
  const tv = await tvPage();
  const code = await userCode(tv);
  const url = await decodeQr(tv);
  await tv.evaluate(() => {
    window.__sameDocument = true;
  });
  // The TV holds one request at a time; it does not poll.
  let waits = 0;
  const countWaits = (r) => {
    if (r.url().endsWith('/web/screen/wait')) {
      waits++;
      assert.equal(r.headers()['prefer'], 'wait=25');
    }
  };
  tv.on('request', countWaits);
  await tv.waitForTimeout(3000);
  tv.off('request', countWaits);
  assert.ok(waits <= 1, `${waits} wait requests in 3 s while nothing happened`);
  await clockAdvance(130_000);
  await tv.waitForFunction(
    (old) => {
      const c = document.getElementById('user-code').textContent.trim();
      return c && c !== old && !document.getElementById('qr-view').hidden;
    },
    code,
    { timeout: 10_000 },
  );
  await waitQr(tv);
  assert.equal(await tv.evaluate(() => window.__sameDocument), true, 'the page was reloaded');
  const url2 = await decodeQr(tv);
  assert.notEqual(url2, url);
  assert.match(await tv.locator('#countdown').textContent(), /^New code in [12]:\d\d$/);

  // The old link is dead for a phone.
  const phone = await phonePage();
  await phone.goto(url);
  await signInPhone(phone, 'alice');
  await phone.locator('#done').waitFor({ state: 'visible' });
  assert.match(await phone.locator('#done').innerText(), /expired|not valid/);
  await shot(phone, 'phone-expired');
  await tv.context().close();
  await phone.context().close();
});

test('wrong code: the phone refuses and says so; nothing is approved, the TV still waits', { timeout: 60_000 }, async () => {
  const tv = await tvPage();
  const code = await userCode(tv);
  const url = await decodeQr(tv);
  const phone = await phonePage();
  await phoneOpens(phone, url, 'alice');
  const choices = await phone.locator('#choices button').allTextContents();
  const wrong = choices.find((c) => c !== code);
  assert.ok(wrong);
  await pickCode(phone, wrong);
  const resp = await approveWithPassword(phone, 'alice');
  assert.equal(resp.status(), 400);
  assert.equal((await resp.json()).error, 'user_code_mismatch');
  await phone.locator('#request-error', { hasText: 'That is not the code on the TV. Nothing was approved.' }).waitFor();
  assert.equal(await phone.locator('#choices').isVisible(), true, 'the choice is offered again');
  await shot(phone, 'phone-wrong-code', { fullPage: true });
  await stillWaiting(tv);
  await tv.context().close();
  await phone.context().close();
});

test('passkey: register on /account, approve a TV with it; a replayed or re-originated assertion is refused; once removed, the password is asked again', { timeout: 90_000 }, async () => {
  const phone = await phonePage();
  await addVirtualAuthenticator(phone);
  await phone.goto(`${base}/account`);
  await signInPhone(phone, 'bob');
  await phone.locator('#account').waitFor({ state: 'visible' });
  await phone.locator('#add-passkey').click();
  await phone.locator('#add-password').fill(USERS.bob.password);
  const [reg] = await Promise.all([
    phone.waitForResponse((r) => r.url().endsWith('/web/passkeys') && r.request().method() === 'POST'),
    phone.locator('#add-submit').click(),
  ]);
  assert.equal(reg.status(), 201, `POST /web/passkeys: ${await reg.text()}`);
  await phone.locator('#passkeys li[data-passkey-id]').first().waitFor();
  await shot(phone, 'phone-account', { fullPage: true });

  // Approve a TV with the passkey: no password is asked.
  const tv = await tvPage();
  const code = await userCode(tv);
  await phoneOpens(phone, await decodeQr(tv), 'bob');
  await pickCode(phone, code);
  assert.equal(await phone.locator('#stepup-password').isVisible(), false, 'no password with a passkey');
  assert.equal(await phone.locator('#passkey-hint').isVisible(), true);
  await shot(phone, 'phone-step-up-passkey', { fullPage: true });
  let captured;
  await phone.route('**/web/lr/approve', async (route) => {
    captured = JSON.parse(route.request().postData());
    await route.continue();
  });
  const [resp] = await Promise.all([
    phone.waitForResponse((r) => r.url().endsWith('/web/lr/approve')),
    phone.locator('#approve').click(),
  ]);
  const t0 = Date.now();
  assert.equal(resp.status(), 200, `approve with passkey: ${await resp.text()}`);
  assert.ok(captured && captured.passkey && captured.passkey.signature && !captured.password);
  await tv.waitForURL(`${base}/home`, { timeout: PUSH_BUDGET_MS });
  await tv.getByText('Welcome back, Bob').waitFor({ timeout: Math.max(1, PUSH_BUDGET_MS - (Date.now() - t0)) });
  await phone.unroute('**/web/lr/approve');

  // Replayed on the same request: refused.
  const again = await pagePost(phone, '/web/lr/approve', captured);
  assert.ok(again.status >= 400, `replay on the decided request answered ${again.status}`);

  // Replayed onto a new request (the same user code checks out, the challenge does not).
  const tv2 = await tvPage();
  const code2 = await userCode(tv2);
  const url2 = await decodeQr(tv2);
  const ss2 = url2.slice(url2.indexOf('#') + 1);
  await phoneOpens(phone, url2, 'bob');
  const replay = await pagePost(phone, '/web/lr/approve', { ...captured, code: ss2, user_code: code2 });
  assert.equal(replay.status, 403, `replayed assertion: ${JSON.stringify(replay)}`);
  assert.equal(replay.data && replay.data.error, 'passkey_failed');

  // A fresh assertion for this request, but its clientDataJSON names another origin.
  const forged = await phone.evaluate(async (code) => {
    const o = await window.QRL.api('POST', '/web/webauthn/options', { purpose: 'approve', code });
    if (!o.ok) return { options: o.status };
    const d = o.data;
    const cred = await navigator.credentials.get({
      publicKey: {
        challenge: window.QRL.b64urlToBuf(d.challenge),
        rpId: d.rpId,
        userVerification: 'required',
        allowCredentials: d.allowCredentials.map((c) => ({ type: 'public-key', id: window.QRL.b64urlToBuf(c.id) })),
      },
    });
    const b = window.QRL.bufToB64url;
    return {
      id: b(cred.rawId),
      clientDataJSON: b(cred.response.clientDataJSON),
      authenticatorData: b(cred.response.authenticatorData),
      signature: b(cred.response.signature),
    };
  }, ss2);
  assert.ok(forged.clientDataJSON, `assertion: ${JSON.stringify(forged)}`);
  const cd = JSON.parse(b64urlDecode(forged.clientDataJSON).toString('utf8'));
  assert.equal(cd.origin, base);
  cd.origin = 'https://login.example.net';
  const wrongOrigin = await pagePost(phone, '/web/lr/approve', {
    code: ss2,
    user_code: code2,
    passkey: { ...forged, clientDataJSON: b64urlEncode(Buffer.from(JSON.stringify(cd))) },
  });
  assert.equal(wrongOrigin.status, 403, `assertion for another origin: ${JSON.stringify(wrongOrigin)}`);
  await stillWaiting(tv2, 500);

  // Removing the passkey on /account: approvals ask for the password again.
  await phone.goto(`${base}/account`);
  const pkRow = phone.locator('li.row[data-passkey-id]').first();
  await pkRow.waitFor();
  await pkRow.getByRole('button', { name: /Remove passkey/ }).click();
  const confirmDlg = phone.locator('dialog#confirm');
  await confirmDlg.waitFor({ state: 'visible' });
  const [del] = await Promise.all([
    phone.waitForResponse((r) => r.url().includes('/web/passkeys/') && r.request().method() === 'DELETE'),
    confirmDlg.locator('#confirm-ok').click(),
  ]);
  assert.equal(del.status(), 204);
  await phone.locator('li.row[data-passkey-id]').waitFor({ state: 'detached' });
  const session = await pagePost(phone, '/web/lr/view', { code: ss2 });
  assert.equal(session.status, 200);
  assert.equal(session.data.passkey, false, 'without a passkey the approval asks for the password');
  await tv.context().close();
  await tv2.context().close();
  await phone.context().close();
});

test('revoke: removing the TV on /devices puts it back on the QR page at once', { timeout: 90_000 }, async () => {
  const phone = await phonePage();
  await phone.goto(`${base}/devices`);
  await phone.locator('#signin-form').waitFor({ state: 'visible' });
  await signInPhone(phone, 'carol');
  const tv = await linkTv('carol', phone, 'Bedroom TV');

  await phone.goto(`${base}/devices`);
  const row = phone.locator('li.row', { hasText: 'Bedroom TV' });
  await row.waitFor();
  assert.match(await row.textContent(), /Last seen/);
  assert.match(await phone.locator('li.row.current').textContent(), /This device/);
  await shot(phone, 'phone-devices', { fullPage: true });
  await row.getByRole('button', { name: /Remove/ }).click();
  const dialog = phone.locator('dialog#confirm');
  await dialog.waitFor({ state: 'visible' });
  assert.equal(await dialog.locator('h2').textContent(), 'Remove \u201cBedroom TV\u201d?');
  await shot(phone, 'phone-remove-dialog');
  const [del] = await Promise.all([
    phone.waitForResponse((r) => /\/web\/devices\/\d+$/.test(r.url()) && r.request().method() === 'DELETE'),
    dialog.getByRole('button', { name: 'Remove' }).click(),
  ]);
  const t0 = Date.now();
  assert.equal(del.status(), 204);
  await tv.waitForURL(`${base}/`, { timeout: PUSH_BUDGET_MS });
  await tv.locator('#qr-view').waitFor({ state: 'visible', timeout: Math.max(1, PUSH_BUDGET_MS + 1000 - (Date.now() - t0)) });
  await phone.locator('li.row', { hasText: 'Bedroom TV' }).waitFor({ state: 'detached' });
  await tv.context().close();
  await phone.context().close();
});

test('new device: /devices shows a banner when the account links a TV elsewhere; Remove it signs the TV out at once', { timeout: 90_000 }, async () => {
  // Phone A has /devices open; phone B links a TV for the same account.
  const phone = await phonePage();
  await phone.goto(`${base}/devices`);
  await phone.locator('#signin-form').waitFor({ state: 'visible' });
  await signInPhone(phone, 'carol');
  await phone.locator('#devices li.row').first().waitFor();
  assert.equal(await phone.locator('#new-devices .new-device').count(), 0);
  const other = await phonePage();
  const tv = await linkTv('carol', other, 'Guest Room TV');

  // The banner appears on phone A without a reload, naming the TV as the server recorded it.
  const banner = phone.locator('#new-devices .new-device', { hasText: 'Guest Room TV' });
  await banner.waitFor({ timeout: 5000 });
  const text = (await banner.textContent()).replace(/\s+/g, ' ');
  assert.match(text, /New device linked/);
  assert.match(text, /\u201cGuest Room TV\u201d, Chrome on Linux, just now\. Not you\?/);
  assert.match(text, /linked from 127\.0\.0\.1/);
  // The list below shows it as well.
  await phone.locator('li.row', { hasText: 'Guest Room TV' }).waitFor({ timeout: 5000 });
  await shot(phone, 'phone-new-device-banner', { fullPage: true });
  // The phone that approved it hears of it too (on /account).
  await other.goto(`${base}/account`);
  await other.locator('#new-devices .new-device', { hasText: 'Guest Room TV' }).waitFor({ timeout: 5000 });

  // The one-tap removal follows the CSRF rules of every /web/ POST.
  const noticeId = await banner.getAttribute('data-notice-id');
  for (const opts of [{ csrf: false }, { token: 'x'.repeat(43) }]) {
    const refused = await pagePost(phone, `/web/notifications/${noticeId}/revoke`, {}, opts);
    assert.equal(refused.status, 403);
    assert.equal(refused.data && refused.data.error, 'csrf_failed');
  }

  // Remove it: the confirmation names the device; the TV is back on its QR page at once.
  await banner.getByRole('button', { name: /Remove it/ }).click();
  const dialog = phone.locator('dialog#confirm');
  await dialog.waitFor({ state: 'visible' });
  assert.equal(await dialog.locator('h2').textContent(), 'Remove \u201cGuest Room TV\u201d?');
  const [rev] = await Promise.all([
    phone.waitForResponse((r) => /\/web\/notifications\/\d+\/revoke$/.test(r.url())),
    dialog.getByRole('button', { name: 'Remove' }).click(),
  ]);
  const t0 = Date.now();
  assert.equal(rev.status(), 204);
  await tv.waitForURL(`${base}/`, { timeout: PUSH_BUDGET_MS });
  await tv.locator('#qr-view').waitFor({ state: 'visible', timeout: Math.max(1, PUSH_BUDGET_MS + 1000 - (Date.now() - t0)) });
  await banner.waitFor({ state: 'detached' });
  await phone.locator('li.row', { hasText: 'Guest Room TV' }).waitFor({ state: 'detached' });
  assert.match(await phone.locator('#new-devices-said').textContent(), /\u201cGuest Room TV\u201d was removed and is signed out\./);
  await shot(phone, 'phone-new-device-removed', { fullPage: true });

  // Dismiss: a second TV's banner goes away on this phone and stays away after a reload.
  const tv2 = await linkTv('carol', other, 'Attic TV');
  const banner2 = phone.locator('#new-devices .new-device', { hasText: 'Attic TV' });
  await banner2.waitFor({ timeout: 5000 });
  await Promise.all([
    phone.waitForResponse((r) => /\/web\/notifications\/\d+\/ack$/.test(r.url()) && r.status() === 204),
    banner2.getByRole('button', { name: /Dismiss/ }).click(),
  ]);
  await banner2.waitFor({ state: 'detached' });
  await phone.reload();
  await phone.locator('li.row', { hasText: 'Attic TV' }).waitFor();
  assert.equal(await phone.locator('#new-devices .new-device').count(), 0);
  await tv2.context().close();
  await tv.context().close();
  await other.context().close();
  await phone.context().close();
});

// A JSON request to the server from this process, as a phone app or a screen would make it,
// from `from` (X-Forwarded-For: the server trusts 127.0.0.1 as its proxy).
async function apiCall(method, path, { body, form, bearer, from } = {}) {
  const headers = { Accept: 'application/json' };
  if (from) headers['X-Forwarded-For'] = from;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let payload;
  if (form) {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    payload = new URLSearchParams(form).toString();
  } else if (body) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const r = await fetch(`${base}${path}`, { method, headers, body: payload });
  const text = await r.text();
  return { status: r.status, data: text ? JSON.parse(text) : null };
}

test('request blocked: the account\'s pages say a sign-in request was stopped as phishing, in plain words, with Dismiss only', { timeout: 90_000 }, async () => {
  // Dave has /devices open on one phone and /account on another (for axe-core) ...
  const phone = await phonePage();
  await phone.goto(`${base}/devices`);
  await phone.locator('#signin-form').waitFor({ state: 'visible' });
  await signInPhone(phone, 'dave');
  await phone.locator('#devices li.row').first().waitFor();
  const axeCtx = await browser.newContext({ ...PHONE_OPTS, bypassCSP: true });
  const phoneAxe = await axeCtx.newPage();
  await phoneAxe.goto(`${base}/account`);
  await phoneAxe.locator('#signin-form').waitFor({ state: 'visible' });
  await signInPhone(phoneAxe, 'dave');
  await phoneAxe.locator('#account').waitFor({ state: 'visible' });
  // ... and a phone app of his opens a code from Brazil that four networks opened: a phishing
  // kit's code sent to many people. The fourth opening is refused.
  const sess = await apiCall('POST', '/v1/sessions',
    { body: { username: 'dave', password: USERS.dave.password, device_name: 'Dave\'s Pixel' } });
  assert.equal(sess.status, 201, JSON.stringify(sess.data));
  const da = await apiCall('POST', '/oauth/device_authorization', {
    from: '200.160.2.3',
    form: { client_id: 'tv-app', device_name: 'Living Room TV', device_kind: 'tv', device_platform: 'Samsung Tizen' },
  });
  assert.equal(da.status, 200);
  const ss = da.data.verification_uri_complete.slice(da.data.verification_uri_complete.indexOf('#') + 1);
  for (const from of ['192.0.2.10', '198.18.0.10', '193.99.144.80']) {
    const v = await apiCall('GET', `/v1/login-requests/${ss}`, { bearer: sess.data.session_token, from });
    assert.equal(v.status, 200, JSON.stringify(v.data));
  }
  const refused = await apiCall('GET', `/v1/login-requests/${ss}`, { bearer: sess.data.session_token, from: '100.64.0.10' });
  assert.equal(refused.status, 403);
  assert.equal(refused.data.reason, 'many_networks');

  // The banner appears without a reload: which screen, from where, when, why, what to do.
  const banner = phone.locator('#new-devices .new-device.request-blocked');
  await banner.waitFor({ timeout: 5000 });
  const text = (await banner.textContent()).replace(/\s+/g, ' ');
  assert.match(text, /Sign-in request stopped/);
  assert.match(text, /We stopped a sign-in request that \u201cDave's Pixel\u201d was about to approve: \u201cLiving Room TV\u201d, from Brazil, just now\./);
  assert.match(text, /It looked like a phishing attempt \(the code was opened from many places\)\. If someone asked you to scan a code, do not\. Nothing was linked to your account\./);
  assert.match(text, /TV \u00b7 Samsung Tizen \u00b7 200\.160\.2\.3/);
  // Nothing to remove: Dismiss is the only action.
  assert.equal(await banner.getByRole('button').count(), 1);
  assert.equal(await banner.getByRole('link').count(), 0);
  assert.equal(await banner.getByRole('button', { name: /Dismiss/ }).count(), 1);
  // The devices list did not change.
  assert.equal(await phone.locator('li.row', { hasText: 'Living Room TV' }).count(), 0);
  await shot(phone, 'phone-request-blocked', { fullPage: true });
  await phoneAxe.locator('#new-devices .new-device.request-blocked').waitFor({ timeout: 5000 });
  await axeCheck(phoneAxe, 'phone /account with a stopped request');

  // Dismiss: gone on this phone, also after a reload; still there on the other.
  await Promise.all([
    phone.waitForResponse((r) => /\/web\/notifications\/\d+\/ack$/.test(r.url()) && r.status() === 204),
    banner.getByRole('button', { name: /Dismiss/ }).click(),
  ]);
  await banner.waitFor({ state: 'detached' });
  await phone.reload();
  await phone.locator('#devices li.row').first().waitFor();
  await phone.waitForTimeout(500);
  assert.equal(await phone.locator('#new-devices .new-device').count(), 0);
  await phoneAxe.reload();
  await phoneAxe.locator('#new-devices .new-device.request-blocked').waitFor({ timeout: 5000 });
  // The phone app that was stopped lists it as its own.
  const list = await apiCall('GET', '/v1/notifications', { bearer: sess.data.session_token });
  assert.equal(list.status, 200);
  assert.equal(list.data.notifications[0].kind, 'request_blocked');
  assert.equal(list.data.notifications[0].device.current, true);
  await axeCtx.close();
  await phone.context().close();
});

test('cross-origin and token-less POSTs are refused with 403 and change nothing', { timeout: 90_000 }, async () => {
  const tv = await tvPage();
  const code = await userCode(tv);
  const url = await decodeQr(tv);
  const ss = url.slice(url.indexOf('#') + 1);
  const phone = await phonePage();
  await phoneOpens(phone, url, 'alice');

  // 1. Another site submits a form to /web/lr/deny in the phone's browser.
  const payloadName = JSON.stringify({ code: ss, pad: '' }).slice(0, -2);
  evilHtml = `<!doctype html><title>other site</title>
<form id="f" method="POST" action="${base}/web/lr/deny" enctype="text/plain"><input type="hidden" name='${payloadName}' value='"}'></form>
<script>document.getElementById('f').submit()</script>`;
  const other = await phone.context().newPage();
  const [formResp] = await Promise.all([
    other.waitForResponse((r) => r.url() === `${base}/web/lr/deny`),
    other.goto(`${evilBase}/form`),
  ]);
  assert.equal(formResp.status(), 403, 'cross-site form POST');

  // 2. ... and a no-cors fetch (a simple request: no preflight, cookies would go along).
  evilHtml = '<!doctype html><title>other site</title>';
  await other.goto(`${evilBase}/fetch`);
  const [fetchResp] = await Promise.all([
    other.waitForResponse((r) => r.url() === `${base}/web/lr/deny`),
    other.evaluate(
      ({ target, ss }) =>
        fetch(target, {
          method: 'POST',
          mode: 'no-cors',
          credentials: 'include',
          headers: { 'Content-Type': 'text/plain' },
          body: JSON.stringify({ code: ss }),
        }).catch(() => null),
      { target: `${base}/web/lr/deny`, ss },
    ),
  ]);
  assert.equal(fetchResp.status(), 403, 'cross-site no-cors fetch');

  // 3. A CORS fetch with the JSON type and a header needs a preflight, which is never granted.
  const corsOutcome = await other.evaluate(
    ({ target, ss }) =>
      fetch(target, {
        method: 'POST',
        credentials: 'include',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': 'guess' },
        body: JSON.stringify({ code: ss }),
      }).then(
        (r) => `answered ${r.status}`,
        () => 'blocked',
      ),
    { target: `${base}/web/lr/deny`, ss },
  );
  assert.equal(corsOutcome, 'blocked');
  await other.close();

  // 4. Our own origin without the CSRF header, or with a wrong one.
  const noToken = await pagePost(phone, '/web/lr/deny', { code: ss }, { csrf: false });
  assert.equal(noToken.status, 403);
  assert.equal(noToken.data && noToken.data.error, 'csrf_failed');
  const badToken = await pagePost(phone, '/web/lr/deny', { code: ss }, { token: 'x'.repeat(43) });
  assert.equal(badToken.status, 403);

  // 5. The right cookie and token but another Origin, or none (not a browser): refused.
  const cookies = await phone.context().cookies(base);
  const cookieHeader = cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  const csrf = cookies.find((c) => c.name === 'qrl_csrf').value;
  for (const origin of [evilBase, null]) {
    const status = await rawPost('/web/lr/deny', JSON.stringify({ code: ss }), {
      'Content-Type': 'application/json',
      'X-CSRF-Token': csrf,
      Cookie: cookieHeader,
      ...(origin ? { Origin: origin } : {}),
    });
    assert.equal(status, 403, `Origin ${origin}`);
  }

  // Nothing changed: the TV still waits for this phone, which can still approve.
  await stillWaiting(tv, 300);
  await tv.locator('#confirm-view').waitFor({ state: 'visible' });
  await pickCode(phone, code);
  const resp = await approveWithPassword(phone, 'alice');
  assert.equal(resp.status(), 200);
  await tv.waitForURL(`${base}/home`, { timeout: PUSH_BUDGET_MS });
  await tv.context().close();
  await phone.context().close();
});

function rawPost(path, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', headers: { Host: `localhost:${port}`, ...headers } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('headers: every page has a strict CSP and the privacy headers; the cookies are strict', { timeout: 30_000 }, async () => {
  const check = (path, h, page) => {
    const csp = h.get('content-security-policy') || '';
    if (page) {
      assert.ok(csp, `${path}: no CSP`);
      assert.ok(!csp.includes('unsafe-inline'), `${path}: CSP allows unsafe-inline: ${csp}`);
      assert.ok(!csp.includes('unsafe-eval'), `${path}: CSP allows unsafe-eval: ${csp}`);
      assert.match(csp, /frame-ancestors 'none'/, `${path}: ${csp}`);
      assert.match(csp, /script-src 'self'/, `${path}: ${csp}`);
      assert.match(csp, /default-src 'none'/, `${path}: ${csp}`);
    }
    assert.equal(h.get('referrer-policy'), 'no-referrer', `${path}: Referrer-Policy`);
    assert.equal(h.get('x-content-type-options'), 'nosniff', `${path}: X-Content-Type-Options`);
    // Pages and API answers are never stored; static files may be kept if revalidated.
    assert.match(h.get('cache-control') || '', page === false ? /no-store|no-cache/ : /no-store/, `${path}: Cache-Control`);
  };
  let csrf;
  for (const path of ['/', '/home', '/s', '/device', '/devices', '/account']) {
    const r = await fetch(`${base}${path}`);
    assert.equal(r.status, 200, path);
    assert.match(r.headers.get('content-type'), /^text\/html/, path);
    check(path, r.headers, true);
    const set = r.headers.getSetCookie().find((c) => c.startsWith('qrl_csrf='));
    assert.ok(set, `${path} sets qrl_csrf`);
    assert.match(set, /SameSite=Strict/i);
    assert.doesNotMatch(set, /HttpOnly/i, 'the pages read qrl_csrf');
    assert.match(set, /Path=\//);
    csrf = set.split(';')[0].slice('qrl_csrf='.length);
    const html = await r.text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, `${path}: inline script`);
    assert.doesNotMatch(html, /\sstyle=|\son[a-z]+=/i, `${path}: inline style or handler`);
  }
  for (const path of ['/static/app.css', '/static/common.js', '/static/screen.js']) {
    const r = await fetch(`${base}${path}`);
    assert.equal(r.status, 200, path);
    check(path, r.headers, false);
  }
  const r401 = await fetch(`${base}/web/session`);
  assert.equal(r401.status, 401);
  check('/web/session', r401.headers, null);

  // The phone's session cookie, as set by the server.
  const signIn = await fetch(`${base}/web/session`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-CSRF-Token': csrf,
      Cookie: `qrl_csrf=${csrf}`,
      Origin: base,
    },
    body: JSON.stringify({ username: 'alice', password: USERS.alice.password }),
  });
  assert.equal(signIn.status, 200);
  const cookies = signIn.headers.getSetCookie();
  const ps = cookies.find((c) => c.startsWith('qrl_ps='));
  assert.ok(ps, `session cookie in ${cookies}`);
  assert.match(ps, /HttpOnly/i);
  assert.match(ps, /SameSite=Strict/i);
});

async function axeCheck(page, label) {
  await page.addScriptTag({ content: AXE_SOURCE });
  const result = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ['violations'] }),
  );
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(
    bad.map((v) => `${label}: ${v.id} (${v.impact}): ${v.help} -> ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`),
    [],
  );
  // Nothing wider than the viewport: no sideways scrolling on a 360 px phone.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${label}: the page is ${overflow} px wider than the viewport`);
}

// Nothing below ~24 px on the TV layout.
async function tvTextSizes(page, label) {
  const small = await page.evaluate(() => {
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const n = walker.currentNode;
      if (!n.textContent.trim()) continue;
      const el = n.parentElement;
      if (!el || !el.getClientRects().length || el.closest('.visually-hidden,[hidden]')) continue;
      const px = parseFloat(getComputedStyle(el).fontSize);
      if (px < 23.5) out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className}: ${px}px "${n.textContent.trim().slice(0, 30)}"`);
    }
    return out;
  });
  assert.deepEqual(small, [], `${label}: text below 24 px`);
}

test('accessibility (axe-core): no serious or critical violations on any page, TV and phone', { timeout: 120_000 }, async () => {
  const tvCtx = await browser.newContext({ ...TV_OPTS, bypassCSP: true });
  const phoneCtx = await browser.newContext({ ...PHONE_OPTS, bypassCSP: true });
  const tv = await tvCtx.newPage();
  const phone = await phoneCtx.newPage();

  await tv.goto(`${base}/`);
  await waitQr(tv);
  await axeCheck(tv, 'TV /');
  await tvTextSizes(tv, 'TV /');

  for (const path of ['/device', '/devices', '/account']) {
    await phone.goto(`${base}${path}`);
    await phone.locator('#signin-form').waitFor({ state: 'visible' });
    await axeCheck(phone, `phone ${path} signed out`);
  }
  await signInPhone(phone, 'alice');
  await phone.locator('#account').waitFor({ state: 'visible' });
  await axeCheck(phone, 'phone /account');

  await phone.goto(`${base}/device`);
  await phone.locator('#enter').waitFor({ state: 'visible' });
  await axeCheck(phone, 'phone /device');
  const code = await userCode(tv);
  await phone.locator('#enter-code').fill(code.toLowerCase().replace('-', ''));
  await phone.locator('#enter-submit').click();
  await phone.locator('#request').waitFor({ state: 'visible' });
  // Typed code: no choice to make, the step-up comes at once.
  await phone.locator('#confirm').waitFor({ state: 'visible' });
  assert.equal(await phone.locator('#picked-code').textContent(), code);
  await axeCheck(phone, 'phone /device request');
  await tv.locator('#confirm-view').waitFor({ state: 'visible' });
  await axeCheck(tv, 'TV / confirm');
  await tvTextSizes(tv, 'TV / confirm');
  const resp = await approveWithPassword(phone, 'alice');
  assert.equal(resp.status(), 200);
  await phone.locator('#done').waitFor({ state: 'visible' });
  await axeCheck(phone, 'phone approved');
  await tv.waitForURL(`${base}/home`, { timeout: PUSH_BUDGET_MS });
  await tv.getByText('Welcome back, Alice').waitFor();
  await axeCheck(tv, 'TV /home');
  await tvTextSizes(tv, 'TV /home');

  await phone.goto(`${base}/devices`);
  await phone.locator('li.row').first().waitFor();
  await axeCheck(phone, 'phone /devices');

  // The pages in the other viewport too.
  const tvPhone = await phoneCtx.newPage();
  await tvPhone.goto(`${base}/`);
  await waitQr(tvPhone);
  await axeCheck(tvPhone, 'phone-sized /');
  await shot(tvPhone, 'phone-sized-screen-page');
  const phoneWide = await tvCtx.newPage();
  for (const path of ['/devices', '/account', '/device']) {
    await phoneWide.goto(`${base}${path}`);
    await phoneWide.locator('#signin-form').waitFor({ state: 'visible' });
    await axeCheck(phoneWide, `TV-sized ${path}`);
  }
  await tvCtx.close();
  await phoneCtx.close();
});

test('countries: the phone says where the request comes from and where it is, and warns when they differ', { timeout: 60_000 }, async () => {
  // Addresses from the test database: Brazil's registry, a German publisher, a German carrier.
  const tv = await tvPage({ extraHTTPHeaders: { 'X-Forwarded-For': '200.160.2.3' } });
  const url = await decodeQr(tv);
  const phone = await phonePage({ extraHTTPHeaders: { 'X-Forwarded-For': '193.99.144.80' } });
  await phoneOpens(phone, url, 'alice');
  const fact = phone.locator('#fact-country');
  assert.equal((await fact.textContent()).trim(), 'This request comes from Brazil, you are in Germany');
  const warning = phone.locator('#warning');
  assert.equal(await warning.isVisible(), true);
  assert.equal((await phone.locator('#warning-heading').textContent()).trim(), 'Request from another country');
  assert.match(
    await phone.locator('#warning-text').textContent(),
    /^This request comes from Brazil, but you are in Germany\. If you are not in front of the screen that asks, someone else is trying to get into your account: press Deny\.$/,
  );
  await shot(phone, 'phone-other-country', { fullPage: true });
  const [resp] = await Promise.all([
    phone.waitForResponse((r) => r.url().endsWith('/web/lr/deny')),
    phone.locator('#deny-early').click(),
  ]);
  assert.equal(resp.status(), 200);
  await tv.getByRole('heading', { name: 'Sign-in was declined on the phone' }).waitFor({ timeout: PUSH_BUDGET_MS });
  await tv.context().close();

  // One country, two networks: the country line is good news, the network warning stays.
  const tv2 = await tvPage({ extraHTTPHeaders: { 'X-Forwarded-For': '2003:de::1' } });
  const phone2 = await phone.context().newPage();
  watchPage(phone2, 'phone');
  await phoneOpens(phone2, await decodeQr(tv2), 'alice');
  const fact2 = phone2.locator('#fact-country');
  assert.equal((await fact2.textContent()).trim(), 'This request comes from Germany, you are in Germany');
  assert.equal(await fact2.getAttribute('class'), 'ok-fact');
  assert.equal((await phone2.locator('#warning-heading').textContent()).trim(), 'Different network');
  assert.equal(await phone2.locator('#warning').isVisible(), true);
  await tv2.context().close();

  // This machine has no country: the page says what it said before there were countries.
  const tv3 = await tvPage();
  const phone3 = await phone.context().newPage();
  watchPage(phone3, 'phone');
  await phoneOpens(phone3, await decodeQr(tv3), 'alice');
  assert.equal(await phone3.locator('#fact-country').isVisible(), false);
  assert.equal((await phone3.locator('#warning-heading').textContent()).trim(), 'Different network');
  await tv3.context().close();
  await phone.context().close();
});

// A screen's key, as a TV app with a DPoP key names it (RFC 9449 dpop_jkt): its RFC 7638
// thumbprint, and what the phone shows for it ("3F7A-91C2": the first 4 bytes in hex).
function screenKey() {
  const { publicKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  const h = createHash('sha256').update(`{"crv":"Ed25519","kty":"OKP","x":"${jwk.x}"}`).digest();
  const hex = h.subarray(0, 4).toString('hex').toUpperCase();
  return { jkt: h.toString('base64url'), words: `${hex.slice(0, 4)}-${hex.slice(4)}` };
}

// A TV app's login request bound to `key` (null: none), from this process.
async function keyedRequest(key) {
  const form = { client_id: 'tv-app', device_name: 'Living Room TV', device_kind: 'tv', device_platform: 'Samsung Tizen' };
  if (key) form.dpop_jkt = key.jkt;
  const da = await apiCall('POST', '/oauth/device_authorization', { form });
  assert.equal(da.status, 200, JSON.stringify(da.data));
  return da.data;
}

test('screen key: the approval names the TV\'s key when the QR code matches it, and refuses a QR code that names another', { timeout: 90_000 }, async () => {
  const key = screenKey();
  const da = await keyedRequest(key);
  const link = da.verification_uri_complete;
  assert.ok(link.startsWith(`${base}/s?k=${key.jkt.slice(0, 8)}#qrl_ss_`), link);

  // The QR code matches the request's key: the key line says so, approving goes as ever.
  const phone = await phonePage();
  await phoneOpens(phone, link, 'carol');
  const fact = phone.locator('#fact-key');
  assert.equal(await fact.isVisible(), true);
  assert.equal((await fact.textContent()).trim(),
    `The sign-in goes only to this TV\u2019s key ${key.words} \u2014 it matches the code you scanned`);
  assert.equal(await fact.getAttribute('class'), 'ok-fact');
  assert.equal(await phone.locator('#key-mismatch').isVisible(), false);
  // The short form left the address bar with the secret.
  assert.equal(new URL(phone.url()).search, '');
  await shot(phone, 'phone-key-match', { fullPage: true, scale: 'css' });
  await pickCode(phone, da.user_code);
  const resp = await approveWithPassword(phone, 'carol');
  assert.equal(resp.status(), 200);
  await phone.locator('#done.ok').waitFor();
  // Only the key redeems it: a token request without a proof is refused, nothing spent.
  const grant = { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: da.device_code, client_id: 'tv-app' };
  const tok = await apiCall('POST', '/oauth/token', { form: grant });
  assert.equal(tok.status, 400);
  assert.equal(tok.data.error, 'invalid_dpop_proof');

  // The same request's code typed by hand: nothing to compare, the key is named all the same.
  const typedKey = screenKey();
  const typedReq = await keyedRequest(typedKey);
  const typedPage = await phone.context().newPage();
  watchPage(typedPage, 'phone');
  await typedPage.goto(`${base}/device`);
  await typedPage.locator('#enter').waitFor({ state: 'visible' });
  await typedPage.locator('#enter-code').fill(typedReq.user_code);
  await typedPage.locator('#enter-submit').click();
  await typedPage.locator('#request').waitFor({ state: 'visible' });
  assert.equal((await typedPage.locator('#fact-key').textContent()).trim(),
    `The sign-in goes only to this TV\u2019s key ${typedKey.words}`);
  await typedPage.close();

  // A QR code that pairs a request with another key's short form: a strong warning, no codes
  // to pick, no Approve button; Deny ends it.
  const other = screenKey();
  const forged = (await keyedRequest(key)).verification_uri_complete.replace(/\?k=[^#]*/, `?k=${other.jkt.slice(0, 8)}`);
  const axeCtx = await browser.newContext({ ...PHONE_OPTS, bypassCSP: true });
  const bad = await axeCtx.newPage();
  await phoneOpens(bad, forged, 'carol');
  const box = bad.locator('#key-mismatch');
  assert.equal(await box.isVisible(), true);
  assert.match((await box.textContent()).replace(/\s+/g, ' '),
    new RegExp(`Do not approve: this code was not made by that screen The QR code you scanned names another key than the one this sign-in would go to \\(${key.words}\\)\\. So the code was not made by the screen that asked`));
  assert.equal(await bad.locator('#approve').isVisible(), false);
  assert.equal(await bad.locator('#choices button:visible').count(), 0);
  assert.equal(await bad.locator('#fact-key').isVisible(), false);
  assert.equal(await bad.getByRole('button', { name: 'Deny this sign-in' }).isVisible(), true);
  await shot(bad, 'phone-key-mismatch', { fullPage: true, scale: 'css' });
  await axeCheck(bad, 'phone approval of a QR code naming another key');
  const [deny] = await Promise.all([
    bad.waitForResponse((r) => r.url().endsWith('/web/lr/deny')),
    bad.getByRole('button', { name: 'Deny this sign-in' }).click(),
  ]);
  assert.equal(deny.status(), 200);
  await bad.getByRole('heading', { name: 'Declined' }).waitFor();

  // A short form on the code of a request bound to no key is no better.
  const plain = await keyedRequest(null);
  assert.ok(plain.verification_uri_complete.startsWith(`${base}/s#qrl_ss_`));
  const bad2 = await axeCtx.newPage();
  await phoneOpens(bad2, plain.verification_uri_complete.replace('/s#', `/s?k=${key.jkt.slice(0, 8)}#`), 'carol');
  assert.equal(await bad2.locator('#key-mismatch').isVisible(), true);
  assert.match(await bad2.locator('#key-mismatch-text').textContent(), /names a key, but this sign-in is not bound to any/);
  assert.equal(await bad2.locator('#approve').isVisible(), false);
  // Without a short form, a request bound to no key shows no key line at all.
  const bad3 = await axeCtx.newPage();
  await phoneOpens(bad3, (await keyedRequest(null)).verification_uri_complete, 'carol');
  assert.equal(await bad3.locator('#fact-key').isVisible(), false);
  assert.equal(await bad3.locator('#key-mismatch').isVisible(), false);
  assert.equal(await bad3.locator('#choices button').count(), 3);
  await axeCtx.close();
  await phone.context().close();
});

test('the different-network warning and the laptop layout (screenshots)', { timeout: 60_000 }, async () => {
  const laptopCtx = await browser.newContext(LAPTOP_OPTS);
  const laptop = await laptopCtx.newPage();
  watchPage(laptop, 'laptop');
  await laptop.goto(`${base}/`);
  await waitQr(laptop);
  await shot(laptop, 'laptop-qr');
  const url = await decodeQr(laptop);
  const code = await userCode(laptop);

  // The server only reports what it observed; the warning is what the page makes of
  // same_network: false (both browsers here share 127.0.0.1, so the answer is altered).
  const phone = await phonePage();
  await phone.route('**/web/lr/view', async (route) => {
    const r = await route.fetch();
    const body = await r.json();
    body.same_network = false;
    body.address = '198.51.100.23';
    await route.fulfill({ response: r, json: body });
  });
  await phoneOpens(phone, url, 'alice');
  const warning = phone.locator('#warning');
  assert.equal(await warning.isVisible(), true);
  assert.match(await warning.textContent(), /different network than your phone\. If you did not start it yourself, press Deny\./);
  await shot(phone, 'phone-warning', { fullPage: true });
  await pickCode(phone, code);
  await phone.locator('#deny').click();
  await phone.locator('#done').waitFor({ state: 'visible' });
  await laptop.getByRole('heading', { name: 'Sign-in was declined on the phone' }).waitFor({ timeout: PUSH_BUDGET_MS });
  await laptopCtx.close();
  await phone.context().close();
});

test('no page broke its Content-Security-Policy or threw a script error', () => {
  assert.deepEqual(pageProblems, []);
});
