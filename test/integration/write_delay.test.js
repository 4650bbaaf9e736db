'use strict';
// client.write_delay (issue 6, BURST): a connection written to less than
// write_delay ago has its further pushes held until write_delay after that
// write, then everything queued leaves as one WebSocket frame (JSON lines,
// or length-delimited Protobuf messages); a connection that has been quiet
// for write_delay is written at once; a reply to a command is never held and
// takes the pushes queued before it along, in order.  Frames are looked at
// on raw clients; nothing asserts a time: with write_delay = 30 s a held
// message cannot arrive within the test's waits, so "arrived" means "was not
// held" and "arrived in the reply's frame" means "was held until the reply".
// Without the option nothing changes: the rest of the suite runs with it unset.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { describe } = require('node:test');
const { useServer, assertHealthy } = require('./lib/harness');
const { RawClient } = require('./lib/wsclient');
const { PbClient, decodeReplies } = require('./lib/pbclient');
const { toLibconfig, merge } = require('./lib/config');

const FORMATS = ['json', 'protobuf'];

async function client(fmt, srv) {
  const c = fmt === 'json' ? new RawClient(srv.wsUrl) : new PbClient(srv.wsUrl);
  await c.open();
  const rep = await c.connect({});
  assert.ok(rep.connect, `connect reply: ${JSON.stringify(rep)}`);
  return c;
}

// The messages of every frame received so far, frame by frame.
function framesOf(c) {
  if (c instanceof PbClient) return c.rawFrames.map((b) => decodeReplies(b));
  return c.frames.map((t) => t.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)));
}

const pubN = (m) => (m.push && m.push.pub && m.push.pub.data ? m.push.pub.data.n : undefined);

describe('client.write_delay = 30s', () => {
  const h = useServer({ workers: 1, client: { write_delay: '30s' } });

  for (const fmt of FORMATS) {
    h.test(`[${fmt}] a publication after a quiet period goes at once; the next ones wait and leave with the next reply, in order, in one frame`, async (t, srv) => {
      const ch = `wd30${fmt}`;
      const c = await client(fmt, srv);
      try {
        const sub = await c.subscribe(ch);
        assert.ok(sub.subscribe, JSON.stringify(sub));
        // Replies do not count as writes: the connection is quiet.  Held,
        // this publication could not arrive before 30 s.
        await srv.publish(ch, { n: 0 });
        const p0 = await c.push({ channel: ch, kind: 'pub' }, { timeout: 10000 });
        assert.equal(pubN(p0), 0);
        const f0 = framesOf(c).find((f) => f.some((m) => pubN(m) === 0));
        assert.equal(f0.length, 1, `the first publication is alone in its frame: ${JSON.stringify(f0)}`);

        // Written just now: these wait (30 s) ...
        const N = 10;
        for (let n = 1; n <= N; n++) await srv.publish(ch, { n });
        // ... until a reply, which carries them in front of it.  The API
        // answer of each publish is sent after the worker queued it, so all
        // of them are queued before the command arrives.
        const id = c.nextId++;
        c.send({ id, subscribe: { channel: `${ch}other` } });
        const rep = await c.reply(id, { timeout: 10000 });
        assert.ok(rep.subscribe, JSON.stringify(rep));
        const frames = framesOf(c);
        const fr = frames.find((f) => f.some((m) => m.id === id));
        assert.deepEqual(fr.map((m) => (m.id === id ? 'reply' : pubN(m))),
          [...Array.from({ length: N }, (_, i) => i + 1), 'reply'],
          `the held publications, then the reply, in one frame; frames: ${JSON.stringify(frames)}`);
        for (let n = 1; n <= N; n++) {
          const p = await c.push({ channel: ch, kind: 'pub' }, { timeout: 1000 });
          assert.equal(pubN(p), n, 'publications in order');
        }
        assert.equal(frames.filter((f) => f.some((m) => pubN(m) !== undefined)).length, 2,
          `two frames carried publications: ${JSON.stringify(frames)}`);
      } finally {
        c.close();
      }
      await assertHealthy(srv);
    });
  }

  h.test('a client that does not read is still cut off at queue_max_size while its pushes are held', async (t, srv) => {
    // queue_max_size is 1 MB in the test configuration; held bytes count.
    const ch = 'wd30slow';
    const c = await client('json', srv);
    try {
      await c.subscribe(ch);
      await srv.publish(ch, { n: 0 });
      await c.push({ channel: ch, kind: 'pub' }, { timeout: 10000 });
      const filler = 'x'.repeat(64 * 1024);
      let n = 1;
      // 20 x 64 KB > 1 MB, all held (30 s): the 17th or so closes it.
      while (n <= 20 && !c.closeInfo) await srv.publish(ch, { n: n++, filler });
      const cl = await c.waitClose(10000);
      assert.equal(cl.code, 3008, JSON.stringify(cl));
    } finally {
      c.close();
    }
    await assertHealthy(srv);
  });
});

describe('client.write_delay = 1s', () => {
  const h = useServer({ workers: 1, client: { write_delay: '1s' } });

  for (const fmt of FORMATS) {
    h.test(`[${fmt}] a burst arrives complete and in order, several publications per frame`, async (t, srv) => {
      const ch = `wd1${fmt}`;
      const c = await client(fmt, srv);
      try {
        await c.subscribe(ch);
        const N = 40;
        // The first goes at once; the others come within 1 s of it and wait
        // for the timer (nothing else releases them: no command is sent).
        for (let n = 0; n < N; n++) await srv.publish(ch, { n });
        for (let n = 0; n < N; n++) {
          const p = await c.push({ channel: ch, kind: 'pub' }, { timeout: 15000 });
          assert.equal(pubN(p), n, 'publications complete and in order');
        }
        const frames = framesOf(c).filter((f) => f.some((m) => pubN(m) !== undefined));
        t.diagnostic(`${N} publications in ${frames.length} frames: ${frames.map((f) => f.length).join(' ')}`);
        assert.ok(frames.length < N, `fewer frames than publications: ${frames.map((f) => f.length).join(' ')}`);
        assert.ok(frames.some((f) => f.length > 1), 'one frame carries several publications');
      } finally {
        c.close();
      }
      await assertHealthy(srv);
    });
  }
});

describe('client.write_delay applies on reload', () => {
  const h = useServer({ workers: 1, client: { write_delay: '30s' } });

  h.test('a reload to 0 sends what is held at once', async (t, srv) => {
    const ch = 'wdreload';
    const c = await client('json', srv);
    try {
      await c.subscribe(ch);
      await srv.publish(ch, { n: 0 });
      await c.push({ channel: ch, kind: 'pub' }, { timeout: 10000 });
      await srv.publish(ch, { n: 1 }); // held for 30 s
      srv.config = merge(srv.config, { client: { write_delay: '0' } });
      fs.writeFileSync(srv.configPath, toLibconfig(srv.config));
      process.kill(srv.pid, 'SIGHUP');
      // Only the reload can release it within this wait.
      const p = await c.push({ channel: ch, kind: 'pub' }, { timeout: 15000 });
      assert.equal(pubN(p), 1);
    } finally {
      c.close();
    }
    await assertHealthy(srv);
  });
});
