// SPDX-License-Identifier: MIT
/* qrlogin pages: shared helpers (no framework). Every page loads this first.
 * Text from the server (device names, user names) only ever goes into the page through
 * textContent / text nodes, never as markup. */
'use strict';

(function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';

  /* The CSRF cookie the server sets with every page; state-changing requests echo it. */
  function csrf() {
    for (const part of document.cookie.split(';')) {
      const i = part.indexOf('=');
      if (i < 0) continue;
      if (part.slice(0, i).trim() === 'qrl_csrf') return decodeURIComponent(part.slice(i + 1).trim());
    }
    return '';
  }

  /* fetch() wrapper: JSON in, JSON out. Resolves {status, ok, data, retryAfter} for every HTTP
   * answer; rejects only when the server cannot be reached (or the request was aborted). */
  async function api(method, path, body, opts) {
    opts = opts || {};
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store', signal: opts.signal };
    if (method !== 'GET' && method !== 'HEAD') {
      headers['Content-Type'] = 'application/json';
      headers['X-CSRF-Token'] = csrf();
      if (method !== 'DELETE') init.body = JSON.stringify(body || {});
    }
    if (opts.wait) headers.Prefer = 'wait=' + opts.wait;
    const res = await fetch(path, init);
    let data = {};
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text) || {}; } catch (e) { data = {}; }
    }
    return {
      status: res.status,
      ok: res.ok,
      data,
      retryAfter: Number(res.headers.get('Retry-After')) || 0,
    };
  }

  /* h('p', {class: 'x', text: 'hello'}, child, 'more text') */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'text') el.textContent = v;
        else if (k === 'class') el.className = v;
        else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
        else if (k === 'hidden') el.hidden = true;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /* A device name in curly quotes, as text. */
  function quoted(name) {
    return h('span', { class: 'quoted' }, '\u201c', name || 'Unnamed device', '\u201d');
  }

  function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

  /* ---- small icons (SVG built node by node) ---- */
  const ICONS = {
    tv: [['rect', { x: 2, y: 4, width: 20, height: 13, rx: 2 }], ['path', { d: 'M8 21h8M12 17v4' }]],
    browser: [['rect', { x: 2, y: 4, width: 20, height: 16, rx: 2 }], ['path', { d: 'M2 9h20M6 6.5h.01M9 6.5h.01' }]],
    desktop: [['rect', { x: 4, y: 4, width: 16, height: 11, rx: 1.5 }], ['path', { d: 'M2 19h20' }]],
    cli: [['rect', { x: 2, y: 4, width: 20, height: 16, rx: 2 }], ['path', { d: 'M6 9l3 3-3 3M12 15h6' }]],
    phone: [['rect', { x: 6, y: 2, width: 12, height: 20, rx: 2.5 }], ['path', { d: 'M11 18h2' }]],
    other: [['circle', { cx: 12, cy: 12, r: 9 }], ['path', { d: 'M12 8v5M12 16h.01' }]],
    check: [['circle', { cx: 12, cy: 12, r: 10 }], ['path', { d: 'M7 12.5l3.2 3.2L17 9' }]],
    cross: [['circle', { cx: 12, cy: 12, r: 10 }], ['path', { d: 'M8.5 8.5l7 7M15.5 8.5l-7 7' }]],
    pin: [['path', { d: 'M12 21s-7-6.2-7-11.5A7 7 0 0 1 19 9.5C19 14.8 12 21 12 21z' }], ['circle', { cx: 12, cy: 9.5, r: 2.5 }]],
    clock: [['circle', { cx: 12, cy: 12, r: 9 }], ['path', { d: 'M12 7v5l3 2' }]],
    wifi: [['path', { d: 'M2 9a15 15 0 0 1 20 0M5.5 12.5a10 10 0 0 1 13 0M9 16a5 5 0 0 1 6 0M12 19.5h.01' }]],
    warn: [['path', { d: 'M12 3L2 20h20L12 3z' }], ['path', { d: 'M12 10v4M12 17h.01' }]],
    key: [['circle', { cx: 8, cy: 15, r: 4 }], ['path', { d: 'M11 12l9-9M17 6l3 3M15 8l2 2' }]],
  };
  function icon(name, cls) {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('fill', 'none');
    svg.setAttribute('stroke', 'currentColor');
    svg.setAttribute('stroke-width', '2');
    svg.setAttribute('stroke-linecap', 'round');
    svg.setAttribute('stroke-linejoin', 'round');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    if (cls) svg.setAttribute('class', cls);
    for (const [tag, attrs] of ICONS[name] || ICONS.other) {
      const e = document.createElementNS(SVG_NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      svg.append(e);
    }
    return svg;
  }

  const KIND_WORDS = {
    tv: 'TV', browser: 'Web browser', desktop: 'Computer', cli: 'Terminal', phone: 'Phone', other: 'Device',
  };
  function kindWord(kind) { return KIND_WORDS[kind] || 'Device'; }

  /* ---- time ---- */
  function ago(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds === 1 ? '1 second ago' : seconds + ' seconds ago';
    const m = Math.round(seconds / 60);
    if (m < 60) return m === 1 ? '1 minute ago' : m + ' minutes ago';
    const hr = Math.round(m / 60);
    if (hr < 48) return hr === 1 ? '1 hour ago' : hr + ' hours ago';
    const d = Math.round(hr / 24);
    return d + ' days ago';
  }
  function date(unixSeconds) {
    if (!unixSeconds) return 'unknown';
    return new Date(unixSeconds * 1000).toLocaleDateString(undefined, {
      year: 'numeric', month: 'short', day: 'numeric',
    });
  }
  function lastSeen(unixSeconds) {
    if (!unixSeconds) return 'never';
    const s = Date.now() / 1000 - unixSeconds;
    if (s < 90) return 'just now';
    return ago(s);
  }

  /* ---- base64url <-> ArrayBuffer (WebAuthn) ---- */
  function b64urlToBuf(s) {
    s = String(s).replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function bufToB64url(buf) {
    const bytes = new Uint8Array(buf);
    let bin = '';
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function passkeysAvailable() {
    return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;
  }

  /* ---- messages for a person, per error code of the API ---- */
  const MESSAGES = {
    csrf_failed: 'This page has been open too long or was opened from elsewhere. Reload the page and try again.',
    invalid_credentials: 'The username or password is not right. Check them and try again.',
    rate_limited: 'Too many tries in a short time. Wait a minute, then try again.',
    unauthorized: 'You are signed out. Sign in and try again.',
    not_found: 'There is no sign-in request with this code. Check the code on the TV and try again.',
    expired: 'This code has expired. Ask the TV for a new code and scan it again.',
    already_claimed: 'Another phone has already opened this request. If that was not you, show a new code on the TV and start again.',
    user_code_mismatch: 'That is not the code on the TV. Nothing was approved. Look at the TV and pick the code it shows, or press Deny.',
    step_up_failed: 'That password is not right. Nothing was approved. Try again.',
    passkey_failed: 'Your passkey could not be checked. Nothing was approved. Try again.',
    passkey_required: 'This account uses a passkey to approve. Press Approve and use your passkey.',
    passkey_invalid: 'The passkey could not be added. Nothing was changed. Try again.',
    invalid_request: 'Something in the request was not right. Reload the page and try again.',
    temporarily_unavailable: 'The service is busy right now. Wait a moment and try again.',
    network: 'The server cannot be reached. Check your connection and try again.',
    revoke_window_over: 'Removing it from here only works for a while after it was linked. Remove it under Devices instead.',
  };
  function message(res) {
    if (!res) return MESSAGES.network;
    const code = res.data && res.data.error;
    if (code === 'invalid_state') {
      const st = res.data.state;
      if (st === 'approved') return 'This sign-in request was already approved. Nothing more to do here.';
      if (st === 'denied') return 'This sign-in request was already declined. To sign in, show a new code on the TV.';
      if (st === 'expired') return MESSAGES.expired;
      return 'This sign-in request cannot be changed any more. Show a new code on the TV and start again.';
    }
    if (code && MESSAGES[code]) return MESSAGES[code];
    if (res.status === 429) return MESSAGES.rate_limited;
    if (res.status >= 500) return 'Something went wrong on the server. Wait a moment and try again.';
    if (res.data && res.data.error_description) return res.data.error_description;
    return 'Something went wrong (error ' + res.status + '). Reload the page and try again.';
  }

  /* ---- status / alert regions ---- */
  function announce(text) {
    const s = document.getElementById('status');
    if (s) s.textContent = text;
  }
  function showError(el, text, title) {
    el.textContent = '';
    if (text && title) el.append(h('strong', { text: title }));
    if (text) el.append(text);
    if (text && el.scrollIntoView) el.scrollIntoView({ block: 'nearest' });
  }

  /* ---- the inline sign-in form of the phone pages ----
   * Renders into `container` and resolves with the /web/session answer once signed in. */
  function signIn(container, intro) {
    return new Promise((resolve) => {
      container.textContent = '';
      const err = h('div', { class: 'alert', role: 'alert' });
      const user = h('input', {
        type: 'text', id: 'signin-username', name: 'username', autocomplete: 'username',
        autocapitalize: 'none', spellcheck: 'false', required: true,
      });
      const pw = h('input', {
        type: 'password', id: 'signin-password', name: 'password', autocomplete: 'current-password',
        required: true,
      });
      const submit = h('button', { type: 'submit', id: 'signin-submit' }, 'Sign in');
      const form = h('form', { class: 'card', id: 'signin-form', novalidate: true },
        h('label', { for: 'signin-username' }, 'Username'), user,
        h('label', { for: 'signin-password' }, 'Password'), pw,
        h('div', { class: 'form-actions' }, submit));
      container.append(
        h('h1', { id: 'signin-title' }, 'Sign in'),
        h('p', { text: intro || 'Sign in with your qrlogin account to continue.' }),
        err, form);
      container.hidden = false;
      user.focus();
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        if (!user.value.trim() || !pw.value) {
          showError(err, 'Enter your username and your password.');
          (user.value.trim() ? pw : user).focus();
          return;
        }
        submit.disabled = true;
        announce('Signing in\u2026');
        let res;
        try {
          res = await api('POST', '/web/session', { username: user.value.trim(), password: pw.value });
        } catch (e) {
          res = null;
        }
        submit.disabled = false;
        if (res && res.ok) {
          pw.value = '';
          announce('Signed in.');
          startNotices();
          container.hidden = true;
          container.textContent = '';
          let s = null;
          try { s = await api('GET', '/web/session'); } catch (e) { s = null; }
          resolve(s && s.ok ? s.data : res.data);
          return;
        }
        announce('');
        showError(err, message(res), 'Not signed in.');
        pw.value = '';
        pw.focus();
      });
    });
  }

  /* The signed-in account of this phone, asking to sign in first when needed. */
  async function session(container, intro) {
    let res;
    for (;;) {
      try {
        res = await api('GET', '/web/session');
        break;
      } catch (e) {
        announce(MESSAGES.network);
        await sleep(2000);
      }
    }
    if (res.ok) {
      startNotices();
      return res.data;
    }
    return signIn(container, intro);
  }

  /* ---- "New device linked" and "Sign-in request stopped" banners ----
   * On a page with an element #new-devices, once this phone is signed in (session() and
   * signIn() start it): every notice the account's devices get that this phone has not
   * dismissed becomes a banner. A device linked to the account (kind device_linked): what was
   * linked, how long ago and from where, with "Remove it" (the one-tap removal, after a
   * confirmation naming the device) while the server offers it, else a pointer to Devices, and
   * "Dismiss". A sign-in request the server stopped as phishing while a phone of the account was
   * about to approve it (kind request_blocked): which screen, from where, when, why, what to do
   * and that nothing was linked, with "Dismiss" only. GET /web/notifications is held
   * (Prefer: wait=25) with the newest id shown as `after`, so a new notice shows within a
   * moment. A new device's banner and a removal dispatch 'qrl:devices-changed' on document (the
   * devices page reloads its list). */
  const notices = { started: false, after: 0, loadedAt: 0, items: new Map() };

  function deviceWords(d) {
    return d.platform || kindWord(d.kind);
  }

  function noticeAge(n) {
    const seconds = (Number(n.age_seconds) || 0) + (Date.now() - notices.loadedAt) / 1000;
    return seconds < 60 ? 'just now' : ago(seconds);
  }

  function isBlocked(n) { return n.kind === 'request_blocked'; }

  /* Why a request was stopped, in words (the reasons of the API's request_blocked). */
  const BLOCK_WHY = {
    many_networks: 'the code was opened from many places',
    denied_network: 'it came from a network that may not sign in here',
    many_accounts: 'the screen that made it had signed in to many accounts',
  };

  /* Where a stopped request's screen was: its country when the server knows it, else its
   * address. */
  function screenPlace(screen) {
    if (screen.country && screen.country.name) return screen.country.name;
    return screen.address || 'an unknown place';
  }

  /* The text of the banner's main line: the children of its .new-device-what paragraph. */
  function noticeWhat(n) {
    if (!isBlocked(n)) {
      return [quoted(n.device.name), ', ' + deviceWords(n.device) + ', ' + noticeAge(n) + '. Not you?'];
    }
    const screen = n.screen || {};
    const who = n.device.current ? ['you were'] : ['that ', quoted(n.device.name), ' was'];
    return ['We stopped a sign-in request ', ...who, ' about to approve: ', quoted(screen.name),
      ', from ' + screenPlace(screen) + ', ' + noticeAge(n) + '.'];
  }

  function dropNotice(id) {
    const item = notices.items.get(id);
    if (!item) return;
    notices.items.delete(id);
    item.el.remove();
  }

  function noticeSaid(text) {
    const box = document.getElementById('new-devices');
    let said = document.getElementById('new-devices-said');
    if (!said) {
      said = h('div', { class: 'notice', id: 'new-devices-said', role: 'status' });
      box.after(said);
    }
    said.textContent = text;
    announce(text);
  }

  /* After a banner is gone: focus goes to the next one, or to the page. */
  function focusAfterNotice() {
    const next = document.querySelector('#new-devices .new-device button');
    const main = document.getElementById('main');
    if (next) next.focus();
    else if (main) main.focus();
  }

  async function dismissNotice(n) {
    let res = null;
    try {
      res = await api('POST', '/web/notifications/' + encodeURIComponent(n.id) + '/ack', {});
    } catch (e) {
      res = null;
    }
    if (res && (res.ok || res.status === 404)) {
      dropNotice(n.id);
      focusAfterNotice();
      return;
    }
    showError(notices.items.get(n.id).err, message(res));
  }

  async function removeNotice(n, button) {
    const name = n.device.name || 'Unnamed device';
    const item = notices.items.get(n.id);
    const ok = await confirmDialog(['Remove ', quoted(name), '?'],
      'It is signed out at once. If it was you after all, sign in on it again with a new code.',
      'Remove');
    if (!ok) {
      button.focus();
      return;
    }
    showError(item.err, '');
    let res = null;
    try {
      res = await api('POST', '/web/notifications/' + encodeURIComponent(n.id) + '/revoke', {});
    } catch (e) {
      res = null;
    }
    if (res && (res.ok || res.status === 404)) {
      dropNotice(n.id);
      noticeSaid('\u201c' + name + '\u201d was removed and is signed out.');
      document.dispatchEvent(new CustomEvent('qrl:devices-changed'));
      focusAfterNotice();
      return;
    }
    if (res && res.data && res.data.error === 'revoke_window_over') {
      n.revoke_in = 0;
      renderNotice(n, item.el);
    }
    showError(notices.items.get(n.id).err, message(res));
  }

  /* The banner of a stopped request n, into `el`: what and why, and Dismiss (it linked
   * nothing to remove). */
  function renderBlocked(n, el) {
    const screen = n.screen || {};
    const name = screen.name || 'Unnamed device';
    const err = h('div', { class: 'alert', role: 'alert' });
    const dismiss = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Dismiss: stopped request of \u201c' + name + '\u201d' }, 'Dismiss');
    dismiss.addEventListener('click', () => dismissNotice(n));
    const why = BLOCK_WHY[n.reason];
    el.append(
      h('h2', { id: 'new-device-' + n.id }, icon('warn', 'warn-icon'), 'Sign-in request stopped'),
      h('p', { class: 'new-device-what' }, ...noticeWhat(n)),
      h('p', { class: 'blocked-why' },
        'It looked like a phishing attempt' + (why ? ' (' + why + ')' : '') + '. ',
        h('strong', { text: 'If someone asked you to scan a code, do not.' }),
        ' Nothing was linked to your account.'),
      h('p', { class: 'new-device-meta' },
        [kindWord(screen.kind), screen.platform, screen.address].filter(Boolean).join(' \u00b7 ')),
      err, h('div', { class: 'new-device-actions' }, dismiss));
    notices.items.set(n.id, { el, err, n });
    return el;
  }

  /* The banner of notice n, into `el` (a new one when absent). */
  function renderNotice(n, el) {
    if (isBlocked(n)) {
      el = el || h('section', { class: 'new-device request-blocked', 'aria-labelledby': 'new-device-' + n.id, 'data-notice-id': n.id });
      el.textContent = '';
      return renderBlocked(n, el);
    }
    const name = n.device.name || 'Unnamed device';
    const titleId = 'new-device-' + n.id;
    el = el || h('section', { class: 'new-device', 'aria-labelledby': titleId, 'data-notice-id': n.id });
    el.textContent = '';
    const err = h('div', { class: 'alert', role: 'alert' });
    const actions = h('div', { class: 'new-device-actions' });
    if (Number(n.revoke_in) > 0) {
      const remove = h('button', { type: 'button', class: 'danger', 'aria-label': 'Remove it: \u201c' + name + '\u201d' }, 'Remove it');
      remove.addEventListener('click', () => removeNotice(n, remove));
      actions.append(remove);
    } else {
      // The one-tap removal is over: the devices list removes it.
      actions.append(h('a', { class: 'button danger secondary', href: '/devices' }, 'Remove it under Devices'));
    }
    const dismiss = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Dismiss: \u201c' + name + '\u201d' }, 'Dismiss');
    dismiss.addEventListener('click', () => dismissNotice(n));
    actions.append(dismiss);
    el.append(
      h('h2', { id: titleId }, icon('warn', 'warn-icon'), 'New device linked'),
      h('p', { class: 'new-device-what' }, ...noticeWhat(n)),
      h('p', { class: 'new-device-meta' },
        kindWord(n.device.kind) + (n.device.address ? ' \u00b7 linked from ' + n.device.address : '')),
      err, actions);
    notices.items.set(n.id, { el, err, n });
    return el;
  }

  function renderNotices(all) {
    const box = document.getElementById('new-devices');
    // A kind this page does not know (a newer server) is not shown, and not waited for again.
    const list = all.filter((n) => !n.kind || n.kind === 'device_linked' || isBlocked(n));
    const keep = new Set(list.map((n) => n.id));
    for (const id of Array.from(notices.items.keys())) if (!keep.has(id)) dropNotice(id);
    // Newest first: the list comes newest first, new ones go on top.
    let news = false;
    for (const n of list.slice().reverse()) {
      if (notices.items.has(n.id)) continue;
      box.prepend(renderNotice(n));
      if (n.id > notices.after) {
        if (isBlocked(n)) {
          announce('Sign-in request stopped: \u201c' + ((n.screen && n.screen.name) || 'Unnamed device') + '\u201d.');
        } else {
          news = true;
          announce('New device linked: \u201c' + (n.device.name || 'Unnamed device') + '\u201d.');
        }
      }
    }
    for (const n of all) if (n.id > notices.after) notices.after = n.id;
    if (news) document.dispatchEvent(new CustomEvent('qrl:devices-changed'));
  }

  async function noticesLoop() {
    let backoff = 1000;
    for (;;) {
      const began = Date.now();
      const after = notices.after;
      let res;
      try {
        res = await api('GET', '/web/notifications' + (after ? '?after=' + after : ''), null, { wait: 25 });
      } catch (e) {
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 30000);
        continue;
      }
      backoff = 1000;
      // Signed out, or a server that keeps no notices: nothing to show.
      if (res.status === 401 || res.status === 404) {
        notices.started = false;
        return;
      }
      if (!res.ok) {
        await sleep(res.retryAfter ? res.retryAfter * 1000 : 5000);
        continue;
      }
      notices.loadedAt = Date.now();
      renderNotices(res.data.notifications || []);
      // Answered at once with nothing new (too many requests of the account waiting): wait.
      if (notices.after === after && Date.now() - began < 1000) await sleep(5000);
    }
  }

  function startNotices() {
    if (notices.started || !document.getElementById('new-devices')) return;
    notices.started = true;
    noticesLoop();
    // "2 minutes ago" keeps counting.
    if (!notices.timer) {
      notices.timer = setInterval(() => {
        for (const { el, n } of notices.items.values()) {
          const p = el.querySelector('.new-device-what');
          if (p) p.replaceChildren(...noticeWhat(n));
        }
      }, 30000);
    }
  }

  /* Opens a <dialog> that asks to confirm; resolves true/false. */
  function confirmDialog(title, body, okLabel) {
    return new Promise((resolve) => {
      const heading = h('h2', { id: 'confirm-title' }, ...title);
      const ok = h('button', { type: 'button', class: 'danger', id: 'confirm-ok' }, okLabel);
      const cancel = h('button', { type: 'button', class: 'secondary', id: 'confirm-cancel' }, 'Cancel');
      const dlg = h('dialog', { 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-body', id: 'confirm' },
        heading, h('p', { id: 'confirm-body', text: body }), h('div', { class: 'decide' }, ok, cancel));
      document.body.append(dlg);
      let answer = false;
      ok.addEventListener('click', () => { answer = true; dlg.close(); });
      cancel.addEventListener('click', () => dlg.close());
      dlg.addEventListener('close', () => { dlg.remove(); resolve(answer); });
      dlg.showModal();
      cancel.focus();
    });
  }

  async function signOut() {
    try { await api('POST', '/web/signout', {}); } catch (e) { /* shown by the caller's reload */ }
  }

  window.QRL = {
    csrf, api, h, quoted, sleep, icon, kindWord, ago, date, lastSeen,
    b64urlToBuf, bufToB64url, passkeysAvailable, message, MESSAGES, announce, showError,
    signIn, session, confirmDialog, signOut,
  };
})();
