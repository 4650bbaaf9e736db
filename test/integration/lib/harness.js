'use strict';
// node:test glue: one server per describe() block (started in before(),
// stopped in after()), tests that append the server log to their failure
// message, and the "server is still healthy" check used after bad input.

const assert = require('node:assert/strict');
const { before, after, test } = require('node:test');
const { startServer } = require('./server');
const { rawClient } = require('./wsclient');

// Register hooks that start a server with `overrides` before the tests of
// the enclosing describe() (or file) and stop it afterwards. Returns a handle:
// handle.server is the live Server; handle.test(name, fn, {timeout}) declares
// a test whose failure message carries the server log tail. start: more
// options for Server.start() (env, wrap).
function useServer(overrides = {}, { startTimeout = 20000, start = {} } = {}) {
  const handle = { server: null, startError: null };
  before(async () => {
    handle.server = await startServer(overrides, { ...start, timeout: startTimeout });
  }, { timeout: startTimeout + 15000 });
  after(async () => {
    if (handle.server) await handle.server.stop();
  }, { timeout: 30000 });
  handle.test = (name, fn, opts = {}) => test(name, { timeout: 30000, ...opts }, withLog(() => handle.server, fn));
  return handle;
}

// Wrap a test body so a failure message ends with the server's log tail.
function withLog(getServer, fn) {
  return async (t) => {
    try {
      await fn(t, getServer());
    } catch (e) {
      const srv = getServer();
      if (srv && e && typeof e === 'object') {
        const status = srv.exit ? `server EXITED: ${JSON.stringify(srv.exit)}` : 'server still running';
        const tail = `\n--- server log tail (pid ${srv.pid}, port ${srv.port}, ${status}) ---\n`
          + `${srv.logTail(60)}\n--- end of server log ---`;
        // The reporter prints the stack, which embeds the message as it was
        // when the error was made: extend both.
        const stack = String(e.stack); // formatted lazily: read before touching message
        try { e.message = String(e.message) + tail; } catch { /* read-only */ }
        try { e.stack = stack + tail; } catch { /* read-only */ }
      }
      throw e;
    }
  };
}

// /health answers 200, a fresh raw client gets a connect reply, and no
// child process of the server died since it started (a worker crash could
// otherwise hide behind a quick respawn).
async function assertHealthy(srv) {
  assert.equal(srv.exit, null, `server exited: ${JSON.stringify(srv.exit)}`);
  assert.equal(await srv.health(), 200, 'GET /health after bad input');
  const c = await rawClient(srv.wsUrl, { connect: true });
  try {
    assert.equal(typeof c.connectReply.connect.client, 'string', 'new client connects after bad input');
  } finally {
    c.close();
  }
  const now = new Set(srv.treePids());
  const gone = srv.initialChildren.filter((pid) => !now.has(pid));
  assert.deepEqual(gone, [], `server child process(es) ${gone} died (crash?)`);
}

module.exports = { useServer, withLog, assertHealthy };
