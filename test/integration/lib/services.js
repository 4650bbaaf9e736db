'use strict';
// External services for the multi-node tests: a real redis-server and
// nats-server on free loopback ports (temp directory as cwd, log file there),
// started and stopped by the test itself: wait until they answer (Redis:
// PING -> +PONG over TCP; NATS: the INFO line on connect), SIGTERM then a
// bounded SIGKILL, Redis restart on the same port (outage tests), and a
// SIGKILL of everything still running when the test process exits. Also a
// minimal RESP client (KEYS, DBSIZE, ...) and the cluster helpers: several
// nodes of ours sharing one engine, tests whose failure message carries the
// log tail of every node and service.

const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const assert = require('node:assert/strict');
const { test } = require('node:test');

const { startServer, freePort } = require('./server');
const { makeToken } = require('./token');
const proc = require('./proc');
const { sleep, pollUntil, withTimeout } = require('./util');

// ---- binaries ---------------------------------------------------------------

// First executable `name` on PATH or in the usual system directories (nats-server
// lives in /usr/sbin on Debian, which a user's PATH may lack).
function findBinary(name, envVar) {
  if (envVar && process.env[envVar]) {
    const p = process.env[envVar];
    return isExecutable(p) ? p : null;
  }
  const dirs = (process.env.PATH || '').split(':').filter(Boolean)
    .concat(['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']);
  for (const d of dirs) {
    const p = path.join(d, name);
    if (isExecutable(p)) return p;
  }
  return null;
}

function isExecutable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

const REDIS_BIN = findBinary('redis-server', 'REDIS_SERVER_BIN');
const NATS_BIN = findBinary('nats-server', 'NATS_SERVER_BIN');

// A skip reason for node:test ({ skip: reason }) or false when present.
const redisSkip = REDIS_BIN ? false : 'redis-server not installed (apt-get install redis-server; see packaging/build-deps)';
const natsSkip = NATS_BIN ? false : 'nats-server not installed (apt-get install nats-server; see packaging/build-deps)';

// ---- process bookkeeping ----------------------------------------------------

// Every service process started by this test process, for the exit handler.
const live = new Set();

function killAllSync() {
  for (const s of live) {
    if (s.pid && proc.alive(s.pid)) {
      try { process.kill(s.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAllSync();
    process.exit(130);
  });
}

// ---- probes -----------------------------------------------------------------

// Connect to 127.0.0.1:port, optionally write `send`, and resolve with the
// bytes received once `done(buffer)` is true. Rejects on error, on close
// before done, or after `timeout` ms.
function tcpExchange(port, send, done, { timeout = 2000 } = {}) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let finished = false;
    const sock = net.connect(port, '127.0.0.1');
    const finish = (err, val) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err); else resolve(val);
    };
    const timer = setTimeout(() => finish(new Error(`no answer on port ${port} within ${timeout} ms; got ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`)), timeout);
    sock.on('connect', () => { if (send) sock.write(send); });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let ok = false;
      try { ok = done(buf); } catch (e) { finish(e); return; }
      if (ok) finish(null, buf);
    });
    sock.on('error', (e) => finish(e));
    sock.on('close', () => finish(new Error(`port ${port} closed the connection; got ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`)));
  });
}

// ---- RESP -------------------------------------------------------------------

// Encode one command as a RESP array of bulk strings.
function respEncode(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const b = Buffer.from(String(a), 'utf8');
    parts.push(`$${b.length}\r\n`, b, '\r\n');
  }
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8'))));
}

// Parse one RESP2/RESP3 value at `pos`. Returns { value, pos } or null when
// incomplete. Errors become { error: 'ERR ...' } values.
function respParse(buf, pos = 0) {
  const le = buf.indexOf('\r\n', pos);
  if (le < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.subarray(pos + 1, le).toString('utf8');
  const next = le + 2;
  switch (type) {
    case '+': return { value: line, pos: next };
    case '-': return { value: { error: line }, pos: next };
    case ':': return { value: Number(line), pos: next };
    case '_': return { value: null, pos: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, pos: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.subarray(next, next + n).toString('utf8'), pos: next + n + 2 };
    }
    case '*': case '~': case '%': {
      let n = Number(line);
      if (n < 0) return { value: null, pos: next };
      if (type === '%') n *= 2;
      const out = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = respParse(buf, p);
        if (!r) return null;
        out.push(r.value);
        p = r.pos;
      }
      return { value: out, pos: p };
    }
    default:
      throw new Error(`RESP: unexpected type byte ${JSON.stringify(type)} in ${JSON.stringify(buf.toString('latin1').slice(0, 100))}`);
  }
}

// Send one command to a Redis on `port`; resolve with its parsed reply.
async function redisCommand(port, args, opts) {
  const buf = await tcpExchange(port, respEncode(args), (b) => respParse(b) !== null, opts);
  return respParse(buf).value;
}

// ---- services ---------------------------------------------------------------

class Service {
  constructor(kind, bin, port, dir) {
    this.kind = kind;
    this.bin = bin;
    this.port = port;
    this.dir = dir;
    this.logPath = path.join(dir, `${kind}.log`);
    this.proc = null;
    this.pid = 0;
    this.exit = null;
    this.exited = null;
    this.starts = 0;
  }

  args() { throw new Error('abstract'); }

  // Resolves once the service answers its protocol; rejects otherwise.
  probe() { throw new Error('abstract'); }

  // Spawn (again, on the same port) and wait (bounded) until it answers.
  async start({ timeout = 10000 } = {}) {
    if (this.proc && !this.exit) throw new Error(`${this.kind} already running (pid ${this.pid})`);
    const logFd = fs.openSync(this.logPath, 'a');
    fs.writeSync(logFd, `--- start #${++this.starts}: ${this.bin} ${this.args().join(' ')}\n`);
    this.exit = null;
    const child = spawn(this.bin, this.args(), { cwd: this.dir, stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    this.proc = child;
    this.pid = child.pid;
    live.add(this);
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => { this.exit = { code, signal }; resolve(this.exit); });
      child.on('error', (err) => { this.exit = { code: null, signal: null, error: String(err) }; resolve(this.exit); });
    });
    try {
      await pollUntil(async () => {
        if (this.exit) throw new Error(`${this.kind} exited during start: ${JSON.stringify(this.exit)}`);
        await this.probe();
        return true;
      }, { timeout, interval: 50, what: `${this.kind} answering on 127.0.0.1:${this.port}` });
    } catch (e) {
      e.message += `\n--- ${this.kind} log (${this.logPath}) ---\n${this.logTail()}`;
      await this.stop();
      throw e;
    }
    return this;
  }

  get running() { return !!this.proc && !this.exit; }

  // SIGKILL, wait (bounded) for the exit.
  async kill() { return this.stop({ signal: 'SIGKILL' }); }

  // Send `signal` (default SIGTERM); after `timeout` ms SIGKILL. Resolves
  // with the exit status once the process is gone.
  async stop({ signal = 'SIGTERM', timeout = 5000 } = {}) {
    if (!this.proc) return null;
    if (!this.exit) {
      try { process.kill(this.pid, signal); } catch { /* gone */ }
      const done = await Promise.race([this.exited, sleep(timeout).then(() => null)]);
      if (!done) {
        try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
        await Promise.race([this.exited, sleep(5000)]);
      }
    }
    live.delete(this);
    return this.exit;
  }

  // Stop and remove the temp directory (unless KEEP_TEST_LOGS is set).
  async dispose() {
    await this.stop();
    if (!process.env.KEEP_TEST_LOGS) {
      try { fs.rmSync(this.dir, { recursive: true, force: true }); } catch { /* ignore */ }
    }
  }

  logTail(lines = 30) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

class RedisService extends Service {
  constructor(port, dir, extra = []) { super('redis', REDIS_BIN, port, dir); this.extra = extra; }

  args() {
    return ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--daemonize', 'no', '--protected-mode', 'no', ...this.extra];
  }

  get address() { return `127.0.0.1:${this.port}`; }

  async probe() {
    const r = await redisCommand(this.port, ['PING'], { timeout: 1000 });
    if (r !== 'PONG') throw new Error(`redis PING answered ${JSON.stringify(r)}`);
  }

  // One command; resolves with the reply (errors as { error }).
  command(...args) { return redisCommand(this.port, args); }

  // Keys matching `pattern` (KEYS; fine for a test instance), sorted.
  async keys(pattern) {
    const r = await this.command('KEYS', pattern);
    if (!Array.isArray(r)) throw new Error(`KEYS ${pattern}: ${JSON.stringify(r)}`);
    return r.sort();
  }

  // SIGKILL and start again on the same port.
  async restart(opts) {
    await this.kill();
    return this.start(opts);
  }
}

// redis-server in Sentinel mode watching one master (quick failure
// detection, for tests).
class SentinelService extends Service {
  constructor(port, dir, { masterPort, name }) {
    super('sentinel', REDIS_BIN, port, dir);
    this.conf = path.join(dir, 'sentinel.conf');
    fs.writeFileSync(this.conf, [
      `port ${port}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`, '',
    ].join('\n'));
  }

  args() { return [this.conf, '--sentinel']; }

  get address() { return `127.0.0.1:${this.port}`; }

  async probe() {
    const r = await redisCommand(this.port, ['PING'], { timeout: 1000 });
    if (r !== 'PONG') throw new Error(`sentinel PING answered ${JSON.stringify(r)}`);
  }

  command(...args) { return redisCommand(this.port, args); }
}

class NatsService extends Service {
  constructor(port, dir) { super('nats', NATS_BIN, port, dir); }

  args() { return ['-a', '127.0.0.1', '-p', String(this.port)]; }

  get url() { return `nats://127.0.0.1:${this.port}`; }

  async probe() {
    const b = await tcpExchange(this.port, null, (buf) => buf.includes('\r\n'), { timeout: 1000 });
    const line = b.toString('utf8').split('\r\n')[0];
    if (!line.startsWith('INFO ')) throw new Error(`nats answered ${JSON.stringify(line)}`);
    JSON.parse(line.slice(5)); // the INFO payload is JSON
  }

  async restart(opts) {
    await this.kill();
    return this.start(opts);
  }
}

async function startService(Cls, opts) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-svc-'));
  return new Cls(port, dir).start(opts);
}

// Start a redis-server / nats-server on a free loopback port.
function startRedis(opts) {
  if (!REDIS_BIN) throw new Error(redisSkip);
  return startService(RedisService, opts);
}

// A redis-server with extra arguments (e.g. ['--replicaof', '127.0.0.1', port]).
async function startRedisWith(extra, opts) {
  if (!REDIS_BIN) throw new Error(redisSkip);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-svc-'));
  return new RedisService(port, dir, extra).start(opts);
}

// A sentinel watching the master on masterPort under `name`.
async function startSentinel(masterPort, name, opts) {
  if (!REDIS_BIN) throw new Error(redisSkip);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-svc-'));
  return new SentinelService(port, dir, { masterPort, name }).start(opts);
}

function startNats(opts) {
  if (!NATS_BIN) throw new Error(natsSkip);
  return startService(NatsService, opts);
}

// ---- clusters of our nodes ------------------------------------------------------

let prefixSeq = 0;
// A prefix of Redis keys / NATS subjects unique to this process and call.
function uniquePrefix(tag = 'cfit') {
  return `${tag}-${process.pid}-${++prefixSeq}-${Math.random().toString(36).slice(2, 8)}`;
}

// Start one node per entry of `names` (node.name = the entry), each with its
// own free port, configuration `configFor(name, index)` (merged over the test
// defaults by startServer). Started one after the other; on failure the ones
// already up are stopped.
async function startNodes(names, configFor, opts = {}) {
  const nodes = [];
  try {
    for (let i = 0; i < names.length; i++) {
      const cfg = configFor(names[i], i);
      nodes.push(await startServer({ ...cfg, node: { ...(cfg.node || {}), name: names[i] } }, { timeout: 20000, ...opts }));
      nodes[i].nodeName = names[i];
    }
  } catch (e) {
    for (const n of nodes) await n.stop();
    throw e;
  }
  return nodes;
}

// SIGKILL every process of a node's tree (supervisor, workers, broker)
// at once, as a machine dying would, and wait for the supervisor's exit.
async function killNodeTree(srv) {
  const pids = srv.treePids();
  try { process.kill(-srv.pid, 'SIGSTOP'); } catch { /* no group */ }
  for (const p of [srv.pid, ...pids, ...proc.descendants(srv.pid)]) {
    try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
  }
  try { process.kill(-srv.pid, 'SIGKILL'); } catch { /* gone */ }
  await withTimeout(srv.exited, 5000, `node ${srv.nodeName} exit after SIGKILL`);
  await pollUntil(() => pids.every((p) => !proc.alive(p)), { timeout: 5000, what: 'every process of the killed node gone' });
  return pids;
}

// ---- helpers shared by the cluster tests -------------------------------------
// (ws and the SDK are required lazily: the service part above needs no npm module.)

// POST /api/<method> on `node`; asserts HTTP 200 and no in-body error;
// returns `result`.
async function apiOk(node, method, body, what = method) {
  const r = await node.api(method, body);
  assert.equal(r.status, 200, `${what} on ${node.nodeName}: HTTP ${r.status} ${r.text}`);
  assert.ok(r.json && r.json.result !== undefined && r.json.error === undefined,
    `${what} on ${node.nodeName}: ${r.text}`);
  return r.json.result;
}

// A raw client on `node`, connected as `user` (a token); tracked in `open`.
async function rawOn(node, user, open) {
  const { rawClient } = require('./wsclient');
  const c = await rawClient(node.wsUrl, { connect: { token: makeToken({ sub: user }) } });
  c.userId = user;
  open.push(c);
  return c;
}

// An SDK client on `node`, connected as `user`; tracked in `open`.
async function sdkOn(node, user, open) {
  const { sdkClient, connectSdk } = require('./sdk');
  const c = sdkClient(node.wsUrl, { token: makeToken({ sub: user }) });
  open.push(c);
  c.ctx = await connectSdk(c);
  return c;
}

// centrifuge-js subscription to `channel` on SDK client `c`, labelled (e.g.
// "client on A") for failure messages; publications collect on sub.pubs.
async function subscribeOn(c, channel, label) {
  const { subscribeSdk } = require('./sdk');
  const sub = await subscribeSdk(c, channel);
  sub.label = label;
  return sub;
}

// waitPub (lib/sdk.js) whose timeout names the subscription's label and
// what it received.
function waitPubOf(sub, pred = () => true, timeout = 8000) {
  const { waitPub } = require('./sdk');
  return waitPub(sub, pred, timeout).catch((e) => {
    e.message += ` [${sub.label || 'subscription'} in ${sub.channel}; received ${JSON.stringify(sub.pubs.map((p) => p.data))}]`;
    throw e;
  });
}

// After an outage: publishes { n: 1, 2, ... } on node until one arrives on
// every subscription of subs (bounded); returns the number of attempts.
async function publishUntilDelivered(node, channel, subs, what) {
  let k = 0;
  await pollUntil(async () => {
    k++;
    const r = await node.api('publish', { channel, data: { n: k } }, { timeout: 30000 });
    if (!r.json || r.json.result === undefined) return false;
    for (const s of subs) {
      const ok = await waitPubOf(s, (p) => p.data.n === k, 1500).then(() => true, () => false);
      if (!ok) return false;
    }
    return true;
  }, { timeout: 40000, interval: 300, what });
  return k;
}

function closeAll(list) {
  for (const c of list.splice(0)) {
    try { if (c.disconnect) c.disconnect(); else c.close(); } catch { /* ignore */ }
  }
}

// Wait until `raw` got a publication push in `channel` matching pred.
const rawPub = (c, channel, pred = () => true, timeout = 8000) => c.next(
  (m) => m.push && m.push.channel === channel && m.push.pub && pred(m.push.pub),
  { timeout, what: `publication in ${channel}` },
);

// Publication pushes already received by a raw client in `channel`.
const rawPubsIn = (c, channel) => c.frames.flatMap((f) => f.split('\n').filter(Boolean).map((l) => {
  try { return JSON.parse(l); } catch { return {}; }
})).filter((m) => m.push && m.push.channel === channel && m.push.pub).map((m) => m.push.pub);

// info as `node` sees it: { byName, nodes }.
async function infoOf(node) {
  const res = await apiOk(node, 'info', {});
  const byName = {};
  for (const n of res.nodes || []) byName[n.name] = n;
  return { nodes: res.nodes || [], byName };
}

// Wait until `node`'s info lists every name in `names` (and nothing else).
function waitNodes(node, names, timeout = 15000) {
  return pollUntil(async () => {
    const i = await infoOf(node);
    const got = i.nodes.map((n) => n.name).sort();
    return JSON.stringify(got) === JSON.stringify([...names].sort()) ? i : null;
  }, { timeout, interval: 250, what: `info on ${node.nodeName} listing nodes ${names}` });
}

// Log tails of every node and service in `ctx` ({ nodes: [Server], services: [Service] }).
function describeAll(ctx) {
  let out = '';
  for (const n of ctx.nodes || []) {
    if (!n) continue;
    const status = n.exit ? `EXITED ${JSON.stringify(n.exit)}` : 'running';
    out += `\n--- node ${n.nodeName || '?'} (pid ${n.pid}, port ${n.port}, ${status}) log tail ---\n${n.logTail(40)}`;
  }
  for (const s of ctx.services || []) {
    if (!s) continue;
    const status = s.exit ? `exited ${JSON.stringify(s.exit)}` : 'running';
    out += `\n--- ${s.kind} (pid ${s.pid}, port ${s.port}, ${status}) log tail ---\n${s.logTail(15)}`;
  }
  return out + '\n--- end of logs ---';
}

// node:test test() whose failure message carries every node's and service's
// log tail. `ctx` is read at failure time.
function clusterTest(ctx, name, fn, opts = {}) {
  return test(name, { timeout: 45000, ...opts }, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      if (e && typeof e === 'object') {
        const tail = describeAll(ctx);
        const stack = String(e.stack);
        try { e.message = String(e.message) + tail; } catch { /* read-only */ }
        try { e.stack = stack + tail; } catch { /* read-only */ }
      }
      throw e;
    }
  });
}

// The channels API on either node of ctx.nodes ([A, B]) sums both nodes'
// subscribers: one channel on A, one on B, one on both.
async function channelsAcrossNodes(ctx, open) {
  const [A, B] = ctx.nodes;
  const tag = `sv${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const onA = `chat:${tag}-a`, onB = `chat:${tag}-b`, both = `chat:${tag}-both`;
  const a = await rawOn(A, 'sv-a', open);
  const b = await rawOn(B, 'sv-b', open);
  for (const [c, ch] of [[a, onA], [a, both], [b, onB], [b, both]]) assert.ok((await c.subscribe(ch)).subscribe);
  const want = { [onA]: { num_clients: 1 }, [onB]: { num_clients: 1 }, [both]: { num_clients: 2 } };
  for (const node of [A, B]) {
    const got = await pollUntil(async () => {
      const res = await apiOk(node, 'channels', { pattern: `chat:${tag}-*` });
      // Until the other node is known (its first announcement).
      const n = res.channels && res.channels[both] && res.channels[both].num_clients;
      return n === 2 ? res.channels : null;
    }, { timeout: 15000, interval: 300, what: `channels on ${node.nodeName} summing both nodes` });
    assert.deepEqual(got, want, `channels on ${node.nodeName}`);
  }
}

module.exports = {
  REDIS_BIN, NATS_BIN, redisSkip, natsSkip,
  RedisService, NatsService, startRedis, startNats, startRedisWith, startSentinel,
  redisCommand, respEncode, respParse, tcpExchange,
  uniquePrefix, startNodes, killNodeTree, describeAll, clusterTest,
  apiOk, channelsAcrossNodes, rawOn, sdkOn, subscribeOn, waitPubOf, publishUntilDelivered, closeAll, rawPub, rawPubsIn, infoOf, waitNodes,
};
