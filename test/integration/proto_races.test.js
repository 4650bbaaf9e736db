'use strict';
// Commands racing with subscribe (protocol.md §4.5.6, §4.7): a positioned
// subscribe is answered through the broker, so an unsubscribe, a second
// subscribe or a disconnect can arrive while it is in flight. Nothing may
// leak (presence entries, deliveries after unsubscribe) and the channel must
// be usable again. Both formats, 2 workers.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer, assertHealthy } = require('./lib/harness');
const { FORMATS, rawClientF } = require('./lib/formats');
const { makeToken } = require('./lib/token');
const { pollUntil } = require('./lib/util');

const CONFIG = {
  workers: 2,
  channel: {
    namespaces: [
      {
        name: 'rp', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
        allow_publish_for_client: true, allow_publish_for_anonymous: true,
        presence: true, join_leave: true, force_push_join_leave: true,
        allow_presence_for_client: true, allow_presence_for_anonymous: true,
        history_size: 100, history_ttl: '60s', force_recovery: true,
      },
    ],
  },
};

let seq = 0;
const uniq = (fmt) => `rp:r${++seq}-${fmt}`;

describe('subscribe races', () => {
  const h = useServer(CONFIG);
  const open = [];
  afterEach(() => { for (const c of open.splice(0)) c.close(); });

  for (const fmt of FORMATS) {
    describe(`[${fmt}]`, () => {
      const raw = async (user) => {
        const c = await rawClientF(fmt, h.server.wsUrl, { connect: user ? { token: makeToken({ sub: user }) } : true });
        open.push(c);
        return c;
      };
      const presenceKeys = async (c, ch) => {
        const r = await c.command({ presence: { channel: ch } });
        return Object.keys((r.presence && r.presence.presence) || {}).sort();
      };

      h.test('subscribe + unsubscribe in one frame: both answered, no delivery, no presence, resubscribe works', async () => {
        const ch = uniq(fmt);
        const watcher = await raw('w');
        assert.ok((await watcher.subscribe(ch)).subscribe);
        const c = await raw('x');
        c.send([{ id: 10, subscribe: { channel: ch } }, { id: 11, unsubscribe: { channel: ch } }]);
        const [s, u] = await Promise.all([c.reply(10), c.reply(11)]);
        assert.ok(s.subscribe || s.error, JSON.stringify(s));
        assert.deepEqual(u.unsubscribe, {}, JSON.stringify(u));
        await h.server.publish(ch, { after: 'unsubscribe' });
        await watcher.push({ channel: ch, kind: 'pub' }); // delivered by now to everyone subscribed
        await h.server.publish(ch, { marker: 2 });
        await watcher.push({ channel: ch, kind: 'pub' });
        assert.deepEqual(c.pending.filter((m) => m.push && m.push.pub), [], `no publication after unsubscribe: ${c.describe()}`);
        const keys = await pollUntil(async () => {
          const k = await presenceKeys(watcher, ch);
          return k.length === 1 ? k : null;
        }, { timeout: 8000, what: 'presence without the unsubscribed client' });
        assert.deepEqual(keys, [watcher.clientId]);
        const again = await c.subscribe(ch);
        assert.ok(again.subscribe, `resubscribe: ${JSON.stringify(again)}`);
        await h.server.publish(ch, { back: 1 });
        const p = await c.push({ channel: ch, kind: 'pub' });
        assert.deepEqual(p.push.pub.data, { back: 1 });
      });

      h.test('disconnect while a positioned subscribe is in flight: no presence leak, leave sent', async (t, srv) => {
        const ch = uniq(fmt);
        const watcher = await raw('w2');
        assert.ok((await watcher.subscribe(ch)).subscribe);
        const ids = [];
        for (let i = 0; i < 10; i++) {
          const c = await rawClientF(fmt, srv.wsUrl, { connect: { token: makeToken({ sub: `gone${i}` }) } });
          ids.push(c.clientId);
          c.send({ id: 20, subscribe: { channel: ch } });
          c.close();
        }
        const keys = await pollUntil(async () => {
          const k = await presenceKeys(watcher, ch);
          return k.length === 1 ? k : null;
        }, { timeout: 15000, interval: 200, what: 'presence to drop every client that vanished mid-subscribe' });
        assert.deepEqual(keys, [watcher.clientId]);
        const s = await watcher.command({ presence_stats: { channel: ch } });
        assert.deepEqual(s.presence_stats, fmt === 'json' ? { num_clients: 1, num_users: 1 } : { num_clients: 1, num_users: 1 });
        // every join that reached the watcher is matched by a leave
        await h.server.publish(ch, { marker: 1 });
        await watcher.push({ channel: ch, kind: 'pub' });
        const joins = watcher.pending.filter((m) => m.push && m.push.join).map((m) => m.push.join.info.client);
        const leaves = watcher.pending.filter((m) => m.push && m.push.leave).map((m) => m.push.leave.info.client);
        for (const j of joins.filter((x) => ids.includes(x))) {
          if (!leaves.includes(j)) {
            await watcher.next((m) => m.push && m.push.leave && m.push.leave.info.client === j,
              { timeout: 8000, what: `leave of ${j} after its join` });
          }
        }
        await assertHealthy(srv);
      });

      h.test('many subscribe/unsubscribe cycles on one connection end clean', async () => {
        const ch = uniq(fmt);
        const c = await raw('cy');
        const cmds = [];
        let id = 100;
        for (let i = 0; i < 50; i++) {
          cmds.push({ id: id++, subscribe: { channel: ch } });
          cmds.push({ id: id++, unsubscribe: { channel: ch } });
        }
        c.send(cmds);
        for (let k = 100; k < id; k++) {
          const r = await c.reply(k, { timeout: 10000 });
          if (k % 2 === 0) assert.ok(r.subscribe, `cycle ${k}: ${JSON.stringify(r)}`);
          else assert.deepEqual(r.unsubscribe, {}, JSON.stringify(r));
        }
        const other = await raw('o');
        const keys = await pollUntil(async () => {
          const k = await presenceKeys(other, ch);
          return k.length === 0 ? k : null;
        }, { timeout: 8000, what: 'empty presence after the cycles' });
        assert.deepEqual(keys, []);
        const r = await c.subscribe(ch);
        assert.ok(r.subscribe, JSON.stringify(r));
      });
    });
  }
});
