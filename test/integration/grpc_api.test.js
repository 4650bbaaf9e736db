'use strict';
// The GRPC server API (grpc_api.*): service
// centrifugal.centrifugo.api.CentrifugoApi over h2c, every method it
// serves, grpc_api.key, transport error mode, gzip requests, and bad input
// (garbage, a non-h2 client, oversized and malformed messages, bad gzip).
// Messages are written and read by hand with Centrifugo's field numbers
// (server-api.md §6).

const assert = require('node:assert/strict');
const zlib = require('node:zlib');
const { describe, before, after, afterEach, test } = require('node:test');
const { startServer, freePort } = require('./lib/server');
const { withLog, assertHealthy } = require('./lib/harness');
const { rawClient } = require('./lib/wsclient');
const { userClient } = require('./lib/apitest');
const {
  pbUint, pbBool, pbBytes, pbStr, pbMsg, pbMapStr, pbDecode, pbMap, one, sub,
  frame, grpcCall, resp, rawExchange, h2Frames,
} = require('./lib/grpc');

const OPEN = {
  allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
  allow_publish_for_client: true, presence: true, history_size: 20, history_ttl: '300s',
};
const CHANNEL = {
  without_namespace: { ...OPEN },
  namespaces: [{ name: 'public', ...OPEN }, { name: 'nohist', allow_subscribe_for_client: true }],
};

let seq = 0;
const uniq = (p) => `${p}${++seq}-${process.pid}`;

// A server with the GRPC API on a free port; grpc options merged in.
function useGrpcServer(grpcOpts = {}) {
  const h = { server: null, port: 0 };
  before(async () => {
    h.port = await freePort();
    h.server = await startServer({
      workers: 2, channel: CHANNEL,
      grpc_api: { enabled: true, address: '127.0.0.1', port: h.port, ...grpcOpts },
    }, { timeout: 20000 });
  }, { timeout: 40000 });
  after(async () => { if (h.server) await h.server.stop(); }, { timeout: 30000 });
  h.test = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, withLog(() => h.server, (t, srv) => fn(t, srv, h.port)));
  return h;
}

// call + status OK + decoded { error, result }.
async function ok(port, rpc, req, opts) {
  const r = await grpcCall(port, rpc, req, opts);
  assert.equal(r.status, 0, `${rpc}: status ${r.status} ${r.grpcMessage}`);
  assert.equal(r.headers['content-type'], 'application/grpc');
  return resp(r);
}

describe('GRPC API: every method', () => {
  const h = useGrpcServer();
  const open = [];
  const track = (c) => { open.push(c); return c; };
  afterEach(() => { for (const c of open.splice(0)) c.close(); });

  h.test('Publish: bytes delivered unchanged, offset and epoch in the result; tags; b64data', async (t, srv, port) => {
    const c = track(await rawClient(srv.wsUrl, { connect: true }));
    const ch = uniq('public:p');
    await c.subscribe(ch, { recover: false });
    const data = '{"text":"héllo \\/ 🚀","n":[1,2.5e3]}';
    let r = await ok(port, 'Publish', Buffer.concat([pbStr(1, ch), pbBytes(2, Buffer.from(data)), pbMapStr(5, 'k', 'v')]));
    assert.equal(r.error, undefined);
    assert.equal(one(r.result, 1), 1, 'PublishResult.offset = 1');
    assert.ok(one(r.result, 2).length > 0, 'PublishResult.epoch = 2');
    let p = await c.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, JSON.parse(data));
    assert.deepEqual(p.push.pub.tags, { k: 'v' });
    // b64data = 3 (string) instead of data
    r = await ok(port, 'Publish', Buffer.concat([pbStr(1, ch), pbStr(3, Buffer.from('{"b64":true}').toString('base64'))]));
    assert.equal(one(r.result, 1), 2);
    p = await c.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { b64: true });
    // skip_history = 4
    r = await ok(port, 'Publish', Buffer.concat([pbStr(1, ch), pbBytes(2, Buffer.from('1')), pbBool(4, true)]));
    assert.equal(r.error, undefined);
    assert.equal(one(r.result, 1), undefined, 'no offset when history is skipped');
  });

  h.test('Publish errors travel in the error field with status OK: 102, 107', async (t, srv, port) => {
    let r = await ok(port, 'Publish', Buffer.concat([pbStr(1, 'nope:x'), pbBytes(2, Buffer.from('{}'))]));
    assert.deepEqual(r.error, { code: 102, message: 'unknown channel' });
    assert.equal(r.result, undefined);
    r = await ok(port, 'Publish', pbBytes(2, Buffer.from('{}')));
    assert.deepEqual(r.error, { code: 107, message: 'bad request' });
    r = await ok(port, 'Publish', Buffer.concat([pbStr(1, uniq('public:x')), pbStr(3, '!!not base64!!')]));
    assert.equal(r.error.code, 107);
  });

  h.test('Broadcast: one PublishResponse per channel, errors per channel', async (t, srv, port) => {
    const c = track(await rawClient(srv.wsUrl, { connect: true }));
    const a = uniq('public:ba'); const b = uniq('public:bb');
    await c.subscribe(a);
    await c.subscribe(b);
    const r = await ok(port, 'Broadcast', Buffer.concat([pbStr(1, a), pbStr(1, 'nope:x'), pbStr(1, b), pbBytes(2, Buffer.from('{"all":1}'))]));
    const responses = r.result[1].map(pbDecode);
    assert.equal(responses.length, 3);
    assert.equal(one(sub(responses[0], 2), 1), 1, 'first: result.offset');
    assert.equal(one(sub(responses[1], 1), 1), 102, 'second: error.code');
    assert.equal(one(sub(responses[2], 2), 1), 1);
    for (const ch of [a, b]) assert.deepEqual((await c.push({ channel: ch, kind: 'pub' })).push.pub.data, { all: 1 });
    const empty = await ok(port, 'Broadcast', pbBytes(2, Buffer.from('{}')));
    assert.equal(empty.error.code, 107, 'no channels');
  });

  h.test('Subscribe (with data, override, recover_since) and Unsubscribe a user', async (t, srv, port) => {
    const user = uniq('gu');
    const c = track(await userClient(srv, user));
    const ch = uniq('public:srv');
    // SubscribeRequest { channel = 1; user = 2; data = 7; override = 10 { presence = 1 { value = 1 } } }
    let r = await ok(port, 'Subscribe', Buffer.concat([
      pbStr(1, ch), pbStr(2, user), pbBytes(7, Buffer.from('{"welcome":1}')),
      pbMsg(10, pbMsg(1, pbBool(1, true))),
    ]));
    assert.equal(r.error, undefined);
    assert.ok(r.result, 'SubscribeResult present');
    const p = await c.push({ channel: ch, kind: 'subscribe' });
    assert.deepEqual(p.push.subscribe.data, { welcome: 1 });
    r = await ok(port, 'Unsubscribe', Buffer.concat([pbStr(1, ch), pbStr(2, user)]));
    assert.equal(r.error, undefined);
    await c.push({ channel: ch, kind: 'unsubscribe' });
    r = await ok(port, 'Subscribe', pbStr(2, user));
    assert.equal(r.error.code, 107, 'no channel');
    r = await ok(port, 'Unsubscribe', Buffer.concat([pbStr(1, 'nope:x'), pbStr(2, user)]));
    assert.equal(r.error.code, 102);
    // PRO-only label_filter = 12 / all_users = 13 are accepted and ignored.
    r = await ok(port, 'Subscribe', Buffer.concat([pbStr(1, uniq('public:l')), pbStr(2, 'nobody'), pbMsg(12, pbStr(1, 'eq')), pbBool(13, true)]));
    assert.equal(r.error, undefined);
  });

  h.test('Disconnect with a custom code and reason; whitelist', async (t, srv, port) => {
    const user = uniq('gd');
    const c = track(await userClient(srv, user));
    const keep = track(await userClient(srv, user));
    // DisconnectRequest { user = 1; disconnect = 2 { code = 1; reason = 2 }; whitelist = 4 }
    const r = await ok(port, 'Disconnect', Buffer.concat([
      pbStr(1, user), pbMsg(2, pbUint(1, 4321), pbStr(2, 'bye')), pbStr(4, keep.clientId),
    ]));
    assert.equal(r.error, undefined);
    const closed = await c.waitClose();
    assert.equal(closed.code, 4321);
    assert.equal(closed.reason, 'bye');
    const pong = await keep.command({ rpc: { method: 'x' } }).catch(() => null);
    assert.ok(pong, 'the whitelisted connection is still open');
  });

  h.test('Refresh and RPC', async (t, srv, port) => {
    const user = uniq('gr');
    track(await userClient(srv, user));
    // RefreshRequest { user = 1; expire_at = 4; info = 5 }
    let r = await ok(port, 'Refresh', Buffer.concat([pbStr(1, user), pbUint(4, Math.floor(Date.now() / 1000) + 3600), pbBytes(5, Buffer.from('{"i":1}'))]));
    assert.equal(r.error, undefined);
    assert.ok(r.result);
    // RPCRequest { method = 1; params = 2 }: no RPC extension registered.
    r = await ok(port, 'RPC', Buffer.concat([pbStr(1, 'm'), pbBytes(2, Buffer.from('{}'))]));
    assert.deepEqual(r.error, { code: 104, message: 'not found' });
    r = await ok(port, 'RPC', Buffer.alloc(0));
    assert.equal(r.error.code, 107);
  });

  h.test('Presence and PresenceStats', async (t, srv, port) => {
    const user = uniq('gp');
    const c = track(await userClient(srv, user, { info: { name: 'P' } }));
    const ch = uniq('public:pr');
    await c.subscribe(ch);
    let r = await ok(port, 'Presence', pbStr(1, ch));
    const presence = pbMap(r.result, 1);
    assert.deepEqual(Object.keys(presence), [c.clientId]);
    const ci = pbDecode(presence[c.clientId]);
    assert.equal(one(ci, 1).toString(), user, 'ClientInfo.user = 1');
    assert.equal(one(ci, 2).toString(), c.clientId, 'ClientInfo.client = 2');
    assert.deepEqual(JSON.parse(one(ci, 3).toString()), { name: 'P' }, 'ClientInfo.conn_info = 3 (bytes)');
    r = await ok(port, 'PresenceStats', pbStr(1, ch));
    assert.equal(one(r.result, 1), 1, 'num_clients = 1');
    assert.equal(one(r.result, 2), 1, 'num_users = 2');
    r = await ok(port, 'Presence', pbStr(1, 'nohist:x'));
    assert.equal(r.error.code, 108);
    r = await ok(port, 'PresenceStats', pbStr(1, ''));
    assert.equal(r.error.code, 107);
  });

  h.test('History (limit, since, reverse), binary data round trip, HistoryRemove', async (t, srv, port) => {
    const ch = uniq('public:h');
    const bin = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x22, 0x5c]);
    for (const d of [Buffer.from('{"n":1}'), Buffer.from('"str"'), bin]) {
      const r = await ok(port, 'Publish', Buffer.concat([pbStr(1, ch), pbBytes(2, d), pbMapStr(5, 't', 'x')]));
      assert.equal(r.error, undefined, JSON.stringify(r.error));
    }
    // HistoryRequest { channel = 1; limit = 2; since = 3; reverse = 4 }
    let r = await ok(port, 'History', Buffer.concat([pbStr(1, ch), pbUint(2, 10)]));
    const pubs = (r.result[1] || []).map(pbDecode);
    assert.equal(pubs.length, 3);
    assert.equal(one(pubs[0], 2).toString(), '{"n":1}', 'Publication.data = 2, exact bytes');
    assert.equal(one(pubs[1], 2).toString(), '"str"');
    assert.deepEqual(one(pubs[2], 2), bin, 'non-JSON bytes come back unchanged');
    assert.deepEqual(pubs.map((p) => one(p, 4)), [1, 2, 3], 'Publication.offset = 4');
    assert.deepEqual(pbMap(pubs[0], 5).t.toString(), 'x', 'Publication.tags = 5');
    assert.equal(one(r.result, 3), 3, 'HistoryResult.offset = 3');
    const epoch = one(r.result, 2).toString();
    assert.ok(epoch.length > 0, 'HistoryResult.epoch = 2');
    r = await ok(port, 'History', Buffer.concat([pbStr(1, ch), pbUint(2, 10), pbMsg(3, pbUint(1, 1), pbStr(2, epoch))]));
    assert.deepEqual(r.result[1].map(pbDecode).map((p) => one(p, 4)), [2, 3], 'since offset 1');
    r = await ok(port, 'History', Buffer.concat([pbStr(1, ch), pbUint(2, 1), pbBool(4, true)]));
    assert.deepEqual(r.result[1].map(pbDecode).map((p) => one(p, 4)), [3], 'reverse, limit 1');
    r = await ok(port, 'History', Buffer.concat([pbStr(1, ch), pbUint(2, 10), pbMsg(3, pbUint(1, 1), pbStr(2, 'wrong-epoch'))]));
    assert.equal(r.error.code, 112, 'unrecoverable position');
    r = await ok(port, 'HistoryRemove', pbStr(1, ch));
    assert.equal(r.error, undefined);
    assert.ok(r.result);
    r = await ok(port, 'History', Buffer.concat([pbStr(1, ch), pbUint(2, 10)]));
    assert.equal(r.result[1], undefined, 'no publications after HistoryRemove');
    r = await ok(port, 'History', pbStr(1, 'nohist:x'));
    assert.equal(r.error.code, 108);
  });

  h.test('Channels (pattern) and Info', async (t, srv, port) => {
    const c = track(await rawClient(srv.wsUrl, { connect: true }));
    const ch = uniq('public:chan');
    await c.subscribe(ch);
    let r = await ok(port, 'Channels', pbStr(1, `${ch.slice(0, -3)}*`));
    const chans = pbMap(r.result, 1);
    assert.ok(ch in chans, JSON.stringify(Object.keys(chans)));
    assert.equal(one(pbDecode(chans[ch]), 1), 1, 'ChannelInfo.num_clients = 1');
    r = await ok(port, 'Channels', Buffer.alloc(0));
    assert.ok(ch in pbMap(r.result, 1));
    r = await ok(port, 'Info', Buffer.alloc(0));
    const nodes = r.result[1].map(pbDecode);
    assert.equal(nodes.length, 1);
    const n = nodes[0];
    assert.ok(one(n, 1).length > 0, 'uid = 1');
    assert.ok(one(n, 2).length > 0, 'name = 2');
    assert.match(one(n, 3).toString(), /^6\./, 'version = 3');
    assert.ok(one(n, 4) >= 1, 'num_clients = 4');
    assert.ok(one(n, 6) >= 1, 'num_channels = 6');
    assert.ok(one(n, 10) >= 1, 'num_subs = 10');
  });

  h.test('Batch: replies in order, each under its method name; errors per reply', async (t, srv, port) => {
    const c = track(await rawClient(srv.wsUrl, { connect: true }));
    const ch = uniq('public:batch');
    await c.subscribe(ch);
    // BatchRequest { commands = 1 (Command { publish = 4; info = 13; presence_stats = 10 }); parallel = 2 }
    const r = await grpcCall(port, 'Batch', Buffer.concat([
      pbMsg(1, pbMsg(4, pbStr(1, ch), pbBytes(2, Buffer.from('{"b":1}')))),
      pbMsg(1, pbMsg(4, pbStr(1, 'nope:x'), pbBytes(2, Buffer.from('{}')))),
      pbMsg(1, pbMsg(10, pbStr(1, ch))),
      pbMsg(1, pbMsg(13)),
      pbMsg(1),
      pbBool(2, true),
    ]));
    assert.equal(r.status, 0);
    const replies = pbDecode(r.message)[1].map(pbDecode);
    assert.equal(replies.length, 5);
    assert.equal(one(sub(replies[0], 4), 1), 1, 'Reply.publish = 4, offset 1');
    assert.equal(one(sub(replies[1], 2), 1), 102, 'Reply.error = 2');
    assert.equal(one(sub(replies[2], 10), 1), 1, 'Reply.presence_stats = 10');
    assert.ok(sub(replies[3], 13)[1].length >= 1, 'Reply.info = 13');
    assert.equal(one(sub(replies[4], 2), 1), 104, 'an empty command');
    assert.deepEqual((await c.push({ channel: ch, kind: 'pub' })).push.pub.data, { b: 1 });
  });

  h.test('methods not served answer UNIMPLEMENTED; an unknown service too', async (t, srv, port) => {
    for (const m of ['Connections', 'MapPublish', 'SharedPollPublish', 'NoSuchMethod']) {
      const r = await grpcCall(port, m, Buffer.alloc(0));
      assert.equal(r.status, 12, `${m}: ${r.status} ${r.grpcMessage}`);
      assert.equal(r.message, null);
    }
    const r = await grpcCall(port, 'Publish', Buffer.alloc(0), { path: '/other.Service/Publish' });
    assert.equal(r.status, 12);
    assert.match(r.grpcMessage, /unknown service other\.Service/);
    await assertHealthy(srv);
  });

  h.test('per-call metadata x-centrifugo-error-mode: transport', async (t, srv, port) => {
    const r = await grpcCall(port, 'Publish', Buffer.concat([pbStr(1, 'nope:x'), pbBytes(2, Buffer.from('{}'))]),
      { metadata: { 'x-centrifugo-error-mode': 'transport' } });
    assert.equal(r.status, 5, 'NOT_FOUND');
    assert.equal(r.grpcMessage, 'unknown channel');
  });

  h.test('gzip: compressed requests; bad gzip, compressed flag without encoding, unknown encoding', async (t, srv, port) => {
    const c = track(await rawClient(srv.wsUrl, { connect: true }));
    const ch = uniq('public:gz');
    await c.subscribe(ch);
    const big = JSON.stringify({ pad: 'x'.repeat(100000) });
    let r = await grpcCall(port, 'Publish', Buffer.concat([pbStr(1, ch), pbBytes(2, Buffer.from(big))]), { gzip: true });
    assert.equal(r.status, 0, r.grpcMessage);
    assert.equal(resp(r).error, undefined);
    const p = await c.push({ channel: ch, kind: 'pub' });
    assert.equal(p.push.pub.data.pad.length, 100000);
    // Not gzip at all, and a truncated gzip stream.
    const req = Buffer.concat([pbStr(1, ch), pbBytes(2, Buffer.from('{}'))]);
    const gz = zlib.gzipSync(req);
    for (const body of [frame(Buffer.from('definitely not gzip'), true), frame(gz.subarray(0, gz.length - 6), true)]) {
      r = await grpcCall(port, 'Publish', null, { body, metadata: { 'grpc-encoding': 'gzip' } });
      assert.equal(r.status, 13, `INTERNAL: ${r.grpcMessage}`);
    }
    r = await grpcCall(port, 'Publish', null, { body: frame(gz, true) });
    assert.equal(r.status, 13, 'compressed flag with identity encoding');
    r = await grpcCall(port, 'Publish', req, { metadata: { 'grpc-encoding': 'snappy' } });
    assert.equal(r.status, 12, 'unknown encoding');
    await assertHealthy(srv);
  });

  h.test('bad input: bad protobuf, two messages, no message, bad prefix flag, wrong content-type, GET', async (t, srv, port) => {
    let r = await grpcCall(port, 'Publish', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2]));
    assert.equal(r.status, 13, `truncated field: ${r.grpcMessage}`);
    r = await grpcCall(port, 'Publish', Buffer.from([0x0f, 0x00]));
    assert.equal(r.status, 13, 'bad wire type');
    const one1 = frame(pbStr(1, 'public:x'));
    r = await grpcCall(port, 'Publish', null, { body: Buffer.concat([one1, one1]) });
    assert.equal(r.status, 13, 'two messages in a unary call');
    r = await grpcCall(port, 'Publish', null, { body: Buffer.alloc(0) });
    assert.equal(r.status, 13, 'no message');
    r = await grpcCall(port, 'Publish', null, { body: Buffer.from([0, 0, 0, 0]) });
    assert.equal(r.status, 13, 'a short prefix');
    const bad = frame(Buffer.alloc(0)); bad[0] = 7;
    r = await grpcCall(port, 'Info', null, { body: bad });
    assert.equal(r.status, 13, 'prefix flag 7');
    r = await grpcCall(port, 'Info', Buffer.alloc(0), { contentType: 'application/json' });
    assert.equal(r.httpStatus, 415);
    r = await grpcCall(port, 'Info', null, { method: 'GET' });
    assert.ok(Number.isNaN(r.status) && r.rstCode !== 0, `GET: reset (${r.rstCode})`);
    await assertHealthy(srv);
    r = await grpcCall(port, 'Info', Buffer.alloc(0));
    assert.equal(r.status, 0, 'still serving');
  });

  h.test('bad input: garbage bytes and an HTTP/1.1 client get GOAWAY and a closed connection', async (t, srv, port) => {
    for (const bytes of [Buffer.from([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]),
      Buffer.from('POST /centrifugal.centrifugo.api.CentrifugoApi/Info HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n')]) {
      const x = await rawExchange(port, bytes);
      assert.equal(x.closed, true, 'the server closes the connection');
      const types = h2Frames(x.data).map((f) => f.type);
      assert.ok(types.includes(7), `a GOAWAY frame among ${JSON.stringify(types)}`);
    }
    // A valid preface followed by a garbage frame: GOAWAY too.
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    const junk = Buffer.from([0, 0, 4, 0xff, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 8, 0, 0, 0, 0, 0, 1]); // unknown type, then DATA on idle stream 1
    const x = await rawExchange(port, Buffer.concat([preface, settings, junk]));
    assert.equal(x.closed, true);
    assert.ok(h2Frames(x.data).some((f) => f.type === 7), 'GOAWAY');
    await assertHealthy(srv);
  });

  h.test('clients that go away before the answer: nothing leaks or crashes', async (t, srv, port) => {
    const http2 = require('node:http2');
    for (let i = 0; i < 20; i++) {
      const s = http2.connect(`http://127.0.0.1:${port}`);
      s.on('error', () => {});
      const req = s.request({ ':method': 'POST', ':path': '/centrifugal.centrifugo.api.CentrifugoApi/History', 'content-type': 'application/grpc' });
      req.on('error', () => {});
      req.end(frame(Buffer.concat([pbStr(1, 'public:gone'), pbUint(2, 10)])));
      if (i % 2) setImmediate(() => s.destroy()); else s.destroy();
    }
    await assertHealthy(srv);
    const r = await grpcCall(port, 'Info', Buffer.alloc(0));
    assert.equal(r.status, 0);
  });
});

describe('GRPC API: grpc_api.key, error_mode transport, max_receive_message_size', () => {
  const h = useGrpcServer({ key: 'grpc-secret', error_mode: 'transport', max_receive_message_size: 2048 });

  h.test('a call needs metadata authorization: apikey <key>', async (t, srv, port) => {
    const req = Buffer.concat([pbStr(1, uniq('public:k')), pbBytes(2, Buffer.from('{}'))]);
    for (const md of [{}, { authorization: 'apikey wrong' }, { authorization: 'grpc-secret' }, { authorization: 'Bearer grpc-secret' }]) {
      const r = await grpcCall(port, 'Publish', req, { metadata: md });
      assert.equal(r.status, 16, `UNAUTHENTICATED with ${JSON.stringify(md)}`);
      assert.equal(r.grpcMessage, 'unauthenticated');
    }
    const r = await grpcCall(port, 'Publish', req, { metadata: { authorization: 'apikey grpc-secret' } });
    assert.equal(r.status, 0, r.grpcMessage);
    assert.equal(resp(r).error, undefined);
  });

  h.test('transport error mode: GRPC status, message and the Error as status detail', async (t, srv, port) => {
    const auth = { authorization: 'apikey grpc-secret' };
    const cases = [
      [Buffer.concat([pbStr(1, 'nope:x'), pbBytes(2, Buffer.from('{}'))]), 'Publish', 5, 102, 'unknown channel'],
      [pbBytes(2, Buffer.from('{}')), 'Publish', 3, 107, 'bad request'],
      [pbStr(1, 'nohist:x'), 'History', 3, 108, 'not available'],
      [Buffer.concat([pbStr(1, 'm')]), 'RPC', 5, 104, 'not found'],
    ];
    for (const [req, rpc, status, code, message] of cases) {
      const r = await grpcCall(port, rpc, req, { metadata: auth });
      assert.equal(r.status, status, `${rpc} → ${code}`);
      assert.equal(r.grpcMessage, message);
      assert.equal(r.message, null, 'no response message');
      // google.rpc.Status { code = 1; message = 2; details = 3: Any { type_url = 1; value = 2 } }
      const st = pbDecode(Buffer.from(r.details, 'base64'));
      assert.equal(one(st, 1), status);
      const any = sub(st, 3);
      assert.equal(one(any, 1).toString(), 'type.googleapis.com/centrifugal.centrifugo.api.Error');
      const e = pbDecode(one(any, 2));
      assert.equal(one(e, 1), code);
      assert.equal(one(e, 2).toString(), message);
    }
    // Batch keeps its per-reply errors.
    const r = await grpcCall(port, 'Batch', pbMsg(1, pbMsg(4, pbStr(1, 'nope:x'))), { metadata: auth });
    assert.equal(r.status, 0);
    assert.equal(one(sub(pbDecode(r.message)[1].map(pbDecode)[0], 2), 1), 102);
  });

  h.test('a message over max_receive_message_size: RESOURCE_EXHAUSTED (also after gunzip)', async (t, srv, port) => {
    const auth = { authorization: 'apikey grpc-secret' };
    const ch = uniq('public:big');
    let r = await grpcCall(port, 'Publish', Buffer.concat([pbStr(1, ch), pbBytes(2, Buffer.from(JSON.stringify('y'.repeat(1500))))]), { metadata: auth });
    assert.equal(r.status, 0, 'under the limit');
    r = await grpcCall(port, 'Publish', Buffer.concat([pbStr(1, ch), pbBytes(2, Buffer.from(JSON.stringify('y'.repeat(300000))))]), { metadata: auth });
    assert.equal(r.status, 8, `over the limit: ${r.grpcMessage}`);
    // Small on the wire, large once decompressed.
    r = await grpcCall(port, 'Publish', Buffer.concat([pbStr(1, ch), pbBytes(2, Buffer.from(JSON.stringify('z'.repeat(1000000))))]), { metadata: auth, gzip: true });
    assert.equal(r.status, 8, `gzip bomb: ${r.grpcMessage}`);
    // Only the prefix claims a huge message.
    const body = Buffer.from([0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
    r = await grpcCall(port, 'Publish', null, { body, metadata: auth });
    assert.equal(r.status, 8);
    await assertHealthy(srv);
  });
});

describe('GRPC API configuration', () => {
  test('grpc_api.tls is refused with a clear error; a disabled TLS object is accepted', { timeout: 30000 }, async () => {
    const port = await freePort();
    await assert.rejects(startServer({ grpc_api: { enabled: true, port, tls: { enabled: true, cert_pem_file: '/x' } } }, { timeout: 5000 }),
      (e) => /grpc_api\.tls.*not supported/.test(String(e.message)));
    const srv = await startServer({ grpc_api: { enabled: true, address: '127.0.0.1', port, tls: { enabled: false } } }, { timeout: 15000 });
    try {
      const r = await grpcCall(port, 'Info', Buffer.alloc(0));
      assert.equal(r.status, 0);
    } finally {
      await srv.stop();
    }
  });

  test('a graceful stop sends GOAWAY to an open GRPC connection', { timeout: 30000 }, async () => {
    const http2 = require('node:http2');
    const port = await freePort();
    const srv = await startServer({ workers: 1, grpc_api: { enabled: true, address: '127.0.0.1', port } }, { timeout: 15000 });
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    const goaway = new Promise((resolve) => session.on('goaway', (code) => resolve(code)));
    try {
      const req = session.request({ ':method': 'POST', ':path': '/centrifugal.centrifugo.api.CentrifugoApi/Info', 'content-type': 'application/grpc' });
      req.on('error', () => {});
      let status;
      req.on('trailers', (tr) => { status = tr['grpc-status']; });
      req.resume();
      await new Promise((resolve) => { req.on('close', resolve); req.end(frame(Buffer.alloc(0))); });
      assert.equal(status, '0');
    } finally {
      await srv.stop();
    }
    assert.equal(await Promise.race([goaway, new Promise((r) => setTimeout(() => r('none'), 5000))]), 0, 'GOAWAY NO_ERROR');
    session.destroy();
  });

  test('without grpc_api.enabled nothing listens on the GRPC port', { timeout: 30000 }, async () => {
    const port = await freePort();
    const srv = await startServer({ grpc_api: { port } }, { timeout: 15000 });
    try {
      const x = await rawExchange(port, Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 5000);
      assert.equal(x.closed, true);
      assert.equal(x.data.length, 0, 'connection refused');
    } finally {
      await srv.stop();
    }
  });
});
