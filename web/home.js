// SPDX-License-Identifier: MIT
/* /home: the demo app a signed-in screen lands on. Keeps a held request open
 * (GET /web/screen/watch, Prefer: wait=25) so that removing this screen from a phone shows the
 * QR page again at once. */
'use strict';

(function () {
  const { api, sleep, announce } = window.QRL;
  const $ = (id) => document.getElementById(id);

  function toQr() {
    location.replace('/');
  }

  async function watch() {
    let backoff = 1000;
    for (;;) {
      const began = Date.now();
      let res;
      try {
        res = await api('GET', '/web/screen/watch', null, { wait: 25 });
      } catch (e) {
        announce('The server cannot be reached. Trying again\u2026');
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 10000);
        continue;
      }
      backoff = 1000;
      if (res.status === 401) {
        toQr();
        return;
      }
      if (res.ok) announce('');
      else await sleep(res.retryAfter ? res.retryAfter * 1000 : 2000);
      if (Date.now() - began < 500) await sleep(1000);
    }
  }

  async function init() {
    $('signout').addEventListener('click', async () => {
      $('signout').disabled = true;
      announce('Signing out\u2026');
      try {
        await api('POST', '/web/screen/signout', {});
      } catch (e) { /* the QR page shows whether the server answered */ }
      toQr();
    });

    let me;
    for (;;) {
      try {
        me = await api('GET', '/web/screen/me');
        break;
      } catch (e) {
        announce('The server cannot be reached. Trying again\u2026');
        await sleep(2000);
      }
    }
    if (me.status === 401) {
      toQr();
      return;
    }
    if (me.ok) {
      const acc = me.data.account || {};
      const dev = me.data.device || {};
      $('welcome').textContent = 'Welcome back, ' + (acc.display_name || acc.username || '');
      const line = $('this-device');
      line.textContent = '';
      line.append('This screen is signed in as ', QRL.quoted(dev.name),
        '. Remove it any time from your phone under Devices.');
    }
    watch();
  }

  init();
})();
