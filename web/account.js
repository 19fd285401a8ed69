// SPDX-License-Identifier: MIT
/* /account: who is signed in on this phone, passkeys (add, remove), sign out. */
'use strict';

(function () {
  const { api, h, quoted, icon, announce, showError, message } = window.QRL;
  const $ = (id) => document.getElementById(id);

  function notice(text) {
    $('account-notice').textContent = text;
    announce(text);
  }

  function defaultPasskeyName() {
    const ua = navigator.userAgent;
    if (/iPhone|iPad/.test(ua)) return 'Passkey on iPhone';
    if (/Android/.test(ua)) return 'Passkey on Android phone';
    if (/Mac OS X/.test(ua)) return 'Passkey on Mac';
    if (/Windows/.test(ua)) return 'Passkey on Windows';
    return 'Passkey on this device';
  }

  async function loadPasskeys() {
    let res = null;
    try {
      res = await api('GET', '/web/passkeys');
    } catch (e) {
      res = null;
    }
    if (res && res.status === 401) return start();
    const ul = $('passkeys');
    ul.textContent = '';
    if (!res || !res.ok) {
      showError($('account-error'), message(res));
      return;
    }
    const list = res.data.passkeys || [];
    for (const p of list) {
      const name = p.name || 'Passkey';
      const remove = h('button', {
        type: 'button', class: 'danger secondary', 'aria-label': 'Remove passkey \u201c' + name + '\u201d',
      }, 'Remove');
      remove.addEventListener('click', () => removePasskey(p, remove));
      ul.append(h('li', { class: 'row', 'data-passkey-id': p.id },
        icon('key', 'kind'),
        h('p', { class: 'name', text: name }),
        h('p', { class: 'meta' },
          h('span', { text: 'Added ' + QRL.date(p.created_at) }),
          h('span', { text: p.last_used_at ? 'Last used ' + QRL.lastSeen(p.last_used_at) : 'Not used yet' })),
        h('div', { class: 'row-actions' }, remove)));
    }
    if (!list.length) ul.append(h('li', { class: 'muted' }, 'No passkeys yet. You approve sign-ins with your password.'));
  }

  async function removePasskey(p, button) {
    const name = p.name || 'Passkey';
    const ok = await QRL.confirmDialog(['Remove the passkey ', quoted(name), '?'],
      'You can no longer approve sign-ins with it. If it is your last passkey, approvals ask for your password again.',
      'Remove');
    if (!ok) {
      button.focus();
      return;
    }
    showError($('account-error'), '');
    let res = null;
    try {
      res = await api('DELETE', '/web/passkeys/' + encodeURIComponent(p.id));
    } catch (e) {
      res = null;
    }
    if (res && (res.ok || res.status === 404)) {
      notice('The passkey \u201c' + name + '\u201d was removed.');
      await loadPasskeys();
      $('add-passkey').focus();
      return;
    }
    if (res && res.status === 401) return start();
    showError($('account-error'), message(res));
  }

  function openAdd() {
    showError($('account-error'), '');
    if (!QRL.passkeysAvailable()) {
      showError($('account-error'), 'This browser cannot make passkeys. Open this page in your phone\u2019s usual browser and try again.');
      return;
    }
    $('add-form').hidden = false;
    $('add-passkey').hidden = true;
    if (!$('add-name').value) $('add-name').value = defaultPasskeyName();
    $('add-password').focus();
  }
  function closeAdd() {
    $('add-form').hidden = true;
    $('add-passkey').hidden = false;
    $('add-password').value = '';
    $('add-passkey').focus();
  }

  async function add(ev) {
    ev.preventDefault();
    const err = $('account-error');
    showError(err, '');
    const password = $('add-password').value;
    const name = $('add-name').value.trim() || defaultPasskeyName();
    if (!password) {
      showError(err, 'Enter your password to add a passkey.');
      $('add-password').focus();
      return;
    }
    $('add-submit').disabled = true;
    try {
      let o = null;
      try {
        o = await api('POST', '/web/webauthn/options', { purpose: 'register' });
      } catch (e) {
        o = null;
      }
      if (!o || !o.ok) {
        if (o && o.status === 401) return start();
        showError(err, message(o));
        return;
      }
      const d = o.data;
      const publicKey = {
        challenge: QRL.b64urlToBuf(d.challenge),
        rp: d.rp,
        user: { id: QRL.b64urlToBuf(d.user.id), name: d.user.name, displayName: d.user.displayName },
        pubKeyCredParams: d.pubKeyCredParams,
        timeout: d.timeout,
        attestation: d.attestation || 'none',
        authenticatorSelection: d.authenticatorSelection,
        excludeCredentials: (d.excludeCredentials || []).map((c) => ({
          type: c.type || 'public-key', id: QRL.b64urlToBuf(c.id), transports: c.transports,
        })),
      };
      let cred;
      try {
        announce('Waiting for your fingerprint, face or screen lock\u2026');
        cred = await navigator.credentials.create({ publicKey });
      } catch (e) {
        if (e && e.name === 'InvalidStateError') {
          showError(err, 'This phone already has a passkey for your account. Nothing was changed.');
        } else if (e && e.name === 'NotAllowedError') {
          showError(err, 'The passkey was not made: the prompt was closed or timed out. Nothing was changed. Try again.');
        } else {
          showError(err, 'The passkey could not be made (' + ((e && e.message) || 'unknown problem') + '). Nothing was changed.');
        }
        return;
      }
      let res = null;
      try {
        res = await api('POST', '/web/passkeys', {
          password,
          name,
          clientDataJSON: QRL.bufToB64url(cred.response.clientDataJSON),
          attestationObject: QRL.bufToB64url(cred.response.attestationObject),
        });
      } catch (e) {
        res = null;
      }
      if (res && res.ok) {
        $('add-password').value = '';
        $('add-name').value = '';
        $('add-form').hidden = true;
        $('add-passkey').hidden = false;
        notice('Passkey \u201c' + name + '\u201d added. Approvals now use it.');
        await loadPasskeys();
        return;
      }
      if (res && res.status === 401) return start();
      showError(err, res && res.data.error === 'step_up_failed'
        ? 'That password is not right. No passkey was added. Try again.'
        : message(res));
      if (res && res.data.error === 'step_up_failed') {
        $('add-password').value = '';
        $('add-password').focus();
      }
    } finally {
      $('add-submit').disabled = false;
    }
  }

  async function start() {
    $('account').hidden = true;
    $('loading').hidden = true;
    const s = await QRL.session($('signin'), 'Sign in to manage your account and passkeys.');
    const acc = (s && s.account) || {};
    const display = acc.display_name || acc.username || '';
    $('who-name').textContent = display;
    $('who-user').textContent = 'Signed in as ' + (acc.username || '') + ' on this phone';
    $('avatar').textContent = (display.trim()[0] || '?').toUpperCase();
    $('account').hidden = false;
    await loadPasskeys();
  }

  $('add-passkey').addEventListener('click', openAdd);
  $('add-cancel').addEventListener('click', closeAdd);
  $('add-form').addEventListener('submit', add);
  $('signout').addEventListener('click', async () => {
    $('signout').disabled = true;
    await QRL.signOut();
    $('signout').disabled = false;
    $('account-notice').textContent = '';
    announce('You are signed out.');
    start();
  });

  start();
})();
