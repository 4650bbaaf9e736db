'use strict';
// Channel names, namespaces and permissions (protocol.md §4.5.2, §4.8,
// §5.1), in both formats: unknown namespace 102, channel.max_length and
// channel_regex 107, user-limited channels (#), client.channel_limit 106,
// already subscribed 105, publish permissions and the empty-data check,
// rpc without a proxy 104, send 3508.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer, assertHealthy } = require('./lib/harness');
const { FORMATS, rawClientF, sdkClientF } = require('./lib/formats');
const { makeToken } = require('./lib/token');
const { once } = require('./lib/util');

const MAXLEN = 40;
const LIMIT = 5;
const CONFIG = {
  workers: 2,
  client: { channel_limit: LIMIT },
  channel: {
    max_length: MAXLEN,
    namespaces: [
      { name: 'open', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true },
      { name: 'authonly', allow_subscribe_for_client: true, allow_publish_for_client: true },
      { name: 'rx', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true, channel_regex: '^[a-z0-9]+$' },
      { name: 'ul', allow_user_limited_channels: true },
      { name: 'pubsub', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true, allow_publish_for_subscriber: true },
      {
        name: 'pubanon', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
        allow_publish_for_client: true, allow_publish_for_anonymous: true,
      },
      { name: 'nosub' },
    ],
  },
};

const E = {
  102: { code: 102, message: 'unknown channel' },
  103: { code: 103, message: 'permission denied' },
  104: { code: 104, message: 'method not found' },
  105: { code: 105, message: 'already subscribed' },
  106: { code: 106, message: 'limit exceeded' },
  107: { code: 107, message: 'bad request' },
};
const errOf = (r) => r.error && { code: r.error.code, message: r.error.message };
let seq = 0;
const uniq = (ns, fmt) => `${ns}:h${++seq}${fmt[0]}`;

describe('channels, namespaces and permissions', () => {
  const h = useServer(CONFIG);
  const open = [];
  afterEach(() => {
    for (const c of open.splice(0)) {
      try { if (c.disconnect) c.disconnect(); else c.close(); } catch { /* ignore */ }
    }
  });

  for (const fmt of FORMATS) {
    describe(`[${fmt}]`, () => {
      const raw = async (user = null) => {
        const connect = user === null ? true : { token: makeToken({ sub: user }) };
        const c = await rawClientF(fmt, h.server.wsUrl, { connect });
        open.push(c);
        return c;
      };

      h.test('unknown namespace: 102 for subscribe, publish, presence, presence_stats, history', async () => {
        const c = await raw('1');
        for (const cmd of ['subscribe', 'publish', 'presence', 'presence_stats', 'history']) {
          const body = cmd === 'publish' ? { channel: 'nosuch:x', data: { a: 1 } } : { channel: 'nosuch:x' };
          const r = await c.command({ [cmd]: body });
          assert.deepEqual(errOf(r), E[102], `${cmd}: ${JSON.stringify(r)}`);
        }
      });

      h.test('channel.max_length: exactly max_length is fine, one more is 107', async () => {
        const c = await raw('1');
        const base = `open:${fmt[0]}`;
        const ok = base + 'a'.repeat(MAXLEN - base.length);
        assert.equal(ok.length, MAXLEN);
        let r = await c.subscribe(ok);
        assert.ok(r.subscribe, `length ${ok.length}: ${JSON.stringify(r)}`);
        r = await c.subscribe(ok + 'b');
        assert.deepEqual(errOf(r), E[107], `length ${ok.length + 1}: ${JSON.stringify(r)}`);
        r = await c.command({ publish: { channel: `pubanon:${'x'.repeat(MAXLEN)}`, data: { a: 1 } } });
        assert.deepEqual(errOf(r), E[107], `publish to a too long channel: ${JSON.stringify(r)}`);
      });

      h.test('channel_regex and non-ASCII names: 107', async () => {
        const c = await raw('1');
        let r = await c.subscribe(`rx:abc${fmt[0]}`);
        assert.ok(r.subscribe, JSON.stringify(r));
        for (const bad of ['rx:ABC', 'rx:a-b', 'rx:', 'open:caf\u00e9']) {
          r = await c.subscribe(bad);
          assert.deepEqual(errOf(r), E[107], `${bad}: ${JSON.stringify(r)}`);
        }
      });

      h.test('user-limited channels: listed users allowed, others 103', async () => {
        const ch = `ul:room${fmt[0]}#42,43`;
        for (const [user, want] of [['42', null], ['43', null], ['44', E[103]], [null, E[103]]]) {
          const c = await raw(user);
          const r = await c.subscribe(ch);
          if (want) assert.deepEqual(errOf(r), want, `user ${user}: ${JSON.stringify(r)}`);
          else assert.ok(r.subscribe, `user ${user}: ${JSON.stringify(r)}`);
        }
        const c = await raw('42');
        const r = await c.subscribe(`ul:solo${fmt[0]}`);
        assert.deepEqual(errOf(r), E[103], `no # list: ${JSON.stringify(r)}`);
      });

      h.test('subscribe permissions: anonymous vs user, namespace without subscribe permission', async () => {
        const anon = await raw();
        const user = await raw('9');
        let r = await anon.subscribe(uniq('authonly', fmt));
        assert.deepEqual(errOf(r), E[103], JSON.stringify(r));
        r = await user.subscribe(uniq('authonly', fmt));
        assert.ok(r.subscribe, JSON.stringify(r));
        r = await user.subscribe(uniq('nosub', fmt));
        assert.deepEqual(errOf(r), E[103], JSON.stringify(r));
        r = await anon.subscribe(`top${fmt}`);
        assert.ok(r.subscribe, `without_namespace: ${JSON.stringify(r)}`);
      });

      h.test('client.channel_limit: 106 past the limit, room again after unsubscribe', async () => {
        const c = await raw('1');
        const chans = [];
        for (let i = 0; i < LIMIT; i++) {
          chans.push(uniq('open', fmt));
          assert.ok((await c.subscribe(chans[i])).subscribe);
        }
        let r = await c.subscribe(uniq('open', fmt));
        assert.deepEqual(errOf(r), E[106], JSON.stringify(r));
        await c.command({ unsubscribe: { channel: chans[0] } });
        r = await c.subscribe(uniq('open', fmt));
        assert.ok(r.subscribe, `after unsubscribe: ${JSON.stringify(r)}`);
      });

      h.test('already subscribed: 105, also for a subscribe in flight in the same frame', async () => {
        const c = await raw('1');
        const ch = uniq('open', fmt);
        assert.ok((await c.subscribe(ch)).subscribe);
        let r = await c.subscribe(ch);
        assert.deepEqual(errOf(r), E[105], JSON.stringify(r));
        const ch2 = uniq('open', fmt);
        c.send([{ id: 100, subscribe: { channel: ch2 } }, { id: 101, subscribe: { channel: ch2 } }]);
        const [a, b] = await Promise.all([c.reply(100), c.reply(101)]);
        assert.ok(a.subscribe, JSON.stringify(a));
        assert.deepEqual(errOf(b), E[105], JSON.stringify(b));
        await c.command({ unsubscribe: { channel: ch } });
        r = await c.subscribe(ch);
        assert.ok(r.subscribe, `resubscribe after unsubscribe: ${JSON.stringify(r)}`);
      });

      h.test('unsubscribe of a channel never subscribed succeeds', async () => {
        const c = await raw('1');
        const r = await c.command({ unsubscribe: { channel: uniq('open', fmt) } });
        assert.deepEqual(r.unsubscribe, {}, JSON.stringify(r));
      });

      h.test('publish permissions: _for_subscriber, _for_client, _for_anonymous; empty data 107', async () => {
        const user = await raw('1');
        const anon = await raw();
        const ps = uniq('pubsub', fmt);
        let r = await user.command({ publish: { channel: ps, data: { a: 1 } } });
        assert.deepEqual(errOf(r), E[103], `not subscribed: ${JSON.stringify(r)}`);
        await user.subscribe(ps);
        r = await user.command({ publish: { channel: ps, data: { a: 1 } } });
        assert.deepEqual(r.publish, {}, `subscribed: ${JSON.stringify(r)}`);
        await anon.subscribe(ps);
        r = await anon.command({ publish: { channel: ps, data: { a: 1 } } });
        assert.deepEqual(errOf(r), E[103], `anonymous subscriber without _for_anonymous: ${JSON.stringify(r)}`);
        r = await anon.command({ publish: { channel: uniq('authonly', fmt), data: { a: 1 } } });
        assert.deepEqual(errOf(r), E[103], JSON.stringify(r));
        r = await user.command({ publish: { channel: uniq('authonly', fmt), data: { a: 1 } } });
        assert.deepEqual(r.publish, {}, JSON.stringify(r));
        r = await anon.command({ publish: { channel: uniq('pubanon', fmt), data: { a: 1 } } });
        assert.deepEqual(r.publish, {}, JSON.stringify(r));
        r = await user.command({ publish: { channel: uniq('pubanon', fmt) } });
        assert.deepEqual(errOf(r), E[107], `empty data: ${JSON.stringify(r)}`);
        // an anonymous publisher's ClientInfo: JSON always writes "user"
        const pa = uniq('pubanon', fmt);
        await anon.subscribe(pa);
        await anon.command({ publish: { channel: pa, data: { who: 'anon' } } });
        const m = await anon.push({ channel: pa, kind: 'pub' });
        const want = fmt === 'json' ? { user: '', client: anon.clientId } : { client: anon.clientId };
        assert.deepEqual(m.push.pub.info, want, JSON.stringify(m));
      });

      h.test('rpc without a proxy: 104 "method not found"; the connection stays', async () => {
        const c = await raw('1');
        let r = await c.command({ rpc: { method: 'getUser', data: { id: 1 } } });
        assert.deepEqual(errOf(r), E[104], JSON.stringify(r));
        r = await c.command({ rpc: { data: { id: 1 } } });
        assert.deepEqual(errOf(r), E[104], `empty method: ${JSON.stringify(r)}`);
        r = await c.subscribe(uniq('open', fmt));
        assert.ok(r.subscribe, JSON.stringify(r));
      });

      h.test('send: disconnect 3508 "not available"', async (t, srv) => {
        const c = await raw('1');
        c.send({ send: { data: { hello: 1 } } });
        const cl = await c.waitClose();
        assert.deepEqual(cl, { code: 3508, reason: 'not available' }, c.describe());
        await assertHealthy(srv);
      });

      h.test('SDK: rpc rejects with 104, subscribe errors end the Subscription with their code', async () => {
        const c = sdkClientF(fmt, h.server.wsUrl, { token: makeToken({ sub: '5' }) });
        open.push(c);
        const ok = once(c, 'connected', { timeout: 8000 });
        c.connect();
        await ok;
        await assert.rejects(c.rpc('m', fmt === 'protobuf' ? new Uint8Array([123, 125]) : {}), (e) => e.code === 104);
        for (const [ch, code] of [['nosuch:x', 102], [`ul:x${fmt}#1`, 103], [`rx:BAD${fmt}`, 107]]) {
          const sub = c.newSubscription(ch);
          const un = once(sub, 'unsubscribed', { timeout: 8000, what: `unsubscribed from ${ch}` });
          sub.subscribe();
          const ctx = await un;
          assert.equal(ctx.code, code, `${ch}: ${JSON.stringify(ctx)}`);
          c.removeSubscription(sub);
        }
      });
    });
  }
});
