'use strict';
// centrifugo-ctl and the supervisor's control socket (issue 5): status,
// reload (invalid file changes nothing; a new namespace applies with 200
// clients connected and none dropped; a new port restarts the workers one at
// a time on new sockets, a port that cannot be bound changes nothing), stop, gentoken/checktoken, the API
// commands, and clear errors when the daemon cannot be reached.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { describe, after } = require('node:test');

const { useServer } = require('./lib/harness');
const { TOP_BUILDDIR, freePort, httpRequest } = require('./lib/server');
const { toLibconfig, merge } = require('./lib/config');
const { rawClient } = require('./lib/wsclient');
const { pollUntil } = require('./lib/util');
const proc = require('./lib/proc');

const CTL = process.env.CENTRIFUGO_CTL_BIN || path.join(TOP_BUILDDIR, 'src', 'centrifugo-ctl');

// Runs centrifugo-ctl; resolves { code, stdout, stderr } (never rejects on a
// non-zero exit). Bounded so a hanging ctl fails the test.
function ctl(args, { timeout = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CENTRIFUGO_')));
    execFile(CTL, args, { timeout, env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`centrifugo-ctl ${args.join(' ')}: ${err.message}\nstderr: ${stderr}`));
        return;
      }
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

function show(r) {
  return `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

// Every describe block gets its own socket directory (short path: sun_path).
function ctlDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-ctl-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// Rewrites the server's configuration file with `over` merged in.
function rewriteConfig(srv, over) {
  const cfg = merge(srv.config, over);
  fs.writeFileSync(srv.configPath, toLibconfig(cfg));
  return cfg;
}

const NEWNS = {
  name: 'newns', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
};

describe('centrifugo-ctl against a running server', () => {
  const dir = ctlDir();
  const sock = path.join(dir, 'run', 'ctl.sock'); // run/ does not exist: the server makes it
  const h = useServer({ workers: 2, ctl: { socket: sock } });

  h.test('the control socket exists with mode 0660', async () => {
    const st = fs.statSync(sock);
    assert.ok(st.isSocket(), `${sock} is a socket`);
    assert.equal(st.mode & 0o777, 0o660);
  });

  h.test('status shows the supervisor, the broker and every worker (text and --json)', async (t, srv) => {
    const kids = await srv.waitChildren(2);
    const r = await ctl(['-s', sock, 'status']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`supervisor pid ${srv.pid}\\b`));
    for (const w of kids.workers) assert.match(r.stdout, new RegExp(`^worker \\d +${w.pid} ready`, 'm'), show(r));
    assert.match(r.stdout, new RegExp(`^broker +${kids.brokers[0]} ready`, 'm'), show(r));
    assert.match(r.stdout, /RING_LAG/);

    const j = await ctl(['-s', sock, '--json', 'status']);
    assert.equal(j.code, 0, show(j));
    const st = JSON.parse(j.stdout);
    assert.equal(st.supervisor.pid, srv.pid);
    assert.equal(st.supervisor.state, 'running');
    const workers = st.processes.filter((p) => p.role === 'worker');
    const brokers = st.processes.filter((p) => p.role === 'broker');
    assert.deepEqual(workers.map((p) => p.pid).sort(), kids.workers.map((w) => w.pid).sort());
    assert.deepEqual(brokers.map((p) => p.pid), kids.brokers);
    for (const p of st.processes) {
      assert.equal(p.state, 'ready');
      assert.equal(typeof p.uptime, 'number');
      assert.equal(typeof p.ring_lag, 'number');
    }
    for (const w of workers) {
      assert.equal(typeof w.connections, 'number');
      assert.equal(typeof w.subscriptions, 'number');
    }
  });

  h.test('-c FILE finds the socket through ctl.socket; version and help', async (t, srv) => {
    const r = await ctl(['-c', srv.configPath, 'status']);
    assert.equal(r.code, 0, show(r));
    const v = await ctl(['version']);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^centrifugo-ctl \S+ \(compatible with Centrifugo 6\./);
    const hlp = await ctl(['help']);
    assert.equal(hlp.code, 0);
    for (const c of ['status', 'reload', 'stop', 'reopen-logs', 'check-config', 'gentoken', 'checktoken',
      'genconfig', 'publish', 'broadcast', 'presence', 'history', 'channels', 'info', 'disconnect', 'unsubscribe']) {
      assert.match(hlp.stdout, new RegExp(`^  ${c}\\b`, 'm'), `help lists ${c}`);
    }
    const re = await ctl(['-s', sock, 'reopen-logs']);
    assert.equal(re.code, 0, show(re));
  });

  h.test('unknown command and bad arguments: exit 2, one line on stderr', async () => {
    for (const args of [['frobnicate'], ['publish', 'onlychannel'], ['checktoken'], ['publish', 'x', '{bad json']]) {
      const r = await ctl(['-s', sock, ...args]);
      assert.equal(r.code, 2, show(r));
      assert.equal(r.stderr.trim().split('\n').length, 1, show(r));
    }
  });

  h.test('control protocol: pipelined requests, bad input answered, server unharmed', async (t, srv) => {
    const net = require('node:net');
    // Sends `data`, collects replies until `want` arrived or the peer closed.
    const talk = (data, want) => new Promise((resolve, reject) => {
      const c = net.createConnection(sock);
      let buf = Buffer.alloc(0);
      const replies = [];
      const timer = setTimeout(() => { c.destroy(); reject(new Error(`no reply; got ${buf}`)); }, 10000);
      const parse = () => {
        for (;;) {
          if (buf.length < 13) return;
          const code = Number(buf.subarray(0, 3).toString());
          const len = Number(buf.subarray(4, 12).toString().trim());
          if (buf.length < 13 + len + 1) return;
          replies.push({ code, body: buf.subarray(13, 13 + len).toString() });
          buf = buf.subarray(13 + len + 1);
          if (replies.length === want) { clearTimeout(timer); c.end(); resolve({ replies, closed: false }); }
        }
      };
      c.on('data', (d) => { buf = Buffer.concat([buf, d]); parse(); });
      c.on('close', () => { clearTimeout(timer); resolve({ replies, closed: true }); });
      c.on('error', () => {});
      c.write(data);
    });
    // Two commands in one write, an empty line between: two replies, in order.
    const a = await talk('version\n\nhelp\r\n', 2);
    assert.deepEqual(a.replies.map((r) => r.code), [200, 200]);
    assert.match(a.replies[0].body, /^centrifugo /);
    assert.match(a.replies[1].body, /reload/);
    // Unknown command, wrong argument count, too many words.
    const b = await talk(`nope\nstatus x y\nstatus bogus\n${'a '.repeat(40)}\n`, 4);
    assert.deepEqual(b.replies.map((r) => r.code), [101, 104, 104, 104]);
    // A line longer than 4 KiB: 400, then the server closes the connection.
    const c = await talk('x'.repeat(10000), 1);
    assert.equal(c.replies[0].code, 400);
    // A NUL inside the line.
    const d = await talk('sta\0tus\n', 1);
    assert.equal(d.replies[0].code, 400);
    // Peer that goes away mid-request, and one that never sends a newline.
    const e = net.createConnection(sock);
    e.on('error', () => {});
    e.write('stat');
    e.destroy();
    const r = await ctl(['-s', sock, 'status']);
    assert.equal(r.code, 0, show(r));
    assert.equal(srv.exit, null);
  });

  h.test('reload of an invalid file: every error with file:line, exit 1, nothing changes', async (t, srv) => {
    const before = srv.children();
    const good = fs.readFileSync(srv.configPath, 'utf8');
    // Two errors on two lines, plus a namespace that must not appear.
    fs.writeFileSync(srv.configPath, `${toLibconfig(merge(srv.config, {
      channel: { namespaces: [...srv.config.channel.namespaces, NEWNS] },
    }))}bogus_option = 1;\nclient2 = { ping_interval = "x"; };\n`);
    try {
      const r = await ctl(['-s', sock, 'reload']);
      assert.equal(r.code, 1, show(r));
      const base = path.basename(srv.configPath);
      const errs = r.stdout.split('\n').filter((l) => l.includes(`${base}:`));
      assert.ok(errs.length >= 2, `every error listed with file:line\n${show(r)}`);
      assert.ok(errs.every((l) => /:\d+: /.test(l)), show(r));
      assert.match(r.stderr.trim(), /invalid; nothing changed$/);
      assert.equal(r.stderr.trim().split('\n').length, 1);

      const j = await ctl(['-s', sock, '--json', 'reload']);
      assert.equal(j.code, 1);
      const o = JSON.parse(j.stdout);
      assert.equal(o.ok, false);
      assert.ok(o.details.length >= 2, j.stdout);
    } finally {
      fs.writeFileSync(srv.configPath, good);
    }
    // Unchanged: same processes, newns still unknown, server healthy.
    const now = srv.children();
    assert.deepEqual(now.workers.map((w) => w.pid).sort(), before.workers.map((w) => w.pid).sort());
    assert.deepEqual(now.brokers, before.brokers);
    const c = await rawClient(srv.wsUrl, { connect: true });
    try {
      const rep = await c.subscribe('newns:x');
      assert.equal(rep.error && rep.error.code, 102, JSON.stringify(rep));
    } finally {
      c.close();
    }
  });

  h.test('reload adds a namespace with 200 clients connected: none dropped, the namespace works (issue 5)', async (t, srv) => {
    const N = 200;
    const clients = [];
    try {
      for (let i = 0; i < N; i += 50) {
        const batch = [];
        for (let k = i; k < Math.min(N, i + 50); k++) batch.push(rawClient(srv.wsUrl, { connect: true }));
        clients.push(...await Promise.all(batch));
      }
      const before = srv.children();
      // Before: the namespace does not exist (102 unknown channel).
      const rep0 = await clients[0].subscribe('newns:x');
      assert.equal(rep0.error && rep0.error.code, 102, JSON.stringify(rep0));

      srv.config = rewriteConfig(srv, { channel: { namespaces: [...srv.config.channel.namespaces, NEWNS] } });
      const r = await ctl(['-s', sock, 'reload']);
      if (r.code !== 0 && /client_reconfigure missing/.test(r.stdout + r.stderr)) {
        t.skip('this build has no client_reconfigure() in client.c yet: workers cannot take a new configuration');
        return;
      }
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /reloaded/);

      // Every client is still connected and every one can use the namespace.
      const closed = clients.filter((c) => c.closeInfo !== null);
      assert.deepEqual(closed.map((c) => c.closeInfo), [], 'no client was disconnected by the reload');
      const replies = await Promise.all(clients.map((c) => c.subscribe('newns:x', {}, { timeout: 10000 })));
      const bad = replies.filter((x) => !x.subscribe);
      assert.deepEqual(bad, [], 'subscribe to newns:x succeeds on every connection');
      // A publication reaches them (both workers).
      await srv.publish('newns:x', { after: 'reload' });
      const pushes = await Promise.all(clients.map((c) => c.push({ channel: 'newns:x', kind: 'pub' }, { timeout: 10000 })));
      assert.equal(pushes.length, N);
      for (const p of pushes) assert.deepEqual(p.push.pub.data, { after: 'reload' });
      // No process was restarted for it.
      const now = srv.children();
      assert.deepEqual(now.workers.map((w) => w.pid).sort(), before.workers.map((w) => w.pid).sort());
      assert.deepEqual(now.brokers, before.brokers);
      assert.equal(clients.filter((c) => c.closeInfo !== null).length, 0);
    } finally {
      for (const c of clients) c.close();
    }
  }, { timeout: 90000 });

  h.test('SIGHUP reloads too (the server stays up)', async (t, srv) => {
    const before = srv.children();
    process.kill(srv.pid, 'SIGHUP');
    await pollUntil(() => /reloading configuration/.test(srv.logTail(200)), { what: 'reload logged after SIGHUP' });
    assert.equal(srv.exit, null);
    const r = await ctl(['-s', sock, 'status']);
    assert.equal(r.code, 0, show(r));
    const now = srv.children();
    assert.deepEqual(now.workers.map((w) => w.pid).sort(), before.workers.map((w) => w.pid).sort());
  });

  h.test('gentoken output verifies with checktoken and connects to the server', async (t, srv) => {
    const g = await ctl(['-c', srv.configPath, 'gentoken', '-u', 'alice', '-t', '3600', '-q']);
    assert.equal(g.code, 0, show(g));
    const token = g.stdout.trim();
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);

    const ck = await ctl(['-c', srv.configPath, 'checktoken', token]);
    assert.equal(ck.code, 0, show(ck));
    assert.match(ck.stdout, /valid connection token for user "alice"/);
    const ckj = await ctl(['-c', srv.configPath, '--json', 'checktoken', token]);
    const o = JSON.parse(ckj.stdout);
    assert.equal(o.user, 'alice');
    assert.equal(o.claims.sub, 'alice');
    assert.ok(o.claims.exp > o.claims.iat);

    const c = await rawClient(srv.wsUrl, { connect: { token } });
    try {
      assert.equal(typeof c.connectReply.connect.client, 'string');
    } finally {
      c.close();
    }

    // A token signed with another secret is refused, exit 1, one line.
    const bad = `${token.slice(0, token.lastIndexOf('.') + 1)}AAAA`;
    const ckb = await ctl(['-c', srv.configPath, 'checktoken', bad]);
    assert.equal(ckb.code, 1, show(ckb));
    assert.match(ckb.stderr, /token is invalid/);
    assert.equal(ckb.stderr.trim().split('\n').length, 1);
  });

  h.test('API commands: publish reaches a subscriber; unknown channel and 404 give exit 1', async (t, srv) => {
    const c = await rawClient(srv.wsUrl, { connect: true });
    try {
      const sub = await c.subscribe('chat:ctl');
      assert.ok(sub.subscribe, JSON.stringify(sub));
      const p = await ctl(['-c', srv.configPath, 'publish', 'chat:ctl', '{"via":"ctl"}']);
      assert.equal(p.code, 0, show(p));
      const push = await c.push({ channel: 'chat:ctl', kind: 'pub' });
      assert.deepEqual(push.push.pub.data, { via: 'ctl' });

      const b = await ctl(['-c', srv.configPath, 'broadcast', '{"n":2}', 'chat:ctl', 'chat:other']);
      assert.equal(b.code, 0, show(b));
      const push2 = await c.push({ channel: 'chat:ctl', kind: 'pub' });
      assert.deepEqual(push2.push.pub.data, { n: 2 });
    } finally {
      c.close();
    }
    const u = await ctl(['-c', srv.configPath, 'publish', 'nosuchns:x', '{}']);
    assert.equal(u.code, 1, show(u));
    assert.match(u.stderr, /error 102/);
    // Methods the server may not implement yet: whatever it answers, ctl
    // reports it: success with the JSON, or exit 1 with one line.
    for (const args of [['presence', 'chat:ctl'], ['history', 'chat:ctl'], ['channels'], ['info'],
      ['disconnect', 'bob'], ['unsubscribe', 'bob', 'chat:ctl']]) {
      const r = await ctl(['-c', srv.configPath, ...args]);
      if (r.code === 0) {
        assert.doesNotThrow(() => JSON.parse(r.stdout), show(r));
      } else {
        assert.equal(r.code, 1, show(r));
        assert.equal(r.stderr.trim().split('\n').length, 1, show(r));
      }
    }
    // Bad API key: the server's 401 is reported.
    const badcfg = path.join(path.dirname(srv.configPath), 'badkey.cfg');
    fs.writeFileSync(badcfg, toLibconfig(merge(srv.config, { http_api: { key: 'wrong' } })));
    const k = await ctl(['-c', badcfg, 'publish', 'chat:ctl', '{}']);
    assert.equal(k.code, 1, show(k));
    assert.match(k.stderr, /HTTP 401/);
  });

  h.test('check-config and genconfig', async (t, srv) => {
    const ok = await ctl(['check-config', srv.configPath]);
    assert.equal(ok.code, 0, show(ok));
    assert.match(ok.stdout, /is valid/);
    const gen = await ctl(['genconfig']);
    assert.equal(gen.code, 0, show(gen));
    const genPath = path.join(path.dirname(srv.configPath), 'gen.cfg');
    fs.writeFileSync(genPath, gen.stdout);
    const ck = await ctl(['check-config', genPath]);
    assert.equal(ck.code, 0, show(ck));
    const gen2 = await ctl(['genconfig']);
    assert.notEqual(gen.stdout, gen2.stdout, 'fresh random secrets each time');
    const missing = await ctl(['check-config', path.join(path.dirname(srv.configPath), 'nope.cfg')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not found/);
  });
});

describe('centrifugo-ctl when the daemon cannot be reached', () => {
  const dir = ctlDir();

  const t = require('node:test').test;
  t('missing socket: exit 3 and a clear one-line message', async () => {
    const r = await ctl(['-s', path.join(dir, 'absent.sock'), 'status']);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stderr, /no control socket at .*absent\.sock: centrifugo is not running/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    const j = await ctl(['-s', path.join(dir, 'absent.sock'), '--json', 'reload']);
    assert.equal(j.code, 3);
    assert.equal(JSON.parse(j.stdout).ok, false);
  });

  t('stale socket file (nobody listening): exit 3, "not running"', async () => {
    const stale = path.join(dir, 'stale.sock');
    // A listener killed hard leaves its socket file behind.
    await new Promise((resolve, reject) => {
      execFile(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`],
        () => (fs.existsSync(stale) ? resolve() : reject(new Error('could not make a stale socket'))));
    });
    const r = await ctl(['-s', stale, 'status']);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stderr, /nothing answers on .*: centrifugo is not running/);
  });

  t('not a socket: exit 3', async () => {
    const f = path.join(dir, 'plain');
    fs.writeFileSync(f, 'x');
    const r = await ctl(['-s', f, 'status']);
    assert.equal(r.code, 3, show(r));
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  t('API command with no server: exit 3', async () => {
    const cfg = path.join(dir, 'noserver.cfg');
    fs.writeFileSync(cfg, 'http_server = { address = "127.0.0.1"; port = 1; };\nhttp_api = { key = "k"; };\n');
    const r = await ctl(['-c', cfg, 'publish', 'x', '{}']);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stderr, /cannot connect to the server API at 127\.0\.0\.1:1/);
  });
});

describe('reload that changes the listeners', () => {
  const dir = ctlDir();
  const sock = path.join(dir, 'ctl.sock');
  const h = useServer({ workers: 2, ctl: { socket: sock } });

  // GET /health on port; 0 when nothing answers.
  const healthOn = async (port) => {
    try {
      return (await httpRequest(port, 'GET', '/health', { timeout: 3000 })).status;
    } catch {
      return 0;
    }
  };

  h.test('a new port that is already in use: the reload fails with the error, nothing changes', async (t, srv) => {
    const net = require('node:net');
    const holder = net.createServer();
    await new Promise((resolve, reject) => {
      holder.once('error', reject);
      holder.listen(0, '127.0.0.1', resolve);
    });
    const busy = holder.address().port;
    const good = fs.readFileSync(srv.configPath, 'utf8');
    const before = await srv.waitChildren(2);
    try {
      rewriteConfig(srv, { http_server: { port: busy } });
      const r = await ctl(['-s', sock, 'reload']);
      assert.equal(r.code, 1, show(r));
      assert.match(r.stdout + r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy}: bind\\(\\) failed: Address already in use`), show(r));
      assert.match(r.stderr.trim(), /nothing changed$/, show(r));
    } finally {
      fs.writeFileSync(srv.configPath, good);
      await new Promise((resolve) => holder.close(resolve));
    }
    // The old port still serves, with the same processes.
    assert.equal(await healthOn(srv.port), 200);
    const c = await rawClient(srv.wsUrl, { connect: true });
    try {
      assert.equal(typeof c.connectReply.connect.client, 'string');
    } finally {
      c.close();
    }
    const now = srv.children();
    assert.deepEqual(now.workers.map((w) => w.pid).sort(), before.workers.map((w) => w.pid).sort());
    assert.deepEqual(now.brokers, before.brokers);
  });

  h.test('a new http_server.port: workers restarted one at a time on it, clients closed with 3001, the broker kept', async (t, srv) => {
    const before = await srv.waitChildren(2);
    const oldPort = srv.port;
    const clients = [];
    try {
      for (let i = 0; i < 6; i++) clients.push(await rawClient(srv.wsUrl, { connect: true }));
      const newPort = await freePort();
      srv.config = rewriteConfig(srv, { http_server: { port: newPort } });
      const r = await ctl(['-s', sock, 'reload'], { timeout: 60000 });
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, /2 of 2 workers restarted one at a time/, show(r));
      assert.match(r.stdout, /reloaded/, show(r));
      srv.port = newPort;

      // Clients of the old workers got the shutdown disconnect.
      for (const c of clients) {
        const close = await c.waitClose(10000);
        assert.equal(close.code, 3001, JSON.stringify(close));
      }
      // The new port serves /health and WebSocket; the old one nothing.
      assert.equal(await healthOn(newPort), 200);
      const c = await rawClient(srv.wsUrl, { connect: true });
      try {
        assert.equal(typeof c.connectReply.connect.client, 'string');
      } finally {
        c.close();
      }
      assert.equal(await healthOn(oldPort), 0, `nothing answers on the old port ${oldPort}`);
      // Every worker is a new process; the broker is the same one.
      const now = await srv.waitChildren(2);
      const oldPids = new Set(before.workers.map((w) => w.pid));
      assert.ok(now.workers.every((w) => !oldPids.has(w.pid)), `every worker restarted: ${JSON.stringify({ before, now })}`);
      assert.deepEqual(now.brokers, before.brokers);
      const st = JSON.parse((await ctl(['-s', sock, '--json', 'status'])).stdout);
      for (const p of st.processes) assert.equal(p.state, 'ready', JSON.stringify(st));
    } finally {
      for (const c of clients) c.close();
    }
  }, { timeout: 90000 });
});

describe('centrifugo-ctl stop', () => {
  const dir = ctlDir();
  const sock = path.join(dir, 'ctl.sock');
  const h = useServer({ workers: 2, ctl: { socket: sock } });

  h.test('stop is graceful: clients get 3001 shutdown, every process exits 0, the socket file goes', async (t, srv) => {
    const c = await rawClient(srv.wsUrl, { connect: true });
    const tree = srv.treePids();
    const r = await ctl(['-s', sock, 'stop'], { timeout: 60000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /stopped/);
    const close = await c.waitClose(10000);
    assert.equal(close.code, 3001, JSON.stringify(close));
    const exit = await Promise.race([srv.exited, new Promise((res) => setTimeout(() => res(null), 15000))]);
    assert.deepEqual(exit, { code: 0, signal: null });
    await pollUntil(() => tree.every((p) => !proc.alive(p)), { what: 'every process of the tree gone' });
    assert.equal(fs.existsSync(sock), false, 'socket file removed');
  });
});
