'use strict';
// The framework integrations of integrations.md, each replayed as it talks
// to Centrifugo: the exact request bytes (request line, header set,
// Content-Length, keep-alive or Connection: close), the JSON its language
// writes (PHP json_encode: \/ and \uXXXX with surrogate pairs; Python
// json.dumps: ", " / ": " separators, ASCII escapes) and the checks it
// makes on the answer (status 200 exactly, Content-Type exactly
// application/json, the always-present fields its own tests assert).
//
//   Laravel:    denis660/laravel-centrifugo 5.x (Guzzle, per-method, keep-alive)
//               Opekunov/laravel-centrifugo-broadcaster 3.x (PHP stream wrapper,
//               Connection: close) and 2.x (legacy /api)
//   Symfony:    fre5h/CentrifugoBundle ≥5 (Symfony HttpClient) and 4.x (legacy)
//   Django:     synw/django-instant through cent 4.1 (python-requests, legacy /api,
//               data = a string holding JSON)
//   RoadRunner: roadrunner-server centrifuge plugin → GRPC CentrifugoApi, no key,
//               optionally grpc-encoding: gzip

const assert = require('node:assert/strict');
const { describe, afterEach, test } = require('node:test');
const { useServer } = require('./lib/harness');
const { startServer, freePort } = require('./lib/server');
const { rawClient } = require('./lib/wsclient');
const { API_KEY } = require('./lib/config');
const { makeToken } = require('./lib/token');
const { withTimeout } = require('./lib/util');
const { RawHttp, httpBytes, userOnTwoWorkers, userClient } = require('./lib/apitest');
const { pbBytes, pbStr, pbDecode, grpcCall } = require('./lib/grpc');

const OPEN = {
  allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
  allow_publish_for_client: true, allow_publish_for_anonymous: true,
};
const CONFIG = {
  workers: 2,
  channel: {
    without_namespace: { allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true, presence: true, history_size: 20, history_ttl: '300s' },
    namespaces: [
      { name: 'public', ...OPEN, presence: true, history_size: 20, history_ttl: '300s' },
    ],
  },
};

let seq = 0;
const uniq = (p) => `${p}${++seq}`;

// PHP json_encode() with default flags: "/" as "\/", every non-ASCII UTF-16
// code unit as \uXXXX (so astral characters become surrogate pairs).
function phpJson(v) {
  return JSON.stringify(v)
    .replace(/\//g, '\\/')
    .replace(/[\u0080-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// Python json.dumps() with default arguments: ", " and ": " separators,
// ensure_ascii (non-ASCII as \uXXXX), "/" not escaped.
function pyJson(v) {
  const str = (s) => JSON.stringify(s).replace(/[\u0080-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (v === null) return 'null';
  if (typeof v === 'string') return str(v);
  if (typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`;
  return `{${Object.entries(v).map(([k, x]) => `${str(k)}: ${pyJson(x)}`).join(', ')}}`;
}

// The answer checks these clients make: status line 200, exactly one
// Content-Type header whose value is exactly application/json.
function strictOk(r, what) {
  assert.match(r.statusLine, /^HTTP\/1\.1 200 /, `${what}: ${r.statusLine} ${r.text}`);
  assert.deepEqual(r.headers['content-type'], ['application/json'], `${what}: Content-Type header lines ${JSON.stringify(r.headerLines)}`);
  assert.ok(r.json !== undefined || r.text.includes('\n'), `${what}: JSON body: ${r.text}`);
}
const lines = (r) => r.text.split('\n').filter((l) => l).map((l) => JSON.parse(l));

describe('framework integrations over HTTP', () => {
  const h = useServer(CONFIG);
  const open = [];
  const track = (c) => { open.push(c); return c; };
  afterEach(() => { for (const c of open.splice(0)) c.close(); });

  // ---------------------------------------------------------------- Laravel

  h.test('Laravel denis660/laravel-centrifugo 5.x: Guzzle, X-API-Key, keep-alive, per-method + batch', async (t, srv) => {
    const host = `127.0.0.1:${srv.port}`;
    const guzzle = track(new RawHttp(srv.port));
    const call = async (method, params, key = API_KEY) => {
      const r = await guzzle.request(httpBytes('POST', `/api/${method}`, [
        `Host: ${host}`, 'User-Agent: GuzzleHttp/7', 'Content-type: application/json', `X-API-Key: ${key}`,
      ], phpJson(params)));
      return r;
    };
    // A subscriber of the Laravel private channel "private-orders" → "$orders".
    const user = uniq('laravel-user');
    const sub = track(await userClient(srv, user));
    const chan = '$orders';
    const sr = await sub.subscribe(chan, { token: makeToken({ sub: user, channel: chan }) });
    assert.ok(sr.subscribe, JSON.stringify(sr));

    let r = await call('publish', { channel: chan, data: { message: 'Hello / world — ✓ 🚀' } });
    strictOk(r, 'publish');
    assert.ok(r.json.result && !r.json.error, r.text);
    const p = await sub.push({ channel: chan, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { message: 'Hello / world — ✓ 🚀' });

    r = await call('broadcast', { channels: ['public:a', 'public:b'], data: { x: 1 } });
    strictOk(r, 'broadcast');
    assert.equal(r.json.result.responses.length, 2);
    for (const e of r.json.result.responses) assert.ok('result' in e, JSON.stringify(e));

    const empty = uniq('public:empty');
    r = await call('presence', { channel: empty });
    strictOk(r, 'presence');
    assert.deepEqual(r.json, { result: { presence: {} } });
    r = await call('presence_stats', { channel: empty });
    assert.deepEqual(r.json, { result: { num_clients: 0, num_users: 0 } });
    r = await call('history', { channel: empty, limit: 0 });
    strictOk(r, 'history');
    for (const k of ['publications', 'offset', 'epoch']) assert.ok(k in r.json.result, `history.${k}: ${r.text}`);
    r = await call('history_remove', { channel: empty });
    assert.deepEqual(r.json, { result: {} });
    r = await call('channels', { pattern: '' });
    strictOk(r, 'channels');
    assert.ok('channels' in r.json.result, r.text);
    r = await call('info', {});
    strictOk(r, 'info');
    assert.ok(r.json.result.nodes.length > 0 && r.json.result.nodes[0].version);
    for (const [m, body] of [['subscribe', { user, channel: 'public:srv' }], ['unsubscribe', { user, channel: 'public:srv' }]]) {
      r = await call(m, body);
      assert.deepEqual(r.json, { result: {} }, m);
    }
    r = await call('batch', { commands: [{ publish: { channel: chan, data: { n: 1 } } }, { publish: { channel: chan, data: { n: 2 } } }], parallel: false });
    strictOk(r, 'batch');
    assert.equal(r.json.replies.length, 2, r.text);
    for (const x of r.json.replies) assert.ok(x.publish, r.text);
    r = await call('disconnect', { user });
    assert.deepEqual(r.json, { result: {} });
    assert.equal((await sub.waitClose()).code, 3503);
    // BroadcastException with an invalid key: any non-2xx status.
    r = await call('publish', { channel: chan, data: {} }, 'invalid');
    assert.ok(r.status < 200 || r.status >= 300, `invalid key must not be 2xx: ${r.statusLine}`);
    assert.equal(r.status, 401);
  });

  h.test('Laravel Opekunov broadcaster 3.x: PHP stream wrapper (Connection: close), unicode, [] data, null since member', async (t, srv) => {
    const host = `127.0.0.1:${srv.port}`;
    const stream = async (method, params) => {
      const c = track(new RawHttp(srv.port));
      const r = await c.request(httpBytes('POST', `/api/${method}`, [
        `Host: ${host}`, 'Connection: close', 'Content-Type: application/json', `X-API-Key: ${API_KEY}`,
      ], phpJson(params)));
      // The PHP wrapper reads to EOF: the server must close the connection.
      await c.waitEof();
      return r;
    };
    const ch = uniq('public:opekunov');
    const c = track(await rawClient(srv.wsUrl, { connect: true }));
    await c.subscribe(ch);
    // test_publish_unicode: "🚀🎉" as surrogate pairs.
    const body = phpJson({ channel: ch, data: { text: '🚀🎉' } });
    assert.ok(body.includes('\\ud83d\\ude80\\ud83c\\udf89'), body);
    let r = await stream('publish', { channel: ch, data: { text: '🚀🎉' } });
    strictOk(r, 'publish');
    assert.equal(r.json.error, undefined);
    const first = r.json.result;
    let p = await c.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { text: '🚀🎉' });
    assert.ok(c.frames.some((f) => f.includes('"data":{"text":"\\ud83d\\ude80\\ud83c\\udf89"}')), 'delivered byte-for-byte');
    // test_publish_empty_data: an empty PHP array.
    r = await stream('publish', { channel: ch, data: [] });
    strictOk(r, 'publish []');
    assert.equal(r.json.error, undefined, r.text);
    p = await c.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, []);
    // history with only one half of the position given.
    r = await stream('history', { channel: ch, limit: 10, since: { offset: null, epoch: first.epoch } });
    strictOk(r, 'history');
    assert.deepEqual(r.json.result.publications.map((x) => x.data), [{ text: '🚀🎉' }, []]);
    // test_channels_empty / disconnect of a user without connections.
    r = await stream('channels', { pattern: 'nothing-here-*' });
    assert.deepEqual(r.json, { result: { channels: {} } });
    r = await stream('disconnect', { user: 'nobody-connected' });
    assert.deepEqual(r.json, { result: {} });
    // test_v5_api_headers_format: info version starts with "5." or "6.".
    r = await stream('info', {});
    strictOk(r, 'info');
    assert.match(r.json.result.nodes[0].version, /^(5|6)\./);
    // Errors: HTTP 200 with error.code and error.message.
    r = await stream('publish', { channel: 'undefined_ns:x', data: {} });
    strictOk(r, 'error');
    assert.deepEqual(r.json, { error: { code: 102, message: 'unknown channel' } });
  });

  h.test('Laravel Opekunov 2.x / denis660 ≤3.x: legacy /api with Authorization: apikey', async (t, srv) => {
    const ch = uniq('public:legacy');
    const c = track(await rawClient(srv.wsUrl, { connect: true }));
    await c.subscribe(ch);
    const conn = track(new RawHttp(srv.port));
    const r = await conn.request(httpBytes('POST', '/api', [
      `Host: 127.0.0.1:${srv.port}`, 'User-Agent: GuzzleHttp/7', 'Content-Type: application/json', `Authorization: apikey ${API_KEY}`,
    ], phpJson({ method: 'publish', params: { channel: ch, data: { url: 'https://example.com/x' } } })));
    strictOk(r, 'legacy publish');
    assert.ok(r.json.result && !r.json.error, r.text);
    const p = await c.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { url: 'https://example.com/x' });
    const bad = await conn.request(httpBytes('POST', '/api', [
      `Host: 127.0.0.1:${srv.port}`, 'Content-Type: application/json', 'Authorization: apikey wrong',
    ], phpJson({ method: 'info', params: [] })));
    assert.equal(bad.status, 401);
  });

  // ---------------------------------------------------------------- Symfony

  h.test('Symfony fre5h/CentrifugoBundle ≥5: HttpClient headers, strict Content-Type, {} bodies, extra fields, batch', async (t, srv) => {
    const conn = track(new RawHttp(srv.port));
    const call = (method, json) => conn.request(httpBytes('POST', `/api/${method}`, [
      `Host: 127.0.0.1:${srv.port}`, 'Accept: */*', 'Content-Type: application/json', `X-API-Key: ${API_KEY}`,
      'User-Agent: Symfony HttpClient (Curl)', 'Accept-Encoding: gzip',
    ], json));
    const u = uniq('symfony-user');
    const [a, b] = (await userOnTwoWorkers(srv, u)).map(track);
    const ch = uniq('public:sf');
    for (const x of [a, b]) await x.subscribe(ch);

    let r = await call('publish', phpJson({ channel: ch, data: { foo: 'bar' }, skip_history: false, tags: { t: '1' } }));
    strictOk(r, 'publish');
    assert.equal(r.json.error, undefined);
    // Broadcast model with the extra base64data field (ignored).
    r = await call('broadcast', phpJson({ channels: [ch], data: { foo: 'cast' }, base64data: 'eyJ4IjoxfQ==' }));
    strictOk(r, 'broadcast');
    assert.equal(r.json.result.responses.length, 1);
    for (const x of [a, b]) {
      assert.deepEqual((await x.push({ channel: ch, kind: 'pub' })).push.pub.data, { foo: 'bar' });
      assert.deepEqual((await x.push({ channel: ch, kind: 'pub' })).push.pub.data, { foo: 'cast' });
    }
    r = await call('presence_stats', phpJson({ channel: ch }));
    strictOk(r, 'presence_stats');
    assert.equal(typeof r.json.result.num_clients, 'number');
    assert.equal(typeof r.json.result.num_users, 'number');
    r = await call('channels', '{}');
    strictOk(r, 'channels {}');
    assert.ok('channels' in r.json.result);
    r = await call('info', '{}');
    strictOk(r, 'info {}');
    for (const n of r.json.result.nodes) assert.equal(typeof n.name, 'string');
    r = await call('history', phpJson({ channel: ch, limit: 10, reverse: false }));
    strictOk(r, 'history');
    for (const k of ['publications', 'offset', 'epoch']) assert.ok(k in r.json.result, k);
    r = await call('batch', '{}');
    strictOk(r, 'empty batch');
    assert.equal(r.json.error, undefined, r.text);
    r = await call('batch', phpJson({ commands: [{ publish: { channel: ch, data: { n: 1 } } }, { presence: { channel: ch } }], parallel: true }));
    strictOk(r, 'batch');
    assert.ok(r.json.replies[0].publish, r.text);
    assert.equal(Object.keys(r.json.replies[1].presence.presence).length, 2);
    r = await call('subscribe', phpJson({ user: u, channel: uniq('public:sfsrv'), info: { role: 'x' } }));
    assert.deepEqual(r.json, { result: {} });
    r = await call('unsubscribe', phpJson({ user: u, channel: ch }));
    assert.deepEqual(r.json, { result: {} });
    for (const x of [a, b]) await x.push({ channel: ch, kind: 'unsubscribe' });
    r = await call('disconnect', phpJson({ user: u, whitelist: [] }));
    assert.deepEqual(r.json, { result: {} });
    for (const x of [a, b]) assert.equal((await x.waitClose()).code, 3503);
    // CentrifugoErrorException carries message and code.
    r = await call('presence', phpJson({ channel: 'nope:x' }));
    strictOk(r, 'error');
    assert.deepEqual(r.json, { error: { code: 102, message: 'unknown channel' } });
  });

  h.test('Symfony fre5h: subscribe override with plain booleans is 400 Bad Request, as in Centrifugo', async (t, srv) => {
    const r = await srv.api('subscribe', phpJson({ user: 'u', channel: 'public:x', override: { presence: true, join_leave: false } }));
    assert.equal(r.status, 400, `${r.status} ${r.text}`);
  });

  h.test('Symfony fre5h 4.x: legacy /api, several commands separated by \\n', async (t, srv) => {
    const ch = uniq('public:sf4');
    const body = [
      phpJson({ method: 'publish', params: { channel: ch, data: { v: 4 } } }),
      phpJson({ method: 'history', params: { channel: ch, limit: 5 } }),
      phpJson({ method: 'info', params: [] }),
    ].join('\n');
    const r = await new RawHttp(srv.port).request(httpBytes('POST', '/api', [
      `Host: 127.0.0.1:${srv.port}`, 'Content-Type: application/json', `Authorization: apikey ${API_KEY}`, 'Connection: close',
    ], body));
    strictOk(r, 'legacy');
    const rs = lines(r);
    assert.equal(rs.length, 3, r.text);
    assert.equal(rs[0].result.offset, 1);
    assert.deepEqual(rs[1].result.publications.map((p) => p.data), [{ v: 4 }]);
    assert.ok(rs[2].result.nodes.length > 0);
  });

  // ---------------------------------------------------------------- Django

  h.test('Django synw/django-instant via cent 4.1: python-requests, legacy /api, data = a string holding JSON', async (t, srv) => {
    const user = uniq('django-user');
    const sub = track(await userClient(srv, user));
    const chan = '$users';
    const sr = await sub.subscribe(chan, { token: makeToken({ sub: user, channel: chan }) });
    assert.ok(sr.subscribe, JSON.stringify(sr));
    const pub = track(await rawClient(srv.wsUrl, { connect: true }));
    await pub.subscribe('public:instant');

    // django-instant: payload = json.dumps({...}); client.publish(channel, payload)
    const payload = pyJson({ msg: 'Hello café ☕', event_class: 'default', data: { url: '/admin/', n: [1, 2] }, site: 'mysite', channel: chan });
    const cmd = (channel) => pyJson({ method: 'publish', params: { channel, data: payload } });
    const requests = track(new RawHttp(srv.port));
    const post = (body, key = API_KEY) => requests.request(httpBytes('POST', '/api', [
      `Host: 127.0.0.1:${srv.port}`, 'User-Agent: python-requests/2.31.0', 'Accept-Encoding: gzip, deflate', 'Accept: */*',
      'Connection: keep-alive', 'Content-type: application/json', `Authorization: apikey ${key}`,
    ], body));
    let r = await post(cmd(chan));
    strictOk(r, 'publish');
    assert.equal(lines(r).length, 1);
    assert.ok(lines(r)[0].result && !lines(r)[0].error, r.text);
    const p = await sub.push({ channel: chan, kind: 'pub' });
    assert.equal(p.push.pub.data, payload, 'the string arrives as that string');
    const encoded = pyJson(payload);
    assert.ok(sub.frames.some((f) => f.includes(`"data":${encoded}`)), `string delivered byte-for-byte: ${encoded}`);
    // cent 4 batches several commands in one request, "\n"-separated, on the same connection.
    r = await post([cmd('public:instant'), pyJson({ method: 'presence', params: { channel: chan } }), pyJson({ method: 'info', params: {} })].join('\n'));
    strictOk(r, 'batch of commands');
    const rs = lines(r);
    assert.equal(rs.length, 3, r.text);
    assert.ok(rs[0].result && !rs[0].error, r.text);
    assert.equal(rs[1].result.presence[sub.clientId].user, user);
    assert.ok(rs[2].result.nodes.length > 0);
    const q = await pub.push({ channel: 'public:instant', kind: 'pub' });
    assert.equal(q.push.pub.data, payload);
    // history keeps the string byte-for-byte as well.
    r = await post(pyJson({ method: 'history', params: { channel: chan, limit: -1 } }));
    strictOk(r, 'history');
    assert.ok(r.text.includes(`"data":${encoded}`), r.text);
    // cent 4 raises on any status other than 200.
    r = await post(cmd(chan), 'wrong');
    assert.equal(r.status, 401);
  });
});

// ------------------------------------------------------------------ RoadRunner

// The RoadRunner plugin is a grpc-go client: every call says it accepts
// gzip-compressed answers, as grpc-go does.
const rrCall = (port, method, req, opts = {}) =>
  grpcCall(port, method, req, { ...opts, metadata: { 'grpc-accept-encoding': 'gzip' } });

describe('RoadRunner: GRPC CentrifugoApi without a key', () => {
  const clients = [];
  afterEach(() => { for (const c of clients.splice(0)) c.close(); });

  test('Publish, gzip-compressed Publish, Info, Broadcast as the RoadRunner plugin sends them', { timeout: 60000 }, async () => {
    const grpcPort = await freePort();
    const srv = await startServer({ ...CONFIG, grpc_api: { enabled: true, address: '127.0.0.1', port: grpcPort } }, { timeout: 5000 });
    try {
      const c = await rawClient(srv.wsUrl, { connect: true });
      clients.push(c);
      const ch = uniq('public:rr');
      await c.subscribe(ch);
      const data = Buffer.from('{"from":"roadrunner","ok":true}');
      // PublishRequest { channel = 1; bytes data = 2; }
      let r = await rrCall(grpcPort, 'Publish', Buffer.concat([pbStr(1, ch), pbBytes(2, data)]));
      assert.equal(r.status, 0, JSON.stringify(r.trailers));
      let m = pbDecode(r.message);
      assert.equal(m[1], undefined, 'no error');
      let p = await c.push({ channel: ch, kind: 'pub' });
      assert.deepEqual(p.push.pub.data, { from: 'roadrunner', ok: true });
      // use_compressor: true
      r = await rrCall(grpcPort, 'Publish', Buffer.concat([pbStr(1, ch), pbBytes(2, Buffer.from('{"gz":1}'))]), { gzip: true });
      assert.equal(r.status, 0, JSON.stringify(r.trailers));
      p = await c.push({ channel: ch, kind: 'pub' });
      assert.deepEqual(p.push.pub.data, { gz: 1 });
      // Unknown namespace: Error { code = 1 } inside the response, status OK.
      r = await rrCall(grpcPort, 'Publish', Buffer.concat([pbStr(1, 'nope:x'), pbBytes(2, data)]));
      assert.equal(r.status, 0);
      m = pbDecode(r.message);
      assert.equal(pbDecode(m[1][0])[1][0], 102);
      // BroadcastRequest { repeated string channels = 1; bytes data = 2; }
      r = await rrCall(grpcPort, 'Broadcast', Buffer.concat([pbStr(1, ch), pbStr(1, 'public:other'), pbBytes(2, Buffer.from('{"b":1}'))]));
      assert.equal(r.status, 0);
      m = pbDecode(r.message);
      assert.equal(pbDecode(m[2][0])[1].length, 2, 'two responses');
      // InfoRequest {} → InfoResponse { result = 2 { repeated NodeResult nodes = 1 } }
      r = await rrCall(grpcPort, 'Info', Buffer.alloc(0));
      assert.equal(r.status, 0);
      const nodes = pbDecode(pbDecode(r.message)[2][0])[1];
      assert.ok(nodes.length >= 1);
      const node = pbDecode(nodes[0]);
      assert.match(node[3][0].toString(), /^6\./, 'NodeResult.version = 3');
    } finally {
      await srv.stop();
    }
  });
});
