'use strict';
// Presence, presence_stats and join/leave pushes (protocol.md §4.10,
// §4.5.3), in both formats, with clients spread over 2 workers: ClientInfo
// carries user, client, conn_info (connection token `info`) and chan_info
// (subscription token `info`); permissions and error codes; a worker killed
// with SIGKILL takes its clients out of presence.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer } = require('./lib/harness');
const { FORMATS, rawClientF, sdkClientF, infoOf } = require('./lib/formats');
const { makeToken } = require('./lib/token');
const { onTwoWorkers, ownerOf } = require('./lib/spread');
const { once, pollUntil } = require('./lib/util');

const OPEN = { allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true };
const CONFIG = {
  workers: 2,
  channel: {
    namespaces: [
      { name: 'pres', ...OPEN, presence: true, allow_presence_for_client: true },
      { name: 'pressub', ...OPEN, presence: true, allow_presence_for_subscriber: true },
      { name: 'presanon', ...OPEN, presence: true, allow_presence_for_client: true, allow_presence_for_anonymous: true },
      { name: 'presnone', ...OPEN, presence: true },
      { name: 'nopres', ...OPEN, allow_presence_for_client: true, allow_presence_for_anonymous: true },
      { name: 'jl', ...OPEN, presence: true, join_leave: true, allow_presence_for_client: true },
      { name: 'jlforce', ...OPEN, presence: true, join_leave: true, force_push_join_leave: true },
      { name: 'jlnoperm', ...OPEN, presence: true, join_leave: true },
    ],
  },
};

let seq = 0;
const uniq = (ns, fmt) => `${ns}:p${++seq}-${fmt}`;
const connTok = (sub, info) => makeToken(info === undefined ? { sub } : { sub, info });
const subTok = (sub, channel, info) => makeToken({ sub, channel, info });
const errOf = (r) => r.error && { code: r.error.code, message: r.error.message };
const E103 = { code: 103, message: 'permission denied' };
const E108 = { code: 108, message: 'not available' };

// Expected ClientInfo as the JSON format writes it; Protobuf leaves the empty
// user out.
function expectInfo(fmt, { user, client, connInfo, chanInfo }) {
  const o = {};
  if (user !== '' || fmt === 'json') o.user = user;
  o.client = client;
  if (connInfo !== undefined) o.conn_info = connInfo;
  if (chanInfo !== undefined) o.chan_info = chanInfo;
  return o;
}

describe('presence and join/leave', () => {
  const h = useServer(CONFIG);
  const open = [];
  afterEach(() => {
    for (const c of open.splice(0)) {
      try { if (c.disconnect) c.disconnect(); else c.close(); } catch { /* ignore */ }
    }
  });

  for (const fmt of FORMATS) {
    describe(`[${fmt}]`, () => {
      // A raw client connected as `user` with connection info `info`
      // (anonymous when user is null); remembers both on the client.
      const raw = async (user = null, info = undefined) => {
        const connect = user === null ? true : { token: connTok(user, info) };
        const c = await rawClientF(fmt, h.server.wsUrl, { connect });
        c.userId = user === null ? '' : user;
        c.connInfo = info;
        open.push(c);
        return c;
      };
      const presenceOf = async (c, ch) => {
        const r = await c.command({ presence: { channel: ch } });
        assert.ok(r.presence, JSON.stringify(r));
        return r.presence.presence || {};
      };
      const waitPresence = (c, ch, pred, what) => pollUntil(async () => {
        const p = await presenceOf(c, ch);
        return pred(p) ? p : null;
      }, { timeout: 10000, interval: 100, what: `presence of ${ch}: ${what}` });

      h.test('presence and presence_stats across workers with conn_info and chan_info', async (t) => {
        const room = uniq('pres', fmt);
        const priv = `$${room}`;
        const { a, b, pidA, pidB, spare } = await onTwoWorkers(h.server,
          (i) => raw('1', { n: `a${i}` }), (c) => c.localPort);
        for (const s of spare) s.close();
        t.diagnostic(`user 1 on workers ${pidA} and ${pidB}`);
        const c2 = await raw('2', { n: 'c2' });
        const anon = await raw();

        let r = await a.subscribe(priv, { token: subTok('1', priv, { role: 'mod' }) });
        assert.ok(r.subscribe, JSON.stringify(r));
        for (const c of [b, c2, anon]) {
          r = await c.subscribe(room);
          assert.ok(r.subscribe, JSON.stringify(r));
        }
        // a is in $room, the others in room: two channels.
        r = await a.subscribe(room);
        assert.ok(r.subscribe, JSON.stringify(r));

        const p = await waitPresence(c2, room, (x) => Object.keys(x).length === 4, '4 clients');
        assert.deepEqual(Object.keys(p).sort(), [a.clientId, b.clientId, c2.clientId, anon.clientId].sort());
        for (const c of [a, b, c2, anon]) {
          assert.deepEqual(p[c.clientId], expectInfo(fmt, { user: c.userId, client: c.clientId, connInfo: c.connInfo }),
            `presence entry of ${c.userId || 'anonymous'}: ${JSON.stringify(p)}`);
        }
        r = await c2.command({ presence_stats: { channel: room } });
        assert.deepEqual(r.presence_stats, { num_clients: 4, num_users: 3 }, `user 1 twice, user 2, anonymous: ${JSON.stringify(r)}`);

        const pp = await waitPresence(c2, priv, (x) => Object.keys(x).length === 1, 'the private channel');
        assert.deepEqual(pp[a.clientId], expectInfo(fmt, { user: '1', client: a.clientId, connInfo: a.connInfo, chanInfo: { role: 'mod' } }),
          JSON.stringify(pp));

        // unsubscribe and disconnect remove entries (b's worker differs from c2's or a's)
        await b.command({ unsubscribe: { channel: room } });
        await waitPresence(a, room, (x) => !x[b.clientId] && Object.keys(x).length === 3, 'b unsubscribed');
        anon.close();
        await waitPresence(a, room, (x) => !x[anon.clientId] && Object.keys(x).length === 2, 'anonymous disconnected');
        r = await a.command({ presence_stats: { channel: room } });
        assert.deepEqual(r.presence_stats, { num_clients: 2, num_users: 2 }, JSON.stringify(r));
      });

      h.test('empty presence: JSON writes presence {} and zero stats', async () => {
        const c = await raw('3');
        const ch = uniq('pres', fmt);
        const r = await c.command({ presence: { channel: ch } });
        const s = await c.command({ presence_stats: { channel: ch } });
        if (fmt === 'json') {
          assert.deepEqual(r.presence, { presence: {} }, JSON.stringify(r));
          assert.deepEqual(s.presence_stats, { num_clients: 0, num_users: 0 }, JSON.stringify(s));
        } else {
          assert.deepEqual(r.presence, {}, JSON.stringify(r));
          assert.deepEqual(s.presence_stats, {}, JSON.stringify(s));
        }
      });

      h.test('presence errors and permissions: 108, 103, _for_subscriber, _for_anonymous, 102', async () => {
        const user = await raw('4');
        const anon = await raw();
        for (const cmd of ['presence', 'presence_stats']) {
          const q = (c, channel) => c.command({ [cmd]: { channel } });
          let r = await q(user, uniq('nopres', fmt));
          assert.deepEqual(errOf(r), E108, `${cmd} without presence: ${JSON.stringify(r)}`);
          r = await q(user, uniq('presnone', fmt));
          assert.deepEqual(errOf(r), E103, `${cmd} without permission: ${JSON.stringify(r)}`);
          r = await q(user, 'nosuchns:x');
          assert.deepEqual(errOf(r), { code: 102, message: 'unknown channel' }, JSON.stringify(r));
          const ps = uniq('pressub', fmt);
          r = await q(user, ps);
          assert.deepEqual(errOf(r), E103, `${cmd} _for_subscriber, not subscribed: ${JSON.stringify(r)}`);
          await user.subscribe(ps);
          r = await q(user, ps);
          assert.ok(r[cmd], `${cmd} _for_subscriber, subscribed: ${JSON.stringify(r)}`);
          r = await q(anon, uniq('pres', fmt));
          assert.deepEqual(errOf(r), E103, `${cmd} anonymous without _for_anonymous: ${JSON.stringify(r)}`);
          r = await q(anon, uniq('presanon', fmt));
          assert.ok(r[cmd], `${cmd} anonymous allowed: ${JSON.stringify(r)}`);
          r = await q(user, uniq('pres', fmt));
          assert.ok(r[cmd], `${cmd} _for_client: ${JSON.stringify(r)}`);
        }
      });

      h.test('join/leave pushes across workers: requested join_leave, own join, leave on unsubscribe and disconnect', async (t) => {
        const ch = uniq('jl', fmt);
        const { a: watcher, b: joiner, pidA, pidB, spare } = await onTwoWorkers(h.server,
          (i) => raw(`w${i}`, { i }), (c) => c.localPort);
        t.diagnostic(`watcher on ${pidA}, joiner on ${pidB}`);
        const quiet = spare[0] || await raw('q');
        let r = await watcher.subscribe(ch, { join_leave: true });
        assert.ok(r.subscribe, JSON.stringify(r));
        const own = await watcher.push({ channel: ch, kind: 'join' });
        assert.equal(own.push.join.info.client, watcher.clientId, `own join first: ${JSON.stringify(own)}`);
        r = await quiet.subscribe(ch); // does not ask for join/leave
        assert.ok(r.subscribe, JSON.stringify(r));
        let j = await watcher.push({ channel: ch, kind: 'join' });
        assert.equal(j.push.join.info.client, quiet.clientId);

        const ctok = subTok(joiner.userId, ch, { seat: 7 });
        r = await joiner.subscribe(ch, { token: ctok });
        assert.ok(r.subscribe, JSON.stringify(r));
        j = await watcher.push({ channel: ch, kind: 'join' });
        assert.deepEqual(j.push.join.info, expectInfo(fmt, {
          user: joiner.userId, client: joiner.clientId, connInfo: joiner.connInfo, chanInfo: { seat: 7 },
        }), JSON.stringify(j));
        r = await joiner.command({ unsubscribe: { channel: ch } });
        assert.deepEqual(r.unsubscribe, {}, JSON.stringify(r));
        const l = await watcher.push({ channel: ch, kind: 'leave' });
        assert.deepEqual(l.push.leave.info, j.push.join.info, 'leave carries the same ClientInfo');

        // leave when the connection goes away
        r = await joiner.subscribe(ch);
        await watcher.push({ channel: ch, kind: 'join' });
        joiner.close();
        const l2 = await watcher.push({ channel: ch, kind: 'leave' }, { timeout: 10000 });
        assert.equal(l2.push.leave.info.client, joiner.clientId);

        // the subscriber that did not ask got no join/leave: a marker published
        // after the watcher saw everything arrives with nothing before it
        await h.server.publish(ch, { marker: 1 });
        await quiet.push({ channel: ch, kind: 'pub' });
        const jl = quiet.pending.filter((m) => m.push && (m.push.join || m.push.leave));
        assert.deepEqual(jl, [], 'no join/leave to a subscriber that did not ask');
      });

      h.test('force_push_join_leave: every subscriber gets joins; no presence permission: request ignored', async () => {
        const ch = uniq('jlforce', fmt);
        const a = await raw('f1');
        const b = await raw('f2', { x: 1 });
        await a.subscribe(ch);
        await b.subscribe(ch);
        const j = await a.push({ channel: ch, kind: 'join' }, { what: 'join of b' }).then(async (m) => (
          m.push.join.info.client === b.clientId ? m : a.push({ channel: ch, kind: 'join' })));
        assert.deepEqual(j.push.join.info, expectInfo(fmt, { user: 'f2', client: b.clientId, connInfo: { x: 1 } }));

        const ch2 = uniq('jlnoperm', fmt);
        const w = await raw('n1');
        const seer = await raw('n2');
        await w.subscribe(ch2, { join_leave: true });
        await seer.subscribe(ch2);
        await h.server.publish(ch2, { marker: 1 });
        await w.push({ channel: ch2, kind: 'pub' });
        const jl = w.pending.filter((m) => m.push && (m.push.join || m.push.leave));
        assert.deepEqual(jl, [], 'join_leave requested without presence permission is not granted');
      });

      h.test('SDK: presence(), presenceStats(), join/leave events with joinLeave: true', async () => {
        const ch = uniq('jl', fmt);
        const a = sdkClientF(fmt, h.server.wsUrl, { token: connTok('s1', { who: 'a' }) });
        const b = sdkClientF(fmt, h.server.wsUrl, { token: connTok('s2', { who: 'b' }) });
        open.push(a, b);
        const sa = a.newSubscription(ch, { joinLeave: true });
        const joins = [];
        const leaves = [];
        sa.on('join', (ctx) => joins.push(infoOf(ctx.info)));
        sa.on('leave', (ctx) => leaves.push(infoOf(ctx.info)));
        let ok = once(sa, 'subscribed', { timeout: 8000 });
        sa.subscribe();
        a.connect();
        await ok;
        const sb = b.newSubscription(ch);
        ok = once(sb, 'subscribed', { timeout: 8000 });
        sb.subscribe();
        const bctx = once(b, 'connected', { timeout: 8000 });
        b.connect();
        const bClient = (await bctx).client;
        await ok;
        await pollUntil(() => joins.some((x) => x.client === bClient), { timeout: 8000, what: 'join event for b' });
        assert.deepEqual(joins.find((x) => x.client === bClient), { user: 's2', client: bClient, connInfo: { who: 'b' } });
        const pr = await pollUntil(async () => {
          const x = await sa.presence();
          return Object.keys(x.clients).length === 2 ? x : null;
        }, { timeout: 8000, what: 'SDK presence with 2 clients' });
        assert.deepEqual(infoOf(pr.clients[bClient]), { user: 's2', client: bClient, connInfo: { who: 'b' } });
        const st = await sa.presenceStats();
        assert.deepEqual(st, { numClients: 2, numUsers: 2 });
        sb.unsubscribe();
        await pollUntil(() => leaves.some((x) => x.client === bClient), { timeout: 8000, what: 'leave event for b' });
      });
    });
  }
});

describe('presence after a worker is killed', () => {
  const h = useServer(CONFIG);
  for (const fmt of FORMATS) {
    h.test(`[${fmt}] SIGKILL of a worker removes its clients from presence`, async (t, srv) => {
      const ch = uniq('pres', fmt);
      const clients = [];
      try {
        const { a, b, pidA, pidB, spare } = await onTwoWorkers(srv, async (i) => {
          const c = await rawClientF(fmt, srv.wsUrl, { connect: { token: connTok(`k${i}`) } });
          clients.push(c);
          return c;
        }, (c) => c.localPort);
        const all = [a, b, ...spare];
        for (const c of all) assert.ok((await c.subscribe(ch)).subscribe);
        const owner = new Map();
        for (const c of all) owner.set(c, await ownerOf(srv, c.localPort));
        const victims = all.filter((c) => owner.get(c) === pidB).map((c) => c.clientId);
        const survivors = all.filter((c) => owner.get(c) === pidA).map((c) => c.clientId);
        await pollUntil(async () => {
          const r = await a.command({ presence: { channel: ch } });
          return Object.keys(r.presence.presence || {}).length === all.length;
        }, { timeout: 10000, what: 'everybody in presence' });
        t.diagnostic(`killing worker ${pidB} holding ${victims.length} client(s); ${survivors.length} on ${pidA}`);
        process.kill(pidB, 'SIGKILL');
        const p = await pollUntil(async () => {
          const r = await a.command({ presence: { channel: ch } });
          const keys = Object.keys(r.presence.presence || {}).sort();
          return victims.every((v) => !keys.includes(v)) ? keys : null;
        }, { timeout: 10000, interval: 200, what: `clients of killed worker ${pidB} to leave presence` });
        assert.deepEqual(p, survivors.sort(), 'exactly the surviving clients remain');
        const s = await a.command({ presence_stats: { channel: ch } });
        assert.equal(s.presence_stats.num_clients, survivors.length, JSON.stringify(s));
        await srv.waitChildren(2, { timeout: 15000 });
      } finally {
        for (const c of clients) c.close();
      }
    }, { timeout: 60000 });
  }
});
