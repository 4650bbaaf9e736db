'use strict';
// Server-side subscriptions (protocol.md §4.12) from the connection token's
// `channels` and `subs` claims and client.subscribe_to_user_personal_channel,
// server API subscribe/unsubscribe pushes, and client.user_connection_limit
// (§4.2, 3504), in both formats on 2-worker servers.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer } = require('./lib/harness');
const { FORMATS, rawClientF, sdkClientF, dec } = require('./lib/formats');
const { makeToken } = require('./lib/token');
const { once, pollUntil } = require('./lib/util');

const OPEN = {
  allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
  presence: true, allow_presence_for_client: true, allow_presence_for_anonymous: true,
};
const CONFIG = {
  workers: 2,
  client: {
    user_connection_limit: 2,
    subscribe_to_user_personal_channel: { enabled: true, personal_channel_namespace: 'personal' },
  },
  channel: {
    namespaces: [
      { name: 'ss', ...OPEN },
      { name: 'ssrec', ...OPEN, history_size: 10, history_ttl: '60s', force_recovery: true },
      { name: 'personal', ...OPEN },
    ],
  },
};

let seq = 0;
const uniq = (ns, fmt) => `${ns}:s${++seq}-${fmt}`;
const errOf = (r) => r.error && { code: r.error.code, message: r.error.message };

describe('server-side subscriptions and connection limits', () => {
  const h = useServer(CONFIG);
  const open = [];
  afterEach(() => {
    for (const c of open.splice(0)) {
      try { if (c.disconnect) c.disconnect(); else c.close(); } catch { /* ignore */ }
    }
  });

  for (const fmt of FORMATS) {
    describe(`[${fmt}]`, () => {
      const raw = async (claims) => {
        const c = await rawClientF(fmt, h.server.wsUrl, { connect: claims ? { token: makeToken(claims) } : true });
        open.push(c);
        return c;
      };
      let uid = 0;
      const user = () => `${fmt}-u${++uid}`;

      h.test('`channels` claim: subscribed at connect, publications pushed, client subscribe gets 105', async () => {
        const a = uniq('ss', fmt);
        const b = uniq('ssrec', fmt);
        await h.server.publish(b, { before: 1 });
        const c = await raw({ sub: user(), channels: [a, b] });
        const subs = c.connectReply.connect.subs;
        assert.ok(subs && subs[a] !== undefined && subs[b] !== undefined, JSON.stringify(c.connectReply));
        assert.equal(subs[b].recoverable, true, JSON.stringify(subs[b]));
        assert.equal(subs[b].offset, 1);
        await h.server.publish(a, { to: 'a' });
        await h.server.publish(b, { to: 'b' });
        const pa = await c.push({ channel: a, kind: 'pub' });
        assert.deepEqual(pa.push.pub.data, { to: 'a' });
        const pb = await c.push({ channel: b, kind: 'pub' });
        assert.deepEqual(pb.push.pub.data, { to: 'b' });
        assert.equal(pb.push.pub.offset, 2);
        const r = await c.subscribe(a);
        assert.deepEqual(errOf(r), { code: 105, message: 'already subscribed' }, JSON.stringify(r));
      });

      h.test('`subs` claim: chan_info in presence; unknown namespace -> 102 at connect', async () => {
        const a = uniq('ss', fmt);
        const u = user();
        const c = await raw({ sub: u, info: { ci: 1 }, subs: { [a]: { info: { chan: 'x' } } } });
        const p = await pollUntil(async () => {
          const r = await c.command({ presence: { channel: a } });
          return r.presence && r.presence.presence && r.presence.presence[c.clientId] ? r : null;
        }, { timeout: 8000, what: 'server-side subscriber in presence' });
        assert.deepEqual(p.presence.presence[c.clientId], { user: u, client: c.clientId, conn_info: { ci: 1 }, chan_info: { chan: 'x' } });

        const x = await rawClientF(fmt, h.server.wsUrl);
        open.push(x);
        const r = await x.connect({ token: makeToken({ sub: user(), channels: ['nosuchns:x'] }) });
        assert.deepEqual(errOf(r), { code: 102, message: 'unknown channel' }, JSON.stringify(r));
      });

      h.test('recovery of server-side subscriptions through ConnectRequest.subs', async () => {
        const ch = uniq('ssrec', fmt);
        const u = user();
        const first = await raw({ sub: u, channels: [ch] });
        const pos = first.connectReply.connect.subs[ch];
        first.close();
        await h.server.publish(ch, { i: 1 });
        await h.server.publish(ch, { i: 2 });
        const c = await rawClientF(fmt, h.server.wsUrl);
        open.push(c);
        const r = await c.connect({
          token: makeToken({ sub: u, channels: [ch] }),
          subs: { [ch]: { recover: true, epoch: pos.epoch, offset: pos.offset || 0 } },
        });
        const s = r.connect && r.connect.subs && r.connect.subs[ch];
        assert.ok(s, JSON.stringify(r));
        assert.equal(s.recovered, true, JSON.stringify(s));
        assert.deepEqual((s.publications || []).map((p) => p.data), [{ i: 1 }, { i: 2 }]);
      });

      h.test('ConnectRequest.subs keys: allowed ones subscribed, private skipped, unknown namespace 3501', async () => {
        const ok = uniq('ss', fmt);
        const priv = `$${uniq('ss', fmt)}`;
        const c = await rawClientF(fmt, h.server.wsUrl);
        open.push(c);
        const r = await c.connect({ subs: { [ok]: {}, [priv]: {} } });
        const subs = (r.connect && r.connect.subs) || {};
        assert.ok(subs[ok] !== undefined, `allowed key subscribed: ${JSON.stringify(r)}`);
        assert.equal(subs[priv], undefined, `private key skipped: ${JSON.stringify(r)}`);
        const x = await rawClientF(fmt, h.server.wsUrl);
        open.push(x);
        x.send({ id: 1, connect: { subs: { 'nosuchns:x': {} } } });
        const cl = await x.waitClose();
        assert.deepEqual(cl, { code: 3501, reason: 'bad request' }, x.describe());
      });

      h.test('personal channel: users get personal:#<id>, anonymous connections do not', async () => {
        const u = user();
        const c = await raw({ sub: u });
        const ch = `personal:#${u}`;
        assert.ok(c.connectReply.connect.subs && c.connectReply.connect.subs[ch] !== undefined, JSON.stringify(c.connectReply));
        await h.server.publish(ch, { hi: u });
        const p = await c.push({ channel: ch, kind: 'pub' });
        assert.deepEqual(p.push.pub.data, { hi: u });
        const anon = await raw();
        assert.equal(anon.connectReply.connect.subs, undefined, JSON.stringify(anon.connectReply));
      });

      h.test('server API subscribe and unsubscribe: subscribe push, publications, unsubscribe push 2000', async () => {
        const u = user();
        const c = await raw({ sub: u });
        const ch = uniq('ss', fmt);
        const r = await h.server.api('subscribe', { user: u, channel: ch });
        assert.equal(r.status, 200, r.text);
        const sp = await c.push({ channel: ch, kind: 'subscribe' });
        assert.ok(sp.push.subscribe, JSON.stringify(sp));
        await h.server.publish(ch, { n: 1 });
        assert.deepEqual((await c.push({ channel: ch, kind: 'pub' })).push.pub.data, { n: 1 });
        await h.server.api('unsubscribe', { user: u, channel: ch });
        const up = await c.push({ channel: ch, kind: 'unsubscribe' });
        assert.deepEqual(up.push.unsubscribe, { code: 2000, reason: 'server unsubscribe' });
      });

      h.test('SDK: server-side subscription events and publications at client level', async () => {
        const ch = uniq('ss', fmt);
        const c = sdkClientF(fmt, h.server.wsUrl, { token: makeToken({ sub: user(), channels: [ch] }) });
        open.push(c);
        const subscribed = once(c, 'subscribed', { timeout: 8000, pred: (ctx) => ctx.channel === ch });
        const got = [];
        c.on('publication', (ctx) => { if (ctx.channel === ch) got.push(dec(ctx.data)); });
        c.connect();
        await subscribed;
        await h.server.publish(ch, { srv: 1 });
        await pollUntil(() => got.length === 1, { timeout: 5000, what: 'client-level publication' });
        assert.deepEqual(got, [{ srv: 1 }]);
      });

      h.test('client.user_connection_limit: third connection of a user -> 3504; anonymous not limited', async () => {
        const u = user();
        const a = await raw({ sub: u });
        await raw({ sub: u });
        const third = await rawClientF(fmt, h.server.wsUrl);
        open.push(third);
        third.send({ id: 1, connect: { token: makeToken({ sub: u }) } });
        const cl = await third.waitClose();
        assert.deepEqual(cl, { code: 3504, reason: 'connection limit' }, third.describe());
        for (let i = 0; i < 3; i++) await raw();
        a.close();
        await pollUntil(async () => {
          const x = await rawClientF(fmt, h.server.wsUrl);
          open.push(x);
          const r = await x.connect({ token: makeToken({ sub: u }) }).catch(() => null);
          return r && r.connect;
        }, { timeout: 10000, interval: 200, what: 'room for the user after one connection closed' });
      });
    });
  }
});

describe('personal channel single_connection', () => {
  const h = useServer({
    workers: 2,
    client: {
      subscribe_to_user_personal_channel: { enabled: true, single_connection: true, personal_channel_namespace: 'personal' },
    },
    channel: { namespaces: [{ name: 'personal', presence: true }] },
  });
  for (const fmt of FORMATS) {
    h.test(`[${fmt}] a second connection of the user closes the first with 3504`, async (t, srv) => {
      const u = `single-${fmt}`;
      const first = await rawClientF(fmt, srv.wsUrl, { connect: { token: makeToken({ sub: u }) } });
      const second = await rawClientF(fmt, srv.wsUrl, { connect: { token: makeToken({ sub: u }) } });
      try {
        assert.ok(second.connectReply.connect.subs && second.connectReply.connect.subs[`personal:#${u}`] !== undefined,
          JSON.stringify(second.connectReply));
        const cl = await first.waitClose();
        assert.deepEqual(cl, { code: 3504, reason: 'connection limit' }, first.describe());
        assert.equal(second.closeInfo, null);
      } finally {
        first.close();
        second.close();
      }
    });
  }
});
