'use strict';
// A reload that changes the worker count (issue 5): 2 -> 3 starts a worker
// on its own listener while the clients of the others stay connected; 3 -> 1
// stops the surplus workers gracefully (their SDK clients reconnect to the
// one left); a count above the worker slots made at start is refused and
// changes nothing. status, info and /metrics follow each change.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { describe, after } = require('node:test');

const { useServer } = require('./lib/harness');
const { TOP_BUILDDIR, httpRequest } = require('./lib/server');
const { toLibconfig, merge } = require('./lib/config');
const { sdkClient, sdkLocalPort, connectSdk, subscribeSdk, waitPub } = require('./lib/sdk');
const { ownerOf } = require('./lib/spread');
const { pollUntil } = require('./lib/util');

const CTL = process.env.CENTRIFUGO_CTL_BIN || path.join(TOP_BUILDDIR, 'src', 'centrifugo-ctl');

function ctl(args, { timeout = 60000 } = {}) {
  return new Promise((resolve, reject) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CENTRIFUGO_')));
    execFile(CTL, args, { timeout, env }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`centrifugo-ctl ${args.join(' ')}: ${err.message}\nstderr: ${stderr}`));
        return;
      }
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

const show = (r) => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

describe('reload with a new worker count (issue 5)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-nw-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'ctl.sock');
  const h = useServer({ workers: 2, ctl: { socket: sock } });
  const clients = [];
  after(() => { for (const c of clients) c.disconnect(); });

  const setWorkers = (srv, n) => {
    srv.config = merge(srv.config, { workers: n });
    fs.writeFileSync(srv.configPath, toLibconfig(srv.config));
  };
  const status = async () => {
    const r = await ctl(['-s', sock, '--json', 'status']);
    assert.equal(r.code, 0, show(r));
    return JSON.parse(r.stdout);
  };
  // status, info and /metrics all show `n` workers.
  const assertWorkers = async (srv, n) => {
    const st = await status();
    assert.equal(st.supervisor.workers, n, JSON.stringify(st));
    const ws = st.processes.filter((p) => p.role === 'worker');
    assert.deepEqual(ws.map((p) => p.id), [...Array(n).keys()], JSON.stringify(st));
    for (const p of st.processes) assert.equal(p.state, 'ready', JSON.stringify(st));
    const info = await srv.api('info', {});
    const procs = info.json.result.nodes[0].processes;
    assert.equal(procs.filter((p) => p.role === 'worker').length, n, info.text);
    const m = await httpRequest(srv.port, 'GET', '/metrics', { timeout: 5000 });
    const lags = m.text.match(/^centrifugo_ring_lag_records\{worker="\d+"\}/mg) || [];
    assert.equal(lags.length, n, m.text);
    return st;
  };
  const newClient = async () => {
    const c = sdkClient(h.server.wsUrl);
    clients.push(c);
    await connectSdk(c);
    c.sub = await subscribeSdk(c, 'news');
    return c;
  };
  const everyoneGets = async (srv, n) => {
    const r = await srv.api('publish', { channel: 'news', data: { n } });
    assert.equal(r.status, 200, r.text);
    for (const c of clients) await waitPub(c.sub, (p) => p.data.n === n, 10000);
  };

  h.test('2 -> 3 -> 1 workers without dropping the others; above the slots refused', async (t, srv) => {
    const start = await srv.waitChildren(2);
    for (let i = 0; i < 4; i++) await newClient();
    await everyoneGets(srv, 1);
    const first = clients.slice();
    for (const c of first) c.owner = await ownerOf(srv, sdkLocalPort(c));

    // More workers: the two keep their processes and their clients.
    setWorkers(srv, 3);
    let r = await ctl(['-s', sock, 'reload']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /workers: 2 -> 3/, show(r));
    const three = await srv.waitChildren(3);
    assert.deepEqual(three.workers.map((w) => w.index), [0, 1, 2]);
    assert.deepEqual(three.workers.slice(0, 2).map((w) => w.pid), start.workers.map((w) => w.pid));
    assert.deepEqual(three.brokers, start.brokers);
    const st = await assertWorkers(srv, 3);
    await everyoneGets(srv, 2);
    for (const c of first) {
      assert.equal(c.state, 'connected');
      assert.deepEqual(c.events.map((e) => e[0]), ['connecting', 'connected'], 'never disconnected');
    }
    // The new worker accepts clients: connect until one lands on it.
    const newPid = three.workers[2].pid;
    let onNew = null;
    for (let i = 0; i < 40 && !onNew; i++) {
      const c = await newClient();
      if (await ownerOf(srv, sdkLocalPort(c)) === newPid) onNew = c;
    }
    assert.ok(onNew, `no connection landed on the new worker ${newPid}`);
    await everyoneGets(srv, 3);

    // Fewer workers: 1 and 2 stop gracefully, their clients come back to 0.
    for (const c of clients) if (!c.owner) c.owner = await ownerOf(srv, sdkLocalPort(c));
    const moved = clients.filter((c) => c.owner !== start.workers[0].pid);
    assert.ok(moved.includes(onNew), 'the client of the new worker is among those that move');
    setWorkers(srv, 1);
    r = await ctl(['-s', sock, 'reload']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /workers: 3 -> 1/, show(r));
    const one = await srv.waitChildren(1);
    assert.equal(one.workers[0].pid, start.workers[0].pid);
    assert.deepEqual(one.brokers, start.brokers);
    await assertWorkers(srv, 1);
    await pollUntil(() => clients.every((c) => c.state === 'connected' && c.sub.state === 'subscribed'),
      { timeout: 15000, what: 'every client connected and subscribed again' });
    for (const c of moved) {
      // The shutdown disconnect (3001, reconnect), then connected again.
      assert.ok(c.events.some((e) => e[0] === 'connecting' && e[1].code === 3001), JSON.stringify(c.events));
      assert.equal(await ownerOf(srv, sdkLocalPort(c)), start.workers[0].pid);
    }
    for (const c of clients.filter((x) => !moved.includes(x)))
      assert.deepEqual(c.events.map((e) => e[0]), ['connecting', 'connected'], 'never disconnected');
    await everyoneGets(srv, 4);

    // Above the slots: refused, nothing changes.
    setWorkers(srv, st.supervisor.max_workers + 1);
    r = await ctl(['-s', sock, 'reload']);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout + r.stderr, new RegExp(`workers: ${st.supervisor.max_workers + 1} is more than the ${st.supervisor.max_workers} worker slots`), show(r));
    assert.match(r.stderr.trim(), /nothing changed$/, show(r));
    setWorkers(srv, 1);
    const still = await srv.waitChildren(1);
    assert.equal(still.workers[0].pid, start.workers[0].pid);
    await assertWorkers(srv, 1);
    await everyoneGets(srv, 5);
  }, { timeout: 120000 });
});
