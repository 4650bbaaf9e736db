'use strict';
// Small async helpers shared by the integration tests: bounded waits only.
// Nothing here measures time for an assertion; deadlines just keep a broken
// server from hanging the suite.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolve with the promise's value, or reject with `what` after `ms`.
function withTimeout(promise, ms, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

// Poll `fn` (sync or async) until it returns a truthy value; return that value.
// Rejects after `timeout` ms with a message naming `what`.
async function pollUntil(fn, { timeout = 10000, interval = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let lastErr = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= deadline) {
      const extra = lastErr ? ` (last error: ${lastErr.message})` : '';
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${extra}`);
    }
    await sleep(interval);
  }
}

// A promise with its resolve/reject exposed.
function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

// Wait for the first `event` emitted by an EventEmitter-like object whose
// arguments satisfy `pred` (default: any).
function once(emitter, event, { timeout = 5000, pred = () => true, what } = {}) {
  return withTimeout(new Promise((resolve) => {
    const handler = (...args) => {
      if (!pred(...args)) return;
      if (emitter.off) emitter.off(event, handler);
      else emitter.removeListener(event, handler);
      resolve(args[0]);
    };
    emitter.on(event, handler);
  }), timeout, what || `event '${event}'`);
}

module.exports = { sleep, withTimeout, pollUntil, deferred, once };
