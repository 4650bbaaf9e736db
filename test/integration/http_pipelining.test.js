'use strict';
// HTTP/1.1 pipelining of the server API: several requests written in one
// TCP segment on a raw socket are all answered, in order, exactly once, and
// no worker dies (lws 4.1 alone could not do this: it aborted the worker and
// re-dispatched one publish hundreds of thousands of times).

const assert = require('node:assert/strict');
const net = require('node:net');
const { describe, afterEach } = require('node:test');
const { useServer, assertHealthy } = require('./lib/harness');
const { rawClient } = require('./lib/wsclient');
const { API_KEY } = require('./lib/config');
const { sleep } = require('./lib/util');

function publishReq(body) {
  const b = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  return Buffer.concat([Buffer.from(
    'POST /api/publish HTTP/1.1\r\nHost: test\r\n'
    + `X-API-Key: ${API_KEY}\r\nContent-Type: application/json\r\n`
    + `Content-Length: ${b.length}\r\n\r\n`), b]);
}

function getReq(path, extra = '') {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`);
}

// Parses complete HTTP/1.1 responses (Content-Length framed) off buf.
// Returns { responses, rest }.
function parseResponses(buf) {
  const responses = [];
  for (;;) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = buf.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3})/.exec(head[0]);
    assert.ok(m, `bad status line ${JSON.stringify(head[0])}`);
    const headers = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const len = Number(headers['content-length']);
    assert.ok(Number.isInteger(len), `no content-length in ${JSON.stringify(head)}`);
    if (buf.length < end + 4 + len) break;
    const body = buf.subarray(end + 4, end + 4 + len).toString('utf8');
    responses.push({ status: Number(m[1]), headers, body });
    buf = buf.subarray(end + 4 + len);
  }
  return { responses, rest: buf };
}

// Writes payload in ONE write on a fresh socket, collects n responses
// (bounded wait); resolves { responses, closed } where closed tells whether
// the server closed the connection afterwards (checked only if waitClose).
function pipeline(port, payload, n, { waitClose = false, timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let got = [];
    let closed = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`only ${got.length} of ${n} responses within ${timeout} ms: ${JSON.stringify(got)}`
        + ` (unparsed: ${JSON.stringify(buf.toString('latin1').slice(0, 200))})`));
    }, timeout);
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ responses: got, closed });
    };
    s.on('connect', () => s.write(payload));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      try {
        const r = parseResponses(buf);
        got = got.concat(r.responses);
        buf = r.rest;
      } catch (e) {
        clearTimeout(timer);
        s.destroy();
        reject(e);
        return;
      }
      if (got.length > n) {
        clearTimeout(timer);
        s.destroy();
        reject(new Error(`more responses than requests: ${JSON.stringify(got)}`));
      } else if (got.length === n && !waitClose) {
        done();
      }
    });
    s.on('close', () => {
      closed = true;
      if (got.length === n) done();
    });
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

const OK = JSON.stringify({ result: {} });
const BAD = JSON.stringify({ error: { code: 107, message: 'bad request' } });

describe('HTTP pipelining', () => {
  const h = useServer({});
  const openClients = [];
  afterEach(() => { for (const c of openClients.splice(0)) c.close(); });

  // k requests in one segment: every third one lacks its channel (error 107)
  // so the order of the answers is visible; the subscriber must see each
  // valid publication exactly once, in order.
  async function pipelinedPublishes(srv, k, channel) {
    const sub = await rawClient(srv.wsUrl, { connect: true });
    openClients.push(sub);
    const sr = await sub.subscribe(channel);
    assert.ok(sr.subscribe, `subscribe: ${JSON.stringify(sr)}`);
    const reqs = [];
    const expected = [];
    const published = [];
    for (let i = 0; i < k; i++) {
      if (i % 3 === 2) {
        reqs.push(publishReq({ data: { n: i } }));
        expected.push(BAD);
      } else {
        reqs.push(publishReq({ channel, data: { n: i } }));
        expected.push(OK);
        published.push(i);
      }
    }
    const { responses } = await pipeline(srv.port, Buffer.concat(reqs), k);
    assert.deepEqual(responses.map((r) => r.status), Array(k).fill(200));
    assert.deepEqual(responses.map((r) => r.body), expected, 'answers in request order');
    const seen = [];
    for (let i = 0; i < published.length; i++) {
      const p = await sub.push({ channel, kind: 'pub' }, { timeout: 5000 });
      seen.push(p.push.pub.data.n);
    }
    assert.deepEqual(seen, published, 'each publication once, in order');
    // nothing is delivered again afterwards
    await sleep(300);
    const extra = sub.pending.filter((m) => m.push && m.push.channel === channel);
    assert.deepEqual(extra, [], 'duplicate deliveries');
    await assertHealthy(srv);
  }

  h.test('2 publishes in one segment: both answered in order', async (t, srv) => {
    await pipelinedPublishes(srv, 2, 'pipe2');
  });

  h.test('8 publishes in one segment: all answered in order', async (t, srv) => {
    await pipelinedPublishes(srv, 8, 'pipe8');
  });

  h.test('64 publishes in one segment (more than the per-connection window)', async (t, srv) => {
    await pipelinedPublishes(srv, 64, 'pipe64');
  });

  h.test('GET and POST mixed; the connection stays usable', async (t, srv) => {
    const payload = Buffer.concat([getReq('/health'), publishReq({ channel: 'mixed', data: {} }),
      getReq('/health')]);
    const { responses } = await pipeline(srv.port, payload, 3);
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200]);
    assert.equal(responses[1].body, OK);
    await assertHealthy(srv);
  });

  h.test('"Connection: close" in the middle: answered, then closed, the rest ignored', async (t, srv) => {
    const payload = Buffer.concat([publishReq({ channel: 'c1', data: {} }),
      getReq('/health', 'Connection: close\r\n'), publishReq({ channel: 'c1', data: {} })]);
    const { responses, closed } = await pipeline(srv.port, payload, 2, { waitClose: true });
    assert.deepEqual(responses.map((r) => r.status), [200, 200]);
    assert.equal(responses[1].headers.connection, 'close');
    assert.equal(closed, true);
    await assertHealthy(srv);
  });

  h.test('a refused request (411) after a good one: both answered in order, then closed', async (t, srv) => {
    const noLength = Buffer.from(`POST /api/publish HTTP/1.1\r\nHost: test\r\nX-API-Key: ${API_KEY}\r\n\r\n`);
    const payload = Buffer.concat([publishReq({ channel: 'c1', data: {} }), noLength]);
    const { responses, closed } = await pipeline(srv.port, payload, 2, { waitClose: true });
    assert.deepEqual(responses.map((r) => r.status), [200, 411]);
    assert.equal(closed, true);
    await assertHealthy(srv);
  });

  h.test('requests split at every byte boundary are still parsed', async (t, srv) => {
    const payload = Buffer.concat([publishReq({ channel: 'c1', data: { x: 1 } }), getReq('/health')]);
    const res = await new Promise((resolve, reject) => {
      const s = net.connect(srv.port, '127.0.0.1');
      s.setNoDelay(true);
      let buf = Buffer.alloc(0);
      const timer = setTimeout(() => { s.destroy(); reject(new Error('timeout')); }, 10000);
      s.on('connect', async () => {
        for (let i = 0; i < payload.length; i += 7) {
          s.write(payload.subarray(i, i + 7));
          await sleep(1);
        }
      });
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const r = parseResponses(buf);
        if (r.responses.length === 2) { clearTimeout(timer); s.destroy(); resolve(r.responses); }
      });
      s.on('error', reject);
    });
    assert.deepEqual(res.map((r) => r.status), [200, 200]);
    assert.equal(res[0].body, OK);
  });
});
