'use strict';
// Server HTTP API: authentication, request errors, publish / broadcast
// results, byte-exact payload pass-through, health, legacy /api.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer } = require('./lib/harness');
const { rawClient } = require('./lib/wsclient');
const { API_KEY } = require('./lib/config');

const BAD_REQUEST = { error: { code: 107, message: 'bad request' } };

describe('HTTP API', () => {
  const h = useServer({});
  const openClients = [];
  const open = async (opts) => { const c = await rawClient(h.server.wsUrl, opts); openClients.push(c); return c; };
  afterEach(() => { for (const c of openClients.splice(0)) c.close(); });

  h.test('GET /health: 200', async (t, srv) => {
    const r = await srv.http('GET', '/health');
    assert.equal(r.status, 200);
  });

  h.test('no key / wrong key: 401', async (t, srv) => {
    let r = await srv.api('publish', { channel: 'news', data: { a: 1 } }, { key: null });
    assert.equal(r.status, 401, r.text);
    r = await srv.api('publish', { channel: 'news', data: { a: 1 } }, { key: 'nope' });
    assert.equal(r.status, 401, r.text);
    r = await srv.api('publish', { channel: 'news', data: { a: 1 } }, { key: 'nope', authHeader: true });
    assert.equal(r.status, 401, r.text);
    r = await srv.api('publish', { channel: 'news', data: { a: 1 } }, { key: null, headers: { Authorization: `Bearer ${API_KEY}` } });
    assert.equal(r.status, 401, r.text);
  });

  h.test('Authorization: apikey KEY is accepted (any case of "apikey")', async (t, srv) => {
    let r = await srv.api('publish', { channel: 'news', data: { a: 1 } }, { authHeader: true });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { result: {} });
    r = await srv.api('publish', { channel: 'news', data: { a: 1 } }, { key: null, headers: { Authorization: `ApiKey ${API_KEY}` } });
    assert.equal(r.status, 200, r.text);
  });

  h.test('X-API-Key header name is case-insensitive', async (t, srv) => {
    const r = await srv.api('publish', { channel: 'news', data: { a: 1 } }, { key: null, headers: { 'x-api-key': API_KEY } });
    assert.equal(r.status, 200, r.text);
  });

  h.test('malformed JSON body: 400', async (t, srv) => {
    let r = await srv.api('publish', '{"channel":"news","data":');
    assert.equal(r.status, 400, r.text);
    r = await srv.api('publish', '');
    assert.equal(r.status, 400, `empty body: ${r.text}`);
  });

  h.test('missing channel: 107 bad request', async (t, srv) => {
    const r = await srv.api('publish', { data: { a: 1 } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.deepEqual(r.json, BAD_REQUEST);
  });

  h.test('missing data: 107 bad request', async (t, srv) => {
    const r = await srv.api('publish', { channel: 'news' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, BAD_REQUEST);
  });

  h.test('publish to an unknown namespace: 102 unknown channel', async (t, srv) => {
    const r = await srv.api('publish', { channel: 'nope:x', data: { a: 1 } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { error: { code: 102, message: 'unknown channel' } });
  });

  h.test('unknown fields in the request are ignored', async (t, srv) => {
    const r = await srv.api('publish', { channel: 'news', data: { a: 1 }, whatever: [1, 2], skip_history: true });
    assert.deepEqual(r.json, { result: {} });
  });

  h.test('unknown method path: 404', async (t, srv) => {
    const r = await srv.api('no_such_method', {});
    assert.equal(r.status, 404);
  });

  h.test('GET on a method path: 405', async (t, srv) => {
    const r = await srv.http('GET', '/api/publish', { headers: { 'X-API-Key': API_KEY } });
    assert.equal(r.status, 405);
  });

  h.test('broadcast to two channels: per-channel results, both receive', async (t, srv) => {
    const c = await open({ connect: true });
    await c.subscribe('news');
    await c.subscribe('chat:a');
    const r = await srv.api('broadcast', { channels: ['news', 'chat:a'], data: { b: 'cast' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.deepEqual(r.json, { result: { responses: [{ result: {} }, { result: {} }] } });
    const p1 = await c.push({ channel: 'news', kind: 'pub' });
    const p2 = await c.push({ channel: 'chat:a', kind: 'pub' });
    assert.deepEqual(p1.push.pub.data, { b: 'cast' });
    assert.deepEqual(p2.push.pub.data, { b: 'cast' });
  });

  h.test('broadcast: per-channel errors in input order', async (t, srv) => {
    const r = await srv.api('broadcast', { channels: ['news', 'nope:x', 'chat:z'], data: { q: 1 } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { result: { responses: [
      { result: {} }, { error: { code: 102, message: 'unknown channel' } }, { result: {} },
    ] } });
  });

  h.test('broadcast with empty channels: 107', async (t, srv) => {
    let r = await srv.api('broadcast', { channels: [], data: { a: 1 } });
    assert.deepEqual(r.json, BAD_REQUEST);
    r = await srv.api('broadcast', { data: { a: 1 } });
    assert.deepEqual(r.json, BAD_REQUEST);
  });

  h.test('payloads of every JSON type are delivered byte-for-byte', async (t, srv) => {
    const c = await open({ connect: true });
    await c.subscribe('news');
    const payloads = [
      '"plain string"',
      '"escaped \\/ slash, \\"quote\\", tab\\t, nl\\n, \\u00e9 and raw é ü 😀"',
      '12.5e3',
      '-0',
      '42',
      'true',
      'false',
      '[1, "two" ,null,{"three":3},[]]',
      '{"k": "v\\/w", "u":"ünï\\u2028cødé", "nested":{"a":[1,2,{"b":null}]} ,"e":{}}',
      '{}',
      '[]',
    ];
    for (const data of payloads) {
      const body = `{"channel":"news","data":${data}}`;
      const r = await srv.api('publish', body);
      assert.deepEqual(r.json, { result: {} }, `publish ${data}: ${r.text}`);
      const before = c.frames.length;
      const p = await c.push({ channel: 'news', kind: 'pub' });
      // Find the raw frame text that carried this push.
      const raw = c.frames.slice(Math.max(0, before - 1)).join('\n');
      assert.ok(raw.includes(`"data":${data}`), `raw frame carries data verbatim.\n sent: ${data}\n frame: ${raw}`);
      assert.deepEqual(p.push.pub.data, JSON.parse(data));
    }
  });

  h.test('b64data is decoded into the payload', async (t, srv) => {
    const c = await open({ connect: true });
    await c.subscribe('news');
    const json = '{"from":"b64"}';
    const r = await srv.api('publish', { channel: 'news', b64data: Buffer.from(json).toString('base64') });
    assert.deepEqual(r.json, { result: {} }, r.text);
    const p = await c.push({ channel: 'news', kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { from: 'b64' });
  });

  h.test('legacy POST /api with method/params', async (t, srv) => {
    const c = await open({ connect: true });
    await c.subscribe('news');
    const r = await srv.http('POST', '/api', {
      headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
      body: '{"method":"publish","params":{"channel":"news","data":{"legacy":true}}}',
    });
    if (r.status === 404) {
      t.todo('legacy /api endpoint not implemented (404)');
      return;
    }
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { result: {} });
    const p = await c.push({ channel: 'news', kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { legacy: true });
  });
});
