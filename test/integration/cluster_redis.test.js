'use strict';
// Several nodes, one Redis engine (issue 4): two nodes of ours (A and B, each
// with its own port, 2 workers and a broker) on a real redis-server started
// by this file. Cross-node delivery (SDK and client publishes), history and
// history_remove across nodes, recovery on another node, presence and
// join/leave across nodes, `info` listing both nodes, server API
// disconnect/unsubscribe/subscribe reaching the node that holds the user,
// a Redis outage (errors, clients stay, service comes back), a node killed
// with SIGKILL leaving info and presence, sharding over two redis-servers,
// and configuration errors. Skipped only when redis-server is not installed.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { describe, before, after, afterEach } = require('node:test');

const { BIN, freePort } = require('./lib/server');
const { toLibconfig, merge, defaultConfig } = require('./lib/config');
const { assertHealthy } = require('./lib/harness');
const { sleep, pollUntil } = require('./lib/util');
const {
  redisSkip, startRedis, uniquePrefix, startNodes, killNodeTree, clusterTest,
  apiOk, channelsAcrossNodes, rawOn, sdkOn, subscribeOn, waitPubOf, publishUntilDelivered, closeAll, rawPub, rawPubsIn, infoOf, waitNodes,
} = require('./lib/services');

const OPEN = {
  allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
};
const HIST = { history_size: 10, history_ttl: '300s' };
const CHANNELS = {
  without_namespace: { ...OPEN },
  namespaces: [
    { name: 'chat', ...OPEN, allow_publish_for_client: true, allow_publish_for_anonymous: true },
    { name: 'subpub', ...OPEN, allow_publish_for_subscriber: true, allow_publish_for_anonymous: true },
    { name: 'hist', ...OPEN, ...HIST, force_positioning: true, allow_history_for_client: true },
    { name: 'rec', ...OPEN, ...HIST, force_recovery: true, allow_history_for_client: true },
    {
      name: 'pres', ...OPEN, presence: true, join_leave: true, force_push_join_leave: true,
      allow_presence_for_client: true,
    },
  ],
};

// Configuration of one node on the Redis engine at `addresses`.
function redisConfig(addresses, prefix) {
  return {
    engine: { type: 'redis', redis: { address: addresses, prefix, presence_ttl: '3s', io_timeout: '2s' } },
    client: { presence_update_interval: '1s' },
    channel: CHANNELS,
  };
}

let seq = 0;
const uniq = (ns) => `${ns}:c${++seq}-${Math.random().toString(36).slice(2, 7)}`;
const errOf = (j) => j && j.error && { code: j.error.code, message: j.error.message };
const offsets = (pubs) => (pubs || []).map((p) => p.offset);

// Start redis + nodes for a describe block; ctx.nodes / ctx.services /
// ctx.prefix are filled in before().
function useCluster(ctx, { names = ['A', 'B'], redisCount = 1 } = {}) {
  before(async () => {
    ctx.services = [];
    for (let i = 0; i < redisCount; i++) ctx.services.push(await startRedis());
    ctx.prefix = uniquePrefix('cfit-redis');
    const addrs = ctx.services.map((s) => s.address);
    ctx.nodes = await startNodes(names, () => redisConfig(addrs, ctx.prefix));
  }, { timeout: 60000 });
  after(async () => {
    for (const n of ctx.nodes || []) await n.stop();
    for (const s of ctx.services || []) await s.dispose();
  }, { timeout: 60000 });
}

describe('redis engine: two nodes, one redis', { skip: redisSkip }, () => {
  const ctx = {};
  useCluster(ctx);
  const open = [];
  afterEach(() => closeAll(open));
  const T = (name, fn, opts) => clusterTest(ctx, name, fn, opts);

  T('API publish on B reaches SDK clients on A and on B, once each', async () => {
    const [A, B] = ctx.nodes;
    const ch = uniq('chat');
    const ca = await sdkOn(A, 'ua', open);
    const cb = await sdkOn(B, 'ub', open);
    const sa = await subscribeOn(ca, ch, 'client on A');
    const sb = await subscribeOn(cb, ch, 'client on B');

    assert.deepEqual(await apiOk(B, 'publish', { channel: ch, data: { text: 'from B', n: 1 } }), {});
    for (const s of [sa, sb]) {
      const p = await waitPubOf(s, (x) => x.data.n === 1);
      assert.deepEqual(p.data, { text: 'from B', n: 1 });
      assert.equal(p.channel, ch);
      assert.equal(p.info, undefined, 'API publication carries no publisher info');
    }
    // A sentinel behind it on the same path: a duplicate of n 1 would arrive first.
    await apiOk(B, 'publish', { channel: ch, data: { n: 2 } });
    await apiOk(A, 'publish', { channel: ch, data: { n: 3 } });
    for (const s of [sa, sb]) {
      await waitPubOf(s, (x) => x.data.n === 3);
      await waitPubOf(s, (x) => x.data.n === 2);
      assert.deepEqual(s.pubs.map((x) => x.data.n).sort(), [1, 2, 3], `each publication once: ${JSON.stringify(s.pubs.map((x) => x.data))}`);
    }
  });

  T('a publication sent right after the subscribe reply is delivered (100 fresh channels, subscribe on A, publish on B)', async () => {
    const [A, B] = ctx.nodes;
    const c = await rawOn(A, 'race', open);
    const base = uniq('chat');
    const lost = [];
    for (let i = 0; i < 100 && lost.length < 5; i++) {
      const ch = `${base}-${i}`;
      const r = await c.subscribe(ch);
      assert.ok(r.subscribe, JSON.stringify(r));
      await apiOk(B, 'publish', { channel: ch, data: { i } });
      const ok = await rawPub(c, ch, (p) => p.data.i === i, 2000).then(() => true, () => false);
      if (!ok) lost.push(ch);
    }
    assert.deepEqual(lost, [], `publications lost although published after the subscribe reply (stops at 5): ${JSON.stringify(lost)}`);
  });

  T('client publishes on B reach A: allow_publish_for_client and allow_publish_for_subscriber', async () => {
    const [A, B] = ctx.nodes;
    const ca = await sdkOn(A, 'pa', open);
    const cb = await sdkOn(B, 'pb', open);
    for (const ns of ['chat', 'subpub']) {
      const ch = uniq(ns);
      const sa = await subscribeOn(ca, ch, 'client on A');
      const sb = await subscribeOn(cb, ch, 'client on B');
      if (ns === 'chat') await cb.publish(ch, { via: 'client.publish', ns });
      else await sb.publish({ via: 'sub.publish', ns });
      const got = await waitPubOf(sa);
      assert.deepEqual(got.data, { via: ns === 'chat' ? 'client.publish' : 'sub.publish', ns });
      assert.ok(got.info, `client publication carries publisher info: ${JSON.stringify(got)}`);
      assert.equal(got.info.user, 'pb');
      assert.equal(got.info.client, cb.ctx.client);
      const own = await waitPubOf(sb);
      assert.deepEqual(own.data, got.data, 'the publisher (on B) gets its own publication too');
    }
  });

  T('idempotency_key across nodes: the repeat on B returns A\'s result and is not delivered again', async () => {
    const [A, B] = ctx.nodes;
    const c = await rawOn(A, 'idem', open);
    for (const ns of ['hist', 'chat']) {
      const ch = uniq(ns);
      assert.ok((await c.subscribe(ch)).subscribe);
      const first = await apiOk(A, 'publish', { channel: ch, data: { once: ns }, idempotency_key: `k-${ch}` });
      const again = await apiOk(B, 'publish', { channel: ch, data: { once: ns }, idempotency_key: `k-${ch}` });
      assert.deepEqual(again, first, `same result on B (${ns})`);
      if (ns === 'hist') assert.equal(first.offset, 1, JSON.stringify(first));
      await apiOk(B, 'publish', { channel: ch, data: { sentinel: true } });
      await rawPub(c, ch, (p) => p.data.sentinel === true);
      assert.equal(rawPubsIn(c, ch).filter((p) => p.data.once === ns).length, 1, `delivered once (${ns})`);
    }
  });

  T('history across nodes: 3 publishes on A, history on B, history_remove on B empties it for A', async () => {
    const [A, B] = ctx.nodes;
    const ch = uniq('hist');
    const res = [];
    for (let i = 1; i <= 3; i++) res.push(await apiOk(A, 'publish', { channel: ch, data: { i } }));
    assert.deepEqual(res.map((r) => r.offset), [1, 2, 3], `publish results on A: ${JSON.stringify(res)}`);
    const epoch = res[0].epoch;
    assert.equal(typeof epoch, 'string');
    assert.ok(epoch.length > 0);
    assert.ok(res.every((r) => r.epoch === epoch), 'one epoch');

    const hb = await apiOk(B, 'history', { channel: ch, limit: -1 });
    assert.deepEqual(hb, {
      publications: [{ data: { i: 1 }, offset: 1 }, { data: { i: 2 }, offset: 2 }, { data: { i: 3 }, offset: 3 }],
      offset: 3, epoch,
    });
    assert.deepEqual(offsets((await apiOk(B, 'history', { channel: ch, limit: 2, reverse: true })).publications), [3, 2]);
    assert.deepEqual(offsets((await apiOk(B, 'history', { channel: ch, limit: -1, since: { offset: 1, epoch } })).publications), [2, 3]);

    // A client on B sees the same stream through the history command.
    const c = await rawOn(B, 'h1', open);
    let r = await c.command({ history: { channel: ch, limit: -1 } });
    assert.deepEqual(offsets(r.history && r.history.publications), [1, 2, 3], JSON.stringify(r));
    assert.equal(r.history.epoch, epoch);
    // A positioned subscription on B reports A's top.
    r = await c.subscribe(ch);
    assert.ok(r.subscribe, JSON.stringify(r));
    assert.equal(r.subscribe.positioned, true, JSON.stringify(r));
    assert.equal(r.subscribe.offset, 3, JSON.stringify(r));
    assert.equal(r.subscribe.epoch, epoch);

    assert.deepEqual(await apiOk(B, 'history_remove', { channel: ch }), {});
    assert.deepEqual(await apiOk(A, 'history', { channel: ch, limit: -1 }), { publications: [], offset: 3, epoch },
      'history_remove on B: A sees no publications, position kept');
    const next = await apiOk(A, 'publish', { channel: ch, data: { i: 4 } });
    assert.deepEqual(next, { offset: 4, epoch });
    const p = await rawPub(c, ch, (x) => x.data.i === 4);
    assert.equal(p.push.pub.offset, 4, 'publication from A reaches the positioned client on B with its offset');
    assert.deepEqual(offsets((await apiOk(B, 'history', { channel: ch, limit: -1 })).publications), [4]);
  });

  T('recovery across nodes: missed publications (published on B) recovered on B after leaving A', async () => {
    const [A, B] = ctx.nodes;
    const ch = uniq('rec');
    const c1 = await rawOn(A, 'r1', open);
    let r = await c1.subscribe(ch);
    assert.ok(r.subscribe, JSON.stringify(r));
    assert.equal(r.subscribe.recoverable, true, JSON.stringify(r));
    await apiOk(A, 'publish', { channel: ch, data: { i: 1 } });
    const last = (await rawPub(c1, ch, (x) => x.data.i === 1)).push.pub;
    assert.equal(last.offset, 1, JSON.stringify(last));
    const epoch = r.subscribe.epoch;
    assert.equal(typeof epoch, 'string');
    c1.close();
    await c1.waitClose();

    const missed = [];
    for (const i of [2, 3]) missed.push(await apiOk(B, 'publish', { channel: ch, data: { i } }));
    assert.deepEqual(missed.map((x) => [x.offset, x.epoch]), [[2, epoch], [3, epoch]], 'B continues A\'s stream');

    const c2 = await rawOn(B, 'r1', open);
    r = await c2.subscribe(ch, { recover: true, offset: last.offset, epoch });
    const s = r.subscribe;
    assert.ok(s, JSON.stringify(r));
    assert.equal(s.was_recovering, true, JSON.stringify(s));
    assert.equal(s.recovered, true, JSON.stringify(s));
    assert.equal(s.epoch, epoch);
    assert.deepEqual(s.publications.map((p) => [p.offset, p.data]), [[2, { i: 2 }], [3, { i: 3 }]], JSON.stringify(s));

    // Nothing recovered arrives a second time as a push: a publication from A
    // after it is the first and only push.
    await apiOk(A, 'publish', { channel: ch, data: { i: 4 } });
    const p4 = await rawPub(c2, ch, (x) => x.data.i === 4);
    assert.equal(p4.push.pub.offset, 4);
    assert.deepEqual(rawPubsIn(c2, ch).map((p) => p.offset), [4], `pushes on the recovered client: ${c2.describe()}`);
  });

  T('presence across nodes: both clients listed on A and on B, stats, join/leave cross nodes', async () => {
    const [A, B] = ctx.nodes;
    const ch = uniq('pres');
    const a = await rawOn(A, 'pres-a', open);
    const b = await rawOn(B, 'pres-b', open);
    let r = await a.subscribe(ch);
    assert.ok(r.subscribe, JSON.stringify(r));
    const ownJoin = await a.push({ channel: ch, kind: 'join' });
    assert.equal(ownJoin.push.join.info.client, a.clientId, `own join: ${JSON.stringify(ownJoin)}`);
    r = await b.subscribe(ch);
    assert.ok(r.subscribe, JSON.stringify(r));
    const j = await a.push({ channel: ch, kind: 'join' }, { timeout: 8000 });
    assert.deepEqual(j.push.join.info, { user: 'pres-b', client: b.clientId }, `join of B's client seen on A: ${JSON.stringify(j)}`);

    const want = {
      [a.clientId]: { user: 'pres-a', client: a.clientId },
      [b.clientId]: { user: 'pres-b', client: b.clientId },
    };
    for (const node of [A, B]) {
      const p = await pollUntil(async () => {
        const res = await apiOk(node, 'presence', { channel: ch });
        return Object.keys(res.presence || {}).length === 2 ? res : null;
      }, { timeout: 10000, interval: 200, what: `presence on ${node.nodeName} with 2 clients` });
      assert.deepEqual(p.presence, want, `presence on ${node.nodeName}`);
      assert.deepEqual(await apiOk(node, 'presence_stats', { channel: ch }), { num_clients: 2, num_users: 2 },
        `presence_stats on ${node.nodeName}`);
    }
    // The client protocol's presence on B.
    r = await b.command({ presence: { channel: ch } });
    assert.deepEqual(r.presence && r.presence.presence, want, JSON.stringify(r));

    // Leave crosses nodes: B's client goes away, A's client gets the leave.
    b.close();
    const l = await a.push({ channel: ch, kind: 'leave' }, { timeout: 10000 });
    assert.deepEqual(l.push.leave.info, { user: 'pres-b', client: b.clientId }, JSON.stringify(l));
    await pollUntil(async () => {
      const res = await apiOk(B, 'presence', { channel: ch });
      return JSON.stringify(Object.keys(res.presence || {})) === JSON.stringify([a.clientId]);
    }, { timeout: 10000, interval: 200, what: 'presence on B with only A\'s client' });
    assert.deepEqual(await apiOk(A, 'presence_stats', { channel: ch }), { num_clients: 1, num_users: 1 });
  });

  T('channels on either node counts every node\'s subscribers (survey on the control channel)', () => channelsAcrossNodes(ctx, open));

  T('info on A and on B lists both nodes (names A and B, distinct uids) with their client counts', async (t) => {
    const [A, B] = ctx.nodes;
    const ch = uniq('chat');
    const a1 = await rawOn(A, 'info-a1', open);
    const b1 = await rawOn(B, 'info-b1', open);
    const b2 = await rawOn(B, 'info-b2', open);
    for (const c of [a1, b1, b2]) assert.ok((await c.subscribe(ch)).subscribe);
    for (const node of [A, B]) {
      const i = await pollUntil(async () => {
        const x = await infoOf(node);
        const na = x.byName.A; const nb = x.byName.B;
        return x.nodes.length === 2 && na && nb && na.num_clients === 1 && nb.num_clients === 2
          && na.num_subs === 1 && nb.num_subs === 2 ? x : null;
      }, { timeout: 15000, interval: 250, what: `info on ${node.nodeName}: A with 1 client, B with 2` });
      t.diagnostic(`info on ${node.nodeName}: ${JSON.stringify(i.nodes)}`);
      const [na, nb] = [i.byName.A, i.byName.B];
      assert.notEqual(na.uid, nb.uid, 'distinct node uids');
      for (const n of [na, nb]) {
        for (const k of ['uid', 'name', 'version']) assert.equal(typeof n[k], 'string', `${k}: ${JSON.stringify(n)}`);
        for (const k of ['num_clients', 'num_users', 'num_channels', 'num_subs']) {
          assert.equal(typeof n[k], 'number', `${k}: ${JSON.stringify(n)}`);
        }
      }
      assert.deepEqual([na.num_users, na.num_channels], [1, 1], `node A: ${JSON.stringify(na)}`);
      assert.deepEqual([nb.num_users, nb.num_channels], [2, 1], `node B: ${JSON.stringify(nb)}`);
    }
    // Each node's own uid is stable across the two views.
    const ia = await infoOf(A); const ib = await infoOf(B);
    assert.equal(ia.byName.A.uid, ib.byName.A.uid);
    assert.equal(ia.byName.B.uid, ib.byName.B.uid);
  });

  T('server API via B: disconnect, unsubscribe and subscribe reach the user on A', async () => {
    const [A, B] = ctx.nodes;
    const keep = uniq('chat');
    // disconnect
    const victim = await rawOn(A, 'dis-victim', open);
    const bystander = await rawOn(A, 'dis-bystander', open);
    assert.ok((await bystander.subscribe(keep)).subscribe);
    assert.deepEqual(await apiOk(B, 'disconnect', { user: 'dis-victim' }), {});
    assert.deepEqual(await victim.waitClose(), { code: 3503, reason: 'force disconnect' });
    await apiOk(B, 'publish', { channel: keep, data: { mark: 'alive' } });
    await rawPub(bystander, keep, (p) => p.data.mark === 'alive');
    assert.equal(bystander.closeInfo, null, 'another user on A stays connected');

    // custom code and reason
    const v2 = await rawOn(A, 'dis-custom', open);
    await apiOk(B, 'disconnect', { user: 'dis-custom', disconnect: { code: 4123, reason: 'go away' } });
    assert.deepEqual(await v2.waitClose(), { code: 4123, reason: 'go away' });

    // unsubscribe
    const u = await rawOn(A, 'unsub-user', open);
    const ch = uniq('chat');
    assert.ok((await u.subscribe(ch)).subscribe);
    assert.ok((await u.subscribe(keep)).subscribe);
    assert.deepEqual(await apiOk(B, 'unsubscribe', { user: 'unsub-user', channel: ch }), {});
    const up = await u.push({ channel: ch, kind: 'unsubscribe' }, { timeout: 8000 });
    assert.deepEqual(up.push.unsubscribe, { code: 2000, reason: 'server unsubscribe' });
    await apiOk(B, 'publish', { channel: ch, data: { after: 'unsubscribe' } });
    await apiOk(B, 'publish', { channel: keep, data: { mark: 'sentinel' } });
    await rawPub(u, keep, (p) => p.data.mark === 'sentinel');
    assert.deepEqual(rawPubsIn(u, ch), [], `no publication after the server unsubscribe: ${u.describe()}`);
    assert.equal(u.closeInfo, null);

    // subscribe
    const ch2 = uniq('chat');
    assert.deepEqual(await apiOk(B, 'subscribe', { user: 'unsub-user', channel: ch2 }), {});
    await u.push({ channel: ch2, kind: 'subscribe' }, { timeout: 8000 });
    await apiOk(B, 'publish', { channel: ch2, data: { server: 'side' } });
    const p = await rawPub(u, ch2);
    assert.deepEqual(p.push.pub.data, { server: 'side' });
  });

  T('both nodes stayed healthy', async () => {
    for (const n of ctx.nodes) await assertHealthy(n);
  });
});

describe('redis engine: redis-server killed and restarted', { skip: redisSkip }, () => {
  const ctx = {};
  useCluster(ctx);
  const open = [];
  after(() => closeAll(open));
  const T = (name, fn, opts) => clusterTest(ctx, name, fn, { timeout: 100000, ...opts });

  T('errors (code 100) while redis is down, clients stay connected, service comes back on the same port', async (t) => {
    const [A, B] = ctx.nodes;
    const [redis] = ctx.services;
    const ch = uniq('chat');
    const hch = uniq('hist');
    const ca = await sdkOn(A, 'out-a', open);
    const cb = await sdkOn(B, 'out-b', open);
    const sa = await subscribeOn(ca, ch, 'client on A');
    const sb = await subscribeOn(cb, ch, 'client on B');
    await apiOk(B, 'publish', { channel: ch, data: { n: 0 } });
    for (const s of [sa, sb]) await waitPubOf(s, (p) => p.data.n === 0);
    await apiOk(A, 'publish', { channel: hch, data: { h: 1 } });

    await redis.kill();
    t.diagnostic('redis-server killed');

    for (const node of [A, B]) {
      const r = await node.api('publish', { channel: ch, data: { n: -1 } }, { timeout: 30000 });
      assert.equal(r.status, 200, `publish on ${node.nodeName} with redis down: HTTP ${r.status} ${r.text}`);
      assert.equal(r.json && r.json.result, undefined, `never a success while redis is down (${node.nodeName}): ${r.text}`);
      assert.equal(errOf(r.json) && errOf(r.json).code, 100, `internal error on ${node.nodeName}: ${r.text}`);
    }
    const h = await A.api('history', { channel: hch, limit: -1 }, { timeout: 30000 });
    assert.equal(h.status, 200, h.text);
    assert.equal(errOf(h.json) && errOf(h.json).code, 100, `history with redis down: ${h.text}`);

    // Clients stay connected while redis is away.
    await sleep(500);
    for (const c of [ca, cb]) {
      assert.equal(c.state, 'connected', `SDK client on ${c === ca ? 'A' : 'B'} still connected`);
      assert.deepEqual(c.events.filter(([e]) => e === 'disconnected'), [], 'no disconnect event');
    }

    await redis.start();
    t.diagnostic('redis-server restarted on the same port');

    // Publish on A until a publication arrives on both clients (bounded).
    const k = await publishUntilDelivered(A, ch, [sa, sb], 'publish on A delivered on A and B after redis came back');
    t.diagnostic(`delivery back after ${k} publish attempt(s)`);

    // Normal service: a publication from B arrives on both, history works again.
    await apiOk(B, 'publish', { channel: ch, data: { n: 'final' } });
    for (const s of [sa, sb]) await waitPubOf(s, (p) => p.data.n === 'final');
    const res = await apiOk(A, 'publish', { channel: hch, data: { h: 2 } });
    assert.equal(typeof res.offset, 'number', JSON.stringify(res));
    const hist = await apiOk(B, 'history', { channel: hch, limit: -1 });
    assert.equal(hist.offset, res.offset, JSON.stringify(hist));
    assert.deepEqual(hist.publications[hist.publications.length - 1], { data: { h: 2 }, offset: res.offset });

    // Never a duplicate, never a publication refused with an error.
    for (const s of [sa, sb]) {
      const ns = s.pubs.map((p) => p.data.n);
      assert.equal(new Set(ns).size, ns.length, `no duplicate publications: ${JSON.stringify(ns)}`);
      assert.ok(!ns.includes(-1), `a publish answered with an error was not delivered: ${JSON.stringify(ns)}`);
    }
    for (const c of [ca, cb]) {
      assert.equal(c.state, 'connected');
      assert.deepEqual(c.events.filter(([e]) => e === 'disconnected'), [], 'no disconnect event during the outage');
    }
    for (const n of ctx.nodes) await assertHealthy(n);
  });
});

describe('redis engine: redis-server frozen (SIGSTOP), then thawed', { skip: redisSkip }, () => {
  const ctx = {};
  useCluster(ctx);
  const open = [];
  after(() => closeAll(open));
  const T = (name, fn, opts) => clusterTest(ctx, name, fn, { timeout: 100000, ...opts });

  T('a Redis that accepts but never answers: publish answers 100 after io_timeout (no hang), clients stay, service comes back', async (t) => {
    const [A, B] = ctx.nodes;
    const [redis] = ctx.services;
    const ch = uniq('chat');
    const ca = await sdkOn(A, 'frz-a', open);
    const sa = await subscribeOn(ca, ch, 'client on A');
    await apiOk(B, 'publish', { channel: ch, data: { n: 0 } });
    await waitPubOf(sa, (p) => p.data.n === 0);

    process.kill(redis.pid, 'SIGSTOP');
    t.diagnostic('redis-server stopped');
    try {
      // The answer comes (bounded by the request's own timeout, far above
      // io_timeout) and is an error, never a success.
      const r = await A.api('publish', { channel: ch, data: { n: -1 } }, { timeout: 30000 });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json && r.json.result, undefined, `never a success while redis is frozen: ${r.text}`);
      assert.equal(errOf(r.json) && errOf(r.json).code, 100, r.text);
      assert.equal(ca.state, 'connected', 'the client stays connected');
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    t.diagnostic('redis-server continued');
    let k = 0;
    await pollUntil(async () => {
      k++;
      const r = await B.api('publish', { channel: ch, data: { n: k } }, { timeout: 30000 });
      if (!r.json || r.json.result === undefined) return false;
      return waitPubOf(sa, (p) => p.data.n === k, 1500).then(() => true, () => false);
    }, { timeout: 40000, interval: 300, what: 'delivery after redis continued' });
    // A command that timed out may still run when Redis wakes (it sat in
    // Redis's socket buffer): the publication may arrive, but never twice.
    assert.ok(sa.pubs.filter((p) => p.data.n === -1).length <= 1, 'the timed-out publication at most once');
    for (const n of ctx.nodes) await assertHealthy(n);
  });
});

describe('redis engine: a node killed with SIGKILL', { skip: redisSkip }, () => {
  const ctx = {};
  useCluster(ctx);
  const open = [];
  after(() => closeAll(open));
  const T = (name, fn, opts) => clusterTest(ctx, name, fn, { timeout: 80000, ...opts });

  T('the dead node leaves info and its clients leave presence', async (t) => {
    const [A, B] = ctx.nodes;
    const ch = uniq('pres');
    const a = await rawOn(A, 'kill-a', open);
    const b = await rawOn(B, 'kill-b', open);
    assert.ok((await a.subscribe(ch)).subscribe);
    assert.ok((await b.subscribe(ch)).subscribe);
    await waitNodes(A, ['A', 'B']);
    await pollUntil(async () => Object.keys((await apiOk(A, 'presence', { channel: ch })).presence || {}).length === 2,
      { timeout: 10000, interval: 200, what: 'presence on A with both clients' });

    const pids = await killNodeTree(B);
    t.diagnostic(`node B killed: pids ${pids.join(' ')}`);
    await b.waitClose();

    const i = await waitNodes(A, ['A'], 30000);
    assert.equal(i.nodes.length, 1);
    const p = await pollUntil(async () => {
      const res = await apiOk(A, 'presence', { channel: ch });
      return Object.keys(res.presence || {}).length === 1 ? res : null;
    }, { timeout: 30000, interval: 250, what: 'B\'s client gone from presence on A' });
    assert.deepEqual(p.presence, { [a.clientId]: { user: 'kill-a', client: a.clientId } });
    assert.deepEqual(await apiOk(A, 'presence_stats', { channel: ch }), { num_clients: 1, num_users: 1 });
    assert.equal(a.closeInfo, null, 'the client on A is untouched');
    await assertHealthy(A);
  });
});

describe('redis engine: sharding over two redis-servers', { skip: redisSkip }, () => {
  const ctx = {};
  useCluster(ctx, { redisCount: 2 });
  const open = [];
  after(() => closeAll(open));
  const T = (name, fn, opts) => clusterTest(ctx, name, fn, opts);
  // Fixed names: the channel -> shard mapping depends only on the name.
  const CHS = Array.from({ length: 12 }, (_, i) => `hist:shard-${i}`);

  T('delivery and history for 12 channels; each channel\'s keys on one shard, both shards used', async (t) => {
    const [A, B] = ctx.nodes;
    const c = await rawOn(A, 'shard-a', open);
    for (const ch of CHS) assert.ok((await c.subscribe(ch)).subscribe, ch);
    for (let i = 0; i < CHS.length; i++) {
      const r = await apiOk(B, 'publish', { channel: CHS[i], data: { i } });
      assert.equal(r.offset, 1, `${CHS[i]}: ${JSON.stringify(r)}`);
    }
    for (let i = 0; i < CHS.length; i++) {
      const p = await rawPub(c, CHS[i], (x) => x.data.i === i);
      assert.equal(p.push.pub.offset, 1);
      const h = await apiOk(A, 'history', { channel: CHS[i], limit: -1 });
      assert.deepEqual(h.publications, [{ data: { i }, offset: 1 }], CHS[i]);
    }
    const keys = [];
    for (const s of ctx.services) keys.push(await s.keys(`${ctx.prefix}*`));
    t.diagnostic(`keys per shard: ${keys.map((k) => k.length).join(' / ')}`);
    assert.ok(keys[0].length > 0 && keys[1].length > 0, `both redis servers hold keys of ${ctx.prefix}: ${JSON.stringify(keys)}`);
    for (const ch of CHS) {
      const where = keys.map((ks) => ks.filter((k) => k.endsWith(`.${ch}`) || k.includes(`.${ch}.`) || k.includes(`{${ch}}`)).length);
      assert.equal(where.filter((n) => n > 0).length, 1, `keys of ${ch} on exactly one shard: ${JSON.stringify(where)} ${JSON.stringify(keys)}`);
    }
    // Control traffic works over the shards: both nodes see each other.
    await waitNodes(A, ['A', 'B']);
    await waitNodes(B, ['A', 'B']);
  });
});

// Run the binary on a configuration (merged over the test defaults) and
// return { code, signal, output, started } — started when it was still
// running after `timeout` ms (then it is killed).
async function runConfig(overrides, timeout = 8000) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-it-cfg-'));
  const cfg = merge(merge(defaultConfig(), overrides), { http_server: { port: await freePort() } });
  const file = path.join(dir, 'config.cfg');
  fs.writeFileSync(file, toLibconfig(cfg));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CENTRIFUGO_')));
  const child = spawn(BIN, ['-c', file], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const first = await Promise.race([exited, sleep(timeout).then(() => null)]);
  let res;
  if (first) {
    res = { ...first, started: false };
  } else {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    res = { ...(await exited), started: true };
  }
  await sleep(50);
  fs.rmSync(dir, { recursive: true, force: true });
  return { ...res, output, text: toLibconfig(cfg) };
}

describe('redis engine: configuration errors', () => {
  clusterTest({}, 'engine.type = "bogus": start refused, the message names file:line, option and value', async () => {
    const r = await runConfig({ engine: { type: 'bogus' } });
    assert.equal(r.started, false, `server must refuse to start; output: ${r.output}`);
    assert.notEqual(r.code, 0, r.output);
    assert.match(r.output, /config\.cfg:\d+/, `file:line in ${JSON.stringify(r.output)}`);
    assert.match(r.output, /engine\.type/, r.output);
    assert.match(r.output, /bogus/, r.output);
  });

  // TLS settings are read and checked at start: each mistake names its option.
  const tlsCases = () => {
    const { makeCA } = require('./lib/tlscerts');
    const ca = makeCA('cfg');
    const a = ca.issue('a', { sans: ['DNS:a'] });
    const b = ca.issue('b', { sans: ['DNS:b'] });
    return {
      ca,
      cases: [
        ['server_ca_pem neither PEM, base64 PEM nor a file', { tls: { enabled: true, server_ca_pem: '/no/such/ca.pem' } }, /engine\.redis\.tls\.server_ca_pem.*cannot open as a file/],
        ['server_ca_pem a file without a certificate', { tls: { enabled: true, server_ca_pem: a.key } }, /engine\.redis\.tls\.server_ca_pem.*no PEM certificate/],
        ['cert_pem without key_pem', { tls: { enabled: true, cert_pem: a.cert } }, /engine\.redis\.tls\.cert_pem' is set without engine\.redis\.tls\.key_pem/],
        ['key_pem of another certificate', { tls: { enabled: true, cert_pem: a.cert, key_pem: b.key } }, /engine\.redis\.tls\.key_pem.*does not match/],
        ['tls.enabled with a unix socket address', { address: 'unix:///run/redis.sock', tls: { enabled: true } }, /engine\.redis\.tls\.enabled.*unix socket address/],
        ['a rediss:// address checks the TLS settings too', { address: 'rediss://127.0.0.1:6379', tls: { key_pem: a.key } }, /engine\.redis\.tls\.key_pem' is set without engine\.redis\.tls\.cert_pem/],
        ['rediss+sentinel:// addresses', { address: 'rediss+sentinel://127.0.0.1:26379' }, /engine\.redis\.address.*not supported/],
        ['a rediss:// sentinel', { sentinel_address: 'rediss://127.0.0.1:26379', sentinel_master_name: 'm' }, /engine\.redis\.sentinel_address.*plain TCP/],
      ],
    };
  };
  clusterTest({}, 'engine.redis.tls mistakes: start refused, file:line and the option named', async () => {
    const { ca, cases } = tlsCases();
    try {
      for (const [what, redis, pattern] of cases) {
        const r = await runConfig({ engine: { type: 'redis', redis: { prefix: uniquePrefix(), ...redis } } });
        assert.equal(r.started, false, `${what}: server must refuse to start; output: ${r.output}`);
        assert.notEqual(r.code, 0, `${what}: ${r.output}`);
        assert.match(r.output, /config\.cfg:\d+/, `${what}: file:line in ${JSON.stringify(r.output)}`);
        assert.match(r.output, pattern, `${what}: ${r.output}`);
      }
    } finally {
      ca.dispose();
    }
  }, { timeout: 90000 });

  for (const bad of ['not a host:port', '127.0.0.1:notaport', '127.0.0.1:99999']) {
    clusterTest({}, `engine.redis.address = "${bad}": start refused, the message names the option and value`, async () => {
      const r = await runConfig({ engine: { type: 'redis', redis: { address: bad, prefix: uniquePrefix() } } });
      assert.equal(r.started, false, `server must refuse to start; output: ${r.output}`);
      assert.notEqual(r.code, 0, r.output);
      assert.match(r.output, /config\.cfg:\d+/, `file:line in ${JSON.stringify(r.output)}`);
      assert.match(r.output, /engine\.redis\.address/, r.output);
      assert.ok(r.output.includes(bad), `value ${bad} quoted: ${r.output}`);
    });
  }
});
