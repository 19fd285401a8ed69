// SPDX-License-Identifier: MIT
/* /s and /device: the phone approves (or denies) a sign-in on another screen.
 * /s#qrl_ss_...  the QR code's link: the scan secret is in the fragment (never sent to a server
 *                in a URL); it is taken out of the address bar at once.
 * /s?k=XXXXXXXX#qrl_ss_...
 *                the same for a screen that named its key when it asked: "k" is the first 8
 *                characters of the key's thumbprint. The request's view says which key the
 *                sign-in goes to (dpop_jkt); when the two differ the QR code was not made by
 *                the screen that asked, and the page offers Deny only.
 * /device        the person types the code the screen shows. */
'use strict';

(function () {
  const { api, h, quoted, icon, kindWord, ago, announce, showError, message } = window.QRL;
  const $ = (id) => document.getElementById(id);
  const SECTIONS = ['loading', 'signin', 'enter', 'request', 'done'];

  let code = ''; // the scan secret, or the typed user code
  let typed = false; // the person typed the code: no choice to make
  let view = null; // the answer of POST /web/lr/view
  let viewedAt = 0;
  let picked = '';
  let busy = false;
  // The short form of the screen's key from the QR code's "k": null when the link had none (or
  // the code was typed), '' when it was malformed or repeated (which matches no key).
  let keyHint = null;

  function section(id) {
    for (const s of SECTIONS) $(s).hidden = s !== id;
  }

  function focusHeading(el) {
    if (!el) return;
    el.setAttribute('tabindex', '-1');
    el.focus();
  }

  function deviceName() {
    return (view && view.device_name) || 'Unnamed device';
  }

  function normalizeCode(v) {
    const s = String(v).toUpperCase().replace(/[^A-Z0-9]/g, '');
    return s.length === 8 ? s.slice(0, 4) + '-' + s.slice(4) : s;
  }

  /* ---------- end screens ---------- */
  function done(kind, title, text, links) {
    const ic = $('done-icon');
    ic.textContent = '';
    ic.append(icon(kind === 'ok' ? 'check' : 'cross', 'big-icon'));
    $('done').className = 'end ' + (kind === 'ok' ? 'ok' : 'no');
    const t = $('done-title');
    t.textContent = '';
    t.append(...title);
    const p = $('done-text');
    p.textContent = '';
    p.append(...text);
    const l = $('done-links');
    l.textContent = '';
    for (const [href, label, cls] of links || []) l.append(h('a', { href, class: 'button ' + (cls || 'secondary') }, label));
    section('done');
    announce(t.textContent);
    focusHeading(t);
  }

  function failEnd(res) {
    const code = res && res.data && res.data.error;
    let title = 'This sign-in cannot continue';
    if (code === 'expired' || (res && res.data && res.data.state === 'expired')) title = 'This code has expired';
    else if (code === 'not_found') title = 'This code does not work';
    else if (code === 'already_claimed') title = 'Opened on another phone';
    else if (code === 'suspicious_request') title = 'This request was blocked';
    else if (code === 'invalid_state' && res.data.state === 'approved') title = 'Already approved';
    else if (code === 'invalid_state' && res.data.state === 'denied') title = 'Already declined';
    let text = message(res);
    if (code === 'not_found' && !typed) {
      text = 'This QR code is not valid. Show a new code on the TV and scan it again.';
    }
    // The title already says what happened: the text goes on with what to do.
    if (text.startsWith(title + '.')) text = text.slice(title.length + 1).trim();
    done('no', [title], [text], [['/device', 'Enter a code instead', 'secondary'], ['/devices', 'Your devices', 'secondary']]);
  }

  /* ---------- the screen's key ---------- */
  /* 'none': neither the request nor the QR code names a key (nothing to show); 'named': the
   * request is bound to a key and there is nothing to compare it with (a typed code, a link
   * without "k"); 'match': the QR code names the request's key; 'mismatch': it names another
   * one, or a key while the request has none. */
  function keyCheck() {
    const jkt = view && typeof view.dpop_jkt === 'string' ? view.dpop_jkt : '';
    if (keyHint === null) return jkt ? 'named' : 'none';
    return keyHint && jkt.length === 43 && jkt.slice(0, 8) === keyHint ? 'match' : 'mismatch';
  }

  /* "3F7A-91C2": the fingerprint the server gives ("KEY 3F7A-91C2"), as people read it. */
  function keyWords() {
    return String((view && view.key_fingerprint) || '').replace(/^KEY /, '');
  }

  function screenWord() {
    return view.device_kind === 'tv' ? 'TV' : kindWord(view.device_kind).toLowerCase();
  }

  function renderKey(check) {
    const li = $('fact-key');
    li.textContent = '';
    li.hidden = check === 'none' || check === 'mismatch';
    if (!li.hidden) {
      li.className = check === 'match' ? 'ok-fact' : '';
      const words = ['The sign-in goes only to this ' + screenWord() + '\u2019s key ',
        h('span', { class: 'key-code', text: keyWords() })];
      if (check === 'match') words.push(' \u2014 it matches the code you scanned');
      li.append(icon('key', 'icon'), h('span', {}, ...words));
    }
    const box = $('key-mismatch');
    box.hidden = check !== 'mismatch';
    if (box.hidden) return;
    if (!$('key-mismatch-icon').firstChild) $('key-mismatch-icon').append(icon('warn', 'warn-icon'));
    const p = $('key-mismatch-text');
    p.textContent = '';
    if (view.dpop_jkt) {
      p.append('The QR code you scanned names another key than the one this sign-in would go to (',
        h('span', { class: 'key-code', text: keyWords() }), ').');
    } else {
      p.append('The QR code you scanned names a key, but this sign-in is not bound to any.');
    }
    p.append(' So the code was not made by the screen that asked, and someone may be trying to ' +
      'get into your account. Deny it, then start again on the screen in front of you.');
  }

  /* ---------- entering a code ---------- */
  function showEnter(errText) {
    section('enter');
    showError($('enter-error'), errText || '');
    $('enter-code').focus();
  }

  $('enter-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = normalizeCode($('enter-code').value);
    if (!/^[A-Z0-9]{4}-[A-Z0-9]{4}$/.test(v)) {
      showError($('enter-error'), 'Enter the 8 letters that the TV shows, for example WDJB-MJHT.');
      $('enter-code').setAttribute('aria-invalid', 'true');
      $('enter-code').focus();
      return;
    }
    $('enter-code').removeAttribute('aria-invalid');
    $('enter-code').value = v;
    code = v;
    typed = true;
    keyHint = null;
    open();
  });

  /* ---------- the request ---------- */
  async function open() {
    section('loading');
    announce('Loading the request\u2026');
    let res = null;
    try {
      res = await api('POST', '/web/lr/view', { code });
    } catch (e) {
      res = null;
    }
    if (res && res.status === 401) {
      section('signin');
      await QRL.signIn($('signin'), 'Your sign-in on this phone has ended. Sign in again to continue.');
      return open();
    }
    if (!res || !res.ok) {
      if (typed && res && (res.data.error === 'not_found' || res.data.error === 'expired')) {
        showEnter(res.data.error === 'expired'
          ? 'This code has expired. Ask the TV for a new code and enter that one.'
          : 'No screen is showing this code. Check the code on the TV and enter it again.');
        return;
      }
      if (!res) {
        done('no', ['The server cannot be reached'], [message(null)], [[location.pathname, 'Try again', 'primary']]);
        return;
      }
      failEnd(res);
      return;
    }
    view = res.data;
    viewedAt = Date.now();
    // Started from a network this server denies: it cannot be approved, so say so up front.
    if (view.blocked === 'denied_network') {
      done('no', ['This request was blocked'],
        ['It comes from a network that may not sign in here, so it cannot be approved. ' +
         'If someone asked you to approve it, they were after your account.'],
        [['/devices', 'Your devices', 'secondary']]);
      return;
    }
    renderRequest();
  }

  function updateAge() {
    if (!view || $('request').hidden) return;
    const seconds = (Number(view.age_seconds) || 0) + (Date.now() - viewedAt) / 1000;
    const li = $('fact-from');
    li.textContent = '';
    li.append(icon('pin', 'icon'), h('span', {},
      'Requested from ', h('strong', { text: view.address || 'an unknown network' }), ', ' + ago(seconds)));
  }

  /* Where the request comes from and where this phone is, when the server has a country
   * database (null members otherwise, and for local addresses: the network line says it all).
   * Fills the warning block; true when the two countries differ. */
  function renderCountries() {
    const from = view.request_country && view.request_country.name;
    const here = view.phone_country && view.phone_country.name;
    const other = !!(from && here && view.same_country === false);
    const li = $('fact-country');
    li.textContent = '';
    li.hidden = !from;
    if (from) {
      li.className = view.same_country === true ? 'ok-fact' : '';
      const words = ['This request comes from ', h('strong', { text: from })];
      if (here) words.push(', you are in ', h('strong', { text: here }));
      li.append(icon(other ? 'warn' : 'pin', 'icon'), h('span', {}, ...words));
    }
    if (other) {
      $('warning-heading').textContent = 'Request from another country';
      $('warning-text').textContent = 'This request comes from ' + from + ', but you are in ' + here +
        '. If you are not in front of the screen that asks, someone else is trying to get into your account: press Deny.';
    } else {
      $('warning-heading').textContent = 'Different network';
      $('warning-text').textContent =
        'This request comes from a different network than your phone. If you did not start it yourself, press Deny.';
    }
    return other;
  }

  function renderRequest() {
    const name = deviceName();
    const q = $('question');
    q.textContent = '';
    q.append('Sign in on ', quoted(name), '?');

    const kind = $('fact-kind');
    kind.textContent = '';
    const what = kindWord(view.device_kind) + (view.platform ? ' \u00b7 ' + view.platform : '');
    kind.append(icon(view.device_kind, 'icon'), h('span', { text: what }));

    const net = $('fact-net');
    net.textContent = '';
    if (view.same_network) {
      net.className = 'ok-fact';
      net.append(icon('wifi', 'icon'), h('span', { text: 'On the same network as this phone' }));
    } else {
      net.className = '';
      net.append(icon('warn', 'icon'), h('span', { text: 'Not on the same network as this phone' }));
    }
    const otherCountry = renderCountries();
    const check = keyCheck();
    renderKey(check);
    // A QR code that names another key says it all: the other warnings would only distract.
    $('warning').hidden = check === 'mismatch' || (!otherCountry && !!view.same_network);
    if (!$('warning-icon').firstChild) $('warning-icon').append(icon('warn', 'warn-icon'));

    const grant = $('grant');
    grant.textContent = '';
    grant.append(quoted(name), ' will stay signed in to your account until you remove it.');

    const box = $('choices');
    box.textContent = '';
    for (const c of view.choices || []) {
      box.append(h('button', { type: 'button', class: 'choice', on: { click: () => pick(c) } }, c));
    }
    showError($('request-error'), '');
    section('request');
    updateAge();
    if (check === 'mismatch') {
      // No approving at all: neither the codes to pick nor the Approve button.
      $('grant').hidden = true;
      $('choose').hidden = true;
      $('confirm').hidden = true;
      announce('Do not approve: this code was not made by that screen.');
      focusHeading($('key-mismatch-title'));
      return;
    }
    $('grant').hidden = false;
    announce('Sign in on \u201c' + name + '\u201d?');
    if (typed || !(view.choices && view.choices.length)) {
      picked = code;
      showConfirm(false);
    } else {
      showChoose();
    }
    focusHeading(q);
  }

  function showChoose() {
    picked = '';
    $('choose').hidden = false;
    $('confirm').hidden = true;
  }

  function showConfirm(moveFocus) {
    $('choose').hidden = true;
    $('confirm').hidden = false;
    $('picked-code').textContent = picked;
    $('change-code').hidden = typed;
    $('password-box').hidden = !!view.passkey;
    $('passkey-hint').hidden = !view.passkey;
    if (moveFocus) (view.passkey ? $('approve') : $('stepup-password')).focus();
  }

  function pick(c) {
    picked = c;
    showError($('request-error'), '');
    showConfirm(true);
    announce('You picked ' + c + '.');
  }

  function setBusy(on) {
    busy = on;
    for (const id of ['approve', 'deny', 'deny-early', 'deny-mismatch']) $(id).disabled = on;
  }

  async function passkeyProof() {
    if (!QRL.passkeysAvailable()) {
      throw new Error('This browser cannot use passkeys. Open this page in your phone\u2019s usual browser and try again. Nothing was approved.');
    }
    let o = null;
    try {
      o = await api('POST', '/web/webauthn/options', { purpose: 'approve', code });
    } catch (e) {
      o = null;
    }
    if (!o || !o.ok) return { error: o };
    const d = o.data;
    const publicKey = {
      challenge: QRL.b64urlToBuf(d.challenge),
      rpId: d.rpId,
      timeout: d.timeout,
      userVerification: d.userVerification || 'required',
      allowCredentials: (d.allowCredentials || []).map((c) => ({
        type: c.type || 'public-key',
        id: QRL.b64urlToBuf(c.id),
        transports: c.transports,
      })),
    };
    let cred;
    try {
      announce('Waiting for your passkey\u2026');
      cred = await navigator.credentials.get({ publicKey });
    } catch (e) {
      if (e && e.name === 'NotAllowedError') {
        throw new Error('The passkey was not used: the prompt was closed or timed out. Nothing was approved. Press Approve to try again.');
      }
      throw new Error('Your passkey could not be used (' + ((e && e.message) || 'unknown problem') + '). Nothing was approved. Try again.');
    }
    if (!cred) throw new Error('No passkey was chosen. Nothing was approved. Press Approve to try again.');
    return {
      passkey: {
        id: QRL.bufToB64url(cred.rawId),
        clientDataJSON: QRL.bufToB64url(cred.response.clientDataJSON),
        authenticatorData: QRL.bufToB64url(cred.response.authenticatorData),
        signature: QRL.bufToB64url(cred.response.signature),
      },
    };
  }

  async function approve(ev) {
    ev.preventDefault();
    if (busy || keyCheck() === 'mismatch') return;
    const err = $('request-error');
    showError(err, '');
    const body = { code, user_code: picked };
    setBusy(true);
    try {
      if (view.passkey) {
        let proof;
        try {
          proof = await passkeyProof();
        } catch (e) {
          showError(err, e.message);
          return;
        }
        if (proof.error !== undefined) {
          await approveFailed(proof.error);
          return;
        }
        body.passkey = proof.passkey;
      } else {
        const pw = $('stepup-password').value;
        if (!pw) {
          showError(err, 'Enter your password to approve. Nothing was approved yet.');
          $('stepup-password').focus();
          return;
        }
        body.password = pw;
      }
      announce('Approving\u2026');
      let res = null;
      try {
        res = await api('POST', '/web/lr/approve', body);
      } catch (e) {
        res = null;
      }
      $('stepup-password').value = '';
      if (res && res.ok) {
        const name = res.data.device_name || deviceName();
        done('ok', [quoted(name), ' is signed in.'],
          ['You can remove it any time under ', h('a', { href: '/devices' }, 'Devices'), '.'],
          [['/devices', 'Your devices', 'secondary']]);
        return;
      }
      await approveFailed(res);
    } finally {
      setBusy(false);
    }
  }

  async function approveFailed(res) {
    const err = $('request-error');
    const code = res && res.data && res.data.error;
    if (res && res.status === 401) {
      section('signin');
      await QRL.signIn($('signin'), 'Your sign-in on this phone has ended. Sign in again, then approve.');
      section('request');
      return;
    }
    if (code === 'expired' || code === 'invalid_state' || code === 'not_found' || code === 'already_claimed' ||
        code === 'suspicious_request') {
      failEnd(res);
      return;
    }
    if (code === 'passkey_required') view.passkey = true;
    if (code === 'user_code_mismatch' && !typed) showChoose();
    else showConfirm(false);
    showError(err, message(res), 'Not approved.');
    announce(message(res));
    if (code === 'step_up_failed' && !view.passkey) $('stepup-password').focus();
  }

  async function deny() {
    if (busy) return;
    setBusy(true);
    showError($('request-error'), '');
    let res = null;
    try {
      res = await api('POST', '/web/lr/deny', { code });
    } catch (e) {
      res = null;
    }
    setBusy(false);
    if (res && res.ok) {
      done('no', ['Declined'],
        [quoted(res.data.device_name || deviceName()), ' was not signed in. The code it shows no longer works.'],
        [['/devices', 'Your devices', 'secondary']]);
      return;
    }
    if (res && res.status === 401) {
      section('signin');
      await QRL.signIn($('signin'), 'Your sign-in on this phone has ended. Sign in again to continue.');
      section('request');
      return;
    }
    const c = res && res.data && res.data.error;
    if (c === 'expired' || c === 'invalid_state' || c === 'not_found') {
      failEnd(res);
      return;
    }
    showError($('request-error'), message(res));
  }

  $('confirm').addEventListener('submit', approve);
  $('deny').addEventListener('click', deny);
  $('deny-early').addEventListener('click', deny);
  $('deny-mismatch').addEventListener('click', deny);
  $('change-code').addEventListener('click', () => {
    showChoose();
    const first = $('choices').querySelector('button');
    if (first) first.focus();
  });
  setInterval(updateAge, 1000);

  /* Takes the scan secret out of the fragment; true when there was one. */
  function takeSecret() {
    const hash = location.hash.slice(1);
    if (!hash.startsWith('qrl_ss_')) return false;
    code = hash;
    typed = false;
    view = null;
    const k = new URLSearchParams(location.search).getAll('k');
    keyHint = k.length === 0 ? null : (k.length === 1 && /^[A-Za-z0-9_-]{8}$/.test(k[0]) ? k[0] : '');
    // Keep the secret out of the address bar, the history and any screenshot of the page (and
    // the key's short form with it: it belongs to this code only).
    history.replaceState(null, '', location.pathname);
    return true;
  }

  // Another QR code opened in this same tab only changes the fragment: no new page load.
  window.addEventListener('hashchange', () => {
    if (takeSecret() && $('signin').hidden) open();
  });

  async function init() {
    takeSecret();
    $('loading').hidden = true;
    await QRL.session($('signin'), code
      ? 'Sign in with your qrlogin account. Then you can approve the sign-in on the other screen.'
      : 'Sign in with your qrlogin account. Then enter the code that the TV shows.');
    if (code) {
      open();
    } else {
      showEnter();
    }
  }

  init();
})();
