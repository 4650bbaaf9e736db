'use strict';
// History, positioning and recovery (protocol.md §4.5.3-§4.5.5, §4.6, §4.9),
// in both formats, on a 2-worker server: offsets and epochs on publications,
// the `history` command (limit / since / reverse) and its error codes, the
// subscribe result fields, recovery after a dropped socket with the SDK,
// and fan-out of positioned subscriptions across workers.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer } = require('./lib/harness');
const { FORMATS, rawClientF, sdkClientF, dec } = require('./lib/formats');
const { makeToken } = require('./lib/token');
const { onTwoWorkers } = require('./lib/spread');
const { once, pollUntil, withTimeout } = require('./lib/util');

const HIST = { history_size: 10, history_ttl: '300s' };
const OPEN = {
  allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
  allow_publish_for_client: true, allow_publish_for_anonymous: true,
};
const CONFIG = {
  workers: 2,
  channel: {
    namespaces: [
      { name: 'hist', ...OPEN, ...HIST, allow_history_for_client: true },
      { name: 'histsub', ...OPEN, ...HIST, allow_history_for_subscriber: true },
      { name: 'histuser', ...OPEN, ...HIST, allow_history_for_client: true },
      { name: 'histanon', ...OPEN, ...HIST, allow_history_for_client: true, allow_history_for_anonymous: true },
      { name: 'histnone', ...OPEN, ...HIST },
      { name: 'nohist', ...OPEN, allow_history_for_client: true, allow_history_for_anonymous: true },
      { name: 'shortttl', ...OPEN, history_size: 10, history_ttl: '2s', allow_history_for_client: true },
      { name: 'rec', ...OPEN, history_size: 5, history_ttl: '300s', force_recovery: true, allow_history_for_client: true },
      { name: 'pos', ...OPEN, ...HIST, force_positioning: true },
      { name: 'allowrec', ...OPEN, ...HIST, allow_recovery: true, allow_positioning: true },
      { name: 'plain', ...OPEN, ...HIST },
      { name: 'bigpos', ...OPEN, history_size: 1000, history_ttl: '300s', force_positioning: true },
      { name: 'bigrec', ...OPEN, history_size: 1000, history_ttl: '300s', force_recovery: true, allow_history_for_client: true },
    ],
  },
};

let seq = 0;
const uniq = (ns, fmt) => `${ns}:c${++seq}-${fmt}`;
const tokenFor = (sub) => makeToken({ sub });

const ERR = {
  103: { code: 103, message: 'permission denied' },
  107: { code: 107, message: 'bad request' },
  108: { code: 108, message: 'not available' },
  112: { code: 112, message: 'unrecoverable position' },
};
const errOf = (r) => r.error && { code: r.error.code, message: r.error.message };
const offsets = (pubs) => (pubs || []).map((p) => p.offset);

describe('history, positioning and recovery', () => {
  const h = useServer(CONFIG);
  const open = [];
  afterEach(() => {
    for (const c of open.splice(0)) {
      try { if (c.disconnect) c.disconnect(); else c.close(); } catch { /* ignore */ }
    }
  });

  for (const fmt of FORMATS) {
    describe(`[${fmt}]`, () => {
      const raw = async (opts = { connect: { token: tokenFor('1') } }) => {
        const c = await rawClientF(fmt, h.server.wsUrl, opts);
        open.push(c);
        return c;
      };
      const sdk = (opts) => { const c = sdkClientF(fmt, h.server.wsUrl, opts); open.push(c); return c; };
      // Publish n publications {i} through the server API; returns the results.
      const apiPublish = async (ch, from, n) => {
        const out = [];
        for (let i = from; i < from + n; i++) out.push(await h.server.publish(ch, { i }));
        return out;
      };

      h.test('publications carry consecutive offsets; the first one carries the epoch', async () => {
        const ch = uniq('hist', fmt);
        const c = await raw();
        assert.deepEqual(await c.subscribe(ch).then((r) => r.error), undefined);
        for (let i = 1; i <= 3; i++) {
          const r = await c.command({ publish: { channel: ch, data: { i } } });
          assert.deepEqual(r.publish, {}, JSON.stringify(r));
        }
        const pubs = [];
        for (let i = 1; i <= 3; i++) pubs.push((await c.push({ channel: ch, kind: 'pub' })).push.pub);
        assert.deepEqual(pubs.map((p) => p.data), [{ i: 1 }, { i: 2 }, { i: 3 }]);
        assert.deepEqual(offsets(pubs), [1, 2, 3], JSON.stringify(pubs));
        assert.equal(typeof pubs[0].epoch, 'string', `offset 1 carries epoch: ${JSON.stringify(pubs[0])}`);
        assert.ok(pubs[0].epoch.length > 0);
        const hist = await c.command({ history: { channel: ch } });
        assert.equal(hist.history.epoch, pubs[0].epoch, 'history epoch = publication epoch');
        assert.equal(hist.history.offset, 3);
        // The server API reports the same stream position.
        const r = await h.server.publish(ch, { i: 4 });
        assert.equal(r.offset, 4, JSON.stringify(r));
        assert.equal(r.epoch, pubs[0].epoch);
      });

      h.test('channels without history: publications have no offset', async () => {
        const ch = uniq('nohist', fmt);
        const c = await raw();
        const s = await c.subscribe(ch);
        assert.deepEqual(s.subscribe, {}, JSON.stringify(s));
        await h.server.publish(ch, { x: 1 });
        const p = (await c.push({ channel: ch, kind: 'pub' })).push.pub;
        assert.deepEqual(p, { data: { x: 1 } });
      });

      h.test('history command: limit, since and reverse', async () => {
        const ch = uniq('hist', fmt);
        const res = await apiPublish(ch, 1, 5);
        const epoch = res[0].epoch;
        const c = await raw();
        const hist = async (req) => {
          const r = await c.command({ history: { channel: ch, ...req } });
          assert.ok(r.history, `history ${JSON.stringify(req)}: ${JSON.stringify(r)}`);
          assert.equal(r.history.epoch, epoch, 'epoch of the top');
          assert.equal(r.history.offset, 5, 'offset of the top');
          return r.history.publications || [];
        };
        assert.deepEqual(await hist({}), [], 'limit 0: only the top position');
        if (fmt === 'json') {
          const r = await c.command({ history: { channel: ch } });
          assert.deepEqual(r.history, { publications: [], epoch, offset: 5 }, 'JSON always writes the three keys');
        }
        let p = await hist({ limit: 3 });
        assert.deepEqual(offsets(p), [1, 2, 3]);
        assert.deepEqual(p.map((x) => x.data), [{ i: 1 }, { i: 2 }, { i: 3 }]);
        assert.deepEqual(offsets(await hist({ limit: 2, reverse: true })), [5, 4]);
        assert.deepEqual(offsets(await hist({ limit: 10, since: { offset: 2, epoch } })), [3, 4, 5]);
        assert.deepEqual(offsets(await hist({ limit: 2, since: { offset: 2, epoch } })), [3, 4]);
        assert.deepEqual(offsets(await hist({ limit: 10, since: { offset: 5, epoch } })), [], 'since the top: none');
        assert.deepEqual(offsets(await hist({ limit: 10, since: { offset: 4, epoch }, reverse: true })), [3, 2, 1]);
        assert.deepEqual(offsets(await hist({ limit: -1 })), [1, 2, 3, 4, 5], 'limit -1: all');
        assert.deepEqual(offsets(await hist({ limit: 10, since: { offset: 2 } })), [3, 4, 5], 'since without epoch');
      });

      h.test('history keeps only history_size publications', async () => {
        const ch = uniq('hist', fmt);
        await apiPublish(ch, 1, 13);
        const c = await raw();
        const r = await c.command({ history: { channel: ch, limit: -1 } });
        assert.deepEqual(offsets(r.history.publications), [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], JSON.stringify(r));
        assert.equal(r.history.offset, 13);
        // since older than the window: starts at the oldest retained entry
        const s = await c.command({ history: { channel: ch, limit: 3, since: { offset: 1, epoch: r.history.epoch } } });
        assert.deepEqual(offsets(s.history.publications), [4, 5, 6], JSON.stringify(s));
      });

      h.test('history limit is capped at client.history_max_publication_limit (300)', async () => {
        const ch = uniq('bigrec', fmt);
        await apiPublish(ch, 1, 320);
        const c = await raw();
        let r = await c.command({ history: { channel: ch, limit: -1 } });
        assert.ok(r.history, JSON.stringify(r));
        assert.deepEqual(offsets(r.history.publications), Array.from({ length: 300 }, (_, k) => k + 1), 'the 300 oldest');
        r = await c.command({ history: { channel: ch, limit: 1000, reverse: true } });
        assert.deepEqual(offsets(r.history.publications), Array.from({ length: 300 }, (_, k) => 320 - k), 'the 300 newest');
        assert.equal(r.history.offset, 320);
      });

      h.test('SDK Subscription `since`: recovers from a known position on the first subscribe', async () => {
        const ch = uniq('rec', fmt);
        const res = await apiPublish(ch, 1, 4);
        const c = sdk({ token: tokenFor('6') });
        const sub = c.newSubscription(ch, { since: { offset: 2, epoch: res[0].epoch } });
        const got = [];
        sub.on('publication', (ctx) => got.push(ctx.offset));
        const ok = once(sub, 'subscribed', { timeout: 8000 });
        sub.subscribe();
        c.connect();
        const ctx = await ok;
        assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
        assert.equal(ctx.recovered, true, JSON.stringify(ctx));
        await pollUntil(() => got.length >= 2, { timeout: 5000, what: 'recovered publications' });
        assert.deepEqual(got, [3, 4]);
      });

      h.test('history errors: 112 wrong epoch, 107 reverse from offset 0, 108 no history', async () => {
        const ch = uniq('hist', fmt);
        await apiPublish(ch, 1, 2);
        const c = await raw();
        let r = await c.command({ history: { channel: ch, limit: 10, since: { offset: 1, epoch: 'not-the-epoch' } } });
        assert.deepEqual(errOf(r), ERR[112], JSON.stringify(r));
        r = await c.command({ history: { channel: ch, limit: 10, reverse: true, since: { offset: 0, epoch: '' } } });
        assert.deepEqual(errOf(r), ERR[107], JSON.stringify(r));
        r = await c.command({ history: { channel: uniq('nohist', fmt), limit: 10 } });
        assert.deepEqual(errOf(r), ERR[108], JSON.stringify(r));
        r = await c.command({ history: { channel: 'nosuchns:x' } });
        assert.deepEqual(errOf(r), { code: 102, message: 'unknown channel' }, JSON.stringify(r));
        // still usable after the errors
        r = await c.command({ history: { channel: ch, limit: 10 } });
        assert.deepEqual(offsets(r.history.publications), [1, 2]);
      });

      h.test('history permissions: _for_subscriber, _for_client, _for_anonymous', async () => {
        const user = await raw();
        const anon = await raw({ connect: true });
        // allow_history_for_subscriber only
        const chs = uniq('histsub', fmt);
        let r = await user.command({ history: { channel: chs } });
        assert.deepEqual(errOf(r), ERR[103], `not subscribed: ${JSON.stringify(r)}`);
        await user.subscribe(chs);
        r = await user.command({ history: { channel: chs } });
        assert.ok(r.history, `subscribed: ${JSON.stringify(r)}`);
        await anon.subscribe(chs);
        r = await anon.command({ history: { channel: chs } });
        assert.deepEqual(errOf(r), ERR[103], `anonymous subscriber without _for_anonymous: ${JSON.stringify(r)}`);
        // allow_history_for_client without anonymous
        const chu = uniq('histuser', fmt);
        r = await user.command({ history: { channel: chu } });
        assert.ok(r.history, JSON.stringify(r));
        r = await anon.command({ history: { channel: chu } });
        assert.deepEqual(errOf(r), ERR[103], `anonymous: ${JSON.stringify(r)}`);
        // with allow_history_for_anonymous
        r = await anon.command({ history: { channel: uniq('histanon', fmt) } });
        assert.ok(r.history, `anonymous allowed: ${JSON.stringify(r)}`);
        // no history permission at all
        r = await user.command({ history: { channel: uniq('histnone', fmt) } });
        assert.deepEqual(errOf(r), ERR[103], JSON.stringify(r));
      });

      h.test('history_ttl: publications expire, the stream position stays', async () => {
        const ch = uniq('shortttl', fmt);
        const res = await apiPublish(ch, 1, 2);
        const c = await raw();
        let r = await c.command({ history: { channel: ch, limit: 10 } });
        assert.deepEqual(offsets(r.history.publications), [1, 2]);
        r = await pollUntil(async () => {
          const x = await c.command({ history: { channel: ch, limit: 10 } });
          return (x.history && (x.history.publications || []).length === 0) ? x : null;
        }, { timeout: 15000, interval: 250, what: 'history of a 2s-ttl channel to empty' });
        assert.equal(r.history.offset, 2, `offset kept: ${JSON.stringify(r)}`);
        assert.equal(r.history.epoch, res[0].epoch, 'epoch kept');
        const p = await h.server.publish(ch, { i: 3 });
        assert.equal(p.offset, 3, 'the stream goes on from its offset');
      });

      h.test('SDK: Subscription.history() and Centrifuge.history()', async () => {
        const ch = uniq('hist', fmt);
        await apiPublish(ch, 1, 4);
        const c = sdk({ token: tokenFor('5') });
        const sub = c.newSubscription(ch);
        const subscribed = once(sub, 'subscribed', { timeout: 8000 });
        sub.subscribe();
        c.connect();
        await subscribed;
        let r = await withTimeout(sub.history({ limit: 10 }), 8000, 'sub.history');
        assert.deepEqual(r.publications.map((p) => p.offset), [1, 2, 3, 4]);
        assert.deepEqual(r.publications.map((p) => dec(p.data)), [{ i: 1 }, { i: 2 }, { i: 3 }, { i: 4 }]);
        assert.equal(r.offset, 4);
        assert.equal(typeof r.epoch, 'string');
        r = await withTimeout(c.history(ch, { limit: 2, reverse: true }), 8000, 'client.history');
        assert.deepEqual(r.publications.map((p) => p.offset), [4, 3]);
        r = await withTimeout(c.history(ch, { limit: 10, since: { offset: 3, epoch: r.epoch } }), 8000, 'since');
        assert.deepEqual(r.publications.map((p) => dec(p.data)), [{ i: 4 }]);
        await assert.rejects(c.history(uniq('nohist', fmt), { limit: 1 }), (e) => e.code === 108, 'SDK gets 108');
        await assert.rejects(c.history(ch, { limit: 1, since: { offset: 1, epoch: 'xxxx' } }), (e) => e.code === 112);
      });

      h.test('subscribe result: force_recovery, force_positioning, allow_recovery, plain', async () => {
        const c = await raw();
        const rec = uniq('rec', fmt);
        const top = await apiPublish(rec, 1, 2);
        let r = await c.subscribe(rec);
        assert.ok(r.subscribe, JSON.stringify(r));
        assert.equal(r.subscribe.recoverable, true, JSON.stringify(r));
        assert.equal(r.subscribe.positioned, true, JSON.stringify(r));
        assert.equal(r.subscribe.epoch, top[0].epoch);
        assert.equal(r.subscribe.offset, 2);
        assert.equal(r.subscribe.was_recovering, undefined);
        assert.equal(r.subscribe.recovered, undefined);

        const pos = uniq('pos', fmt);
        r = await c.subscribe(pos);
        assert.equal(r.subscribe.positioned, true, JSON.stringify(r));
        assert.equal(r.subscribe.recoverable, undefined, JSON.stringify(r));
        assert.equal(typeof r.subscribe.epoch, 'string', 'epoch of an empty stream');
        assert.ok(r.subscribe.epoch.length > 0, JSON.stringify(r));

        const ar1 = uniq('allowrec', fmt);
        r = await c.subscribe(ar1, { recoverable: true });
        assert.equal(r.subscribe.recoverable, true, `asked: ${JSON.stringify(r)}`);
        assert.equal(r.subscribe.positioned, true, JSON.stringify(r));
        const ar2 = uniq('allowrec', fmt);
        r = await c.subscribe(ar2, { positioned: true });
        assert.equal(r.subscribe.positioned, true, `asked positioned: ${JSON.stringify(r)}`);
        assert.equal(r.subscribe.recoverable, undefined, JSON.stringify(r));
        const ar3 = uniq('allowrec', fmt);
        r = await c.subscribe(ar3);
        assert.deepEqual(r.subscribe, {}, `not asked: ${JSON.stringify(r)}`);

        const plain = uniq('plain', fmt);
        r = await c.subscribe(plain, { recoverable: true, positioned: true });
        assert.deepEqual(r.subscribe, {}, `plain namespace without permission grants nothing: ${JSON.stringify(r)}`);
      });

      h.test('raw recover: exact missed publications, wrong epoch, too old, at top', async (t) => {
        const ch = uniq('rec', fmt);
        const first = await apiPublish(ch, 1, 2);
        const epoch = first[0].epoch;
        await apiPublish(ch, 3, 3); // top = 5
        const c = await raw();

        let r = await c.subscribe(ch, { recover: true, offset: 2, epoch });
        let s = r.subscribe;
        assert.ok(s, JSON.stringify(r));
        assert.equal(s.was_recovering, true);
        assert.equal(s.recovered, true, JSON.stringify(s));
        assert.deepEqual(offsets(s.publications), [3, 4, 5]);
        assert.deepEqual(s.publications.map((p) => p.data), [{ i: 3 }, { i: 4 }, { i: 5 }]);
        assert.equal(s.epoch, epoch);
        assert.ok(s.offset === 2 || s.offset === 5, `offset ${s.offset}`);
        if (s.offset !== 2) t.diagnostic(`recovered subscribe offset is the top (${s.offset}), spec §4.5.4 says the client's (2)`);
        await c.command({ unsubscribe: { channel: ch } });

        r = await c.subscribe(ch, { recover: true, offset: 5, epoch });
        s = r.subscribe;
        assert.equal(s.recovered, true, `at top: ${JSON.stringify(s)}`);
        assert.deepEqual(offsets(s.publications), []);
        assert.equal(s.offset, 5);
        await c.command({ unsubscribe: { channel: ch } });

        r = await c.subscribe(ch, { recover: true, offset: 2, epoch: 'otherep' });
        s = r.subscribe;
        assert.equal(s.was_recovering, true, JSON.stringify(s));
        assert.equal(s.recovered, undefined, `wrong epoch: ${JSON.stringify(s)}`);
        assert.deepEqual(offsets(s.publications), []);
        assert.equal(s.offset, 5);
        assert.equal(s.epoch, epoch);
        await c.command({ unsubscribe: { channel: ch } });

        await apiPublish(ch, 6, 6); // top = 11, history_size 5 keeps 7..11
        r = await c.subscribe(ch, { recover: true, offset: 5, epoch });
        s = r.subscribe;
        assert.equal(s.was_recovering, true, JSON.stringify(s));
        assert.equal(s.recovered, undefined, `6 missed with history_size 5: ${JSON.stringify(s)}`);
        assert.deepEqual(offsets(s.publications), []);
        assert.equal(s.offset, 11);
      });

      h.test('SDK recovery after a dropped socket: exactly the missed publications, recovered', async () => {
        const ch = uniq('rec', fmt);
        await apiPublish(ch, 1, 2);
        const c = sdk({ token: tokenFor('7') });
        const sub = c.newSubscription(ch);
        const got = [];
        const subEvents = [];
        sub.on('publication', (ctx) => got.push({ offset: ctx.offset, data: dec(ctx.data) }));
        sub.on('subscribed', (ctx) => subEvents.push(ctx));
        let ok = once(sub, 'subscribed', { timeout: 8000 });
        sub.subscribe();
        c.connect();
        const first = await ok;
        assert.equal(first.recoverable, true);
        assert.equal(first.wasRecovering, false);
        await h.server.publish(ch, { i: 3 });
        await pollUntil(() => got.length === 1, { timeout: 5000, what: 'live publication 3' });

        // Drop the socket and keep the client away while publishing.
        ok = once(sub, 'subscribed', { timeout: 15000, what: 'resubscribed after reconnect' });
        c.holder.offline = true;
        const sock = c.holder.sockets[c.holder.sockets.length - 1];
        sock.terminate();
        await once(c, 'connecting', { timeout: 5000 });
        await apiPublish(ch, 4, 3);
        c.holder.offline = false;
        const again = await ok;
        assert.equal(again.wasRecovering, true, JSON.stringify(again));
        assert.equal(again.recovered, true, JSON.stringify(again));
        await pollUntil(() => got.length >= 4, { timeout: 5000, what: 'recovered publications' });
        await h.server.publish(ch, { i: 7 });
        await pollUntil(() => got.length >= 5, { timeout: 5000, what: 'live publication after recovery' });
        assert.deepEqual(got, [3, 4, 5, 6, 7].map((i) => ({ offset: i, data: { i } })));
      });

      h.test('SDK recovery fails when more than history_size were missed', async () => {
        const ch = uniq('rec', fmt);
        const c = sdk({ token: tokenFor('8') });
        const sub = c.newSubscription(ch);
        const got = [];
        sub.on('publication', (ctx) => got.push(ctx.offset));
        let ok = once(sub, 'subscribed', { timeout: 8000 });
        sub.subscribe();
        c.connect();
        await ok;
        await h.server.publish(ch, { i: 1 });
        await pollUntil(() => got.length === 1, { timeout: 5000, what: 'live publication 1' });
        ok = once(sub, 'subscribed', { timeout: 15000, what: 'resubscribed after reconnect' });
        c.holder.offline = true;
        c.holder.sockets[c.holder.sockets.length - 1].terminate();
        await once(c, 'connecting', { timeout: 5000 });
        await apiPublish(ch, 2, 7); // 7 missed, history_size 5
        c.holder.offline = false;
        const again = await ok;
        assert.equal(again.wasRecovering, true, JSON.stringify(again));
        assert.equal(again.recovered, false, JSON.stringify(again));
        assert.equal(again.streamPosition.offset, 8, JSON.stringify(again));
        await h.server.publish(ch, { i: 9 });
        await pollUntil(() => got.includes(9), { timeout: 5000, what: 'live publication after failed recovery' });
        assert.deepEqual(got, [1, 9], 'nothing replayed when recovery failed');
      });

      h.test('SDK disconnect()/connect(): recover on resubscribe', async () => {
        const ch = uniq('rec', fmt);
        const c = sdk({ token: tokenFor('9') });
        const sub = c.newSubscription(ch);
        const got = [];
        sub.on('publication', (ctx) => got.push(dec(ctx.data).i));
        let ok = once(sub, 'subscribed', { timeout: 8000 });
        sub.subscribe();
        c.connect();
        await ok;
        c.disconnect();
        await apiPublish(ch, 1, 3);
        ok = once(sub, 'subscribed', { timeout: 8000 });
        c.connect();
        const ctx = await ok;
        assert.equal(ctx.recovered, true, JSON.stringify(ctx));
        await pollUntil(() => got.length >= 3, { timeout: 5000, what: 'recovered publications' });
        assert.deepEqual(got, [1, 2, 3]);
      });

      h.test('positioned fan-out: publisher on one worker, subscriber on the other, consecutive offsets', async (t) => {
        const ch = uniq('bigpos', fmt);
        const { a: subc, b: pubc, pidA, pidB, spare } = await onTwoWorkers(h.server,
          () => raw(), (c) => c.localPort);
        t.diagnostic(`subscriber on worker ${pidA}, publisher on worker ${pidB}`);
        for (const s of spare) s.close();
        const r = await subc.subscribe(ch);
        assert.equal(r.subscribe.positioned, true, JSON.stringify(r));
        const start = r.subscribe.offset || 0;
        const M = 200;
        for (let i = 1; i <= M; i++) {
          const p = await pubc.command({ publish: { channel: ch, data: { i } } });
          assert.deepEqual(p.publish, {}, JSON.stringify(p));
        }
        const pubs = [];
        for (let i = 1; i <= M; i++) pubs.push((await subc.push({ channel: ch, kind: 'pub' }, { timeout: 10000 })).push.pub);
        assert.deepEqual(pubs.map((p) => p.data.i), Array.from({ length: M }, (_, k) => k + 1), 'in publish order');
        assert.deepEqual(offsets(pubs), Array.from({ length: M }, (_, k) => start + k + 1), 'consecutive offsets');
        assert.equal(subc.pending.filter((m) => m.push && m.push.unsubscribe).length, 0, 'no unsubscribe push');
      });

      h.test('two publishers on two workers: both subscribers see one order with consecutive offsets', async (t) => {
        const ch = uniq('bigpos', fmt);
        const { a, b, pidA, pidB, spare } = await onTwoWorkers(h.server, () => raw(), (c) => c.localPort);
        for (const s of spare) s.close();
        t.diagnostic(`clients on workers ${pidA} and ${pidB}`);
        for (const c of [a, b]) assert.equal((await c.subscribe(ch)).subscribe.positioned, true);
        const M = 100;
        const burst = async (c, tag) => {
          for (let i = 1; i <= M; i++) await c.command({ publish: { channel: ch, data: { tag, i } } });
        };
        await Promise.all([burst(a, 'a'), burst(b, 'b')]);
        const seen = [];
        for (const c of [a, b]) {
          const pubs = [];
          for (let i = 0; i < 2 * M; i++) pubs.push((await c.push({ channel: ch, kind: 'pub' }, { timeout: 10000 })).push.pub);
          assert.deepEqual(offsets(pubs), Array.from({ length: 2 * M }, (_, k) => k + 1), 'consecutive offsets');
          for (const tag of ['a', 'b']) {
            assert.deepEqual(pubs.filter((p) => p.data.tag === tag).map((p) => p.data.i),
              Array.from({ length: M }, (_, k) => k + 1), `publisher ${tag} order kept`);
          }
          seen.push(pubs.map((p) => `${p.data.tag}${p.data.i}`));
        }
        assert.deepEqual(seen[0], seen[1], 'same order on both workers');
      });

      h.test('recover edge cases: offset past the top, recover without epoch', async () => {
        const ch = uniq('rec', fmt);
        const res = await apiPublish(ch, 1, 3);
        const c = await raw();
        let r = await c.subscribe(ch, { recover: true, offset: 100, epoch: res[0].epoch });
        assert.equal(r.subscribe.was_recovering, true, JSON.stringify(r));
        assert.equal(r.subscribe.recovered, undefined, `offset beyond the top is not recovered: ${JSON.stringify(r)}`);
        assert.equal(r.subscribe.offset, 3, JSON.stringify(r));
        assert.deepEqual(offsets(r.subscribe.publications), []);
        await c.command({ unsubscribe: { channel: ch } });
        r = await c.subscribe(ch, { recover: true, offset: 1 });
        assert.equal(r.subscribe.recovered, true, `no epoch given: ${JSON.stringify(r)}`);
        assert.deepEqual(offsets(r.subscribe.publications), [2, 3]);
      });

      h.test('was_recovering echoes the request on a positioned channel without recovery', async () => {
        const ch = uniq('pos', fmt);
        const res = await apiPublish(ch, 1, 2);
        const c = await raw();
        const r = await c.subscribe(ch, { recover: true, offset: 1, epoch: res[0].epoch });
        assert.equal(r.subscribe.positioned, true, JSON.stringify(r));
        assert.equal(r.subscribe.was_recovering, true, `spec §4.5.4: true even if not recoverable: ${JSON.stringify(r)}`);
        assert.equal(r.subscribe.recovered, undefined, JSON.stringify(r));
      });

      h.test('recover while a publisher on the other worker keeps publishing: no gap, no duplicate', async (t) => {
        const ch = uniq('bigrec', fmt);
        const { a: subc, b: pubc, pidA, pidB, spare } = await onTwoWorkers(h.server, () => raw(), (c) => c.localPort);
        for (const s of spare) s.close();
        t.diagnostic(`subscriber on ${pidA}, publisher on ${pidB}`);
        const first = await h.server.publish(ch, { i: 0 });
        const N = 250;   // below recovery_max_publication_limit (300): recoverable however slow the subscriber
        const ids = [];
        const sendBatch = (from, n) => {
          const cmds = [];
          for (let i = from; i < from + n; i++) {
            const id = 1000 + i;
            ids.push(id);
            cmds.push({ id, publish: { channel: ch, data: { i } } });
          }
          pubc.send(cmds);
        };
        // keep the publisher busy while the subscriber recovers from offset 1
        for (let k = 0; k < 10; k++) sendBatch(1 + k * 10, 10);
        const subP = subc.subscribe(ch, { recover: true, offset: 1, epoch: first.epoch }, { timeout: 10000 });
        for (let k = 10; k < N / 10; k++) sendBatch(1 + k * 10, 10);
        const r = await subP;
        assert.ok(r.subscribe, JSON.stringify(r));
        assert.equal(r.subscribe.recovered, true, `recovered: ${JSON.stringify(r).slice(0, 300)}`);
        for (const id of ids) assert.deepEqual((await pubc.reply(id, { timeout: 10000 })).publish, {});
        const seen = offsets(r.subscribe.publications);
        let last = seen.length ? seen[seen.length - 1] : 1;
        while (last < N + 1) {
          const m = await subc.push({ channel: ch, kind: 'pub' }, { timeout: 10000 });
          seen.push(m.push.pub.offset);
          last = m.push.pub.offset;
        }
        assert.deepEqual(seen, Array.from({ length: N }, (_, k) => k + 2), 'offsets 2..N+1 exactly once, in order');
      });

      h.test('positioned subscriber joining mid-stream: first live offset follows the subscribe offset', async () => {
        const ch = uniq('bigpos', fmt);
        const pubc = await raw();
        const subc = await raw();
        const N = 300;
        const cmds = [];
        for (let i = 1; i <= N; i++) cmds.push({ id: 5000 + i, publish: { channel: ch, data: { i } } });
        pubc.send(cmds.slice(0, 150));
        const subP = subc.subscribe(ch, {}, { timeout: 10000 });
        pubc.send(cmds.slice(150));
        const r = await subP;
        assert.equal(r.subscribe.positioned, true, JSON.stringify(r));
        await pubc.reply(5000 + N, { timeout: 10000 });
        const start = r.subscribe.offset || 0;
        const seen = [];
        for (let o = start + 1; o <= N; o++) seen.push((await subc.push({ channel: ch, kind: 'pub' }, { timeout: 10000 })).push.pub.offset);
        assert.deepEqual(seen, Array.from({ length: N - start }, (_, k) => start + k + 1), `from ${start + 1} to ${N}`);
      });

      h.test('flag bit 2 (getState): unrecoverable position -> 112', async () => {
        const ch = uniq('rec', fmt);
        const res = await apiPublish(ch, 1, 8); // history_size 5 keeps 4..8
        const c = await raw();
        const r = await c.subscribe(ch, { recover: true, offset: 1, epoch: res[0].epoch, flag: 3 });
        assert.deepEqual(errOf(r), ERR[112], JSON.stringify(r));
      });

    });
  }
});

// A separate server: this kills its broker.
describe('broker restart', () => {
  const h = useServer(CONFIG);
  for (const fmt of FORMATS) {
    h.test(`[${fmt}] positioned subscriber told its position is lost (2500), resubscribe not recovered`, async (t, srv) => {
      const ch = uniq('rec', fmt);
      for (let i = 1; i <= 2; i++) await srv.publish(ch, { i });
      const c = await rawClientF(fmt, srv.wsUrl, { connect: { token: tokenFor('1') } });
      try {
        const r = await c.subscribe(ch);
        const oldEpoch = r.subscribe.epoch;
        const kids = await srv.waitChildren(2);
        process.kill(kids.brokers[0], 'SIGKILL');
        await pollUntil(() => {
          const k = srv.children();
          return k.brokers.length === 1 && k.brokers[0] !== kids.brokers[0];
        }, { timeout: 15000, what: 'broker respawn' });
        const u = await c.push({ channel: ch, kind: 'unsubscribe' }, { timeout: 15000 });
        assert.equal(u.push.unsubscribe.code, 2500, JSON.stringify(u));
        assert.equal(u.push.unsubscribe.reason, 'insufficient state');
        const again = await c.subscribe(ch, { recover: true, offset: 2, epoch: oldEpoch });
        assert.equal(again.subscribe.was_recovering, true, JSON.stringify(again));
        assert.equal(again.subscribe.recovered, undefined, JSON.stringify(again));
        assert.notEqual(again.subscribe.epoch, oldEpoch, 'new epoch after broker restart');
      } finally {
        c.close();
      }
    }, { timeout: 40000 });
  }
});

describe('client.recovery_max_publication_limit', () => {
  const h = useServer({ ...CONFIG, client: { recovery_max_publication_limit: 3 } });
  for (const fmt of FORMATS) {
    h.test(`[${fmt}] more missed publications than the limit: not recovered`, async (t, srv) => {
      const ch = uniq('rec', fmt);
      const res = [];
      for (let i = 1; i <= 5; i++) res.push(await srv.publish(ch, { i }));
      const c = await rawClientF(fmt, srv.wsUrl, { connect: { token: tokenFor('1') } });
      try {
        let r = await c.subscribe(ch, { recover: true, offset: 2, epoch: res[0].epoch });
        assert.equal(r.subscribe.recovered, true, `3 missed, limit 3: ${JSON.stringify(r)}`);
        assert.deepEqual(offsets(r.subscribe.publications), [3, 4, 5]);
        await c.command({ unsubscribe: { channel: ch } });
        r = await c.subscribe(ch, { recover: true, offset: 1, epoch: res[0].epoch });
        assert.equal(r.subscribe.recovered, undefined, `4 missed, limit 3: ${JSON.stringify(r)}`);
        assert.deepEqual(offsets(r.subscribe.publications), []);
        assert.equal(r.subscribe.offset, 5);
      } finally {
        c.close();
      }
    });
  }
});
