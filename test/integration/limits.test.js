'use strict';
// Node-wide connection limits (issue 5, config.md client.connection_limit
// and client.connection_rate_limit): over either one a WebSocket upgrade is
// answered HTTP 503 before the upgrade, as Centrifugo's HTTP middleware does;
// open connections are untouched; both count every worker together and are
// applied by a reload.  worker_rlimit_nofile (our own): the open-file limit
// each worker sets for itself, and what happens at it.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { after, describe, afterEach } = require('node:test');
const WebSocket = require('ws');

const { useServer, assertHealthy } = require('./lib/harness');
const { toLibconfig, merge } = require('./lib/config');
const { rawClient } = require('./lib/wsclient');
const { pollUntil, sleep } = require('./lib/util');
const { TOP_SRCDIR } = require('./lib/server');

// One upgrade attempt: resolves { status: 101, ws } when the WebSocket opened,
// { status: N } when the server answered HTTP N instead, { error } when the
// attempt failed otherwise (reset, timeout: what a crash would look like).
function tryUpgrade(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, [], { perMessageDeflate: false, handshakeTimeout: 10000 });
    let done = false;
    const finish = (v) => { if (!done) { done = true; resolve(v); } };
    ws.on('open', () => finish({ status: 101, ws }));
    ws.on('unexpected-response', (req, res) => {
      res.resume();
      finish({ status: res.statusCode, contentLength: res.headers['content-length'] });
      req.destroy();
    });
    ws.on('error', (error) => finish({ error }));
  });
}

const metric = async (srv, name) => {
  const r = await srv.http('GET', '/metrics');
  assert.equal(r.status, 200);
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(r.text);
  return m ? Number(m[1]) : null;
};

// Rewrites the server's configuration with `over` and sends SIGHUP.
function reloadWith(srv, over) {
  srv.config = merge(srv.config, over);
  fs.writeFileSync(srv.configPath, toLibconfig(srv.config));
  process.kill(srv.pid, 'SIGHUP');
}

describe('client.connection_limit', () => {
  const h = useServer({ workers: 2, client: { connection_limit: 3 } });
  const open = [];
  // Closes this test's clients and waits until the node counts none, so the
  // next test starts below the limit.
  afterEach(async () => {
    for (const c of open.splice(0)) c.close();
    if (h.server) {
      await pollUntil(async () => await metric(h.server, 'centrifugo_node_num_clients') === 0,
        { what: 'centrifugo_node_num_clients back to 0' });
    }
  });

  h.test('the 4th connection gets 503, the 3 others stay; after one closes a new one connects', async (t, srv) => {
    for (let i = 0; i < 3; i++) open.push(await rawClient(srv.wsUrl, { connect: true }));
    const refusedBefore = await metric(srv, 'centrifugo_node_client_connection_limit');
    assert.equal(typeof refusedBefore, 'number', 'centrifugo_node_client_connection_limit is exported');
    // Several attempts, so both workers are asked: the limit is node-wide.
    for (let i = 0; i < 6; i++) {
      const r = await tryUpgrade(srv.wsUrl);
      if (r.ws) r.ws.close();
      assert.equal(r.status, 503, `attempt ${i}: ${r.error ? r.error.message : r.status}`);
      assert.equal(r.contentLength, '0', 'a plain empty 503');
    }
    assert.ok(await metric(srv, 'centrifugo_node_client_connection_limit') >= refusedBefore + 6, 'refusals counted');
    // The three are untouched and still served.
    for (const c of open) {
      assert.equal(c.closeInfo, null);
      const rep = await c.subscribe(`lim-${c.clientId}`);
      assert.ok(rep.subscribe, JSON.stringify(rep));
    }
    // One leaves: a new connection gets in (once the worker saw the close).
    open.shift().close();
    const fresh = await pollUntil(async () => {
      const r = await tryUpgrade(srv.wsUrl);
      assert.ok(r.status === 101 || r.status === 503, `upgrade: ${r.error ? r.error.message : r.status}`);
      if (r.status === 101) return r.ws;
      return null;
    }, { what: 'a connection accepted after one of three closed' });
    fresh.close();
    const c = await rawClient(srv.wsUrl, { connect: true });
    open.push(c);
    // At the limit again.
    const r = await tryUpgrade(srv.wsUrl);
    if (r.ws) r.ws.close();
    assert.equal(r.status, 503);
    assert.ok(srv.exit === null, 'server still running');
  });

  h.test('other HTTP requests are not limited: /health, the API', async (t, srv) => {
    for (let i = 0; i < 3; i++) open.push(await rawClient(srv.wsUrl, { connect: true }));
    assert.equal(await srv.health(), 200);
    const r = await srv.api('info', {});
    assert.equal(r.status, 200);
  });

  h.test('a reload raises the limit without dropping anyone', async (t, srv) => {
    for (let i = 0; i < 3; i++) open.push(await rawClient(srv.wsUrl, { connect: true }));
    assert.equal((await tryUpgrade(srv.wsUrl)).status, 503);
    reloadWith(srv, { client: { connection_limit: 4 } });
    const c = await pollUntil(async () => {
      const r = await tryUpgrade(srv.wsUrl);
      if (r.ws) r.ws.close();
      return r.status === 101 ? rawClient(srv.wsUrl, { connect: true }).catch(() => null) : null;
    }, { what: 'a 4th connection after the reload to connection_limit 4' });
    open.push(c);
    for (const x of open) assert.equal(x.closeInfo, null, 'nobody was dropped');
    // Back to 3 for the other tests of this block.
    reloadWith(srv, { client: { connection_limit: 3 } });
  });
});

describe('client.connection_rate_limit', () => {
  const h = useServer({ workers: 2, client: { connection_rate_limit: 5 } });

  h.test('a burst beyond the rate gets 503 and nothing breaks; later a new connection succeeds', async (t, srv) => {
    const N = 40;
    const results = await Promise.all(Array.from({ length: N }, () => tryUpgrade(srv.wsUrl)));
    for (const r of results) if (r.ws) r.ws.close();
    const statuses = results.map((r) => (r.error ? `error ${r.error.message}` : r.status));
    const odd = statuses.filter((s) => s !== 101 && s !== 503);
    assert.deepEqual(odd, [], `every attempt opened or got 503: ${statuses.join(' ')}`);
    assert.ok(statuses.includes(503), `some got 503: ${statuses.join(' ')}`);
    assert.ok(statuses.filter((s) => s === 101).length < N, 'not all were admitted');
    // After a pause a new connection gets in (the window moved on).
    await sleep(1100);
    const c = await pollUntil(() => rawClient(srv.wsUrl, { connect: true }).catch(() => null),
      { what: 'a connection accepted after the burst' });
    c.close();
    assert.equal(srv.exit, null);
  });

  h.test('the server stays healthy (no worker died)', async (t, srv) => {
    await sleep(1100);
    await assertHealthy(srv);
  });
});

// The soft RLIMIT_NOFILE of a process, from /proc (null when unreadable).
function openFilesLimit(pid) {
  const text = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
  if (!m) return null;
  const n = (v) => (v === 'unlimited' ? Infinity : Number(v));
  return { soft: n(m[1]), hard: n(m[2]) };
}

// A raw TCP connection that sends a WebSocket upgrade; `status` is the
// answer's status code, `upgraded` turns true when it is 101, `failed` when
// the socket errs or closes before any answer.
function rawUpgrade(port) {
  const c = { status: 0, upgraded: false, failed: false, sock: null };
  c.sock = net.connect(port, '127.0.0.1', () => {
    c.sock.write('GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n'
      + 'Upgrade: websocket\r\nConnection: Upgrade\r\n'
      + 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  });
  let head = '';
  c.sock.on('data', (d) => {
    head += d.toString('latin1');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(head);
    if (m && !c.status) c.status = Number(m[1]);
    if (c.status === 101) c.upgraded = true;
  });
  c.sock.on('error', () => { c.failed = true; });
  c.sock.on('close', () => { if (!c.status) c.failed = true; });
  return c;
}

describe('worker_rlimit_nofile', () => {
  describe('default', () => {
    // Started with a soft limit of 512: the worker must set its own.
    const h = useServer({ workers: 1 }, { start: { wrap: ['prlimit', '--nofile=512:'] } });
    h.test('each worker sets its soft limit to 65536 (or to the hard limit)', async (t, srv) => {
      assert.equal(openFilesLimit(srv.pid).soft, 512, 'the supervisor runs with what it was given');
      const own = openFilesLimit(process.pid);
      const { workers } = srv.children();
      assert.equal(workers.length, 1);
      const lim = openFilesLimit(workers[0].pid);
      assert.equal(lim.hard, own.hard, 'the hard limit is left alone');
      assert.equal(lim.soft, Math.min(65536, own.hard), `worker limits ${JSON.stringify(lim)}`);
    });
  });

  describe('at the limit', () => {
    const LIMIT = 1024;
    const h = useServer({ workers: 1, worker_rlimit_nofile: LIMIT });
    const conns = [];
    after(() => { for (const c of conns) c.sock.destroy(); });

    h.test('connections beyond it wait, nothing crashes, and they get in once others leave',
      async (t, srv) => {
        const worker = srv.children().workers[0].pid;
        assert.equal(openFilesLimit(worker).soft, LIMIT);
        const total = LIMIT + 100;
        for (let i = 0; i < total; i++) conns.push(rawUpgrade(srv.port));
        // Every connection is either upgraded or waiting; the count
        // settles below the limit (the worker keeps a few descriptors).
        let prev = -1;
        await pollUntil(async () => {
          const n = conns.filter((c) => c.upgraded).length;
          const settled = n === prev && n > LIMIT - 100;
          prev = n;
          await sleep(300);
          return settled;
        }, { timeout: 30000, what: 'the upgraded count settling near the limit' });
        const inBefore = conns.filter((c) => c.upgraded).length;
        assert.ok(inBefore < total, `${inBefore} of ${total} upgraded: the limit did not hold`);
        assert.equal(conns.filter((c) => c.failed).length, 0, 'the waiting ones are not refused');
        assert.match(srv.logTail(400), /accept\(\) failed: Too many open files/);
        // 200 leave: the worker accepts again within a second or two and
        // the waiting ones get their 101.
        const leaving = conns.filter((c) => c.upgraded).slice(0, 200);
        for (const c of leaving) c.sock.destroy();
        await pollUntil(() => conns.every((c) => c.upgraded), {
          timeout: 15000, what: 'every waiting connection upgraded',
        });
        assert.equal(srv.children().workers[0].pid, worker, 'the same worker, not a respawned one');
        for (const c of conns.splice(0)) c.sock.destroy();
        await assertHealthy(srv);
      }, { timeout: 60000 });
  });

  // libwebsockets 4.1 sizes its descriptor table by sysconf(_SC_OPEN_MAX)
  // and crashes after refusing a descriptor beyond it. A preloaded shim
  // makes that answer 64, far below the real limit: upgrades on higher
  // descriptors must get 503 from the server, and no worker may die.
  describe('a descriptor beyond libwebsockets\' table', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-shim-'));
    execFileSync(process.env.CC || 'cc', ['-shared', '-fPIC', '-o', path.join(dir, 'shim.so'),
      path.join(TOP_SRCDIR, 'test', 'integration', 'lib', 'open_max_shim.c'), '-ldl']);
    const h = useServer({ workers: 1 }, {
      start: {
        env: {
          LD_PRELOAD: path.join(dir, 'shim.so'),
          OPEN_MAX_SHIM: '64',
          // A sanitizer build wants its runtime first; the shim is harmless.
          ASAN_OPTIONS: `${process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : ''}verify_asan_link_order=0`,
        },
      },
    });
    const conns = [];
    after(() => {
      for (const c of conns) c.sock.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    h.test('those upgrades are answered 503, the others open, no worker dies', async (t, srv) => {
      for (let i = 0; i < 100; i++) conns.push(rawUpgrade(srv.port));
      await pollUntil(() => conns.every((c) => c.status || c.failed), {
        timeout: 15000, what: 'an answer to every upgrade',
      });
      const count = (st) => conns.filter((c) => c.status === st).length;
      assert.equal(conns.filter((c) => c.failed).length, 0, 'no connection reset');
      assert.ok(count(101) > 0, `${count(101)} upgraded`);
      assert.ok(count(503) > 0, `${count(503)} answered 503`);
      assert.equal(count(101) + count(503), conns.length);
      assert.match(srv.logTail(200), /beyond libwebsockets' table \(64\)/);
      for (const c of conns.splice(0)) c.sock.destroy();
      await sleep(200);
      await assertHealthy(srv);
    });
  });
});
