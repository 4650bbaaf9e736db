'use strict';
// centrifugo-bench (issue 6) against the real server: the JSON and the
// Protobuf client protocol, anonymous and with tokens, pings answered in
// both formats, the RESULT line's figures, clear errors for bad options and
// refused connections; and the floor server bench/run.sh measures beside it.

const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');
const { execFile, spawn } = require('node:child_process');
const { after, describe, test } = require('node:test');

const { useServer } = require('./lib/harness');
const { TOP_BUILDDIR, freePort } = require('./lib/server');
const { API_KEY, HMAC_SECRET } = require('./lib/config');
const { pollUntil } = require('./lib/util');

const BENCH = path.join(TOP_BUILDDIR, 'src', 'centrifugo-bench');
const FLOOR = path.join(TOP_BUILDDIR, 'src', 'floor-server');

// Runs a program; resolves { code, stdout, stderr, result } where result is
// the RESULT line's key=value pairs (or null). Bounded.
function run(bin, args, { timeout = 60000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`${bin} ${args.join(' ')}: ${err.message}\nstderr: ${stderr}`));
        return;
      }
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      const result = line
        ? Object.fromEntries(line.split(' ').slice(1).map((kv) => kv.split('=')))
        : null;
      resolve({ code: err ? err.code : 0, stdout, stderr, result });
    });
  });
}

function show(r) {
  return `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr.slice(-3000)}`;
}

// A publishing run that lost nothing: every connection subscribed, every
// publication acknowledged and delivered once to each subscriber.
function assertClean(r, conns, channels) {
  assert.equal(r.code, 0, show(r));
  const k = r.result;
  assert.ok(k, show(r));
  assert.equal(Number(k.subscribed), conns, show(r));
  assert.equal(Number(k.conn_failed), 0, show(r));
  assert.equal(Number(k.conn_closed), 0, show(r));
  assert.ok(Number(k.pubs_ok) > 0, show(r));
  assert.equal(Number(k.pubs_failed), 0, show(r));
  assert.equal(Number(k.expected), Number(k.pubs_ok) * (conns / channels), show(r));
  assert.equal(Number(k.delivered), Number(k.expected), show(r));
  assert.equal(Number(k.lost), 0, show(r));
  assert.equal(Number(k.duplicated), 0, show(r));
}

const SHORT = ['-n', '40', '--rate', '400', '-c', '4', '-p', '100', '-t', '1', '--drain', '2', '-q'];

describe('centrifugo-bench', () => {
  const h = useServer({ client: { ping_interval: '2s', pong_timeout: '1s' } });

  h.test('JSON, anonymous: everything delivered, memory and CPU of the whole tree', async (t, srv) => {
    const r = await run(BENCH, ['--url', srv.wsUrl, '--api-key', API_KEY, ...SHORT,
      '--pid', String(srv.pid)]);
    assertClean(r, 40, 4);
    assert.equal(r.result.format, 'json');
    assert.equal(Number(r.result.server_procs), 4, 'supervisor, two workers, broker');
    assert.ok(Number(r.result.rss_after_kb) > 0, show(r));
    assert.ok(Number.isFinite(Number(r.result.bytes_per_conn)), show(r));
    assert.ok(Number(r.result.cpu_us_per_msg) > 0, show(r));
    assert.ok(Number(r.result.lat_p99_us) > 0, show(r));
  });

  h.test('Protobuf with connection tokens: everything delivered', async (t, srv) => {
    const r = await run(BENCH, ['--url', srv.wsUrl, '--api-key', API_KEY, ...SHORT,
      '--format', 'protobuf', '--token-secret', HMAC_SECRET]);
    assertClean(r, 40, 4);
    assert.equal(r.result.format, 'protobuf');
  });

  for (const format of ['json', 'protobuf']) {
    h.test(`${format}: server pings are answered, so no connection is cut while idle`, async (t, srv) => {
      // ping_interval 2s, pong_timeout 1s: 5 s of idling is two pings each,
      // and a missing pong would close the connection within a second.
      const r = await run(BENCH, ['--url', srv.wsUrl, '-n', '10', '-c', '2', '--idle', '-t', '5',
        '-q', '--format', format]);
      assert.equal(r.code, 0, show(r));
      assert.equal(Number(r.result.subscribed), 10, show(r));
      assert.equal(Number(r.result.conn_closed), 0, show(r));
      assert.ok(Number(r.result.pings) >= 10, `at least a ping per connection\n${show(r)}`);
    });
  }

  h.test('a wrong token secret: the server refuses, the bench says so and exits 1', async (t, srv) => {
    const r = await run(BENCH, ['--url', srv.wsUrl, '--api-key', API_KEY, '-n', '3', '-c', '1',
      '--idle', '-t', '0.5', '-q', '--format', 'protobuf', '--token-secret', 'not-the-secret']);
    assert.equal(r.code, 1, show(r));
    assert.equal(Number(r.result.subscribed), 0, show(r));
    assert.equal(Number(r.result.conn_failed), 3, show(r));
    assert.match(r.stdout + r.stderr, /connection \d+ failed: close frame 3500 invalid token/, show(r));
  });

  h.test('a wrong API key: publications fail and the exit status says so', async (t, srv) => {
    const r = await run(BENCH, ['--url', srv.wsUrl, '--api-key', 'wrong', '-n', '4', '-c', '1',
      '-p', '20', '-t', '0.5', '--drain', '0.5', '-q']);
    assert.equal(r.code, 2, show(r));
    assert.ok(Number(r.result.pubs_failed) > 0, show(r));
    assert.match(r.stdout + r.stderr, /publish answered 401/, show(r));
  });
});

describe('centrifugo-bench usage errors', () => {
  const cases = [
    [['--format', 'xml'], /--format: 'xml' is not json or protobuf/],
    [['--nchan', '--api-url', 'http://127.0.0.1:1/pub/', '--format', 'protobuf'], /nchan has none/],
    [['-n', '0'], /-n: '0' is not a number/],
    [['--url', 'ws://10.1.2.3:8000/connection/websocket'], /loopback/],
  ];
  for (const [args, re] of cases) {
    test(`centrifugo-bench ${args.join(' ')}`, async () => {
      const r = await run(BENCH, args);
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, re, show(r));
      assert.equal(r.result, null, 'no RESULT line for a usage error');
    });
  }

  test('nothing listens on the port: every connection fails, exit 1', async () => {
    const port = await freePort();
    const r = await run(BENCH, ['--url', `ws://127.0.0.1:${port}/connection/websocket`, '-n', '3',
      '-c', '1', '--idle', '-t', '0.5', '-q']);
    assert.equal(r.code, 1, show(r));
    assert.equal(Number(r.result.conn_failed), 3, show(r));
    assert.match(r.stdout + r.stderr, /connection 0 failed: Connection refused/, show(r));
  });
});

// Whether something accepts TCP connections on the port.
function listening(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

describe('floor-server (the baseline bench/run.sh measures)', () => {
  test('serves the bench: every publication delivered once to every subscriber, nothing lost', async () => {
    const port = await freePort();
    const child = spawn(FLOOR, [String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    after(() => child.kill('SIGKILL'));
    await pollUntil(() => listening(port), { timeout: 5000, what: `floor-server on ${port}` });
    const r = await run(BENCH, ['--url', `ws://127.0.0.1:${port}/connection/websocket`, ...SHORT,
      '--pid', String(child.pid)]);
    assertClean(r, 40, 4);
    assert.equal(Number(r.result.server_procs), 1, show(r));
    assert.equal(child.exitCode, null, `still running\n${stderr}`);
  });

  for (const args of [[], ['0'], ['http'], ['1', '2']]) {
    test(`floor-server ${args.join(' ')}: usage on stderr, exit 2`, async () => {
      const r = await run(FLOOR, args, { timeout: 10000 });
      assert.equal(r.code, 2, show(r));
      assert.match(r.stderr, /usage: floor-server PORT/, show(r));
    });
  }
});
