'use strict';
// The two wire formats (protocol.md §1.2, §2, §3.1, §9 items 1, 2, 5, 12):
// Protobuf selected by the centrifuge-protobuf subprotocol or ?format=protobuf,
// binary frames with several varint-delimited commands, payloads passed
// through byte-exact between JSON and Protobuf clients on different workers,
// binary payloads closing JSON subscribers with 3506, pings and pongs in
// both formats, bad Protobuf input, and the SDK's protobuf build against its
// JSON build.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer, assertHealthy } = require('./lib/harness');
const { FORMATS, rawClientF, sdkClientF, enc, dec, infoOf } = require('./lib/formats');
const { PbClient } = require('./lib/pbclient');
const { makeToken } = require('./lib/token');
const { onTwoWorkers, ownerOf } = require('./lib/spread');
const { once, pollUntil } = require('./lib/util');

const CONFIG = {
  workers: 2,
  channel: {
    namespaces: [
      {
        name: 'fmt', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
        allow_publish_for_client: true, allow_publish_for_anonymous: true,
        history_size: 10, history_ttl: '60s', allow_history_for_client: true, allow_history_for_anonymous: true,
      },
    ],
  },
};

let seq = 0;
const uniq = (fmt) => `fmt:f${++seq}-${fmt}`;

describe('wire formats', () => {
  const h = useServer(CONFIG);
  const open = [];
  const track = (c) => { open.push(c); return c; };
  afterEach(() => {
    for (const c of open.splice(0)) {
      try { if (c.disconnect) c.disconnect(); else c.close(); } catch { /* ignore */ }
    }
  });

  h.test('Protobuf by subprotocol: echoed, binary frames; JSON: text frames, no subprotocol', async (t, srv) => {
    const pb = track(await rawClientF('protobuf', srv.wsUrl, { connect: true }));
    assert.equal(pb.ws.protocol, 'centrifuge-protobuf');
    assert.deepEqual([...new Set(pb.frameTypes)], ['binary']);
    assert.equal(typeof pb.connectReply.connect.client, 'string');
    assert.equal(pb.connectReply.connect.pong, true);
    assert.ok(pb.connectReply.connect.ping > 0);
    const js = track(await rawClientF('json', srv.wsUrl, { connect: true }));
    assert.equal(js.ws.protocol, '');
    assert.deepEqual([...new Set(js.frameTypes)], ['text']);
  });

  h.test('Protobuf by ?format=protobuf without subprotocol', async (t, srv) => {
    const c = track(new PbClient(`${srv.wsUrl}?format=protobuf`, { protocols: [] }));
    await c.open();
    const r = await c.connect({});
    assert.equal(typeof (r.connect && r.connect.client), 'string', c.describe());
    assert.deepEqual([...new Set(c.frameTypes)], ['binary']);
  });

  h.test('Protobuf: connect and subscribes in one frame are handled in order', async (t, srv) => {
    const c = track(new PbClient(srv.wsUrl));
    await c.open();
    const a = uniq('protobuf');
    const b = uniq('protobuf');
    c.send([{ id: 7, connect: { name: 'js' } }, { id: 8, subscribe: { channel: a } }, { id: 9, subscribe: { channel: b } },
      { id: 10, publish: { channel: a, data: { n: 1 } } }]);
    const r7 = await c.reply(7);
    assert.ok(r7.connect, JSON.stringify(r7));
    assert.ok((await c.reply(8)).subscribe);
    assert.ok((await c.reply(9)).subscribe);
    assert.deepEqual((await c.reply(10)).publish, {});
    const p = await c.push({ channel: a, kind: 'pub' });
    assert.deepEqual(p.push.pub.data, { n: 1 });
    assert.equal(p.push.pub.offset, 1);
  });

  h.test('payloads pass through byte-exact between formats and workers', async (t, srv) => {
    const jc = track(await rawClientF('json', srv.wsUrl, { connect: true }));
    const pidJ = await ownerOf(srv, jc.localPort);
    let pc = null;
    let pidP = null;
    for (let i = 0; i < 16 && !pc; i++) {
      const c = track(await rawClientF('protobuf', srv.wsUrl, { connect: true, keepBytes: true }));
      const pid = await ownerOf(srv, c.localPort);
      if (pid !== pidJ) { pc = c; pidP = pid; }
    }
    assert.ok(pc, 'a Protobuf connection on the other worker');
    t.diagnostic(`JSON client on ${pidJ}, Protobuf client on ${pidP}`);
    const clients = [jc, pc];
    const ch = uniq('x');
    for (const c of clients) assert.ok((await c.subscribe(ch)).subscribe);
    const pubFrame = (c) => {
      const f = c.frames.find((x) => x.includes('"pub"'));
      c.frames.length = 0;
      return f;
    };
    // a JSON client publishes raw JSON text
    const text = '{"a" : 1.50, "s":"caf\\u00e9 \u00e9", "n":[1,2,{}],"big":12345678901234567890}';
    jc.frames.length = 0;
    jc.send(`{"id":50,"publish":{"channel":"${ch}","data":${text}}}`);
    assert.deepEqual((await jc.reply(50)).publish, {});
    let m = await pc.push({ channel: ch, kind: 'pub' });
    assert.equal(Buffer.from(m.push.pub.data).toString('utf8'), text, 'Protobuf subscriber gets the JSON text bytes');
    await jc.push({ channel: ch, kind: 'pub' });
    let frame = pubFrame(jc);
    assert.ok(frame.includes(`"data":${text}`), `JSON subscriber gets the text verbatim: ${frame}`);
    // a Protobuf client publishes bytes that are JSON text with odd spacing
    const bytes = Buffer.from('  [ "from pb" ,\t1e3 ]  ');
    const r = await pc.command({ publish: { channel: ch, data: bytes } });
    assert.deepEqual(r.publish, {}, JSON.stringify(r));
    m = await pc.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(Buffer.from(m.push.pub.data), bytes);
    await jc.push({ channel: ch, kind: 'pub' });
    frame = pubFrame(jc);
    assert.ok(frame.includes(`"data":${bytes.toString()}`), `JSON subscriber gets the bytes as JSON text: ${JSON.stringify(frame)}`);
  });

  h.test('binary payload from a Protobuf client: Protobuf subscribers get it, JSON subscribers are closed with 3506', async (t, srv) => {
    const ch = uniq('bin');
    const pub = track(await rawClientF('protobuf', srv.wsUrl, { connect: true, keepBytes: true }));
    const pbSub = track(await rawClientF('protobuf', srv.wsUrl, { connect: true, keepBytes: true }));
    const jsSub = track(await rawClientF('json', srv.wsUrl, { connect: true }));
    for (const c of [pbSub, jsSub]) assert.ok((await c.subscribe(ch)).subscribe);
    const bin = Buffer.from([0xff, 0x00, 0x0a, 0x80, 0x7b]);
    const r = await pub.command({ publish: { channel: ch, data: bin } });
    assert.deepEqual(r.publish, {}, JSON.stringify(r));
    const m = await pbSub.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(Buffer.from(m.push.pub.data), bin);
    const cl = await jsSub.waitClose();
    assert.deepEqual(cl, { code: 3506, reason: 'inappropriate protocol' }, jsSub.describe());
    // history over JSON would carry the same bytes: also refused, not crashed
    await assertHealthy(srv);
  });

  h.test('newlines inside a Protobuf client payload do not break JSON line framing', async (t, srv) => {
    const ch = uniq('nl');
    const pub = track(await rawClientF('protobuf', srv.wsUrl, { connect: true }));
    const js = track(await rawClientF('json', srv.wsUrl, { connect: true }));
    assert.ok((await js.subscribe(ch)).subscribe);
    const r = await pub.command({ publish: { channel: ch, data: Buffer.from('{"a":\n1,\r\n"b":[\n]}\n') } });
    assert.deepEqual(r.publish, {}, JSON.stringify(r));
    await pub.command({ publish: { channel: ch, data: { after: 1 } } });
    const m = await js.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(m.push.pub.data, { a: 1, b: [] }, `frames: ${js.describe()}`);
    const m2 = await js.push({ channel: ch, kind: 'pub' });
    assert.deepEqual(m2.push.pub.data, { after: 1 });
    assert.deepEqual(js.pending.filter((x) => x.__unparsable), [], 'every line parses');
  });

  h.test('bad Protobuf input: 3501 and the server stays healthy', async (t, srv) => {
    const cases = {
      'truncated varint': Buffer.from([0x80]),
      'length past the end': Buffer.from([0x05, 0x08, 0x01]),
      'wrong wire type for id': Buffer.from([0x03, 0x0a, 0x01, 0x00]),
      'connect field is not a message': Buffer.from([0x04, 0x08, 0x01, 0x20, 0x05]),
      'command before connect': Buffer.from([0x06, 0x08, 0x01, 0x2a, 0x02, 0x0a, 0x00]),
    };
    for (const [what, bytes] of Object.entries(cases)) {
      const c = track(new PbClient(srv.wsUrl));
      await c.open();
      c.send(bytes);
      const cl = await c.waitClose();
      assert.equal(cl.code, 3501, `${what}: ${JSON.stringify(cl)}`);
    }
    await assertHealthy(srv);
  });

  for (const fmt of FORMATS) {
    h.test(`[${fmt}] SDK of one format and SDK of the other exchange publications across workers`, async (t, srv) => {
      const other = fmt === 'json' ? 'protobuf' : 'json';
      const ch = uniq(fmt);
      const mk = (f, i) => track(sdkClientF(f, srv.wsUrl, { token: makeToken({ sub: `${f}${i}`, info: { f } }) }));
      const { a, b, pidA, pidB, spare } = await onTwoWorkers(srv, async (i) => {
        const c = mk(i === 0 ? fmt : other, i);
        const ok = once(c, 'connected', { timeout: 8000 });
        c.connect();
        await ok;
        return c;
      }, (c) => c.holder.sockets[c.holder.sockets.length - 1]._socket.localPort);
      for (const s of spare) s.disconnect();
      t.diagnostic(`${a.format} on ${pidA}, ${b.format} on ${pidB}`);
      const subs = [];
      for (const c of [a, b]) {
        const s = c.newSubscription(ch);
        s.got = [];
        s.on('publication', (ctx) => s.got.push({ data: dec(ctx.data), info: infoOf(ctx.info), offset: ctx.offset }));
        const ok = once(s, 'subscribed', { timeout: 8000 });
        s.subscribe();
        await ok;
        subs.push(s);
      }
      await subs[0].publish(enc(a.format, { from: a.format }));
      await subs[1].publish(enc(b.format, { from: b.format }));
      for (const s of subs) {
        await pollUntil(() => s.got.length === 2, { timeout: 8000, what: `two publications on ${s.channel}` });
        assert.deepEqual(s.got.map((x) => x.data), [{ from: a.format }, { from: b.format }]);
        assert.deepEqual(s.got.map((x) => x.info.connInfo), [{ f: a.format }, { f: b.format }]);
        assert.deepEqual(s.got.map((x) => x.offset), [1, 2]);
      }
      const hist = await subs[1].history({ limit: 10 });
      assert.deepEqual(hist.publications.map((p) => dec(p.data)), [{ from: a.format }, { from: b.format }]);
    });
  }
});

describe('pings and pongs', () => {
  const h = useServer({ workers: 2, client: { ping_interval: '2s', pong_timeout: '1s' } });
  for (const fmt of FORMATS) {
    h.test(`[${fmt}] ping every interval; answered pongs keep the connection, a missing pong closes it with 3012`, async (t, srv) => {
      const good = await rawClientF(fmt, srv.wsUrl, { connect: true });
      const bad = await rawClientF(fmt, srv.wsUrl, { connect: true, autoPong: false });
      try {
        assert.equal(good.connectReply.connect.ping, 2);
        assert.equal(good.connectReply.connect.pong, true);
        for (let i = 0; i < 3; i++) await good.ping({ timeout: 10000 });
        const cl = await bad.waitClose(15000);
        assert.deepEqual(cl, { code: 3012, reason: 'no pong' }, bad.describe());
        assert.ok(bad.pings >= 1);
        const r = await good.command({ presence_stats: { channel: 'x' } });
        assert.ok(r, 'still answering');
        assert.equal(good.closeInfo, null);
      } finally {
        good.close();
        bad.close();
      }
    }, { timeout: 40000 });

    h.test(`[${fmt}] SDK keeps a connection through several pings`, async (t, srv) => {
      const c = sdkClientF(fmt, srv.wsUrl);
      try {
        const ok = once(c, 'connected', { timeout: 8000 });
        c.connect();
        await ok;
        const seen = c.events.length;
        const sock = c.holder.sockets[c.holder.sockets.length - 1];
        let frames = 0;
        sock.on('message', () => { frames++; });
        await pollUntil(() => frames >= 3, { timeout: 15000, what: '3 server pings' });
        assert.deepEqual(c.events.slice(seen), [], `no reconnect: ${JSON.stringify(c.events)}`);
      } finally {
        c.disconnect();
      }
    }, { timeout: 40000 });
  }
});
