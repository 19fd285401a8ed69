// SPDX-License-Identifier: MIT
/* /devices: the devices signed in to this phone's account; Remove signs one out at once. */
'use strict';

(function () {
  const { api, h, quoted, icon, kindWord, announce, showError, message } = window.QRL;
  const $ = (id) => document.getElementById(id);

  function row(d) {
    const name = d.name || 'Unnamed device';
    const title = h('p', { class: 'name' }, name);
    if (d.current) title.append(h('span', { class: 'badge' }, 'This device'));
    // Unused for too long: it no longer works until it is signed in again.
    if (d.expired) title.append(h('span', { class: 'badge expired' }, 'Expired'));
    const meta = h('p', { class: 'meta' },
      h('span', { text: kindWord(d.kind) + (d.platform ? ' \u00b7 ' + d.platform : '') }),
      h('span', { text: 'Linked ' + QRL.date(d.created_at) + (d.address ? ' from ' + d.address : '') }),
      h('span', { text: 'Last seen ' + QRL.lastSeen(d.last_seen_at) +
        (d.expired ? ' \u00b7 unused too long, signed out' : '') }));
    const remove = h('button', {
      type: 'button', class: 'danger secondary', 'data-device-id': d.id,
      'aria-label': 'Remove \u201c' + name + '\u201d',
    }, 'Remove');
    remove.addEventListener('click', () => removeDevice(d, remove));
    const li = h('li', { class: 'row' + (d.current ? ' current' : ''), 'data-device-id': d.id },
      icon(d.kind, 'kind'),
      h('span', { class: 'visually-hidden', text: kindWord(d.kind) + ': ' }),
      title, meta, h('div', { class: 'row-actions' }, remove));
    return li;
  }

  async function load() {
    let res = null;
    try {
      res = await api('GET', '/web/devices');
    } catch (e) {
      res = null;
    }
    if (res && res.status === 401) return start();
    $('loading').hidden = true;
    $('list').hidden = false;
    const ul = $('devices');
    if (!res || !res.ok) {
      showError($('devices-error'), message(res));
      return;
    }
    ul.textContent = '';
    const list = (res.data.devices || []).slice().sort((a, b) => (b.current - a.current) || (b.last_seen_at - a.last_seen_at));
    for (const d of list) ul.append(row(d));
    if (!list.length) ul.append(h('li', { class: 'muted' }, 'No devices are signed in.'));
  }

  async function removeDevice(d, button) {
    const name = d.name || 'Unnamed device';
    const ok = await QRL.confirmDialog(['Remove ', quoted(name), '?'],
      d.current
        ? 'This phone will be signed out. You will need your password to sign in again.'
        : 'It is signed out at once. To use it again, sign in on it with a new code.',
      'Remove');
    if (!ok) {
      button.focus();
      return;
    }
    showError($('devices-error'), '');
    let res = null;
    try {
      res = await api('DELETE', '/web/devices/' + encodeURIComponent(d.id));
    } catch (e) {
      res = null;
    }
    if (res && (res.ok || res.status === 404)) {
      const text = '\u201c' + name + '\u201d was removed and is signed out.';
      $('devices-notice').textContent = text;
      announce(text);
      if (d.current) {
        $('list').hidden = true;
        return start();
      }
      await load();
      $('devices-title').setAttribute('tabindex', '-1');
      $('devices-title').focus();
      return;
    }
    if (res && res.status === 401) return start();
    showError($('devices-error'), message(res));
  }

  async function start() {
    $('list').hidden = true;
    $('loading').hidden = true;
    await QRL.session($('signin'), 'Sign in to see the devices that use your account.');
    $('loading').hidden = false;
    return load();
  }

  // A device linked elsewhere, or removed from its "New device linked" banner: the list follows.
  document.addEventListener('qrl:devices-changed', () => load());

  start();
})();
