'use strict';
// The complete server HTTP API over plain HTTP (server-api.md §1-§5,
// integrations.md §3-§6): every method's request/reply shape and error
// codes, the always-present zero fields, unknown and null members, the
// legacy /api endpoint for every method, batch (sequential and parallel),
// transport error mode, and the methods that act on live connections
// (subscribe, unsubscribe, disconnect, refresh) with a user's connections
// spread over both workers, so that the worker answering the HTTP request
// is not the one holding (at least one of) the connections.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer } = require('./lib/harness');
const { rawClient } = require('./lib/wsclient');
const { API_KEY } = require('./lib/config');
const { makeToken } = require('./lib/token');
const { pollUntil } = require('./lib/util');
const { userClient, userOnTwoWorkers, assertNothingBefore } = require('./lib/apitest');

const OPEN = {
  allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
  allow_publish_for_client: true, allow_publish_for_anonymous: true,
};
const HIST = { history_size: 100, history_ttl: '300s' };
const CONFIG = {
  workers: 2,
  channel: {
    without_namespace: { allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true },
    namespaces: [
      { name: 'chat', ...OPEN },
      { name: 'pres', ...OPEN, presence: true },
      { name: 'hist', ...OPEN, ...HIST },
      { name: 'all', ...OPEN, ...HIST, presence: true, join_leave: true },
    ],
  },
};

const E = {
  100: { code: 100, message: 'internal server error' },
  102: { code: 102, message: 'unknown channel' },
  104: { code: 104, message: 'not found' },
  107: { code: 107, message: 'bad request' },
  108: { code: 108, message: 'not available' },
  112: { code: 112, message: 'unrecoverable position' },
};
const err = (code) => ({ error: E[code] });
const OK = { result: {} };

let seq = 0;
const uniq = (ns) => `${ns}:m${++seq}-${process.pid}`;
const uniqUser = () => `user${++seq}`;

// Assert a 200 JSON answer with Content-Type exactly application/json and
// return its parsed body.
function ok200(r, what) {
  assert.equal(r.status, 200, `${what}: HTTP ${r.status} ${r.text}`);
  assert.equal(r.headers.get('content-type'), 'application/json', `${what}: Content-Type`);
  assert.ok(r.json !== undefined, `${what}: body is not JSON: ${r.text}`);
  return r.json;
}

// 200 with Content-Type exactly application/json, body not parsed (the
// legacy endpoint answers one JSON object per line).
function ok200Lines(r, what) {
  assert.equal(r.status, 200, `${what}: HTTP ${r.status} ${r.text}`);
  assert.equal(r.headers.get('content-type'), 'application/json', `${what}: Content-Type`);
}

// Legacy POST /api with Authorization: apikey; returns { r, replies }.
async function legacy(srv, body, headers = {}) {
  const r = await srv.http('POST', '/api', {
    headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json', ...headers },
    body,
  });
  let replies;
  if (r.status === 200) replies = r.text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
  return { r, replies };
}

// A minimal valid request for every method (on channels nobody uses).
function minimal() {
  return {
    publish: { channel: uniq('chat'), data: { a: 1 } },
    broadcast: { channels: [uniq('chat')], data: { a: 1 } },
    subscribe: { user: 'nobody-here', channel: uniq('chat') },
    unsubscribe: { user: 'nobody-here', channel: uniq('chat') },
    disconnect: { user: 'nobody-here' },
    refresh: { user: 'nobody-here' },
    presence: { channel: uniq('pres') },
    presence_stats: { channel: uniq('pres') },
    history: { channel: uniq('hist') },
    history_remove: { channel: uniq('hist') },
    channels: {},
    info: {},
    batch: { commands: [] },
  };
}
const METHODS = Object.keys(minimal());

describe('server API: every method', () => {
  const h = useServer(CONFIG);
  const clients = [];
  const track = (c) => { clients.push(c); return c; };
  afterEach(() => { for (const c of clients.splice(0)) c.close(); });
  const anon = async () => track(await rawClient(h.server.wsUrl, { connect: true }));
  const user = async (u, claims) => track(await userClient(h.server, u, claims));
  const twoWorkers = async (u, claims) => (await userOnTwoWorkers(h.server, u, claims)).map(track);

  // ---- generic rules, per method ----------------------------------------

  h.test('every method: 200, Content-Type exactly application/json, a result object', async (t, srv) => {
    const reqs = minimal();
    for (const m of METHODS) {
      const j = ok200(await srv.api(m, reqs[m]), m);
      assert.equal(j.error, undefined, `${m}: ${JSON.stringify(j)}`);
      // batch answers {"replies":[…]} without a result wrapper (§5.14).
      if (m !== 'batch') assert.equal(typeof j.result, 'object', `${m}: ${JSON.stringify(j)}`);
    }
  });

  h.test('every method: 401 with an empty body for a missing or wrong key', async (t, srv) => {
    const reqs = minimal();
    for (const m of METHODS) {
      for (const key of [null, 'wrong', '']) {
        const r = await srv.api(m, reqs[m], { key });
        assert.equal(r.status, 401, `${m} key=${key}: ${r.status} ${r.text}`);
        assert.equal(r.text, '', `${m}: 401 body`);
      }
      const r = await srv.api(m, reqs[m], { key: 'wrong', authHeader: true });
      assert.equal(r.status, 401, `${m} Authorization: apikey wrong`);
    }
  });

  h.test('every method: the key is also accepted as ?api_key=', async (t, srv) => {
    const reqs = minimal();
    for (const m of ['publish', 'presence_stats', 'info']) {
      const r = await srv.http('POST', `/api/${m}?api_key=${API_KEY}`, { body: JSON.stringify(reqs[m]) });
      ok200(r, m);
      const bad = await srv.http('POST', `/api/${m}?api_key=nope`, { body: JSON.stringify(reqs[m]) });
      assert.equal(bad.status, 401, m);
    }
  });

  h.test('every method: GET/PUT is 405, checked before the key', async (t, srv) => {
    for (const m of METHODS) {
      for (const verb of ['GET', 'PUT']) {
        const r = await srv.http(verb, `/api/${m}`, verb === 'PUT' ? { body: '{}' } : {});
        assert.equal(r.status, 405, `${verb} /api/${m}: ${r.status} ${r.text}`);
      }
    }
  });

  h.test('every method: undecodable JSON is 400 Bad Request', async (t, srv) => {
    for (const m of METHODS) {
      for (const body of ['{"channel":', 'nope', '{"a":1}}', '']) {
        const r = await srv.api(m, body);
        assert.equal(r.status, 400, `${m} ${JSON.stringify(body)}: ${r.status} ${r.text}`);
      }
    }
  });

  h.test('a JSON array body is 400 (info with [] as denis660 5.0 sent it)', async (t, srv) => {
    for (const m of ['info', 'channels', 'presence', 'batch', 'publish']) {
      const r = await srv.api(m, '[]');
      assert.equal(r.status, 400, `${m} []: ${r.status} ${r.text}`);
    }
  });

  h.test('a wrongly typed field is 400 (Go encoding/json strictness)', async (t, srv) => {
    const cases = [
      ['publish', '{"channel":5,"data":{}}'],
      ['presence', '{"channel":["pres:x"]}'],
      ['history', '{"channel":"hist:x","limit":"5"}'],
      ['disconnect', '{"user":"u","disconnect":{"code":"4000"}}'],
      ['broadcast', '{"channels":"chat:x","data":{}}'],
    ];
    for (const [m, body] of cases) {
      const r = await srv.api(m, body);
      assert.equal(r.status, 400, `${m} ${body}: ${r.status} ${r.text}`);
    }
  });

  h.test('unknown fields are ignored by every method', async (t, srv) => {
    const reqs = minimal();
    for (const m of METHODS) {
      const body = { ...reqs[m], zz_unknown: { deep: [1, { x: null }] }, base64data: 'eyJ4IjoxfQ==', eto: true };
      const j = ok200(await srv.api(m, body), m);
      assert.equal(j.error, undefined, `${m}: ${JSON.stringify(j)}`);
      if (m !== 'batch') assert.ok(j.result, `${m}: ${JSON.stringify(j)}`);
    }
  });

  h.test('null members are treated as absent', async (t, srv) => {
    const c = await anon();
    const ch = uniq('hist');
    await c.subscribe(ch);
    let j = ok200(await srv.api('publish', `{"channel":"${ch}","data":{"n":1},"b64data":null,"tags":null,"skip_history":null,"idempotency_key":null,"delta":null,"version":null,"version_epoch":null}`), 'publish');
    assert.equal(j.error, undefined, JSON.stringify(j));
    const p = await c.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { n: 1 });
    j = ok200(await srv.api('history', `{"channel":"${ch}","limit":null,"since":null,"reverse":null}`), 'history');
    assert.deepEqual(j.result.publications, [], JSON.stringify(j));
    assert.equal(j.result.offset, 1);
    j = ok200(await srv.api('presence_stats', `{"channel":"${uniq('pres')}","zz":null}`), 'presence_stats');
    assert.deepEqual(j, { result: { num_clients: 0, num_users: 0 } });
    j = ok200(await srv.api('channels', '{"pattern":null}'), 'channels');
    assert.equal(typeof j.result.channels, 'object');
    j = ok200(await srv.api('batch', '{"commands":[{"presence_stats":{"channel":"pres:n"}}],"parallel":null}'), 'batch');
    assert.deepEqual(j, { replies: [{ presence_stats: { num_clients: 0, num_users: 0 } }] });
    j = ok200(await srv.api('disconnect', '{"user":"nobody","disconnect":null,"whitelist":null,"client":null}'), 'disconnect');
    assert.deepEqual(j, OK);
  });

  h.test('PRO and unregistered method paths: 404', async (t, srv) => {
    for (const m of ['connections', 'device_register', 'update_user_status', 'block_user', 'revoke_token', 'Publish', 'publish/x', 'nope']) {
      const r = await srv.api(m, {});
      assert.equal(r.status, 404, `/api/${m}: ${r.status} ${r.text}`);
    }
  });

  h.test('rpc: no server-side RPC handlers, so 104; missing method 107', async (t, srv) => {
    let j = ok200(await srv.api('rpc', { method: 'anything', params: { a: 1 } }), 'rpc');
    assert.deepEqual(j, err(104));
    j = ok200(await srv.api('rpc', {}), 'rpc');
    assert.deepEqual(j, err(107));
  });

  // ---- transport error mode (per request header) -------------------------

  h.test('X-Centrifugo-Error-Mode: transport maps errors to HTTP statuses with a bare error body', async (t, srv) => {
    const tm = { headers: { 'X-Centrifugo-Error-Mode': 'transport' } };
    const cases = [
      ['publish', { channel: 'nope:x', data: {} }, 404, 102],
      ['publish', { data: {} }, 400, 107],
      ['presence', { channel: uniq('chat') }, 400, 108],
      ['history', { channel: uniq('hist'), since: { offset: 1, epoch: 'not-the-epoch' } }, 416, 112],
      ['rpc', { method: 'x' }, 404, 104],
      ['broadcast', { channels: [], data: {} }, 400, 107],
    ];
    for (const [m, body, status, code] of cases) {
      const r = await srv.api(m, body, tm);
      assert.equal(r.status, status, `${m} ${JSON.stringify(body)}: ${r.status} ${r.text}`);
      assert.equal(r.headers.get('content-type'), 'application/json');
      assert.deepEqual(r.json, E[code], `${m}: ${r.text}`);
    }
    // Successes are unchanged; broadcast's per-channel errors stay inside.
    let j = ok200(await srv.api('broadcast', { channels: ['nope:x', uniq('chat')], data: {} }, tm), 'broadcast');
    assert.deepEqual(j, { result: { responses: [err(102), OK] } });
    // batch is always 200 with per-reply errors.
    j = ok200(await srv.api('batch', { commands: [{ publish: { channel: 'nope:x', data: {} } }] }, tm), 'batch');
    assert.deepEqual(j, { replies: [err(102)] });
  });

  // ---- publish / broadcast --------------------------------------------------

  h.test('publish into a history channel returns offset and epoch; offsets are consecutive', async (t, srv) => {
    const ch = uniq('hist');
    const r1 = ok200(await srv.api('publish', { channel: ch, data: { i: 1 } }), 'publish');
    const r2 = ok200(await srv.api('publish', { channel: ch, data: { i: 2 } }), 'publish');
    assert.equal(r1.result.offset, 1, JSON.stringify(r1));
    assert.equal(typeof r1.result.epoch, 'string');
    assert.ok(r1.result.epoch.length > 0);
    assert.deepEqual(r2.result, { offset: 2, epoch: r1.result.epoch });
    // skip_history: delivered but not stored, no position in the result.
    const r3 = ok200(await srv.api('publish', { channel: ch, data: { i: 3 }, skip_history: true }), 'publish');
    assert.deepEqual(r3, OK);
    const hist = ok200(await srv.api('history', { channel: ch, limit: -1 }), 'history');
    assert.deepEqual(hist.result.publications.map((p) => p.data), [{ i: 1 }, { i: 2 }]);
  });

  h.test('publish idempotency_key: the repeat returns the first result and is not delivered again', async (t, srv) => {
    const ch = uniq('hist');
    const c = await anon();
    await c.subscribe(ch);
    const a = ok200(await srv.api('publish', { channel: ch, data: { once: 1 }, idempotency_key: 'k1' }), 'publish');
    const b = ok200(await srv.api('publish', { channel: ch, data: { once: 1 }, idempotency_key: 'k1' }), 'publish');
    assert.deepEqual(b, a);
    await c.push({ channel: ch, kind: 'pub' });
    await assertNothingBefore(srv, [c], ch, (m) => m.push && m.push.pub && m.push.pub.data.once, 'idempotent repeat');
  });

  h.test('publish tags are delivered and stored', async (t, srv) => {
    const ch = uniq('hist');
    const c = await anon();
    await c.subscribe(ch);
    ok200(await srv.api('publish', { channel: ch, data: { t: 1 }, tags: { k: 'v', 'x-y': 'z' } }), 'publish');
    const p = await c.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.tags, { k: 'v', 'x-y': 'z' });
    const hist = ok200(await srv.api('history', { channel: ch, limit: 1 }), 'history');
    assert.deepEqual(hist.result.publications[0].tags, { k: 'v', 'x-y': 'z' });
  });

  h.test('publish with bad b64data: 107', async (t, srv) => {
    const j = ok200(await srv.api('publish', { channel: uniq('chat'), b64data: '!!not base64!!' }), 'publish');
    assert.deepEqual(j, err(107));
  });

  h.test('broadcast into history channels: per-channel positions in input order', async (t, srv) => {
    const a = uniq('hist'); const b = uniq('hist');
    ok200(await srv.api('publish', { channel: b, data: { pre: 1 } }), 'publish');
    const j = ok200(await srv.api('broadcast', { channels: [a, 'nope:z', b, ''], data: { x: 1 } }), 'broadcast');
    const rs = j.result.responses;
    assert.equal(rs.length, 4, JSON.stringify(j));
    assert.equal(rs[0].result.offset, 1);
    assert.deepEqual(rs[1], err(102));
    assert.equal(rs[2].result.offset, 2);
    assert.deepEqual(rs[3], err(107));
  });

  // ---- subscribe -------------------------------------------------------------

  h.test('subscribe: missing channel 107, unknown namespace 102, nobody connected {}', async (t, srv) => {
    assert.deepEqual(ok200(await srv.api('subscribe', { user: 'u' }), 's'), err(107));
    assert.deepEqual(ok200(await srv.api('subscribe', { user: 'u', channel: 'nope:x' }), 's'), err(102));
    assert.deepEqual(ok200(await srv.api('subscribe', { user: 'no-such-user', channel: uniq('chat') }), 's'), OK);
  });

  h.test('subscribe: every connection of the user on both workers gets a subscribe push, then publications', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    const other = await user(uniqUser());
    const ch = uniq('chat');
    const data = '{"welcome":"\\u00e9\\/x","n":[1,2]}';
    const j = ok200(await srv.api('subscribe', `{"user":"${u}","channel":"${ch}","data":${data}}`), 'subscribe');
    assert.deepEqual(j, OK);
    for (const c of [a, b]) {
      const p = await c.push({ channel: ch, kind: 'subscribe' });
      assert.deepEqual(p.push.subscribe.data, JSON.parse(data));
      const raw = c.frames.find((f) => f.includes('"subscribe"') && f.includes(ch));
      assert.ok(raw.includes(`"data":${data}`), `subscribe push data byte-for-byte: ${raw}`);
    }
    await srv.publish(ch, { after: 'subscribe' });
    for (const c of [a, b]) {
      const p = await c.push({ channel: ch, kind: 'pub' });
      assert.deepEqual(p.push.pub.data, { after: 'subscribe' });
    }
    // The other user got neither the subscribe push nor the publication.
    const sentinel = uniq('chat');
    await other.subscribe(sentinel);
    await assertNothingBefore(srv, [other], sentinel, (m) => m.push && m.push.channel === ch, 'other user');
  });

  h.test('subscribe with client: only that connection is subscribed', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    const ch = uniq('chat');
    assert.deepEqual(ok200(await srv.api('subscribe', { user: u, channel: ch, client: b.clientId }), 's'), OK);
    await b.push({ channel: ch, kind: 'subscribe' });
    const sentinel = uniq('chat');
    await a.subscribe(sentinel);
    await assertNothingBefore(srv, [a], sentinel, (m) => m.push && m.push.channel === ch, 'connection not named by client');
  });

  h.test('subscribe with override force_positioning {value:true}: positioned push with the stream position', async (t, srv) => {
    const u = uniqUser();
    const c = await user(u);
    const ch = uniq('hist');
    await srv.publish(ch, { before: 1 });
    const j = ok200(await srv.api('subscribe', { user: u, channel: ch, override: { force_positioning: { value: true }, force_recovery: { value: false } } }), 's');
    assert.deepEqual(j, OK);
    const p = await c.push({ channel: ch, kind: 'subscribe' });
    assert.equal(p.push.subscribe.positioned, true, JSON.stringify(p));
    assert.equal(p.push.subscribe.offset, 1);
    assert.equal(typeof p.push.subscribe.epoch, 'string');
  });

  h.test('subscribe with override members as plain booleans: 400 (as Centrifugo)', async (t, srv) => {
    const r = await srv.api('subscribe', { user: 'u', channel: uniq('chat'), override: { presence: true } });
    assert.equal(r.status, 400, `${r.status} ${r.text}`);
  });

  h.test('subscribe with info: chan_info in presence', async (t, srv) => {
    const u = uniqUser();
    const c = await user(u);
    const ch = uniq('pres');
    ok200(await srv.api('subscribe', { user: u, channel: ch, info: { role: 'admin' } }), 's');
    await c.push({ channel: ch, kind: 'subscribe' });
    const j = await pollUntil(async () => {
      const r = ok200(await srv.api('presence', { channel: ch }), 'presence');
      return Object.keys(r.result.presence).length === 1 ? r : null;
    }, { what: 'presence entry of the server-side subscription' });
    assert.deepEqual(j.result.presence[c.clientId], { user: u, client: c.clientId, chan_info: { role: 'admin' } });
  });

  // ---- unsubscribe -----------------------------------------------------------

  h.test('unsubscribe: missing or empty channel 107, unknown namespace 102, nobody {}', async (t, srv) => {
    assert.deepEqual(ok200(await srv.api('unsubscribe', { user: 'u' }), 'u'), err(107));
    assert.deepEqual(ok200(await srv.api('unsubscribe', { user: 'u', channel: '' }), 'u'), err(107));
    assert.deepEqual(ok200(await srv.api('unsubscribe', { user: 'u', channel: 'nope:x' }), 'u'), err(102));
    assert.deepEqual(ok200(await srv.api('unsubscribe', { user: 'no-such-user', channel: uniq('chat') }), 'u'), OK);
  });

  h.test('unsubscribe: push code 2000 "server unsubscribe" on both workers, publications stop', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    const ch = uniq('chat');
    const keep = uniq('chat');
    for (const c of [a, b]) { await c.subscribe(ch); await c.subscribe(keep); }
    assert.deepEqual(ok200(await srv.api('unsubscribe', { user: u, channel: ch }), 'unsubscribe'), OK);
    for (const c of [a, b]) {
      const p = await c.push({ channel: ch, kind: 'unsubscribe' });
      assert.deepEqual(p.push.unsubscribe, { code: 2000, reason: 'server unsubscribe' });
    }
    await srv.publish(ch, { late: true });
    await assertNothingBefore(srv, [a, b], keep, (m) => m.push && m.push.channel === ch && m.push.pub, 'publication after unsubscribe');
  });

  h.test('unsubscribe with client: the other connection stays subscribed', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    const ch = uniq('chat');
    for (const c of [a, b]) await c.subscribe(ch);
    ok200(await srv.api('unsubscribe', { user: u, channel: ch, client: a.clientId }), 'unsubscribe');
    await a.push({ channel: ch, kind: 'unsubscribe' });
    await srv.publish(ch, { still: 'b' });
    const p = await b.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { still: 'b' });
    assert.equal(b.pending.filter((m) => m.push && m.push.unsubscribe).length, 0);
  });

  // ---- disconnect ------------------------------------------------------------

  h.test('disconnect: closes every connection of the user on both workers with 3503 "force disconnect"', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    const bystander = await user(uniqUser());
    const ch = uniq('chat');
    await bystander.subscribe(ch);
    assert.deepEqual(ok200(await srv.api('disconnect', { user: u }), 'disconnect'), OK);
    for (const c of [a, b]) assert.deepEqual(await c.waitClose(), { code: 3503, reason: 'force disconnect' });
    await assertNothingBefore(srv, [bystander], ch, () => false, 'bystander');
    assert.equal(bystander.closeInfo, null);
  });

  h.test('disconnect with a custom code and reason', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    ok200(await srv.api('disconnect', { user: u, disconnect: { code: 4123, reason: 'go away' } }), 'disconnect');
    for (const c of [a, b]) assert.deepEqual(await c.waitClose(), { code: 4123, reason: 'go away' });
  });

  h.test('disconnect with whitelist and with client', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    const ch = uniq('chat');
    await b.subscribe(ch);
    ok200(await srv.api('disconnect', { user: u, whitelist: [b.clientId] }), 'disconnect');
    assert.equal((await a.waitClose()).code, 3503);
    await assertNothingBefore(srv, [b], ch, () => false, 'whitelisted');
    assert.equal(b.closeInfo, null);
    ok200(await srv.api('disconnect', { user: u, client: b.clientId }), 'disconnect');
    assert.equal((await b.waitClose()).code, 3503);
  });

  h.test('disconnect of a user without connections: {"result":{}}; missing user is anonymous, still {}', async (t, srv) => {
    assert.deepEqual(ok200(await srv.api('disconnect', { user: 'never-connected' }), 'd'), OK);
  });

  // ---- refresh ---------------------------------------------------------------

  h.test('refresh expired: true closes the user\'s connections on both workers with 3005', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    assert.deepEqual(ok200(await srv.api('refresh', { user: u, expired: true }), 'refresh'), OK);
    for (const c of [a, b]) assert.deepEqual(await c.waitClose(), { code: 3005, reason: 'connection expired' });
  });

  h.test('refresh with expire_at and info keeps the connection; nobody connected is {}', async (t, srv) => {
    const u = uniqUser();
    const c = await user(u, { exp: Math.floor(Date.now() / 1000) + 3600 });
    const ch = uniq('chat');
    await c.subscribe(ch);
    const j = ok200(await srv.api('refresh', { user: u, expire_at: Math.floor(Date.now() / 1000) + 7200, info: { v: 2 } }), 'refresh');
    assert.deepEqual(j, OK);
    await assertNothingBefore(srv, [c], ch, () => false, 'refreshed connection');
    assert.equal(c.closeInfo, null);
    assert.deepEqual(ok200(await srv.api('refresh', { user: 'never-connected' }), 'r'), OK);
  });

  // ---- presence / presence_stats ----------------------------------------------

  h.test('presence and presence_stats on an empty channel: zero fields present', async (t, srv) => {
    const ch = uniq('pres');
    assert.deepEqual(ok200(await srv.api('presence', { channel: ch }), 'p'), { result: { presence: {} } });
    assert.deepEqual(ok200(await srv.api('presence_stats', { channel: ch }), 'ps'), { result: { num_clients: 0, num_users: 0 } });
  });

  h.test('presence / presence_stats errors: 107 missing channel, 102 unknown, 108 presence off', async (t, srv) => {
    for (const m of ['presence', 'presence_stats']) {
      assert.deepEqual(ok200(await srv.api(m, {}), m), err(107));
      assert.deepEqual(ok200(await srv.api(m, { channel: '' }), m), err(107));
      assert.deepEqual(ok200(await srv.api(m, { channel: 'nope:x' }), m), err(102));
      assert.deepEqual(ok200(await srv.api(m, { channel: uniq('chat') }), m), err(108));
      assert.deepEqual(ok200(await srv.api(m, { channel: 'plain' }), m), err(108));
    }
  });

  h.test('presence across workers: ClientInfo per client (user, client, conn_info), stats count unique users', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u, { info: { name: 'A' } });
    const ou = uniqUser();
    const other = await user(ou);
    const anonC = await anon();
    const ch = uniq('pres');
    for (const c of [a, b, other, anonC]) await c.subscribe(ch);
    const j = await pollUntil(async () => {
      const r = ok200(await srv.api('presence', { channel: ch }), 'presence');
      return Object.keys(r.result.presence).length === 4 ? r : null;
    }, { what: '4 presence entries' });
    const pr = j.result.presence;
    assert.deepEqual(pr[a.clientId], { user: u, client: a.clientId, conn_info: { name: 'A' } });
    assert.deepEqual(pr[b.clientId], { user: u, client: b.clientId, conn_info: { name: 'A' } });
    assert.deepEqual(pr[other.clientId], { user: ou, client: other.clientId });
    assert.deepEqual(pr[anonC.clientId], { user: '', client: anonC.clientId });
    assert.deepEqual(ok200(await srv.api('presence_stats', { channel: ch }), 'ps'), { result: { num_clients: 4, num_users: 3 } });
    // Leaving is reflected too.
    a.close();
    await pollUntil(async () => {
      const r = ok200(await srv.api('presence_stats', { channel: ch }), 'ps');
      return r.result.num_clients === 3 && r.result.num_users === 3;
    }, { what: 'presence_stats after a client left' });
  });

  // ---- history / history_remove ------------------------------------------------

  h.test('history errors: 107 missing channel, 102 unknown, 108 history off; history_remove the same', async (t, srv) => {
    for (const m of ['history', 'history_remove']) {
      assert.deepEqual(ok200(await srv.api(m, {}), m), err(107));
      assert.deepEqual(ok200(await srv.api(m, { channel: 'nope:x' }), m), err(102));
      assert.deepEqual(ok200(await srv.api(m, { channel: uniq('chat') }), m), err(108));
      assert.deepEqual(ok200(await srv.api(m, { channel: uniq('pres') }), m), err(108));
    }
  });

  h.test('history of a never-used channel: publications [], offset 0 and epoch present', async (t, srv) => {
    const j = ok200(await srv.api('history', { channel: uniq('hist') }), 'history');
    assert.deepEqual(Object.keys(j.result).sort(), ['epoch', 'offset', 'publications'], JSON.stringify(j));
    assert.deepEqual(j.result.publications, []);
    assert.equal(j.result.offset, 0);
    assert.equal(typeof j.result.epoch, 'string');
  });

  h.test('history: limit 0 / N / -1, reverse, since, epoch mismatch 112, null members of since', async (t, srv) => {
    const ch = uniq('hist');
    const res = [];
    for (let i = 1; i <= 5; i++) res.push(await srv.publish(ch, { i }));
    const epoch = res[0].epoch;
    const H = async (body) => ok200(await srv.api('history', { channel: ch, ...body }), `history ${JSON.stringify(body)}`);
    const ids = (j) => j.result.publications.map((p) => p.data.i);

    let j = await H({});
    assert.deepEqual(j, { result: { publications: [], offset: 5, epoch } });
    j = await H({ limit: 0 });
    assert.deepEqual(j, { result: { publications: [], offset: 5, epoch } });
    j = await H({ limit: -1 });
    assert.deepEqual(ids(j), [1, 2, 3, 4, 5]);
    assert.deepEqual(j.result.publications.map((p) => p.offset), [1, 2, 3, 4, 5]);
    assert.equal(j.result.publications[0].info, undefined, 'API publications carry no info');
    assert.deepEqual(j.result.publications[0], { data: { i: 1 }, offset: 1 });
    j = await H({ limit: 2 });
    assert.deepEqual(ids(j), [1, 2]);
    assert.equal(j.result.offset, 5);
    j = await H({ limit: 2, reverse: true });
    assert.deepEqual(ids(j), [5, 4]);
    j = await H({ limit: -1, since: { offset: 2, epoch } });
    assert.deepEqual(ids(j), [3, 4, 5]);
    j = await H({ limit: -1, since: { offset: 4, epoch }, reverse: true });
    assert.deepEqual(ids(j), [3, 2, 1]);
    j = await H({ limit: 1, since: { offset: 2, epoch } });
    assert.deepEqual(ids(j), [3]);
    j = await H({ limit: -1, since: { offset: 2, epoch: 'other-epoch' } });
    assert.deepEqual(j, err(112));
    // Opekunov sends one half of the position as null.
    let r = await srv.api('history', `{"channel":"${ch}","limit":-1,"since":{"offset":null,"epoch":"${epoch}"}}`);
    assert.deepEqual(ids(ok200(r, 'since.offset null')), [1, 2, 3, 4, 5]);
    r = await srv.api('history', `{"channel":"${ch}","limit":-1,"since":{"offset":3,"epoch":null}}`);
    assert.deepEqual(ids(ok200(r, 'since.epoch null')), [4, 5]);
  });

  h.test('history_remove keeps the stream position', async (t, srv) => {
    const ch = uniq('hist');
    const first = await srv.publish(ch, { x: 1 });
    await srv.publish(ch, { x: 2 });
    assert.deepEqual(ok200(await srv.api('history_remove', { channel: ch }), 'hr'), OK);
    let j = ok200(await srv.api('history', { channel: ch, limit: -1 }), 'h');
    assert.deepEqual(j, { result: { publications: [], offset: 2, epoch: first.epoch } });
    const next = await srv.publish(ch, { x: 3 });
    assert.deepEqual(next, { offset: 3, epoch: first.epoch });
    j = ok200(await srv.api('history', { channel: ch, limit: -1 }), 'h');
    assert.deepEqual(j.result.publications, [{ data: { x: 3 }, offset: 3 }]);
    // Removing the history of a never-used channel is a success too.
    assert.deepEqual(ok200(await srv.api('history_remove', { channel: uniq('hist') }), 'hr'), OK);
  });

  h.test('history keeps data of every JSON type byte-for-byte (a JSON string included)', async (t, srv) => {
    const ch = uniq('hist');
    const payloads = ['"{\\"a\\":1,\\"s\\":\\"x\\/y\\"}"', '[]', '{"k":"\\ud83d\\ude80 \\/ \\u00e9"}', '3.25e2', 'true', '[1, {"b" : null}]'];
    for (const d of payloads) {
      const r = await srv.api('publish', `{"channel":"${ch}","data":${d}}`);
      assert.equal(ok200(r, d).error, undefined);
    }
    const r = await srv.api('history', { channel: ch, limit: -1 });
    ok200(r, 'history');
    for (const d of payloads) assert.ok(r.text.includes(`"data":${d}`), `history carries ${d} verbatim: ${r.text}`);
    assert.deepEqual(r.json.result.publications.map((p) => p.data), payloads.map((d) => JSON.parse(d)));
  });

  // ---- channels ----------------------------------------------------------------

  h.test('channels: result.channels always present, counts summed over workers, pattern filter', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    const base = uniq('chat');
    const c1 = `${base}-one`; const c2 = `${base}-two`;
    for (const c of [a, b]) await c.subscribe(c1);
    await a.subscribe(c2);
    const j = await pollUntil(async () => {
      const r = ok200(await srv.api('channels', { pattern: `${base}*` }), 'channels');
      return r.result.channels[c1] && r.result.channels[c1].num_clients === 2 ? r : null;
    }, { what: 'channels with both subscribers' });
    assert.deepEqual(j, { result: { channels: { [c1]: { num_clients: 2 }, [c2]: { num_clients: 1 } } } });
    let k = ok200(await srv.api('channels', { pattern: `${base}-t?o` }), 'channels');
    assert.deepEqual(k, { result: { channels: { [c2]: { num_clients: 1 } } } });
    k = ok200(await srv.api('channels', { pattern: `${base}-{one,zzz}` }), 'channels');
    assert.deepEqual(Object.keys(k.result.channels), [c1]);
    k = ok200(await srv.api('channels', { pattern: 'no-such-channel-*' }), 'channels');
    assert.deepEqual(k, { result: { channels: {} } });
    // Without a pattern: every channel, these included.
    k = ok200(await srv.api('channels', {}), 'channels');
    assert.deepEqual(k.result.channels[c1], { num_clients: 2 });
  });

  // The workers do not wake the broker for every subscriber or connection
  // more or less; these queries must still see all that a client was told.
  h.test('channels and info see a subscription as soon as its reply is in (no polling)', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    const base = uniq('chat');
    const infoSum = async (k) => ok200(await srv.api('info', {}), 'info').result.nodes.reduce((s, n) => s + n[k], 0);
    const subs0 = await infoSum('num_subs');
    for (let i = 0; i < 10; i++) {
      const c = `${base}-${i}`;
      await (i % 2 ? b : a).subscribe(c);
      const r = ok200(await srv.api('channels', { pattern: c }), 'channels');
      assert.deepEqual(r, { result: { channels: { [c]: { num_clients: 1 } } } }, `channel ${i} listed at once`);
      assert.equal(await infoSum('num_subs'), subs0 + i + 1, `info counts subscription ${i} at once`);
    }
    for (let i = 0; i < 10; i++) await (i % 2 ? b : a).command({ unsubscribe: { channel: `${base}-${i}` } });
    const r = ok200(await srv.api('channels', { pattern: `${base}-*` }), 'channels');
    assert.deepEqual(r, { result: { channels: {} } }, 'unsubscribed channels gone at once');
  });

  h.test('channels with a malformed glob: error 100', async (t, srv) => {
    const j = ok200(await srv.api('channels', { pattern: '[' }), 'channels');
    assert.deepEqual(j, err(100));
  });

  // ---- info ------------------------------------------------------------------------

  h.test('info: nodes non-empty; uid, name, version ("6."), counters always present', async (t, srv) => {
    for (const body of [{}, '{}', { zz: 1 }]) {
      const j = ok200(await srv.api('info', body), 'info');
      assert.ok(Array.isArray(j.result.nodes) && j.result.nodes.length >= 1, JSON.stringify(j));
      for (const n of j.result.nodes) {
        for (const k of ['uid', 'name', 'version']) assert.equal(typeof n[k], 'string', `${k}: ${JSON.stringify(n)}`);
        assert.ok(n.uid.length > 0 && n.name.length > 0);
        assert.match(n.version, /^6\.\d+\.\d+/, `version looks like Centrifugo 6: ${n.version}`);
        for (const k of ['num_clients', 'num_users', 'num_channels', 'num_subs']) {
          assert.equal(typeof n[k], 'number', `${k} present: ${JSON.stringify(n)}`);
        }
      }
      t.diagnostic(`info node: ${JSON.stringify(j.result.nodes[0])}`);
    }
  });

  // ---- batch -------------------------------------------------------------------------

  h.test('batch: replies in order, keyed by method; errors per reply; null → 107; unknown/PRO → 104', async (t, srv) => {
    const ch = uniq('hist');
    const pch = uniq('pres');
    const j = ok200(await srv.api('batch', {
      commands: [
        { publish: { channel: ch, data: { n: 1 } } },
        { broadcast: { channels: [ch, 'nope:y'], data: { n: 2 } } },
        { presence: { channel: pch } },
        { presence_stats: { channel: pch } },
        { history: { channel: ch, limit: -1 } },
        { history_remove: { channel: ch } },
        { channels: { pattern: 'zz-none-*' } },
        { subscribe: { user: 'nobody', channel: uniq('chat') } },
        { unsubscribe: { user: 'nobody', channel: uniq('chat') } },
        { disconnect: { user: 'nobody' } },
        { refresh: { user: 'nobody' } },
        { publish: { channel: 'nope:x', data: {} } },
        null,
        {},
        { connections: {} },
        { batch: { commands: [] } },
        { rpc: { method: 'x' } },
      ],
    }), 'batch');
    const r = j.replies;
    assert.equal(r.length, 17, JSON.stringify(j));
    assert.deepEqual(r[0], { publish: { offset: 1, epoch: r[0].publish.epoch } });
    assert.deepEqual(r[1], { broadcast: { responses: [{ result: { offset: 2, epoch: r[0].publish.epoch } }, err(102)] } });
    assert.deepEqual(r[2], { presence: { presence: {} } });
    assert.deepEqual(r[3], { presence_stats: { num_clients: 0, num_users: 0 } });
    assert.deepEqual(r[4].history.publications.map((p) => p.data), [{ n: 1 }, { n: 2 }]);
    assert.deepEqual(r[5], { history_remove: {} });
    assert.deepEqual(r[6], { channels: { channels: {} } });
    assert.deepEqual(r[7], { subscribe: {} });
    assert.deepEqual(r[8], { unsubscribe: {} });
    assert.deepEqual(r[9], { disconnect: {} });
    assert.deepEqual(r[10], { refresh: {} });
    assert.deepEqual(r[11], err(102));
    assert.deepEqual(r[12], err(107));
    assert.deepEqual(r[13], err(104));
    assert.deepEqual(r[14], err(104));
    assert.deepEqual(r[15], err(104), 'batch cannot be nested');
    assert.deepEqual(r[16], err(104));
  });

  h.test('batch info reply and empty batch ({} and {"commands":[]})', async (t, srv) => {
    let j = ok200(await srv.api('batch', { commands: [{ info: {} }] }), 'batch');
    assert.ok(j.replies[0].info.nodes.length >= 1, JSON.stringify(j));
    for (const body of [{}, { commands: [] }]) {
      j = ok200(await srv.api('batch', body), 'batch');
      assert.equal(j.error, undefined, JSON.stringify(j));
      assert.ok(j.replies === undefined || (Array.isArray(j.replies) && j.replies.length === 0), JSON.stringify(j));
    }
  });

  h.test('batch sequential: publications take offsets in command order; parallel: replies keep input order', async (t, srv) => {
    const N = 20;
    const seqCh = uniq('hist');
    const c = await anon();
    await c.subscribe(seqCh);
    let j = ok200(await srv.api('batch', { commands: Array.from({ length: N }, (_, i) => ({ publish: { channel: seqCh, data: { i } } })) }), 'batch');
    assert.deepEqual(j.replies.map((x) => x.publish.offset), Array.from({ length: N }, (_, i) => i + 1));
    for (let i = 0; i < N; i++) {
      const p = await c.push({ channel: seqCh, kind: 'pub' });
      assert.deepEqual(p.push.pub.data, { i }, 'delivered in command order');
    }
    // parallel: each reply answers its own command (channels differ per command).
    const chans = Array.from({ length: N }, () => uniq('hist'));
    j = ok200(await srv.api('batch', {
      parallel: true,
      commands: chans.flatMap((ch, i) => [
        { publish: { channel: ch, data: { i } } },
        { history: { channel: ch, limit: -1 } },
      ]).concat([{ publish: { channel: 'nope:q', data: {} } }]),
    }), 'batch parallel');
    const r = j.replies;
    assert.equal(r.length, 2 * N + 1);
    for (let i = 0; i < N; i++) assert.equal(r[2 * i].publish.offset, 1, JSON.stringify(r[2 * i]));
    assert.deepEqual(r[2 * N], err(102));
    // The data really went where each command said.
    for (let i = 0; i < N; i++) {
      const h2 = ok200(await srv.api('history', { channel: chans[i], limit: -1 }), 'h');
      assert.deepEqual(h2.result.publications.map((p) => p.data), [{ i }]);
    }
  });

  h.test('batch missing or wrongly typed commands', async (t, srv) => {
    const r = await srv.api('batch', '{"commands":{"publish":{}}}');
    assert.equal(r.status, 400, `${r.status} ${r.text}`);
    const j = ok200(await srv.api('batch', { commands: [{ publish: { data: {} } }, { presence: {} }] }), 'batch');
    assert.deepEqual(j, { replies: [err(107), err(107)] });
  });

  h.test('batch with live connections: subscribe then publish reaches both workers', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await twoWorkers(u);
    const ch = uniq('chat');
    const j = ok200(await srv.api('batch', { commands: [{ subscribe: { user: u, channel: ch } }] }), 'batch');
    assert.deepEqual(j, { replies: [{ subscribe: {} }] });
    for (const c of [a, b]) await c.push({ channel: ch, kind: 'subscribe' });
    ok200(await srv.api('batch', { commands: [{ publish: { channel: ch, data: { via: 'batch' } } }, { disconnect: { user: u, disconnect: { code: 4001, reason: 'batch' } } }] }), 'batch');
    for (const c of [a, b]) {
      const p = await c.push({ channel: ch, kind: 'pub' });
      assert.deepEqual(p.push.pub.data, { via: 'batch' });
      assert.deepEqual(await c.waitClose(), { code: 4001, reason: 'batch' });
    }
  });

  // ---- PHP / Python escapes ------------------------------------------------------------

  h.test('PHP-style \\/ and surrogate-pair escapes in channel, user and data', async (t, srv) => {
    const u = `php/${uniqUser()}`;
    const [a] = await twoWorkers(u);
    // Channel names are ASCII (non-ASCII is 107 for clients, protocol.md);
    // the API request still escapes them (\/ and \u0041 for "A").
    const ch = `${uniq('chat')}/room-A`;
    await a.subscribe(ch);
    const esc = (s) => [...s].map((x) => {
      const cp = x.codePointAt(0);
      if (x === '/') return '\\/';
      if (cp < 0x80) return x;
      if (cp < 0x10000) return `\\u${cp.toString(16).padStart(4, '0')}`;
      const v = cp - 0x10000;
      return `\\u${(0xd800 + (v >> 10)).toString(16)}\\u${(0xdc00 + (v & 0x3ff)).toString(16)}`;
    }).join('');
    const data = `{"text":"${esc('🚀🎉 é / ok')}","url":"https:\\/\\/x.test\\/a"}`;
    const escCh = esc(ch).replace(/A/g, '\\u0041');
    assert.ok(escCh.includes('\\/') && escCh.includes('\\u0041'));
    const j = ok200(await srv.api('publish', `{"channel":"${escCh}","data":${data}}`), 'publish');
    assert.deepEqual(j, OK);
    const p = await a.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { text: '🚀🎉 é / ok', url: 'https://x.test/a' });
    const raw = a.frames.find((f) => f.includes('"pub"') && f.includes('https:'));
    assert.ok(raw.includes(`"data":${data}`), `data delivered byte-for-byte: ${raw}`);
    // The user name is decoded too: disconnect by the escaped name.
    ok200(await srv.api('disconnect', `{"user":"${esc(u)}"}`), 'disconnect');
    assert.equal((await a.waitClose()).code, 3503);
  });

  h.test('Python json.dumps separators (", " and ": ") and ASCII escapes', async (t, srv) => {
    const c = await anon();
    const ch = uniq('chat');
    await c.subscribe(ch);
    const body = `{"channel": "${ch}", "data": {"msg": "caf\\u00e9 \\ud83d\\ude00", "n": [1, 2]}}`;
    assert.deepEqual(ok200(await srv.api('publish', body), 'publish'), OK);
    const p = await c.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { msg: 'café 😀', n: [1, 2] });
  });

  // ---- legacy /api -------------------------------------------------------------------------

  h.test('legacy /api: every method by name, \\n and \\r\\n separators, replies in order with ids', async (t, srv) => {
    const u = uniqUser();
    const c = await user(u);
    const ch = uniq('hist');
    const pch = uniq('pres');
    await c.subscribe(pch);
    const cmds = [
      { id: 1, method: 'publish', params: { channel: ch, data: { l: 1 } } },
      { id: 2, method: 'broadcast', params: { channels: [ch, 'nope:x'], data: { l: 2 } } },
      { id: 3, method: 'presence', params: { channel: pch } },
      { id: 4, method: 'presence_stats', params: { channel: pch } },
      { id: 5, method: 'history', params: { channel: ch, limit: -1 } },
      { id: 6, method: 'history_remove', params: { channel: ch } },
      { id: 7, method: 'channels', params: { pattern: pch } },
      { id: 8, method: 'info', params: {} },
      { id: 9, method: 'subscribe', params: { user: 'nobody', channel: uniq('chat') } },
      { id: 10, method: 'unsubscribe', params: { user: 'nobody', channel: uniq('chat') } },
      { id: 11, method: 'refresh', params: { user: 'nobody' } },
      { id: 12, method: 'PRESENCE_STATS', params: { channel: 'nope:x' } },
      { id: 13, method: 'disconnect', params: { user: u } },
    ];
    const body = cmds.map((x) => JSON.stringify(x)).join('\n').replace('\n', '\r\n');
    const { r, replies } = await legacy(srv, body);
    ok200Lines(r, 'legacy');
    assert.equal(replies.length, cmds.length, r.text);
    assert.deepEqual(replies.map((x) => x.id), cmds.map((x) => x.id));
    const epoch = replies[0].result.epoch;
    assert.deepEqual(replies[0], { id: 1, result: { offset: 1, epoch } });
    assert.deepEqual(replies[1], { id: 2, result: { responses: [{ result: { offset: 2, epoch } }, err(102)] } });
    assert.deepEqual(replies[2].result.presence[c.clientId], { user: u, client: c.clientId });
    assert.deepEqual(replies[3], { id: 4, result: { num_clients: 1, num_users: 1 } });
    assert.deepEqual(replies[4].result.publications.map((p) => p.data), [{ l: 1 }, { l: 2 }]);
    assert.deepEqual(replies[5], { id: 6, result: {} });
    assert.deepEqual(replies[6], { id: 7, result: { channels: { [pch]: { num_clients: 1 } } } });
    assert.ok(replies[7].result.nodes.length >= 1);
    assert.deepEqual(replies[8], { id: 9, result: {} });
    assert.deepEqual(replies[9], { id: 10, result: {} });
    assert.deepEqual(replies[10], { id: 11, result: {} });
    assert.deepEqual(replies[11], { id: 12, ...err(102) });
    assert.deepEqual(replies[12], { id: 13, result: {} });
    assert.equal((await c.waitClose()).code, 3503);
  });

  h.test('legacy /api: numeric methods, missing method = publish, id omitted when 0', async (t, srv) => {
    const ch = uniq('hist');
    const body = [
      `{"method":0,"params":{"channel":"${ch}","data":{"n":0}}}`,
      `{"params":{"channel":"${ch}","data":{"n":1}}}`,
      `{"id":3,"method":5,"params":{"channel":"${uniq('pres')}"}}`,
      `{"id":4,"method":6,"params":{"channel":"${ch}","limit":-1}}`,
      '{"id":5,"method":9}',
      '{"id":6,"method":14,"params":{}}',
      '{"id":7,"method":13,"params":{}}',
      '{"id":8,"method":4}',
      '{"id":9,"method":10,"params":{"method":"x"}}',
    ].join('\n');
    const { r, replies } = await legacy(srv, body);
    ok200Lines(r, 'legacy');
    assert.equal(replies.length, 9, r.text);
    assert.deepEqual(replies[0], { result: { offset: 1, epoch: replies[0].result.epoch } });
    assert.deepEqual(replies[1], { result: { offset: 2, epoch: replies[0].result.epoch } });
    assert.deepEqual(replies[2], { id: 3, result: { num_clients: 0, num_users: 0 } });
    assert.deepEqual(replies[3].result.publications.map((p) => p.data), [{ n: 0 }, { n: 1 }]);
    assert.equal(replies[4].id, 5);
    assert.ok(replies[4].result.nodes.length >= 1, 'info without params');
    assert.deepEqual(replies[5], { id: 6, ...err(104) }, 'PRO method number');
    assert.deepEqual(replies[6], { id: 7, ...err(104) }, 'unused method number');
    assert.deepEqual(replies[7], { id: 8, ...err(107) }, 'presence without params');
    assert.deepEqual(replies[8], { id: 9, ...err(104) }, 'rpc');
  });

  h.test('legacy /api: info with params [] (old clients) is accepted', async (t, srv) => {
    const { r, replies } = await legacy(srv, '{"method":"info","params":[]}');
    ok200Lines(r, 'legacy info []');
    assert.ok(replies[0].result.nodes.length >= 1, r.text);
  });

  h.test('legacy /api: unknown method string, batch, garbage or empty body: 400', async (t, srv) => {
    for (const body of ['{"method":"nope","params":{}}', '{"method":"batch","params":{"commands":[]}}', '{"method":"publish"', '', 'xyz']) {
      const { r } = await legacy(srv, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.status} ${r.text}`);
    }
  });

  h.test('legacy /api: concatenated objects without separators', async (t, srv) => {
    const ch = uniq('chat');
    const { r, replies } = await legacy(srv, `{"id":1,"method":"publish","params":{"channel":"${ch}","data":1}}{"id":2,"method":"presence_stats","params":{"channel":"pres:zz"}}`);
    ok200Lines(r, 'legacy');
    assert.deepEqual(replies, [{ id: 1, result: {} }, { id: 2, result: { num_clients: 0, num_users: 0 } }]);
  });
});

describe('server API: http_api.insecure', () => {
  const h = useServer({ http_api: { key: undefined, insecure: true } });

  h.test('no key needed for any method, a wrong key is ignored', async (t, srv) => {
    const reqs = minimal();
    for (const m of METHODS) {
      ok200(await srv.api(m, reqs[m], { key: null }), `${m} without key`);
      ok200(await srv.api(m, reqs[m], { key: 'whatever' }), `${m} with a wrong key`);
    }
    const r = await srv.http('POST', '/api', { body: '{"method":"info","params":{}}' });
    ok200Lines(r, 'legacy without key');
  });
});

describe('server API: empty http_api.key without insecure', () => {
  const h = useServer({ http_api: { key: undefined } });

  h.test('every request is 401, even with an empty key header', async (t, srv) => {
    for (const m of ['publish', 'info']) {
      for (const key of [null, '', 'x']) {
        const r = await srv.api(m, minimal()[m], { key });
        assert.equal(r.status, 401, `${m} key=${JSON.stringify(key)}: ${r.status}`);
      }
    }
  });
});

describe('server API: http_api.error_mode = "transport"', () => {
  const h = useServer({ ...CONFIG, http_api: { key: API_KEY, error_mode: 'transport' } });

  h.test('errors become HTTP statuses; successes and batch unchanged', async (t, srv) => {
    let r = await srv.api('publish', { channel: 'nope:x', data: {} });
    assert.equal(r.status, 404, r.text);
    assert.deepEqual(r.json, E[102]);
    r = await srv.api('presence_stats', { channel: uniq('chat') });
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(r.json, E[108]);
    assert.deepEqual(ok200(await srv.api('publish', { channel: uniq('chat'), data: {} }), 'ok'), OK);
    assert.deepEqual(ok200(await srv.api('batch', { commands: [{ presence: { channel: 'nope:x' } }] }), 'batch'),
      { replies: [err(102)] });
    // Not applied to the legacy endpoint.
    const { r: lr, replies } = await legacy(srv, '{"id":1,"method":"presence","params":{"channel":"nope:x"}}');
    ok200Lines(lr, 'legacy');
    assert.deepEqual(replies, [{ id: 1, ...err(102) }]);
  });
});

describe('server API: info and channels figures', () => {
  const h = useServer(CONFIG);
  const clients = [];
  afterEach(() => { for (const c of clients.splice(0)) c.close(); });

  h.test('info counts clients, users, channels and subscriptions of every worker', async (t, srv) => {
    const u = uniqUser();
    const [a, b] = await userOnTwoWorkers(srv, u);
    clients.push(a, b);
    const c = await userClient(srv, uniqUser());
    const d = await rawClient(srv.wsUrl, { connect: true });
    clients.push(c, d);
    const ch1 = uniq('chat'); const ch2 = uniq('chat');
    for (const x of [a, b, c]) await x.subscribe(ch1);
    await d.subscribe(ch2);
    // Expected: 4 clients, 3 users (anonymous "" counts as one user as in
    // Centrifugo's hub), 2 channels, 4 subscriptions.
    const sum = (nodes, k) => nodes.reduce((s, n) => s + (n[k] || 0), 0);
    const j = await pollUntil(async () => {
      const r = ok200(await srv.api('info', {}), 'info');
      const ns = r.result.nodes;
      return sum(ns, 'num_clients') === 4 && sum(ns, 'num_subs') === 4 ? r : null;
    }, { what: 'info num_clients 4 / num_subs 4' });
    const nodes = j.result.nodes;
    t.diagnostic(`info: ${JSON.stringify(j)}`);
    assert.equal(nodes.length, 1, 'the workers of one server are one node');
    assert.equal(nodes[0].num_clients, 4);
    assert.equal(nodes[0].num_users, 3);
    assert.equal(nodes[0].num_channels, 2);
    assert.equal(nodes[0].num_subs, 4);
    assert.ok(typeof nodes[0].uptime === 'number' || nodes[0].uptime === undefined);
    for (const x of clients) x.close();
    await pollUntil(async () => {
      const r = ok200(await srv.api('info', {}), 'info');
      const n = r.result.nodes[0];
      return n.num_clients === 0 && n.num_users === 0 && n.num_channels === 0 && n.num_subs === 0;
    }, { what: 'info back to zero (fields present as 0)' });
  });

  h.test('info uptime grows and uid stays', async (t, srv) => {
    const first = ok200(await srv.api('info', {}), 'info').result.nodes[0];
    const later = await pollUntil(async () => {
      const n = ok200(await srv.api('info', {}), 'info').result.nodes[0];
      return (n.uptime || 0) > (first.uptime || 0) ? n : null;
    }, { timeout: 5000, what: 'uptime to grow' });
    assert.equal(later.uid, first.uid);
    assert.equal(later.name, first.name);
  });
});
