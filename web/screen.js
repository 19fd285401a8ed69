// SPDX-License-Identifier: MIT
/* The screen page (/): shows a QR code and a user code, waits for the phone with held requests
 * (POST /web/screen/wait, Prefer: wait=25), renews the code when it expires and goes to /home
 * once the phone approved. */
'use strict';

(function () {
  const { api, sleep, announce } = window.QRL;
  const $ = (id) => document.getElementById(id);
  const VIEWS = ['busy', 'qr-view', 'confirm-view', 'declined-view'];
  const NAME_KEY = 'qrl_screen_name';

  let gen = 0; // bumps with every new login request; older loops stop when it moves on
  let ctrl = null; // AbortController of the held request in flight
  let deadline = 0; // Date.now() at which the current code expires
  let userCode = '';
  let state = 'none'; // none | starting | pending | scanned | denied | approved
  let customName = '';
  try { customName = localStorage.getItem(NAME_KEY) || ''; } catch (e) { customName = ''; }

  /* Trouble worth seeing on the screen (server unreachable, a refused name); also announced. */
  function problem(text) {
    $('problem').textContent = text;
    if (text) announce(text);
  }

  function show(view) {
    for (const v of VIEWS) $(v).hidden = v !== view;
  }

  function fmt(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    const m = Math.floor(s / 60);
    return m + ':' + String(s % 60).padStart(2, '0');
  }

  function updateCountdown() {
    if (state !== 'pending' && state !== 'scanned') return;
    const left = deadline - Date.now();
    if (left > 0) {
      $('countdown').textContent = 'New code in ' + fmt(left);
    } else {
      $('countdown').textContent = 'Getting a new code\u2026';
      // The server says "expired" through the held request; this is only the fallback
      // for a held request that got lost on the way.
      if (left < -5000) start();
    }
  }

  function render(d) {
    userCode = d.user_code;
    deadline = Date.now() + (Number(d.expires_in) || 120) * 1000;
    let where = d.verification_uri || location.origin + '/device';
    try {
      const u = new URL(where);
      where = u.host + u.pathname;
    } catch (e) { /* keep it as given */ }
    $('verify-host').textContent = where;
    $('user-code').textContent = d.user_code;
    $('confirm-code').textContent = d.user_code;
    const img = $('qr');
    img.alt = 'QR code to sign in on this screen. Without a camera, open ' +
      (d.verification_uri || where) + ' on your phone and enter the code ' + d.user_code + '.';
    img.src = d.qr;
    $('device-name').textContent = '\u201c' + (d.device_name || 'This screen') + '\u201d';
    $('device-line').hidden = false;
    state = 'pending';
    show('qr-view');
    updateCountdown();
  }

  async function start() {
    const my = ++gen;
    if (ctrl) ctrl.abort();
    ctrl = null;
    const renewing = state === 'pending' || state === 'scanned';
    state = 'starting';
    if (!renewing) show('busy');
    let backoff = 1000;
    for (;;) {
      let res = null;
      try {
        res = await api('POST', '/web/screen/start', customName ? { device_name: customName } : {});
      } catch (e) {
        res = null;
      }
      if (my !== gen) return;
      if (res && res.ok) {
        if (!/name/.test($('problem').textContent)) problem('');
        render(res.data);
        announce(renewing ? 'A new code is shown.' : '');
        break;
      }
      if (res && res.status === 400 && customName) {
        // The name was refused (too long, not text): fall back to the default name.
        customName = '';
        try { localStorage.removeItem(NAME_KEY); } catch (e) { /* ignore */ }
        problem('That name cannot be used. The screen keeps its usual name.');
        continue;
      }
      problem(res ? QRL.message(res) : 'The server cannot be reached. Trying again\u2026');
      await sleep(res && res.retryAfter ? res.retryAfter * 1000 : backoff);
      backoff = Math.min(backoff * 2, 15000);
      if (my !== gen) return;
    }
    waitLoop(my);
  }

  async function waitLoop(my) {
    let backoff = 1000;
    let offline = false;
    while (my === gen) {
      ctrl = new AbortController();
      const began = Date.now();
      const before = state;
      let res;
      try {
        res = await api('POST', '/web/screen/wait', {}, { wait: 25, signal: ctrl.signal });
      } catch (e) {
        if (my !== gen) return;
        offline = true;
        problem('The server cannot be reached. Trying again\u2026');
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 10000);
        continue;
      }
      if (my !== gen) return;
      backoff = 1000;
      if (offline) {
        offline = false;
        problem('');
      }
      if (res.ok) {
        const st = res.data.state;
        if (typeof res.data.expires_in === 'number') deadline = Date.now() + res.data.expires_in * 1000;
        if (st === 'approved') {
          state = 'approved';
          announce('Signed in.');
          location.assign('/home');
          return;
        }
        if (st === 'denied') {
          state = 'denied';
          show('declined-view');
          announce('Sign-in was declined on the phone.');
          $('new-code').focus();
          return;
        }
        if (st === 'expired') {
          start();
          return;
        }
        if (st === 'scanned' && state !== 'scanned') {
          state = 'scanned';
          show('confirm-view');
          announce('Confirm on your phone. Pick the code ' + userCode + '.');
        } else if (st === 'pending' && state !== 'pending') {
          state = 'pending';
          show('qr-view');
        }
        updateCountdown();
        // A server that answers at once without a change: do not spin.
        if (state === before && Date.now() - began < 500) await sleep(1000);
        continue;
      }
      if (res.status === 429 || res.status >= 500) {
        await sleep(res.retryAfter ? res.retryAfter * 1000 : 2000);
        continue;
      }
      // No login request for this screen any more (cookie gone, request removed): a new one.
      start();
      return;
    }
  }

  function openRename() {
    $('rename-input').value = customName || ($('device-name').textContent || '').replace(/[\u201c\u201d]/g, '');
    $('rename-form').hidden = false;
    $('rename').setAttribute('aria-expanded', 'true');
    $('rename-input').focus();
    $('rename-input').select();
  }
  function closeRename() {
    $('rename-form').hidden = true;
    $('rename').setAttribute('aria-expanded', 'false');
    $('rename').focus();
  }

  async function init() {
    $('rename').setAttribute('aria-expanded', 'false');
    $('rename').setAttribute('aria-controls', 'rename-form');
    $('rename').addEventListener('click', () => ($('rename-form').hidden ? openRename() : closeRename()));
    $('rename-cancel').addEventListener('click', closeRename);
    $('rename-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = $('rename-input').value.trim();
      if (!v) {
        $('rename-input').focus();
        return;
      }
      customName = v;
      try { localStorage.setItem(NAME_KEY, v); } catch (e) { /* ignore */ }
      $('rename-form').hidden = true;
      $('rename').setAttribute('aria-expanded', 'false');
      state = 'none';
      start();
    });
    $('new-code').addEventListener('click', () => { state = 'none'; start(); });
    $('restart-scanned').addEventListener('click', () => { state = 'none'; start(); });
    setInterval(updateCountdown, 1000);

    // Already signed in on this screen (back button, a second tab): go to the app.
    try {
      const me = await api('GET', '/web/screen/me');
      if (me.ok) {
        location.replace('/home');
        return;
      }
    } catch (e) { /* start() reports an unreachable server */ }
    start();
  }

  init();
})();
