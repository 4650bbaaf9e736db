'use strict';
// The Redis engine in Sentinel mode (issue 4): a master, a replica and a
// sentinel (redis-server processes started here), two nodes of ours that
// know only the sentinel.  Cross-node delivery and history through the
// master the sentinel names; a failover with the old master demoted: the
// nodes notice (READONLY), ask the sentinel again and follow the new
// master, history kept.

const assert = require('node:assert/strict');
const { describe, before, after } = require('node:test');

const { pollUntil } = require('./lib/util');
const {
  redisSkip, startRedisWith, startSentinel, uniquePrefix, startNodes, clusterTest,
  apiOk, sdkOn, subscribeOn, waitPubOf, closeAll,
} = require('./lib/services');

const OPEN = { allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true };
const MASTER = 'cfmaster';
let seq = 0;
const uniq = (ns) => `${ns}:s${++seq}-${Math.random().toString(36).slice(2, 7)}`;

describe('redis engine: Sentinel', { skip: redisSkip }, () => {
  const ctx = {};
  const open = [];
  before(async () => {
    const master = await startRedisWith([]);
    const replica = await startRedisWith(['--replicaof', '127.0.0.1', String(master.port)]);
    const sentinel = await startSentinel(master.port, MASTER);
    ctx.services = [master, replica, sentinel];
    ctx.master = master;
    ctx.replica = replica;
    ctx.sentinel = sentinel;
    // The replica is in sync before anything depends on it.
    await pollUntil(async () => {
      const info = await replica.command('INFO', 'replication');
      return typeof info === 'string' && /master_link_status:up/.test(info);
    }, { timeout: 15000, interval: 200, what: 'replica in sync' });
    const prefix = uniquePrefix('cfit-sentinel');
    ctx.nodes = await startNodes(['A', 'B'], () => ({
      engine: {
        type: 'redis',
        redis: { sentinel_address: [sentinel.address], sentinel_master_name: MASTER, prefix, io_timeout: '2s' },
      },
      channel: {
        without_namespace: { ...OPEN },
        namespaces: [{ name: 'chat', ...OPEN }, { name: 'hist', ...OPEN, history_size: 10, history_ttl: '300s' }],
      },
    }));
  }, { timeout: 60000 });
  after(async () => {
    closeAll(open);
    for (const n of ctx.nodes || []) await n.stop();
    for (const s of ctx.services || []) await s.dispose();
  }, { timeout: 60000 });
  const T = (name, fn, opts) => clusterTest(ctx, name, fn, { timeout: 90000, ...opts });

  T('delivery and history across nodes through the master the sentinel names', async () => {
    const [A, B] = ctx.nodes;
    const ch = uniq('chat');
    const sa = await subscribeOn(await sdkOn(A, 'sn-a', open), ch, 'client on A');
    await apiOk(B, 'publish', { channel: ch, data: { n: 1 } });
    await waitPubOf(sa, (p) => p.data.n === 1);
    const h = uniq('hist');
    const r = await apiOk(A, 'publish', { channel: h, data: { h: 1 } });
    assert.equal(r.offset, 1, JSON.stringify(r));
    const hist = await apiOk(B, 'history', { channel: h, limit: -1 });
    assert.deepEqual(hist.publications.map((p) => p.data), [{ h: 1 }]);
    // The data is in the master the sentinel named.
    const keys = await ctx.master.command('KEYS', '*');
    assert.ok(Array.isArray(keys) && keys.length > 0, `keys on the master: ${JSON.stringify(keys)}`);
  });

  T('failover: the old master demoted (READONLY), the nodes ask the sentinel again and follow the new one', async (t) => {
    const [A, B] = ctx.nodes;
    const h = uniq('hist');
    const first = await apiOk(A, 'publish', { channel: h, data: { before: true } });
    // The write reached the replica before it is promoted.
    await pollUntil(async () => (await ctx.replica.command('DBSIZE')) === (await ctx.master.command('DBSIZE')),
      { timeout: 10000, interval: 100, what: 'replica caught up' });
    const r = await ctx.sentinel.command('SENTINEL', 'FAILOVER', MASTER);
    assert.equal(r, 'OK', `SENTINEL FAILOVER: ${JSON.stringify(r)}`);
    await pollUntil(async () => {
      const m = await ctx.sentinel.command('SENTINEL', 'get-master-addr-by-name', MASTER);
      return Array.isArray(m) && Number(m[1]) === ctx.replica.port;
    }, { timeout: 30000, interval: 200, what: 'sentinel names the replica as master' });
    // Demote the old master now rather than when the sentinel gets to it:
    // our nodes still talk to it and must notice (READONLY) and move.
    assert.equal(await ctx.master.command('REPLICAOF', '127.0.0.1', String(ctx.replica.port)), 'OK');
    t.diagnostic('failed over; the old master is a replica');

    // A history publish is a write: it succeeds only on the new master.
    let k = 0;
    const next = await pollUntil(async () => {
      k++;
      const res = await A.api('publish', { channel: h, data: { after: true, k } }, { timeout: 30000 });
      return res.json && res.json.result ? res.json.result : null;
    }, { timeout: 60000, interval: 300, what: 'a history publish accepted by the new master' });
    t.diagnostic(`history publish accepted after ${k} attempt(s)`);
    assert.equal(next.epoch, first.epoch, 'the stream (in the promoted replica) kept its epoch');
    assert.equal(next.offset, first.offset + 1, JSON.stringify(next));
    const hist = await pollUntil(async () => {
      const res = await B.api('history', { channel: h, limit: -1 }, { timeout: 30000 });
      return res.json && res.json.result ? res.json.result : null;
    }, { timeout: 30000, interval: 300, what: 'history on B through the new master' });
    assert.deepEqual(hist.publications.map((p) => Object.keys(p.data)[0]), ['before', 'after']);
    // And delivery works across nodes through the new master.
    const ch = uniq('chat');
    const sa = await subscribeOn(await sdkOn(A, 'sf-a', open), ch, 'client on A');
    await pollUntil(async () => {
      k++;
      const res = await B.api('publish', { channel: ch, data: { n: k } }, { timeout: 30000 });
      if (!res.json || res.json.result === undefined) return false;
      return waitPubOf(sa, (p) => p.data.n === k, 1500).then(() => true, () => false);
    }, { timeout: 60000, interval: 300, what: 'delivery through the new master' });
  });
});
