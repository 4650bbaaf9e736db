'use strict';
// Observability endpoints (issue 5 "Observability", features.md metric
// names, config.md §3.20): GET /metrics in Prometheus text format with
// Centrifugo's metric names, figures summed over the worker processes
// whichever worker answers the scrape, counters that move with API calls and
// deliveries, our own ring/respawn figures; /health; and the separate
// internal listener (http_server.internal_port) carrying API, health and
// metrics while the external port keeps the client endpoints.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, afterEach, test } = require('node:test');
const { useServer } = require('./lib/harness');
const { Server, freePort, httpRequest } = require('./lib/server');
const { merge, defaultConfig, API_KEY } = require('./lib/config');
const { rawClient } = require('./lib/wsclient');
const { pollUntil } = require('./lib/util');
const { userOnTwoWorkers, userClient } = require('./lib/apitest');

// Parse Prometheus text exposition: { types: {family: type}, samples: [{name, labels, value}] }.
// Throws on a line that is not valid exposition syntax.
function parseProm(text) {
  const types = {};
  const helps = {};
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|summary|histogram|untyped)$/.exec(line))) {
      assert.equal(types[m[1]], undefined, `TYPE given twice for ${m[1]}`);
      types[m[1]] = m[2];
      continue;
    }
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) { helps[m[1]] = m[2]; continue; }
    if (line.startsWith('#')) continue;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( \d+)?$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
      let lm; let consumed = 0;
      while ((lm = re.exec(m[3])) !== null) { labels[lm[1]] = lm[2]; consumed = re.lastIndex; if (lm[3] === '') break; }
      assert.equal(consumed, m[3].length, `bad label set in ${JSON.stringify(line)}`);
    }
    const value = Number(m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : m[4]);
    assert.ok(!Number.isNaN(value) || m[4] === 'NaN', `bad value in ${JSON.stringify(line)}`);
    samples.push({ name: m[1], labels, value });
  }
  return { types, helps, samples };
}

// Family of a sample name (summary/histogram parts belong to their family).
const familyOf = (name, types) => {
  if (types[name]) return name;
  for (const suf of ['_count', '_sum', '_bucket']) if (name.endsWith(suf) && types[name.slice(0, -suf.length)]) return name.slice(0, -suf.length);
  return name;
};

// Sum of the samples called `name` whose labels include `where`.
const total = (prom, name, where = {}) => prom.samples
  .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
  .reduce((a, s) => a + s.value, 0);
const has = (prom, name) => prom.samples.some((s) => s.name === name);

async function scrape(srv, port = srv.port) {
  const r = await httpRequest(port, 'GET', '/metrics');
  assert.equal(r.status, 200, `GET /metrics: ${r.status} ${r.text.slice(0, 200)}`);
  return { r, prom: parseProm(r.text) };
}

const OPEN = { allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true };
const CONFIG = {
  workers: 2,
  prometheus: { enabled: true },
  channel: { without_namespace: OPEN, namespaces: [{ name: 'mx', ...OPEN }] },
};

describe('GET /metrics', () => {
  const h = useServer(CONFIG);
  const clients = [];
  afterEach(() => { for (const c of clients.splice(0)) c.close(); });

  h.test('Prometheus text format: valid lines, a TYPE per family, no duplicate series, text/plain', async (t, srv) => {
    const { r, prom } = await scrape(srv);
    assert.match(r.headers.get('content-type'), /^text\/plain(;|$)/);
    const seen = new Set();
    for (const s of prom.samples) {
      const key = `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`;
      assert.ok(!seen.has(key), `duplicate series ${key}`);
      seen.add(key);
      assert.ok(prom.types[familyOf(s.name, prom.types)], `no # TYPE for ${s.name}`);
    }
    assert.ok(prom.samples.length > 0);
  });

  h.test('Centrifugo metric names are present', async (t, srv) => {
    // Make every family have something to report.
    const c = await rawClient(srv.wsUrl, { connect: true });
    clients.push(c);
    await c.subscribe('mx:names');
    await srv.publish('mx:names', { x: 1 });
    await c.push({ channel: 'mx:names', kind: 'pub' });
    const { prom } = await scrape(srv);
    const names = new Set(prom.samples.map((s) => s.name));
    const want = [
      'centrifugo_node_num_clients', 'centrifugo_node_num_users', 'centrifugo_node_num_subscriptions',
      'centrifugo_node_num_channels', 'centrifugo_node_messages_sent_count', 'centrifugo_node_messages_received_count',
      'centrifugo_node_build', 'centrifugo_client_connections_accepted',
      'centrifugo_api_command_duration_seconds_count', 'centrifugo_api_command_duration_seconds_sum',
      'centrifugo_transport_messages_sent', 'centrifugo_transport_messages_sent_size',
      'centrifugo_transport_messages_received', 'centrifugo_transport_messages_received_size',
    ];
    const missing = want.filter((n) => !names.has(n));
    assert.deepEqual(missing, [], `missing metrics; present: ${[...names].join(' ')}`);
    const build = prom.samples.find((s) => s.name === 'centrifugo_node_build');
    assert.match(build.labels.version, /^6\./);
  });

  h.test('our own figures: ring lag and overruns per worker, process (re)spawns', async (t, srv) => {
    const { prom } = await scrape(srv);
    const names = [...new Set(prom.samples.map((s) => s.name))];
    const lag = prom.samples.filter((s) => /ring.*lag/.test(s.name));
    const over = prom.samples.filter((s) => /overrun/.test(s.name));
    const spawn = prom.samples.filter((s) => /spawn/.test(s.name));
    assert.ok(lag.length >= 2, `ring lag for each of 2 workers: ${names.join(' ')}`);
    assert.ok(over.length >= 2, `ring overruns for each of 2 workers: ${names.join(' ')}`);
    assert.ok(spawn.length >= 1, `spawn counter: ${names.join(' ')}`);
    assert.equal(new Set(lag.map((s) => JSON.stringify(s.labels))).size, lag.length, 'one lag series per worker');
  });

  h.test('gauges sum every worker: clients, users, subscriptions, channels', async (t, srv) => {
    const base = (await scrape(srv)).prom;
    const b0 = {
      clients: total(base, 'centrifugo_node_num_clients'), subs: total(base, 'centrifugo_node_num_subscriptions'),
      chans: total(base, 'centrifugo_node_num_channels'), users: total(base, 'centrifugo_node_num_users'),
    };
    const [a, b] = await userOnTwoWorkers(srv, 'metrics-user');
    const c = await userClient(srv, 'metrics-user-2');
    clients.push(a, b, c);
    for (const x of [a, b, c]) await x.subscribe('mx:g1');
    await a.subscribe('mx:g2');
    await b.subscribe('mx:g3');
    // 3 clients, 2 users, 5 subscriptions, 3 channels more than before.
    const want = { clients: b0.clients + 3, subs: b0.subs + 5, chans: b0.chans + 3, users: b0.users + 2 };
    const got = () => scrape(srv).then(({ prom }) => ({
      clients: total(prom, 'centrifugo_node_num_clients'), subs: total(prom, 'centrifugo_node_num_subscriptions'),
      chans: total(prom, 'centrifugo_node_num_channels'), users: total(prom, 'centrifugo_node_num_users'),
    }));
    let last;
    await pollUntil(async () => { last = await got(); return JSON.stringify(last) === JSON.stringify(want); },
      { what: `metrics ${JSON.stringify(want)}` }).catch((e) => { e.message += ` last ${JSON.stringify(last)}`; throw e; });
    // Whichever worker answers, the scrape gives the same figures.
    for (let i = 0; i < 6; i++) assert.deepEqual(await got(), want, `scrape ${i}`);
  });

  h.test('counters move: API calls by method, node messages, transport messages and bytes', async (t, srv) => {
    const [a, b] = await userOnTwoWorkers(srv, 'metrics-counter');
    clients.push(a, b);
    for (const x of [a, b]) await x.subscribe('mx:cnt');
    const before = (await scrape(srv)).prom;
    const K = 5;
    for (let i = 0; i < K; i++) await srv.publish('mx:cnt', { i, pad: 'x'.repeat(100) });
    await srv.api('presence_stats', { channel: 'mx:cnt' });
    for (const x of [a, b]) for (let i = 0; i < K; i++) await x.push({ channel: 'mx:cnt', kind: 'pub' });
    const after = await pollUntil(async () => {
      const { prom } = await scrape(srv);
      return total(prom, 'centrifugo_transport_messages_sent') >= total(before, 'centrifugo_transport_messages_sent') + 2 * K ? prom : null;
    }, { what: 'transport_messages_sent to grow by 2K' }).catch(async (e) => {
      e.message += `\n${(await scrape(srv)).r.text}`; throw e;
    });
    const d = (name, where) => total(after, name, where) - total(before, name, where);
    assert.ok(d('centrifugo_api_command_duration_seconds_count', { method: 'publish' }) >= K, 'API publish calls counted by method');
    assert.ok(d('centrifugo_api_command_duration_seconds_sum', { method: 'publish' }) > 0, 'API durations summed');
    assert.ok(d('centrifugo_node_messages_sent_count') >= K, 'node messages sent');
    assert.ok(d('centrifugo_transport_messages_sent_size') >= 2 * K * 100, 'transport bytes sent');
    // Counters never go down between scrapes.
    for (const s of before.samples) {
      if (before.types[familyOf(s.name, before.types)] !== 'counter') continue;
      const now = after.samples.find((x) => x.name === s.name && JSON.stringify(x.labels) === JSON.stringify(s.labels));
      if (now) assert.ok(now.value >= s.value, `${s.name}${JSON.stringify(s.labels)} went down: ${s.value} → ${now.value}`);
    }
  });

  h.test('API command durations per method: publish and info apart, batch counted by its commands (issue 5)', async (t, srv) => {
    const before = (await scrape(srv)).prom;
    const count = (prom, method) => total(prom, 'centrifugo_api_command_duration_seconds_count', { protocol: 'http', method });
    const sum = (prom, method) => total(prom, 'centrifugo_api_command_duration_seconds_sum', { protocol: 'http', method });
    for (let i = 0; i < 3; i++) await srv.publish('mx:per-method', { i });
    for (let i = 0; i < 2; i++) assert.equal((await srv.api('info', {})).status, 200);
    const b = await srv.api('batch', { commands: [{ history: { channel: 'mx:per-method', limit: 1 } }, { channels: {} }] });
    assert.equal(b.status, 200, b.text);
    // The counters live in each worker's slot; whichever worker answers the
    // scrape sums them all.
    const after = (await scrape(srv)).prom;
    const d = (method) => count(after, method) - count(before, method);
    assert.equal(d('publish'), 3, 'publish calls');
    assert.equal(d('info'), 2, 'info calls');
    assert.equal(d('history'), 1, 'history inside a batch');
    assert.equal(d('channels'), 1, 'channels inside a batch');
    assert.equal(d('presence'), 0, 'presence not called');
    assert.ok(sum(after, 'publish') > sum(before, 'publish'), 'publish durations summed');
    assert.ok(sum(after, 'info') > sum(before, 'info'), 'info durations summed');
    const labels = new Set(after.samples.filter((x) => x.name === 'centrifugo_api_command_duration_seconds_count').map((x) => x.labels.method));
    assert.ok(!labels.has(undefined), 'every series has a method label');
    assert.ok(!labels.has('batch'), 'a batch is observed as its commands, as Centrifugo does');
    assert.equal(after.types.centrifugo_api_command_duration_seconds, 'summary');
  });

  h.test('transport messages received count client commands', async (t, srv) => {
    const before = (await scrape(srv)).prom;
    const c = await rawClient(srv.wsUrl, { connect: true });
    clients.push(c);
    for (let i = 0; i < 4; i++) await c.subscribe(`mx:rx${i}`);
    const after = await pollUntil(async () => {
      const { prom } = await scrape(srv);
      return total(prom, 'centrifugo_transport_messages_received') >= total(before, 'centrifugo_transport_messages_received') + 5 ? prom : null;
    }, { what: 'transport_messages_received +5 (connect + 4 subscribes)' });
    assert.ok(total(after, 'centrifugo_transport_messages_received_size') > total(before, 'centrifugo_transport_messages_received_size'));
    assert.ok(total(after, 'centrifugo_client_connections_accepted') >= total(before, 'centrifugo_client_connections_accepted') + 1);
  });

  h.test('/health answers 200 {}', async (t, srv) => {
    const r = await srv.http('GET', '/health');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, {});
  });
});

// /metrics and /health are always served (README: "Where it differs from
// Centrifugo on purpose"), so prometheus.enabled = false is not tested as 404.

describe('http_server.internal_port', () => {
  let srv = null;
  let ext = 0;
  let internal = 0;
  const clients = [];
  afterEach(async () => { for (const c of clients.splice(0)) c.close(); });

  // The harness polls /health on Server.port, which is the internal port
  // here; the external one is set in the configuration by hand.
  const start = async () => {
    ext = await freePort();
    internal = await freePort();
    const config = merge(merge(defaultConfig(), CONFIG), { http_server: { port: ext, internal_port: String(internal) } });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-it-'));
    const s = new Server(config, dir);
    s.port = internal;
    await s.start({ timeout: 8000 });
    return s;
  };

  test('API, health and metrics on the internal port only; WebSocket on the external one', { timeout: 60000 }, async () => {
    try {
      srv = await start();
      const api = (port, method, body) => httpRequest(port, 'POST', `/api/${method}`, {
        headers: { 'X-API-Key': API_KEY }, body: JSON.stringify(body),
      });
      let r = await api(internal, 'info', {});
      assert.equal(r.status, 200, r.text);
      assert.ok(r.json.result.nodes.length >= 1);
      assert.equal((await httpRequest(internal, 'GET', '/health')).status, 200);
      assert.equal((await httpRequest(internal, 'GET', '/metrics')).status, 200);
      // Not on the external port.
      r = await api(ext, 'publish', { channel: 'x', data: {} });
      assert.equal(r.status, 404, `external /api/publish: ${r.status} ${r.text}`);
      assert.equal((await httpRequest(ext, 'GET', '/metrics')).status, 404);
      // Clients connect on the external port and get API publications.
      const c = await rawClient(`ws://127.0.0.1:${ext}/connection/websocket`, { connect: true });
      clients.push(c);
      await c.subscribe('mx:int');
      r = await api(internal, 'publish', { channel: 'mx:int', data: { via: 'internal' } });
      assert.deepEqual(r.json, { result: {} });
      const p = await c.push({ channel: 'mx:int', kind: 'pub' });
      assert.deepEqual(p.push.pub.data, { via: 'internal' });
    } finally {
      if (srv) await srv.stop();
    }
  });
});
