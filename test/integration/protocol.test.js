'use strict';
// Client protocol over raw WebSockets (npm `ws`): connect reply, ping/pong,
// framing, dispatch rules, error and disconnect codes. After every kind of
// bad input the server must still be healthy.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer, assertHealthy } = require('./lib/harness');
const { RawClient, rawClient } = require('./lib/wsclient');
const { tcpWebSocket } = require('./lib/rawtcp');
const proc = require('./lib/proc');
const { pollUntil } = require('./lib/util');

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Open a raw client, track it for cleanup.
function tracker() {
  const open = [];
  afterEach(() => { for (const c of open.splice(0)) c.close(); });
  return async (url, opts) => {
    const c = await rawClient(url, opts);
    open.push(c);
    return c;
  };
}

// Send `payload` on a fresh (optionally connected) client and expect the
// server to close it with `code` (and `reason` when given).
async function expectClose(srv, open, { connect = false, payload, binary, code, reason }) {
  const c = await open(srv.wsUrl, { connect });
  if (Buffer.isBuffer(payload)) c.send(payload, { binary: binary !== false });
  else c.send(payload, { binary: binary === true });
  const cl = await c.waitClose();
  assert.equal(cl.code, code, `close code for ${JSON.stringify(String(payload).slice(0, 80))}: ${JSON.stringify(cl)}`);
  if (reason !== undefined) assert.equal(cl.reason, reason);
  await assertHealthy(srv);
  return cl;
}

describe('protocol: connect and commands', () => {
  const h = useServer({ workers: 1 });
  const open = tracker();

  h.test('connect reply fields', async (t, srv) => {
    const c = await open(srv.wsUrl);
    c.send('{"connect":{"name":"js"},"id":1}');
    const r = await c.reply(1);
    assert.equal(r.error, undefined, JSON.stringify(r));
    const res = r.connect;
    assert.ok(res, JSON.stringify(r));
    assert.match(res.client, UUID_RE);
    assert.equal(typeof res.version, 'string');
    assert.equal(res.ping, 25);
    assert.equal(res.pong, true);
    assert.equal(res.expires, undefined, 'anonymous connection does not expire');
    assert.equal(c.frameTypes[0], 'text', 'JSON connections get text frames');
    // Every connection gets its own id.
    const c2 = await open(srv.wsUrl, { connect: true });
    assert.notEqual(c2.clientId, res.client);
  });

  h.test('unknown fields are ignored', async (t, srv) => {
    const c = await open(srv.wsUrl);
    c.send('{"connect":{"name":"x","future_field":[1,{"a":2}],"headers":{"h":"v"}},"id":7,"extra":{"deep":[true]}}');
    const r = await c.reply(7);
    assert.ok(r.connect, JSON.stringify(r));
    const s = await c.command({ subscribe: { channel: 'news', flag: 1, unknown: 'x' }, zzz: 1 });
    assert.deepEqual(s.error, undefined, JSON.stringify(s));
    assert.ok(s.subscribe, JSON.stringify(s));
  });

  h.test('command ids are echoed, whatever their value', async (t, srv) => {
    const c = await open(srv.wsUrl);
    c.send('{"connect":{},"id":4000000000}');
    const r = await c.reply(4000000000);
    assert.ok(r.connect, JSON.stringify(r));
    c.send('{"id":17,"subscribe":{"channel":"news"}}');
    assert.ok((await c.reply(17)).subscribe);
  });

  h.test('several commands in one frame are answered in order', async (t, srv) => {
    const c = await open(srv.wsUrl);
    c.send([
      { connect: { name: 'js' }, id: 1 },
      { subscribe: { channel: 'news', flag: 1 }, id: 2 },
      { subscribe: { channel: 'chat:multi', flag: 1 }, id: 3 },
    ]);
    await c.reply(3);
    const ids = c.frames.join('\n').split('\n').filter(Boolean).map((l) => JSON.parse(l).id).filter((x) => x !== undefined);
    assert.deepEqual(ids, [1, 2, 3]);
    assert.ok((await c.reply(1)).connect);
    assert.deepEqual((await c.reply(2)).subscribe, {});
  });

  h.test('a trailing newline in a frame is tolerated', async (t, srv) => {
    const c = await open(srv.wsUrl);
    c.send('{"connect":{},"id":1}\n');
    assert.ok((await c.reply(1)).connect);
  });

  h.test('subscribe result, publish reply and the resulting pub push', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    const s = await c.subscribe('chat:a');
    assert.deepEqual(s.subscribe, {}, `no history configured: empty subscribe result; got ${JSON.stringify(s)}`);
    const id = c.nextId++;
    c.send(`{"publish":{"channel":"chat:a","data":{"text":"hi"}},"id":${id}}`);
    const r = await c.reply(id);
    assert.deepEqual(r, { id, publish: {} });
    const p = await c.push({ channel: 'chat:a', kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { text: 'hi' });
    assert.deepEqual(p.push.pub.info, { user: '', client: c.clientId });
  });

  h.test('API publications arrive as push.pub without info', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    await c.subscribe('news');
    await srv.publish('news', { a: 1 });
    const p = await c.push({ channel: 'news', kind: 'pub' });
    assert.deepEqual(p, { push: { channel: 'news', pub: { data: { a: 1 } } } });
  });

  h.test('unsubscribe stops delivery', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    await c.subscribe('news');
    const u = await c.command({ unsubscribe: { channel: 'news' } });
    assert.deepEqual(u.unsubscribe, {}, JSON.stringify(u));
    await c.subscribe('chat:marker');
    await srv.publish('news', { after: 'unsub' });
    await srv.publish('chat:marker', { m: 1 });
    await c.push({ channel: 'chat:marker', kind: 'pub' });
    assert.equal(c.pending.filter((m) => m.push && m.push.channel === 'news').length, 0);
  });

  h.test('tags filter where the namespace does not allow it: error 107', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    const r = await c.command({ subscribe: { channel: 'chat:tf', tf: { key: 'k', cmp: 'eq', val: 'v' } } });
    assert.deepEqual(r.error, { code: 107, message: 'bad request' });
    // a plain subscribe to the same channel still works
    assert.ok((await c.subscribe('chat:tf')).subscribe);
  });

  h.test('subscribe twice: error 105', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    assert.ok((await c.subscribe('chat:twice')).subscribe);
    const r = await c.subscribe('chat:twice');
    assert.deepEqual(r.error, { code: 105, message: 'already subscribed' });
    // still usable
    assert.ok((await c.subscribe('news')).subscribe);
  });

  h.test('subscribe to an unknown namespace: error 102', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    const r = await c.subscribe('nope:x');
    assert.deepEqual(r.error, { code: 102, message: 'unknown channel' });
  });

  h.test('client publish errors: 103 in top-level namespace, 102 unknown namespace', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    let r = await c.command({ publish: { channel: 'news', data: { x: 1 } } });
    assert.deepEqual(r.error, { code: 103, message: 'permission denied' });
    r = await c.command({ publish: { channel: 'nope:x', data: { x: 1 } } });
    assert.deepEqual(r.error, { code: 102, message: 'unknown channel' });
    r = await c.command({ publish: { channel: 'subonly:q', data: { x: 1 } } });
    assert.deepEqual(r.error, { code: 103, message: 'permission denied' });
    await c.subscribe('subonly:q');
    r = await c.command({ publish: { channel: 'subonly:q', data: { x: 1 } } });
    assert.deepEqual(r.publish, {}, JSON.stringify(r));
  });

  h.test('rpc without proxy: error 104 (issue #3; documented in README)', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    const r = await c.command({ rpc: { method: 'getUser', data: { id: 1 } } });
    assert.deepEqual(r.error, { code: 104, message: 'method not found' });
  });

  h.test('history / presence / presence_stats without configuration: error 108', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    await c.subscribe('chat:hp');
    for (const cmd of ['history', 'presence', 'presence_stats']) {
      const r = await c.command({ [cmd]: { channel: 'chat:hp' } });
      assert.ok(r.error, `${cmd}: ${JSON.stringify(r)}`);
      assert.equal(r.error.code, 108, `${cmd}: ${JSON.stringify(r)}`);
    }
  });

  h.test('a large message below the size limit is received whole', async (t, srv) => {
    const sub = await open(srv.wsUrl, { connect: true });
    await sub.subscribe('chat:big');
    const pubr = await open(srv.wsUrl, { connect: true });
    const text = 'x'.repeat(60000);
    const r = await pubr.command({ publish: { channel: 'chat:big', data: { text } } });
    assert.deepEqual(r.publish, {}, JSON.stringify(r).slice(0, 200));
    const p = await sub.push({ channel: 'chat:big', kind: 'pub' });
    assert.equal(p.push.pub.data.text, text);
  });

  h.test('binary frame with a JSON command is processed like text', async (t, srv) => {
    const c = await open(srv.wsUrl);
    c.send(Buffer.from('{"connect":{},"id":1}'), { binary: true });
    const r = await c.reply(1);
    assert.ok(r.connect, JSON.stringify(r));
    c.send(Buffer.from('{"subscribe":{"channel":"news"},"id":2}'), { binary: true });
    assert.deepEqual((await c.reply(2)).subscribe, {});
    assert.ok(c.frameTypes.every((x) => x === 'text'), `server answers JSON in text frames: ${c.frameTypes}`);
  });
});

describe('protocol: bad input closes the connection, server stays up', () => {
  const h = useServer({ workers: 1 });
  const open = tracker();

  h.test('malformed JSON before connect: 3501 bad request', async (t, srv) => {
    await expectClose(srv, open, { payload: '{"connect":{},"id":', code: 3501, reason: 'bad request' });
  });

  h.test('malformed JSON after connect: 3501', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: 'this is not json', code: 3501, reason: 'bad request' });
  });

  h.test('JSON that is not an object: 3501', async (t, srv) => {
    await expectClose(srv, open, { payload: '[1,2,3]', code: 3501 });
  });

  h.test('empty frame: 3501', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: '', code: 3501 });
  });

  h.test('empty line between commands: 3501', async (t, srv) => {
    await expectClose(srv, open, { payload: '{"connect":{},"id":1}\n\n{"subscribe":{"channel":"news"},"id":2}', code: 3501 });
  });

  h.test('a command before connect: 3501', async (t, srv) => {
    await expectClose(srv, open, { payload: '{"subscribe":{"channel":"news"},"id":1}', code: 3501, reason: 'bad request' });
  });

  h.test('a second connect: 3501', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: '{"connect":{},"id":9}', code: 3501, reason: 'bad request' });
  });

  h.test('subscribe with empty channel: 3501', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: '{"subscribe":{"channel":""},"id":5}', code: 3501 });
  });

  h.test('publish with empty channel: 3501', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: '{"publish":{"channel":"","data":{}},"id":5}', code: 3501 });
  });

  h.test('a command carrying only ping: 3501', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: '{"id":5,"ping":{}}', code: 3501 });
  });

  h.test('a command with id and no request: 3501', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: '{"id":6}', code: 3501 });
  });

  h.test('a pong with no ping outstanding: 3501', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: '{}', code: 3501 });
  });

  h.test('send (no message handler): 3508 not available', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: '{"send":{"data":{"x":1}}}', code: 3508, reason: 'not available' });
  });

  h.test('unknown delta type: 3501', async (t, srv) => {
    await expectClose(srv, open, { connect: true, payload: '{"subscribe":{"channel":"news","delta":"zstd"},"id":3}', code: 3501 });
  });

  h.test('frame over message_size_limit: close 1009', async (t, srv) => {
    const big = '{"publish":{"channel":"chat:a","data":"' + 'y'.repeat(70000) + '"},"id":2}';
    await expectClose(srv, open, { connect: true, payload: big, code: 1009 });
  });

  h.test('binary frame with garbage: 3501', async (t, srv) => {
    await expectClose(srv, open, { payload: Buffer.from([0x0a, 0x03, 0xff, 0x00, 0x81, 0x9c, 0x7b]), binary: true, code: 3501 });
  });

  h.test('invalid UTF-8 in a text frame: connection closed (1007 or 3501)', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    const bytes = Buffer.concat([
      Buffer.from('{"publish":{"channel":"chat:a","data":"'),
      Buffer.from([0xc3, 0x28, 0xff, 0xfe]),
      Buffer.from('"},"id":2}'),
    ]);
    c.send(bytes, { binary: false });
    const cl = await c.waitClose();
    assert.ok([1007, 3501].includes(cl.code), `close code ${JSON.stringify(cl)}`);
    await assertHealthy(srv);
  });

  h.test('TCP reset mid-frame does not hurt the server', async (t, srv) => {
    const tcp = await tcpWebSocket(srv.port);
    tcp.sendText('{"connect":{},"id":1}');
    await pollUntil(() => tcp.texts().length > 0, { timeout: 5000, what: 'connect reply over raw TCP' });
    // Half a frame header claiming a long payload, then a reset.
    tcp.socket.write(Buffer.from([0x81, 0xfe, 0x10]));
    tcp.socket.resetAndDestroy();
    await assertHealthy(srv);
  });

  h.test('garbage instead of an HTTP request does not hurt the server', async (t, srv) => {
    const net = require('node:net');
    await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: srv.port }, () => {
        s.write(Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n'));
      });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.setTimeout(5000, () => { s.destroy(); resolve(); });
    });
    await assertHealthy(srv);
  });
});

describe('protocol: ping / pong / stale (short timers)', () => {
  const h = useServer({
    workers: 1,
    client: { ping_interval: '2s', pong_timeout: '1s', stale_close_delay: '2s' },
  });
  const open = tracker();

  h.test('connect reply advertises the configured ping interval', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true });
    assert.equal(c.connectReply.connect.ping, 2);
    assert.equal(c.connectReply.connect.pong, true);
  });

  h.test('server ping {} answered by pong {} keeps the connection', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true }); // answers pings
    await c.ping({ timeout: 10000 });
    await c.ping({ timeout: 10000 });
    await c.ping({ timeout: 10000 });
    assert.equal(c.closeInfo, null, 'still open after answering pings');
    assert.ok((await c.subscribe('news')).subscribe, 'still usable');
  });

  h.test('missing pong: close 3012 "no pong"', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true, autoPong: false });
    const cl = await c.waitClose(15000);
    assert.deepEqual(cl, { code: 3012, reason: 'no pong' });
    assert.ok(c.pings >= 1, 'a ping was sent before the disconnect');
    await assertHealthy(srv);
  });

  h.test('one pong per ping: an extra pong is 3501', async (t, srv) => {
    const c = await open(srv.wsUrl, { connect: true, autoPong: false });
    await c.ping({ timeout: 10000 });
    c.send('{}');
    c.send('{}');
    const cl = await c.waitClose();
    assert.equal(cl.code, 3501, JSON.stringify(cl));
    await assertHealthy(srv);
  });

  h.test('no connect within stale_close_delay: close 3502 "stale"', async (t, srv) => {
    const c = new RawClient(srv.wsUrl);
    await c.open();
    try {
      const cl = await c.waitClose(15000);
      assert.deepEqual(cl, { code: 3502, reason: 'stale' });
    } finally {
      c.close();
    }
    await assertHealthy(srv);
  });

  h.test('half-open peer (handshake done, then silent and not reading) is dropped', async (t, srv) => {
    const tcp = await tcpWebSocket(srv.port);
    tcp.sendText('{"connect":{},"id":1}');
    await pollUntil(() => tcp.texts().length > 0, { timeout: 5000, what: 'connect reply over raw TCP' });
    assert.ok(JSON.parse(tcp.texts()[0]).connect, tcp.texts()[0]);
    const clientPort = tcp.localPort;
    assert.ok(proc.serverSideSocket(srv.port, clientPort), 'server side of the connection is listed');
    tcp.socket.pause(); // stop reading; never answer pings
    const last = await pollUntil(() => {
      const s = proc.serverSideSocket(srv.port, clientPort);
      return (s === null || s.state !== '01') ? (s ? s.stateName : 'gone') : null;
    }, { timeout: 25000, interval: 200, what: 'server to drop the silent connection' });
    t.diagnostic(`server side of the dropped connection: ${last}`);
    tcp.socket.resume();
    const how = await Promise.race([tcp.ended, new Promise((r) => setTimeout(() => r(null), 10000))]);
    assert.ok(how, 'client side sees the TCP connection end');
    const cf = tcp.closeFrame();
    if (cf) assert.equal(cf.code, 3012, `close frame ${JSON.stringify(cf)}`);
    tcp.socket.destroy();
    await assertHealthy(srv);
  });
});
