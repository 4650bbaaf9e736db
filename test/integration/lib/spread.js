'use strict';
// Put clients on different workers: open connections until two of them are
// held by different worker processes (found through /proc, as the fan-out
// test does). Returns { a, b, pidA, pidB, spare } — spare are the other
// clients opened on the way (the caller closes them, or uses them).

const proc = require('./proc');
const { pollUntil } = require('./util');

// Which worker pid holds the connection whose client-side port is localPort.
async function ownerOf(srv, localPort) {
  const pids = srv.children().workers.map((w) => w.pid);
  return pollUntil(() => proc.socketOwner(pids, srv.port, localPort),
    { timeout: 3000, what: `worker owning client port ${localPort}` });
}

// open(): async, resolves with a connected client; portOf(client) -> its
// local TCP port. Throws when `max` connections all land on one worker.
async function onTwoWorkers(srv, open, portOf, { max = 16 } = {}) {
  const seen = [];
  for (let i = 0; i < max; i++) {
    const c = await open(i);
    const pid = await ownerOf(srv, portOf(c));
    const first = seen.find((s) => s.pid !== pid);
    seen.push({ c, pid });
    if (first) {
      const spare = seen.filter((s) => s.c !== first.c && s.c !== c).map((s) => s.c);
      return { a: first.c, pidA: first.pid, b: c, pidB: pid, spare };
    }
  }
  for (const s of seen) { try { (s.c.close || s.c.disconnect).call(s.c); } catch { /* ignore */ } }
  throw new Error(`${max} connections all landed on worker ${seen[0] && seen[0].pid}; cannot place clients on two workers`);
}

module.exports = { ownerOf, onTwoWorkers };
