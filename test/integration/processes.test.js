'use strict';
// Process model: titles, respawn of a killed worker or broker without
// disturbing the rest, and graceful shutdown on SIGTERM (3001 "shutdown",
// every process of the tree exits).

const assert = require('node:assert/strict');
const { describe, after } = require('node:test');
const { useServer } = require('./lib/harness');
const { sdkClient, sdkLocalPort, connectSdk, subscribeSdk, waitPub } = require('./lib/sdk');
const { rawClient } = require('./lib/wsclient');
const proc = require('./lib/proc');
const { pollUntil, sleep, once } = require('./lib/util');

// Which worker pid holds each SDK client's connection (null if unknown).
async function ownersOf(srv, clients) {
  const workerPids = srv.children().workers.map((w) => w.pid);
  const out = new Map();
  for (const c of clients) {
    const pid = await pollUntil(() => proc.socketOwner(workerPids, srv.port, sdkLocalPort(c)),
      { timeout: 3000, what: 'connection owner' }).catch(() => null);
    out.set(c, pid);
  }
  return out;
}

// Publish `mk(i)` repeatedly until `done()` holds (bounded). Useful right
// after a respawn, when the first publications may race the new process.
async function publishUntil(srv, channel, mk, done, { timeout = 15000, what = 'delivery' } = {}) {
  const deadline = Date.now() + timeout;
  for (let i = 0; ; i++) {
    const r = await srv.api('publish', { channel, data: mk(i) }).catch((e) => ({ status: 0, text: e.message }));
    if (r.status === 200 && r.json && r.json.result && await done()) return i;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last API answer: HTTP ${r.status} ${r.text}`);
    await sleep(300);
  }
}

describe('processes: titles and respawn', () => {
  const h = useServer({ workers: 2 });
  const clients = [];
  after(() => { for (const c of clients) c.disconnect(); });
  const newClient = () => { const c = sdkClient(h.server.wsUrl); clients.push(c); return c; };

  h.test('process titles: supervisor, 2 workers, broker', async (t, srv) => {
    const kids = await srv.waitChildren(2);
    assert.match(proc.cmdline(srv.pid), /^centrifugo: supervisor/, `supervisor title: ${proc.cmdline(srv.pid)}`);
    assert.deepEqual(kids.workers.map((w) => w.index), [0, 1]);
    for (const w of kids.workers) assert.match(w.title, /^centrifugo: worker \d+/);
    assert.match(proc.cmdline(kids.brokers[0]), /^centrifugo: broker/);
    assert.deepEqual(kids.other, [], `unexpected children: ${JSON.stringify(kids.other)}`);
  });

  h.test('a second server on the same port refuses to start (SO_REUSEPORT does not let it share)', async (t, srv) => {
    const fs = require('node:fs');
    const os = require('node:os');
    const path = require('node:path');
    const { spawn } = require('node:child_process');
    const { toLibconfig, merge, defaultConfig } = require('./lib/config');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-it-dup-'));
    const file = path.join(dir, 'config.cfg');
    fs.writeFileSync(file, toLibconfig(merge(defaultConfig(), {
      http_server: { port: srv.port }, ctl: { socket: path.join(dir, 'ctl.sock') },
    })));
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CENTRIFUGO_')));
    const child = spawn(require('./lib/server').BIN, ['-c', file], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    const code = await Promise.race([exited, sleep(10000).then(() => 'running')]);
    if (code === 'running') child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    assert.notEqual(code, 'running', `the second server started on port ${srv.port}: ${output}`);
    assert.notEqual(code, 0, output);
    assert.match(output, new RegExp(`:${srv.port}: bind\\(\\) failed: Address already in use`), output);
    // The first one is untouched.
    const r = await srv.api('info', {});
    assert.equal(r.status, 200);
  });

  h.test('SIGKILL a worker: respawned; clients elsewhere undisturbed; all resume', async (t, srv) => {
    const kids = await srv.waitChildren(2);
    const subs = new Map();
    for (let i = 0; i < 12; i++) {
      const c = newClient();
      await connectSdk(c);
      subs.set(c, await subscribeSdk(c, 'chat:respawn'));
    }
    const owners = await ownersOf(srv, [...subs.keys()]);
    const count = new Map(kids.workers.map((w) => [w.pid, 0]));
    for (const pid of owners.values()) if (pid) count.set(pid, (count.get(pid) || 0) + 1);
    t.diagnostic(`connections per worker: ${JSON.stringify([...count])}`);
    // Keep the busiest worker, kill the other one.
    const ranked = [...count].sort((a, b) => b[1] - a[1]);
    const survivorPid = ranked[0][0];
    const victimPid = ranked[1][0];
    const survivors = [...subs.keys()].filter((c) => owners.get(c) === survivorPid);
    const victims = [...subs.keys()].filter((c) => owners.get(c) === victimPid);
    if (victims.length === 0) t.diagnostic('no client landed on the killed worker');
    const eventsBefore = new Map(survivors.map((c) => [c, c.events.length]));

    process.kill(victimPid, 'SIGKILL');
    const after2 = await pollUntil(() => {
      const k = srv.children();
      const pids = k.workers.map((w) => w.pid);
      return (k.workers.length === 2 && !pids.includes(victimPid) && proc.alive(survivorPid)) ? k : null;
    }, { timeout: 15000, what: 'a new worker to replace the killed one' });
    t.diagnostic(`workers after respawn: ${JSON.stringify(after2.workers.map((w) => [w.index, w.pid]))}`);
    assert.ok(after2.workers.some((w) => w.pid === survivorPid), 'the other worker kept its pid');
    assert.equal(await srv.health(), 200);

    // A fresh client connects and receives publications.
    const fresh = newClient();
    await connectSdk(fresh);
    const freshSub = await subscribeSdk(fresh, 'chat:respawn');
    await publishUntil(srv, 'chat:respawn', (i) => ({ after: 'kill', i }),
      () => freshSub.pubs.some((p) => p.data.after === 'kill'), { what: 'fresh client to receive' });

    // Clients on the surviving worker saw no disconnect and still receive.
    for (const c of survivors) {
      const extra = c.events.slice(eventsBefore.get(c)).filter(([ev]) => ev !== 'error');
      assert.deepEqual(extra.map(([ev, ctx]) => [ev, ctx && ctx.code]), [], 'no state change on the surviving worker');
      assert.equal(c.state, 'connected');
      await waitPub(subs.get(c), (p) => p.data.after === 'kill', 10000);
    }

    // Clients of the killed worker reconnect and resubscribe by themselves.
    await pollUntil(() => victims.every((c) => c.state === 'connected' && subs.get(c).state === 'subscribed'),
      { timeout: 20000, what: 'clients of the killed worker to reconnect and resubscribe' });
    await srv.publish('chat:respawn', { everyone: true });
    await Promise.all([...subs.values(), freshSub].map((s) => waitPub(s, (p) => p.data.everyone === true, 10000)));
  }, { timeout: 90000 });

  h.test('SIGKILL the broker: respawned, publishing works again', async (t, srv) => {
    const kids = await srv.waitChildren(2);
    const oldBroker = kids.brokers[0];
    const c = newClient();
    await connectSdk(c);
    const sub = await subscribeSdk(c, 'chat:broker');
    await srv.publish('chat:broker', { before: true });
    await waitPub(sub, (p) => p.data.before === true);

    process.kill(oldBroker, 'SIGKILL');
    const k = await pollUntil(() => {
      const x = srv.children();
      return (x.brokers.length === 1 && x.brokers[0] !== oldBroker && x.workers.length === 2) ? x : null;
    }, { timeout: 15000, what: 'a new broker process' });
    t.diagnostic(`broker ${oldBroker} -> ${k.brokers[0]}; workers ${k.workers.map((w) => w.pid)}`);
    assert.deepEqual(k.workers.map((w) => w.pid).sort(), kids.workers.map((w) => w.pid).sort(), 'workers were not restarted');

    const fresh = newClient();
    await connectSdk(fresh);
    const freshSub = await subscribeSdk(fresh, 'chat:broker');
    await publishUntil(srv, 'chat:broker', (i) => ({ after: 'broker', i }),
      () => freshSub.pubs.some((p) => p.data.after === 'broker'), { what: 'fresh client to receive after broker respawn' });
    // The client subscribed before the crash gets publications again (the
    // worker re-announced its channels, or the client resubscribed).
    await publishUntil(srv, 'chat:broker', (i) => ({ again: true, i }),
      () => sub.pubs.some((p) => p.data.again === true), { what: 'old subscriber to receive after broker respawn' });
    // The new broker learnt the workers' state again: both connections and
    // the channel's two subscribers are counted (info, channels).
    const counted = await pollUntil(async () => {
      const info = (await srv.api('info', {})).json.result.nodes[0];
      const chans = (await srv.api('channels', {})).json.result.channels;
      const n = chans['chat:broker'] && chans['chat:broker'].num_clients;
      return info.num_clients >= 2 && n === 2 ? { info, chans } : null;
    }, { timeout: 10000, what: 'connections and subscribers counted by the new broker' }).catch((e) => e);
    assert.ok(!(counted instanceof Error), `after the respawn: ${counted.message}`);
  }, { timeout: 90000 });
});

describe('processes: graceful shutdown', () => {
  const h = useServer({ workers: 2 });
  const clients = [];
  after(() => { for (const c of clients) c.disconnect(); });

  h.test('SIGTERM: clients get 3001 "shutdown", every process exits', async (t, srv) => {
    await srv.waitChildren(2);
    const sdk = [];
    for (let i = 0; i < 4; i++) {
      const c = sdkClient(srv.wsUrl);
      clients.push(c);
      await connectSdk(c);
      await subscribeSdk(c, 'news');
      sdk.push(c);
    }
    const raws = [];
    for (let i = 0; i < 4; i++) raws.push(await rawClient(srv.wsUrl, { connect: true }));
    const tree = srv.treePids();
    assert.ok(tree.length >= 4, `tree: ${tree}`);
    const sdkWaits = sdk.map((c) => once(c, 'connecting', { timeout: 15000, pred: (ctx) => ctx.code === 3001, what: 'SDK connecting with 3001' }));
    sdkWaits.forEach((p) => p.catch(() => {}));

    process.kill(srv.pid, 'SIGTERM');

    // Gather everything first, then assert, so one run tells the whole story.
    const rawCloses = await Promise.allSettled(raws.map((r) => r.waitClose(15000)));
    const sdkCtx = await Promise.allSettled(sdkWaits);
    for (const c of sdk) c.disconnect();
    const allGone = await pollUntil(() => tree.every((pid) => !proc.alive(pid)),
      { timeout: 20000, what: `every process of ${JSON.stringify(tree)} to exit` }).then(() => true, (e) => e.message);
    const exit = await Promise.race([srv.exited, sleep(5000).then(() => null)]);
    t.diagnostic(`raw closes: ${JSON.stringify(rawCloses.map((x) => x.value || x.reason.message))}`);
    t.diagnostic(`SDK connecting events: ${JSON.stringify(sdkCtx.map((x) => x.value || x.reason.message))}`);
    t.diagnostic(`supervisor exit: ${JSON.stringify(exit)}`);

    assert.equal(allGone, true, 'every process of the tree exited');
    assert.ok(exit, 'supervisor exited');
    assert.equal(exit.signal, null, 'supervisor exited by itself, not killed by a signal');
    assert.equal(exit.code, 0, 'graceful stop exits 0');
    for (const r of rawCloses) {
      assert.equal(r.status, 'fulfilled', r.reason && r.reason.message);
      assert.deepEqual(r.value, { code: 3001, reason: 'shutdown' }, 'raw client close frame');
    }
    for (const r of sdkCtx) {
      assert.equal(r.status, 'fulfilled', r.reason && r.reason.message);
      assert.equal(r.value.code, 3001);
      assert.equal(r.value.reason, 'shutdown');
    }
  }, { timeout: 60000 });
});
