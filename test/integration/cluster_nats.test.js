'use strict';
// Two nodes of ours (A and B) with the NATS broker (broker.type = "nats",
// memory engine) on a real nats-server started by this file: cross-node
// delivery both ways (API and client publishes, SDK), `info` listing both
// nodes, server API disconnect via B reaching the user on A, history
// answering 108 (the NATS broker keeps none), and nats-server killed and
// restarted: publish errors (100) while it is down, clients stay connected,
// delivery comes back. Skipped only when nats-server is not installed.

const assert = require('node:assert/strict');
const { describe, before, after, afterEach } = require('node:test');

const { assertHealthy } = require('./lib/harness');
const { sleep, pollUntil } = require('./lib/util');
const {
  natsSkip, startNats, uniquePrefix, startNodes, clusterTest,
  apiOk, channelsAcrossNodes, rawOn, sdkOn, subscribeOn, waitPubOf, publishUntilDelivered, closeAll, rawPub, infoOf, waitNodes,
} = require('./lib/services');

const OPEN = { allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true };
const CHANNELS = {
  without_namespace: { ...OPEN },
  namespaces: [
    { name: 'chat', ...OPEN, allow_publish_for_client: true, allow_publish_for_anonymous: true },
    { name: 'hist', ...OPEN, history_size: 10, history_ttl: '300s', allow_history_for_client: true },
  ],
};

function natsConfig(url, prefix) {
  return {
    broker: { enabled: true, type: 'nats', nats: { url, prefix } },
    channel: CHANNELS,
  };
}

let seq = 0;
const uniq = (ns) => `${ns}:n${++seq}-${Math.random().toString(36).slice(2, 7)}`;
const errOf = (j) => j && j.error && { code: j.error.code, message: j.error.message };

describe('NATS broker: two nodes', { skip: natsSkip }, () => {
  const ctx = {};
  before(async () => {
    ctx.services = [await startNats()];
    ctx.prefix = uniquePrefix('cfit-nats');
    ctx.nodes = await startNodes(['A', 'B'], () => natsConfig(ctx.services[0].url, ctx.prefix));
  }, { timeout: 60000 });
  after(async () => {
    for (const n of ctx.nodes || []) await n.stop();
    for (const s of ctx.services || []) await s.dispose();
  }, { timeout: 60000 });
  const open = [];
  afterEach(() => closeAll(open));
  const T = (name, fn, opts) => clusterTest(ctx, name, fn, opts);

  T('cross-node delivery both ways: API publish on B and on A, client publish on A', async () => {
    const [A, B] = ctx.nodes;
    const ch = uniq('chat');
    const ca = await sdkOn(A, 'na', open);
    const cb = await sdkOn(B, 'nb', open);
    const sa = await subscribeOn(ca, ch, 'client on A');
    const sb = await subscribeOn(cb, ch, 'client on B');

    assert.deepEqual(await apiOk(B, 'publish', { channel: ch, data: { n: 1, from: 'B' } }), {});
    for (const s of [sa, sb]) assert.deepEqual((await waitPubOf(s, (p) => p.data.n === 1)).data, { n: 1, from: 'B' });
    assert.deepEqual(await apiOk(A, 'publish', { channel: ch, data: { n: 2, from: 'A' } }), {});
    for (const s of [sa, sb]) assert.deepEqual((await waitPubOf(s, (p) => p.data.n === 2)).data, { n: 2, from: 'A' });

    await sa.publish({ n: 3, from: 'client on A' });
    const got = await waitPubOf(sb, (p) => p.data.n === 3);
    assert.deepEqual(got.data, { n: 3, from: 'client on A' });
    assert.ok(got.info, `publisher info crosses nodes: ${JSON.stringify(got)}`);
    assert.equal(got.info.user, 'na');
    assert.equal(got.info.client, ca.ctx.client);
    await waitPubOf(sa, (p) => p.data.n === 3);

    // A last one from B behind the others: nothing was delivered twice.
    await apiOk(B, 'publish', { channel: ch, data: { n: 4 } });
    for (const s of [sa, sb]) {
      await waitPubOf(s, (p) => p.data.n === 4);
      assert.deepEqual(s.pubs.map((p) => p.data.n).sort(), [1, 2, 3, 4], `once each: ${JSON.stringify(s.pubs.map((p) => p.data))}`);
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

  T('channels on either node counts every node\'s subscribers (survey on the control channel)', () => channelsAcrossNodes(ctx, open));

  T('info on A and on B lists both nodes with their clients', async (t) => {
    const [A, B] = ctx.nodes;
    await rawOn(A, 'ni-a', open);
    await rawOn(B, 'ni-b1', open);
    await rawOn(B, 'ni-b2', open);
    for (const node of [A, B]) {
      const i = await pollUntil(async () => {
        const x = await infoOf(node);
        return x.nodes.length === 2 && x.byName.A && x.byName.B
          && x.byName.A.num_clients === 1 && x.byName.B.num_clients === 2 ? x : null;
      }, { timeout: 15000, interval: 250, what: `info on ${node.nodeName}: A with 1 client, B with 2` });
      t.diagnostic(`info on ${node.nodeName}: ${JSON.stringify(i.nodes)}`);
      assert.notEqual(i.byName.A.uid, i.byName.B.uid);
      assert.equal(i.byName.B.num_users, 2);
    }
  });

  T('server API disconnect via B reaches the user on A', async () => {
    const [A, B] = ctx.nodes;
    const victim = await rawOn(A, 'nd-victim', open);
    const other = await rawOn(A, 'nd-other', open);
    const ch = uniq('chat');
    assert.ok((await other.subscribe(ch)).subscribe);
    assert.deepEqual(await apiOk(B, 'disconnect', { user: 'nd-victim' }), {});
    assert.deepEqual(await victim.waitClose(), { code: 3503, reason: 'force disconnect' });
    await apiOk(B, 'publish', { channel: ch, data: { still: 'here' } });
    await rawPub(other, ch, (p) => p.data.still === 'here');
    assert.equal(other.closeInfo, null);
  });

  T('history API answers 108 "not available": the NATS broker keeps no history', async () => {
    const [A, B] = ctx.nodes;
    const ch = uniq('hist');
    const c = await rawOn(A, 'nh', open);
    assert.ok((await c.subscribe(ch)).subscribe);
    assert.deepEqual(await apiOk(B, 'publish', { channel: ch, data: { h: 1 } }), {},
      'publish into a history namespace still works (no offset: nothing is kept)');
    const p = await rawPub(c, ch);
    assert.deepEqual(p.push.pub, { data: { h: 1 } }, 'no offset on a publication that no history holds');
    for (const node of [A, B]) {
      const r = await node.api('history', { channel: ch, limit: -1 });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(errOf(r.json), { code: 108, message: 'not available' }, `history on ${node.nodeName}: ${r.text}`);
    }
    const r = await c.command({ history: { channel: ch, limit: -1 } });
    assert.deepEqual(errOf(r), { code: 108, message: 'not available' }, `client history: ${JSON.stringify(r)}`);
  });

  T('nats-server killed: publish errors (100), clients stay; restarted: delivery works again', async (t) => {
    const [A, B] = ctx.nodes;
    const [nats] = ctx.services;
    const ch = uniq('chat');
    const ca = await sdkOn(A, 'no-a', open);
    const cb = await sdkOn(B, 'no-b', open);
    const sa = await subscribeOn(ca, ch, 'client on A');
    const sb = await subscribeOn(cb, ch, 'client on B');
    await apiOk(A, 'publish', { channel: ch, data: { n: 0 } });
    for (const s of [sa, sb]) await waitPubOf(s, (p) => p.data.n === 0);

    await nats.kill();
    t.diagnostic('nats-server killed');
    // NATS is at most once: a publication handed to libnats in the instant
    // before it noticed the dead server is lost, not refused.  Once the node
    // knows (its connection is reconnecting), every publish answers 100.
    const refused = new Set();
    let m = 0;
    for (const node of [A, B]) {
      const r = await pollUntil(async () => {
        const n = -(++m);
        const x = await node.api('publish', { channel: ch, data: { n } }, { timeout: 30000 });
        assert.equal(x.status, 200, `publish on ${node.nodeName}: HTTP ${x.status} ${x.text}`);
        if (!(x.json && x.json.error)) return null;
        refused.add(n);
        return x;
      }, { timeout: 10000, interval: 100, what: `an error from ${node.nodeName} once NATS is gone` });
      assert.equal(errOf(r.json).code, 100, `internal error on ${node.nodeName}: ${r.text}`);
      const n = -(++m);
      const again = await node.api('publish', { channel: ch, data: { n } }, { timeout: 30000 });
      assert.equal(again.json && again.json.result, undefined, `never a success while NATS is down (${node.nodeName}): ${again.text}`);
      refused.add(n);
    }
    await sleep(500);
    for (const c of [ca, cb]) {
      assert.equal(c.state, 'connected');
      assert.deepEqual(c.events.filter(([e]) => e === 'disconnected'), [], 'no disconnect event while NATS is down');
    }

    await nats.start();
    t.diagnostic('nats-server restarted on the same port');
    const k = await publishUntilDelivered(B, ch, [sa, sb], 'publish on B delivered on A and B after NATS came back');
    t.diagnostic(`delivery back after ${k} publish attempt(s)`);
    await apiOk(A, 'publish', { channel: ch, data: { n: 'final' } });
    for (const s of [sa, sb]) {
      await waitPubOf(s, (p) => p.data.n === 'final');
      const ns = s.pubs.map((p) => p.data.n);
      assert.equal(new Set(ns).size, ns.length, `no duplicates: ${JSON.stringify(ns)}`);
      assert.ok(!ns.some((n) => refused.has(n)), `a publish answered with an error was delivered: ${JSON.stringify(ns)}`);
    }
    for (const c of [ca, cb]) assert.deepEqual(c.events.filter(([e]) => e === 'disconnected'), []);
    await waitNodes(A, ['A', 'B']);
    for (const n of ctx.nodes) await assertHealthy(n);
  }, { timeout: 100000 });
});
