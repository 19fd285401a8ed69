// SPDX-License-Identifier: MIT
// Interop test: an unmodified openid-client v6 (the screen) runs the RFC 8628 device flow
// against a real `qrlogin serve`, while this test plays the phone through the /v1 JSON API.
//
// Run through run.sh, which installs the pinned dependencies and sets QRLOGIN_BIN.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import {
  discovery,
  None,
  allowInsecureRequests,
  customFetch,
  initiateDeviceAuthorization,
  pollDeviceAuthorizationGrant,
  refreshTokenGrant,
  ResponseBodyError,
} from 'openid-client';

const BIN = process.env.QRLOGIN_BIN;
const CLIENT_ID = 'tv-app';
const USERNAME = 'alice';
const PASSWORD = 'correct horse battery staple';
const INTROSPECTION_SECRET = 'interop-introspection-secret-0123456789';
const STARTUP_TIMEOUT_MS = 15_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;
const POLL_SETTLE_MS = 30_000;

let tmp;
let server;
let serverExit; // Promise<{code, signal}>
let serverLog = '';
let issuer; // "http://127.0.0.1:PORT", from the server's own startup line
let failed = false;

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
  assert.equal(
    r.status,
    0,
    `qrlogin ${args.join(' ')} exited ${r.status} (signal ${r.signal})\n` +
      `stdout: ${r.stdout}\nstderr: ${r.stderr}`,
  );
  return r;
}

// Starts `qrlogin serve` and resolves with the URL from its "listening on" line.
function startServer(db) {
  server = spawn(
    BIN,
    ['serve', '--listen', '127.0.0.1:0', '--db', db, '--introspection-secret', INTROSPECTION_SECRET],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  serverExit = new Promise((resolve) => {
    server.on('exit', (code, signal) => resolve({ code, signal }));
  });
  server.stderr.on('data', (c) => log('[serve stderr] ', c));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "listening on" line within ${STARTUP_TIMEOUT_MS} ms\n${serverLog}`)),
      STARTUP_TIMEOUT_MS,
    );
    const lines = createInterface({ input: server.stdout });
    lines.on('line', (line) => {
      log('[serve stdout] ', line);
      const m = /^qrlogin: listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/.exec(line);
      if (m && Number(m[2]) > 0) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    serverExit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`qrlogin serve exited early (code ${code}, signal ${signal})\n${serverLog}`));
    });
  });
}

// The phone: plain fetch against the JSON API.
async function phone(method, path, { token, body } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(new URL(path, issuer), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

function expectStatus(r, status, what) {
  assert.equal(r.status, status, `${what}: HTTP ${r.status} ${r.text}`);
}

async function phoneSignIn() {
  const r = await phone('POST', '/v1/sessions', {
    body: { username: USERNAME, password: PASSWORD, device_name: 'Interop phone' },
  });
  expectStatus(r, 201, 'POST /v1/sessions');
  assert.match(r.json.session_token, /^qrl_st_/);
  return r.json.session_token;
}

// The scan secret travels in the fragment of verification_uri_complete (the QR code's URL).
function scanSecret(da) {
  assert.equal(typeof da.verification_uri_complete, 'string', 'verification_uri_complete missing');
  const secret = new URL(da.verification_uri_complete).hash.slice(1);
  assert.match(secret, /^qrl_ss_[A-Za-z0-9_-]+$/, `scan secret in ${da.verification_uri_complete}`);
  return secret;
}

// Records every token-endpoint exchange the client makes, without changing what it sends.
function recordTokenExchanges(config) {
  const tokenEndpoint = config.serverMetadata().token_endpoint;
  const seen = [];
  config[customFetch] = async (url, options) => {
    const res = await fetch(url, options);
    if (url === tokenEndpoint) {
      const body = await res.clone().json().catch(() => undefined);
      seen.push({
        status: res.status,
        error: body?.error,
        cacheControl: res.headers.get('cache-control'),
        at: Date.now(),
      });
    }
    return res;
  };
  return seen;
}

async function newConfig() {
  // Exactly how a TV app would set up the unmodified client: RFC 8414 discovery, public client.
  return discovery(new URL(issuer), CLIENT_ID, undefined, None(), {
    algorithm: 'oauth2',
    execute: [allowInsecureRequests],
  });
}

async function introspect(token) {
  const res = await fetch(new URL('/oauth/introspect', issuer), {
    method: 'POST',
    headers: {
      authorization: `Bearer ${INTROSPECTION_SECRET}`,
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    },
    body: new URLSearchParams({ token }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `POST /oauth/introspect: HTTP ${res.status} ${text}`);
  return JSON.parse(text);
}

// Runs `fn` with a polling client started; makes sure the poll loop never outlives the test.
async function withPoll(config, da, fn) {
  const abort = new AbortController();
  const poll = pollDeviceAuthorizationGrant(config, da, undefined, { signal: abort.signal });
  const settled = poll.then(
    (value) => ({ ok: true, value }),
    (error) => ({ ok: false, error }),
  );
  let guard;
  try {
    await fn();
    // After the phone's decision the next poll (at most one interval later) must settle it.
    guard = setTimeout(
      () => abort.abort(new Error(`the poll did not settle within ${POLL_SETTLE_MS} ms of the phone's decision`)),
      POLL_SETTLE_MS,
    );
    return await settled;
  } finally {
    clearTimeout(guard);
    abort.abort();
  }
}

function describe(err) {
  let text = String(err?.stack ?? err);
  for (let c = err?.cause, depth = 0; c && depth < 3; c = c.cause, depth++) {
    text += `\ncaused by: ${c instanceof Error ? c.message : JSON.stringify(c)}`;
  }
  return text;
}

function tracked(fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (err) {
      failed = true;
      throw err;
    }
  };
}

before(async () => {
  assert.ok(BIN, 'QRLOGIN_BIN is not set (run tests/interop/run.sh PATH-TO-qrlogin)');
  tmp = mkdtempSync(join(tmpdir(), 'qrlogin-interop-'));
  const db = join(tmp, 'qrlogin.db');
  runCli(['account', 'add', USERNAME, '--db', db, '--password-stdin'], `${PASSWORD}\n`);
  try {
    issuer = await startServer(db);
  } catch (err) {
    failed = true;
    throw err;
  }
});

after(async () => {
  try {
    if (server && server.exitCode === null && server.signalCode === null) {
      server.kill('SIGTERM');
      let timer;
      const timeout = new Promise((r) => {
        timer = setTimeout(() => r('timeout'), SHUTDOWN_TIMEOUT_MS);
      });
      const exit = await Promise.race([serverExit, timeout]);
      clearTimeout(timer);
      if (exit === 'timeout') {
        server.kill('SIGKILL');
        await serverExit;
        failed = true;
        assert.fail(`qrlogin serve did not exit within ${SHUTDOWN_TIMEOUT_MS} ms of SIGTERM`);
      }
      if (!(exit.code === 0 || (exit.code === null && exit.signal === 'SIGTERM'))) {
        failed = true;
        assert.fail(`qrlogin serve ended with code ${exit.code}, signal ${exit.signal} on SIGTERM`);
      }
    } else if (server) {
      const exit = await serverExit;
      failed = true;
      assert.fail(`qrlogin serve died during the test (code ${exit.code}, signal ${exit.signal})`);
    }
  } finally {
    if (failed && serverLog) process.stderr.write(`--- qrlogin serve output ---\n${serverLog}`);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
});

test(
  'device flow: phone approves, client redeems, refreshes, token introspects',
  { timeout: 90_000 },
  tracked(async () => {
    const config = await newConfig();
    const meta = config.serverMetadata();
    assert.equal(new URL(meta.issuer).href, new URL(issuer).href);
    assert.ok(meta.device_authorization_endpoint, 'metadata lacks device_authorization_endpoint');
    // The server takes DPoP proofs (RFC 9449), and a client that sends none, as openid-client
    // without a DPoP key does, keeps bearer tokens (qrlogin serve's default, --dpop optional).
    assert.deepEqual(meta.dpop_signing_alg_values_supported, ['EdDSA']);
    const exchanges = recordTokenExchanges(config);

    const da = await initiateDeviceAuthorization(config, { scope: 'profile' });
    assert.match(da.device_code, /^qrl_dc_/);
    assert.match(da.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    assert.equal(da.interval, 5);
    assert.ok(da.expires_in > 0);
    const secret = scanSecret(da);

    const result = await withPoll(config, da, async () => {
      const session = await phoneSignIn();
      const path = `/v1/login-requests/${encodeURIComponent(secret)}`;

      const view = await phone('GET', path, { token: session });
      expectStatus(view, 200, `GET ${path.slice(0, 30)}...`);
      assert.equal(view.json.state, 'scanned');
      assert.equal(view.json.user_code, da.user_code);
      assert.equal(view.json.client_id, CLIENT_ID);
      assert.equal(view.json.scope, 'profile');

      const ok = await phone('POST', `${path}/approve`, {
        token: session,
        body: { user_code: da.user_code, password: PASSWORD },
      });
      expectStatus(ok, 200, 'POST .../approve');
      assert.equal(ok.json.state, 'approved');
    });
    if (!result.ok) throw result.error;
    const tokens = result.value;

    assert.match(tokens.access_token, /^qrl_at_/);
    assert.equal(tokens.token_type, 'bearer');
    assert.match(tokens.refresh_token, /^qrl_rt_/);
    assert.equal(typeof tokens.expires_in, 'number');
    assert.ok(tokens.expires_in > 0, `expires_in ${tokens.expires_in}`);
    assert.equal(tokens.scope, 'profile');

    // A client that keeps to the interval never sees slow_down (RFC 8628 section 3.5).
    assert.ok(exchanges.length >= 1);
    for (const x of exchanges) {
      assert.notEqual(x.error, 'slow_down', `slow_down seen: ${JSON.stringify(exchanges)}`);
      assert.match(x.cacheControl ?? '', /no-store/, 'token response without Cache-Control: no-store');
    }

    // Refresh with rotation.
    const refreshed = await refreshTokenGrant(config, tokens.refresh_token);
    assert.match(refreshed.access_token, /^qrl_at_/);
    assert.match(refreshed.refresh_token, /^qrl_rt_/);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    assert.notEqual(refreshed.access_token, tokens.access_token);
    assert.equal(refreshed.token_type, 'bearer');
    assert.ok(refreshed.expires_in > 0);

    const info = await introspect(refreshed.access_token);
    assert.equal(info.active, true, JSON.stringify(info));
    assert.equal(info.token_type, 'access_token');
    assert.equal(info.cnf, undefined, 'a bearer token has no key binding');
    assert.equal(info.username, USERNAME);
    assert.equal(info.client_id, CLIENT_ID);
    assert.equal(info.scope, 'profile');

    // Presenting the spent refresh token again is treated as theft: invalid_grant, and the
    // whole device is revoked.
    await assert.rejects(refreshTokenGrant(config, tokens.refresh_token), (err) => {
      assert.ok(err instanceof ResponseBodyError, `not a ResponseBodyError: ${describe(err)}`);
      assert.equal(err.error, 'invalid_grant');
      assert.equal(err.status, 400);
      return true;
    });
    const revoked = await introspect(refreshed.access_token);
    assert.equal(revoked.active, false, JSON.stringify(revoked));
  }),
);

test(
  'device flow: phone declines, client poll rejects with access_denied',
  { timeout: 90_000 },
  tracked(async () => {
    const config = await newConfig();
    const da = await initiateDeviceAuthorization(config, { scope: 'profile' });
    const secret = scanSecret(da);

    const result = await withPoll(config, da, async () => {
      const session = await phoneSignIn();
      const path = `/v1/login-requests/${encodeURIComponent(secret)}`;
      const view = await phone('GET', path, { token: session });
      expectStatus(view, 200, `GET ${path.slice(0, 30)}...`);
      assert.equal(view.json.state, 'scanned');

      const no = await phone('POST', `${path}/deny`, { token: session, body: {} });
      expectStatus(no, 200, 'POST .../deny');
      assert.equal(no.json.state, 'denied');
    });

    assert.equal(result.ok, false, 'the poll resolved with tokens after the user declined');
    const err = result.error;
    assert.ok(err instanceof ResponseBodyError, `not a ResponseBodyError: ${describe(err)}`);
    assert.equal(err.error, 'access_denied');
    assert.equal(err.status, 400);
  }),
);
