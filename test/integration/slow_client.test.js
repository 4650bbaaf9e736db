'use strict';
// Slow consumer: a client that stops reading while publications pile up is
// disconnected once its outgoing queue exceeds client.queue_max_size; other
// subscribers of the same channel keep receiving.

const assert = require('node:assert/strict');
const { describe } = require('node:test');
const { useServer, assertHealthy } = require('./lib/harness');
const { rawClient } = require('./lib/wsclient');
const proc = require('./lib/proc');
const { pollUntil, sleep } = require('./lib/util');

const MSG_BYTES = 10 * 1024;
const MAX_MESSAGES = 3000; // ~30 MB: far more than kernel buffers + the 64 KB queue
const CONCURRENCY = 8;
// Publications the fast client may be behind: 40 KB, under the 64 KB queue
// whatever the kernel buffers hold, so only the client that stopped reading
// can overflow its queue, however busy the machine.
const WINDOW = 4;

describe('slow client', () => {
  const h = useServer({ workers: 1, client: { queue_max_size: 65536 } });

  h.test('a client that stops reading is disconnected, others keep receiving', async (t, srv) => {
    const slow = await rawClient(srv.wsUrl, { connect: true });
    const fast = await rawClient(srv.wsUrl, { connect: true });
    try {
      await slow.subscribe('chat:slow');
      await fast.subscribe('chat:slow');
      let fastCount = 0;
      let fastPubs = 0;
      fast.ws.on('message', (d) => {
        fastCount++;
        for (const line of d.toString().split('\n')) if (line.includes('"pub"')) fastPubs++;
      });
      const slowPort = slow.localPort;
      assert.ok(proc.serverSideSocket(srv.port, slowPort), 'slow connection listed by the kernel');
      slow.socket.pause(); // stop reading: data piles up in the kernel, then in the server queue

      const dropped = () => {
        const s = proc.serverSideSocket(srv.port, slowPort);
        return s === null || s.state !== '01';
      };
      const filler = 'z'.repeat(MSG_BYTES);
      let sent = 0;
      let failed = null;
      const workers = Array.from({ length: CONCURRENCY }, async () => {
        while (sent < MAX_MESSAGES && !failed && !dropped()) {
          if (sent - fastPubs >= WINDOW) { await sleep(1); continue; }
          const n = sent++;
          const r = await srv.api('publish', { channel: 'chat:slow', data: { n, filler } });
          if (r.status !== 200 || !r.json || !r.json.result) failed = `publish ${n}: HTTP ${r.status} ${r.text}`;
        }
      });
      await Promise.all(workers);
      assert.equal(failed, null, failed);
      t.diagnostic(`published ${sent} messages of ${MSG_BYTES} bytes before the slow client was dropped`);

      // The server may take a few seconds (close handshake wait) to drop TCP.
      await pollUntil(dropped, { timeout: 20000, interval: 200, what: 'server to drop the slow client' });

      slow.socket.resume();
      const cl = await slow.waitClose(20000);
      t.diagnostic(`slow client close: ${JSON.stringify(cl)}`);
      assert.ok([3008, 1006].includes(cl.code), `slow client closed with 3008 (or abruptly): ${JSON.stringify(cl)}`);

      // The well-behaved subscriber is still connected and still receives.
      await srv.publish('chat:slow', { marker: true });
      const m = await fast.next((x) => x.push && x.push.pub && x.push.pub.data.marker === true, { timeout: 20000, what: 'marker publication' });
      assert.ok(m);
      assert.equal(fast.closeInfo, null, 'fast client stayed connected');
      const got = fast.pending.filter((x) => x.push && x.push.pub && typeof x.push.pub.data.n === 'number').map((x) => x.push.pub.data.n);
      t.diagnostic(`fast client received ${got.length} of ${sent} publications (${fastCount} frames)`);
      assert.equal(got.length, sent, 'fast client received every publication');
      assert.deepEqual(new Set(got).size, sent, 'no duplicates');
      await assertHealthy(srv);
    } finally {
      slow.close();
      fast.close();
    }
  }, { timeout: 120000 });
});
