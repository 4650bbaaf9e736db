'use strict';
// The server API driven by a real third-party client: the npm package
// cent.js (CentClient), for every method it has — publish, broadcast,
// subscribe, unsubscribe, disconnect, refresh, getPresence,
// getPresenceStats, getHistory, removeHistory, getChannels, getInfo — and
// its pipeline() (the legacy newline-delimited POST /api). cent.js returns
// `result` (or {}) and throws CentException when the reply has `error`.
// Connections that the methods act on are raw WebSocket clients of one
// user spread over both workers.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { CentClient, CentException } = require('cent.js');
const { useServer } = require('./lib/harness');
const { rawClient } = require('./lib/wsclient');
const { API_KEY } = require('./lib/config');
const { pollUntil } = require('./lib/util');
const { userClient, userOnTwoWorkers, assertNothingBefore } = require('./lib/apitest');

const OPEN = {
  allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
  allow_publish_for_client: true, allow_publish_for_anonymous: true,
};
const CONFIG = {
  workers: 2,
  channel: {
    namespaces: [
      { name: 'chat', ...OPEN },
      { name: 'pres', ...OPEN, presence: true },
      { name: 'hist', ...OPEN, history_size: 50, history_ttl: '300s' },
    ],
  },
};

let seq = 0;
const uniq = (ns) => `${ns}:cj${++seq}`;
const uniqUser = () => `centjs-user${++seq}`;

describe('cent.js client', () => {
  const h = useServer(CONFIG);
  const clients = [];
  const track = (c) => { clients.push(c); return c; };
  afterEach(() => { for (const c of clients.splice(0)) c.close(); });
  const cent = (opts = {}) => new CentClient({ url: `${h.server.baseUrl}/api`, apiKey: API_KEY, ...opts });

  h.test('publish: {} without history, {offset, epoch} with history; delivered', async () => {
    const api = cent();
    const c = track(await rawClient(h.server.wsUrl, { connect: true }));
    const ch = uniq('chat');
    await c.subscribe(ch);
    assert.deepEqual(await api.publish({ channel: ch, data: { input: 'test' } }), {});
    const p = await c.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { input: 'test' });
    const hch = uniq('hist');
    const r = await api.publish({ channel: hch, data: 'a JSON string' });
    assert.equal(r.offset, 1);
    assert.equal(typeof r.epoch, 'string');
  });

  h.test('errors become CentException (unknown channel, missing data, presence off)', async () => {
    const api = cent();
    await assert.rejects(api.publish({ channel: 'nope:x', data: {} }), CentException);
    await assert.rejects(api.publish({ channel: uniq('chat') }), CentException);
    await assert.rejects(api.getPresence({ channel: uniq('chat') }), CentException);
    await assert.rejects(api.getHistory({ channel: uniq('chat') }), CentException);
  });

  h.test('a wrong API key makes every call fail', async () => {
    const api = cent({ apiKey: 'wrong' });
    await assert.rejects(api.publish({ channel: uniq('chat'), data: {} }));
    await assert.rejects(api.getInfo());
  });

  h.test('broadcast: responses per channel in input order', async () => {
    const api = cent();
    const a = uniq('hist'); const b = uniq('chat');
    const r = await api.broadcast({ channels: [a, b, 'nope:z'], data: { b: 1 } });
    assert.equal(r.responses.length, 3);
    assert.equal(r.responses[0].result.offset, 1);
    assert.deepEqual(r.responses[1], { result: {} });
    assert.deepEqual(r.responses[2], { error: { code: 102, message: 'unknown channel' } });
  });

  h.test('subscribe / unsubscribe: pushes on both workers', async () => {
    const api = cent();
    const u = uniqUser();
    const [a, b] = (await userOnTwoWorkers(h.server, u)).map(track);
    const ch = uniq('chat');
    assert.deepEqual(await api.subscribe({ user: u, channel: ch, data: { hello: 'x' } }), {});
    for (const c of [a, b]) {
      const p = await c.push({ channel: ch, kind: 'subscribe' });
      assert.deepEqual(p.push.subscribe.data, { hello: 'x' });
    }
    await api.publish({ channel: ch, data: { n: 1 } });
    for (const c of [a, b]) assert.deepEqual((await c.push({ channel: ch, kind: 'pub' })).push.pub.data, { n: 1 });
    assert.deepEqual(await api.unsubscribe({ user: u, channel: ch }), {});
    for (const c of [a, b]) {
      const p = await c.push({ channel: ch, kind: 'unsubscribe' });
      assert.deepEqual(p.push.unsubscribe, { code: 2000, reason: 'server unsubscribe' });
    }
  });

  h.test('disconnect: 3503 by default, custom code, and {} for an unknown user', async () => {
    const api = cent();
    const u = uniqUser();
    const [a, b] = (await userOnTwoWorkers(h.server, u)).map(track);
    assert.deepEqual(await api.disconnect({ user: u, whitelist: [b.clientId] }), {});
    assert.deepEqual(await a.waitClose(), { code: 3503, reason: 'force disconnect' });
    assert.deepEqual(await api.disconnect({ user: u, disconnect: { code: 4500, reason: 'custom' } }), {});
    assert.deepEqual(await b.waitClose(), { code: 4500, reason: 'custom' });
    assert.deepEqual(await api.disconnect({ user: 'nobody-at-all' }), {});
  });

  h.test('refresh: expired closes with 3005', async () => {
    const api = cent();
    const u = uniqUser();
    const [a, b] = (await userOnTwoWorkers(h.server, u)).map(track);
    assert.deepEqual(await api.refresh({ user: u, expire_at: Math.floor(Date.now() / 1000) + 600 }), {});
    const ch = uniq('chat');
    await a.subscribe(ch);
    await assertNothingBefore(h.server, [a], ch, () => false, 'after refresh with expire_at');
    assert.equal(a.closeInfo, null);
    assert.deepEqual(await api.refresh({ user: u, expired: true }), {});
    for (const c of [a, b]) assert.deepEqual(await c.waitClose(), { code: 3005, reason: 'connection expired' });
  });

  h.test('getPresence / getPresenceStats: empty and populated', async () => {
    const api = cent();
    const ch = uniq('pres');
    assert.deepEqual(await api.getPresence({ channel: ch }), { presence: {} });
    assert.deepEqual(await api.getPresenceStats({ channel: ch }), { num_clients: 0, num_users: 0 });
    const u = uniqUser();
    const [a, b] = (await userOnTwoWorkers(h.server, u, { info: { n: 'x' } })).map(track);
    const other = track(await userClient(h.server, uniqUser()));
    for (const c of [a, b, other]) await c.subscribe(ch);
    const stats = await pollUntil(async () => {
      const s = await api.getPresenceStats({ channel: ch });
      return s.num_clients === 3 ? s : null;
    }, { what: 'presence_stats 3 clients' });
    assert.deepEqual(stats, { num_clients: 3, num_users: 2 });
    const pr = await api.getPresence({ channel: ch });
    assert.deepEqual(Object.keys(pr.presence).sort(), [a.clientId, b.clientId, other.clientId].sort());
    assert.deepEqual(pr.presence[a.clientId], { user: u, client: a.clientId, conn_info: { n: 'x' } });
  });

  h.test('getHistory / removeHistory', async () => {
    const api = cent();
    const ch = uniq('hist');
    let hist = await api.getHistory({ channel: ch });
    assert.deepEqual(hist.publications, []);
    assert.equal(hist.offset, 0);
    assert.equal(typeof hist.epoch, 'string');
    for (let i = 1; i <= 3; i++) await api.publish({ channel: ch, data: { i } });
    hist = await api.getHistory({ channel: ch, limit: 2, reverse: true });
    assert.deepEqual(hist.publications.map((p) => p.data.i), [3, 2]);
    assert.equal(hist.offset, 3);
    hist = await api.getHistory({ channel: ch, limit: -1, since: { offset: 1, epoch: hist.epoch } });
    assert.deepEqual(hist.publications.map((p) => p.data.i), [2, 3]);
    assert.deepEqual(await api.removeHistory({ channel: ch }), {});
    hist = await api.getHistory({ channel: ch, limit: -1 });
    assert.deepEqual(hist.publications, []);
    assert.equal(hist.offset, 3);
  });

  h.test('getChannels: without params ({} body) and with a pattern', async () => {
    const api = cent();
    const u = uniqUser();
    const [a, b] = (await userOnTwoWorkers(h.server, u)).map(track);
    const ch = uniq('chat');
    for (const c of [a, b]) await c.subscribe(ch);
    const all = await pollUntil(async () => {
      const r = await api.getChannels();
      return r.channels && r.channels[ch] && r.channels[ch].num_clients === 2 ? r : null;
    }, { what: `channels lists ${ch} with 2 clients` });
    assert.equal(typeof all.channels, 'object');
    assert.deepEqual(await api.getChannels({ pattern: ch }), { channels: { [ch]: { num_clients: 2 } } });
    assert.deepEqual(await api.getChannels({ pattern: 'none-such-*' }), { channels: {} });
  });

  h.test('getInfo: one node with a Centrifugo 6 version', async () => {
    const info = await cent().getInfo();
    assert.ok(Array.isArray(info.nodes) && info.nodes.length >= 1, JSON.stringify(info));
    assert.match(info.nodes[0].version, /^6\./);
    assert.equal(typeof info.nodes[0].name, 'string');
    assert.equal(typeof info.nodes[0].num_clients, 'number');
  });

  h.test('pipeline(): several commands through the legacy /api endpoint', async () => {
    const api = cent();
    const ch = uniq('hist');
    const pch = uniq('pres');
    const res = await api.pipeline([
      { method: 'publish', params: { channel: ch, data: { p: 1 } } },
      { method: 'publish', params: { channel: ch, data: { p: 2 } } },
      { method: 'presence_stats', params: { channel: pch } },
      { method: 'history', params: { channel: ch, limit: -1 } },
      { method: 'info', params: {} },
    ]);
    assert.equal(res.length, 5, JSON.stringify(res));
    assert.equal(res[0].offset, 1);
    assert.equal(res[1].offset, 2);
    assert.deepEqual(res[2], { num_clients: 0, num_users: 0 });
    assert.deepEqual(res[3].publications.map((p) => p.data), [{ p: 1 }, { p: 2 }]);
    assert.ok(res[4].nodes.length >= 1);
  });
});
