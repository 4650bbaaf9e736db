'use strict';
// Test-server harness: starts the real centrifugo binary on a free loopback
// port with a temporary libconfig file, waits for /health, offers HTTP API
// helpers, and stops it (SIGTERM, then SIGKILL of the whole tree as a last
// resort) so that no test leaves processes behind.

const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');

const { toLibconfig, merge, defaultConfig, API_KEY } = require('./config');
const proc = require('./proc');
const { sleep, pollUntil } = require('./util');

const HERE = __dirname;
const TOP_SRCDIR = process.env.TOP_SRCDIR || path.resolve(HERE, '..', '..', '..');
const TOP_BUILDDIR = process.env.TOP_BUILDDIR || TOP_SRCDIR;
const BIN = process.env.CENTRIFUGO_BIN || path.join(TOP_BUILDDIR, 'src', 'centrifugo');

// Every server started by this process, so an abrupt exit can still kill them.
const live = new Set();

function killTreeSync(srv) {
  const pids = [srv.pid, ...proc.descendants(srv.pid)];
  for (const pid of pids) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  // The server runs in its own process group (detached spawn); catch any
  // grandchild that was re-parented away from the tree.
  try { process.kill(-srv.pid, 'SIGKILL'); } catch { /* gone */ }
}

process.on('exit', () => {
  for (const srv of live) killTreeSync(srv);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const srv of live) killTreeSync(srv);
    process.exit(130);
  });
}

// Ask the kernel for a free loopback TCP port.
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// One HTTP request to the server; resolves { status, headers, text, json }.
// json is the parsed body or undefined when the body is not JSON.
async function httpRequest(port, method, urlPath, { body, headers = {}, timeout = 10000 } = {}) {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, {
    method,
    headers,
    body,
    signal: AbortSignal.timeout(timeout),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

class Server {
  constructor(config, dir) {
    // Its own control socket unless the test names one: never the system
    // path, which an installed daemon (or another test server) may hold.
    config.ctl = { socket: path.join(dir, 'ctl.sock'), ...config.ctl };
    this.config = config;
    this.dir = dir;
    this.port = config.http_server.port;
    this.configPath = path.join(dir, 'config.cfg');
    this.logPath = path.join(dir, 'server.log');
    this.proc = null;
    this.pid = 0;
    this.exit = null; // { code, signal } once the supervisor exited
    this.exited = null; // promise resolving with this.exit
    this.initialChildren = []; // pids of workers + broker once started
  }

  get baseUrl() { return `http://127.0.0.1:${this.port}`; }
  get wsUrl() { return `ws://127.0.0.1:${this.port}/connection/websocket`; }

  // Spawn the binary and wait (bounded) until GET /health answers 200.
  // env: variables added to the server's environment; wrap: a program and
  // its arguments that exec the server (e.g. prlimit), keeping its pid.
  async start({ timeout = 15000, env: extraEnv = {}, wrap = [] } = {}) {
    if (!fs.existsSync(BIN)) throw new Error(`server binary not found: ${BIN}`);
    fs.writeFileSync(this.configPath, toLibconfig(this.config));
    const logFd = fs.openSync(this.logPath, 'a');
    // CENTRIFUGO_* variables would override the configuration (as in
    // Centrifugo); `make check` sets CENTRIFUGO_BIN, so drop them all.
    const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CENTRIFUGO_'))), ...extraEnv };
    const argv = [...wrap, BIN, '-c', this.configPath];
    this.proc = spawn(argv[0], argv.slice(1), {
      cwd: this.dir,
      env,
      stdio: ['ignore', logFd, logFd],
      detached: true, // own process group: lets us kill the whole tree
    });
    fs.closeSync(logFd);
    this.pid = this.proc.pid;
    live.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.proc.on('error', (err) => {
        this.exit = { code: null, signal: null, error: err };
        resolve(this.exit);
      });
    });
    try {
      await pollUntil(async () => {
        if (this.exit) throw new Error(`server exited during start: ${JSON.stringify(this.exit)}`);
        const r = await httpRequest(this.port, 'GET', '/health', { timeout: 1000 });
        return r.status === 200;
      }, { timeout, interval: 100, what: `GET /health on port ${this.port}` });
    } catch (e) {
      const log = this.logTail();
      await this.stop();
      e.message += `\n--- server log (${this.logPath}) ---\n${log}`;
      throw e;
    }
    // Remember the children once all expected ones are up (bounded; a server
    // without this process layout just records what it has).
    const want = Number(this.config.workers) || 1;
    const kids = await pollUntil(() => {
      const c = this.children();
      return (c.workers.length >= want && c.brokers.length >= 1) ? c : null;
    }, { timeout: 5000, what: 'children' }).catch(() => this.children());
    this.initialChildren = [...kids.workers.map((w) => w.pid), ...kids.brokers];
    return this;
  }

  // Last `lines` lines of the server's stderr/stdout.
  logTail(lines = 80) {
    let text = '';
    try { text = fs.readFileSync(this.logPath, 'utf8'); } catch { return '(no log)'; }
    const all = text.split('\n');
    return all.slice(-lines).join('\n');
  }

  // GET /health status (0 on connection failure).
  async health() {
    try {
      return (await httpRequest(this.port, 'GET', '/health', { timeout: 3000 })).status;
    } catch {
      return 0;
    }
  }

  // POST /api/<method>. body: object (JSON-encoded) or string (sent verbatim).
  // opts.key: API key (default the test key; null sends none);
  // opts.headers: extra headers; opts.authHeader: use `Authorization: apikey KEY`.
  api(method, body, opts = {}) {
    const key = opts.key === undefined ? API_KEY : opts.key;
    const headers = { 'Content-Type': 'application/json', ...(opts.headers || {}) };
    if (key !== null) {
      if (opts.authHeader) headers.Authorization = `apikey ${key}`;
      else headers['X-API-Key'] = key;
    }
    const payload = typeof body === 'string' ? body : JSON.stringify(body);
    const urlPath = method === '' ? '/api' : `/api/${method}`;
    return httpRequest(this.port, opts.httpMethod || 'POST', urlPath, { body: payload, headers, timeout: opts.timeout });
  }

  // publish helper that asserts the in-body result is a success.
  async publish(channel, data) {
    const r = await this.api('publish', { channel, data });
    if (r.status !== 200 || !r.json || !r.json.result) {
      throw new Error(`publish to ${channel} failed: HTTP ${r.status} ${r.text}`);
    }
    return r.json.result;
  }

  http(method, urlPath, opts) { return httpRequest(this.port, method, urlPath, opts); }

  // Live child processes of the supervisor, classified by title.
  children() { return proc.serverChildren(this.pid); }

  // Every live process of the tree (supervisor included).
  treePids() {
    const out = proc.alive(this.pid) ? [this.pid] : [];
    return out.concat(proc.descendants(this.pid));
  }

  // Wait until the supervisor reports `workers` workers and one broker.
  async waitChildren(workers, { timeout = 10000 } = {}) {
    return pollUntil(() => {
      const c = this.children();
      return (c.workers.length === workers && c.brokers.length === 1) ? c : null;
    }, { timeout, what: `${workers} workers and 1 broker under supervisor ${this.pid}` });
  }

  // Graceful stop: SIGTERM, wait (bounded) for every process of the tree to
  // go; SIGKILL whatever is left. Resolves with the supervisor's exit status.
  async stop({ timeout = 10000, signal = 'SIGTERM' } = {}) {
    if (!this.proc) return null;
    const tree = this.treePids();
    if (!this.exit) {
      try { process.kill(this.pid, signal); } catch { /* gone */ }
    }
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      if (this.exit && tree.every((p) => !proc.alive(p))) break;
      await sleep(50);
    }
    if (!this.exit || tree.some((p) => proc.alive(p))) {
      this.forcedKill = true;
      killTreeSync(this);
      for (const p of tree) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
      await Promise.race([this.exited, sleep(5000)]);
    }
    live.delete(this);
    // A sanitizer build reports memory errors, leaks and undefined
    // behaviour on stderr (the log) without always failing a request:
    // any such report fails the test that owned this server.
    let report = null;
    try {
      const log = fs.readFileSync(this.logPath, 'utf8');
      const at = log.search(/ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error: /);
      if (at >= 0) report = log.slice(Math.max(0, at - 200), at + 4000);
    } catch { /* no log */ }
    if (!process.env.KEEP_TEST_LOGS) {
      try { fs.rmSync(this.dir, { recursive: true, force: true }); } catch { /* ignore */ }
    }
    if (report) throw new Error(`sanitizer report in the server log (port ${this.port}):\n${report}`);
    return this.exit;
  }
}

// Start a server with defaultConfig() deep-merged with `overrides`.
async function startServer(overrides = {}, opts = {}) {
  const port = await freePort();
  const config = merge(merge(defaultConfig(), overrides), { http_server: { port } });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-it-'));
  const srv = new Server(config, dir);
  return srv.start(opts);
}

module.exports = { startServer, Server, freePort, httpRequest, BIN, TOP_SRCDIR, TOP_BUILDDIR };
