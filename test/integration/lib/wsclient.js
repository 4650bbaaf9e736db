'use strict';
// Raw WebSocket client for protocol-level tests (npm `ws`): sends text or
// binary frames, splits incoming frames on '\n' into JSON messages, answers
// server pings ({}), and exposes bounded waits for replies and for the close.

const WebSocket = require('ws');
const { withTimeout, deferred } = require('./util');

class RawClient {
  // opts.autoPong (default true): answer each server ping `{}` with `{}`.
  constructor(url, opts = {}) {
    this.url = url;
    this.autoPong = opts.autoPong !== false;
    this.frames = []; // raw text of every frame received, in order
    this.frameTypes = []; // 'text' or 'binary' for each entry of frames
    this.pending = []; // parsed messages not yet taken by next()
    this.pings = 0;
    this.waiters = [];
    this.closeInfo = null;
    this.closed = deferred();
    this.opened = deferred();
    this.errors = [];
    this.nextId = 1;
    this.ws = new WebSocket(url, opts.protocols || [], {
      perMessageDeflate: false,
      headers: opts.headers,
      handshakeTimeout: 5000,
      maxPayload: 256 * 1024 * 1024,
    });
    this.ws.on('open', () => this.opened.resolve());
    this.ws.on('message', (data, isBinary) => this._onFrame(data, isBinary));
    this.ws.on('error', (err) => { this.errors.push(err); this.opened.reject(err); });
    this.ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString('utf8') };
      this.closed.resolve(this.closeInfo);
      for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed (${code} ${this.closeInfo.reason}) while waiting for ${w.what}`));
    });
    this.opened.promise.catch(() => {});
  }

  get socket() { return this.ws._socket; }
  get localPort() { return this.ws._socket ? this.ws._socket.localPort : 0; }

  _onFrame(data, isBinary) {
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data).toString('utf8');
    this.frames.push(text);
    this.frameTypes.push(isBinary ? 'binary' : 'text');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      let msg;
      try { msg = JSON.parse(line); } catch { msg = { __unparsable: line }; }
      if (msg && typeof msg === 'object' && !Array.isArray(msg) && Object.keys(msg).length === 0) {
        this.pings++;
        if (this.autoPong && this.ws.readyState === WebSocket.OPEN) this.ws.send('{}');
        this._emit({ __ping: true });
        continue;
      }
      this._emit(msg);
    }
  }

  _emit(msg) {
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i];
      if (w.pred(msg)) {
        this.waiters.splice(i, 1);
        w.resolve(msg);
        return;
      }
    }
    if (!msg.__ping) this.pending.push(msg);
  }

  // Resolve once the WebSocket is open (bounded).
  open(timeout = 5000) {
    return withTimeout(this.opened.promise, timeout, `WebSocket open ${this.url}`);
  }

  // Send a string (text frame), a Buffer (binary frame unless opts.binary === false),
  // or an object / array of objects (JSON, one per line, in one text frame).
  send(payload, opts = {}) {
    if (typeof payload === 'string') {
      this.ws.send(payload, { binary: opts.binary === true });
    } else if (Buffer.isBuffer(payload)) {
      this.ws.send(payload, { binary: opts.binary !== false });
    } else {
      const list = Array.isArray(payload) ? payload : [payload];
      this.ws.send(list.map((c) => JSON.stringify(c)).join('\n'), { binary: opts.binary === true });
    }
  }

  // Take the first received message (past or future) matching pred.
  next(pred = () => true, { timeout = 5000, what = 'a message' } = {}) {
    const i = this.pending.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.pending.splice(i, 1)[0]);
    if (this.closeInfo) {
      return Promise.reject(new Error(`connection already closed (${this.closeInfo.code} ${this.closeInfo.reason}); wanted ${what}`));
    }
    const d = deferred();
    const w = { pred, resolve: d.resolve, reject: d.reject, what };
    this.waiters.push(w);
    return withTimeout(d.promise, timeout, `${what}; received so far: ${this.describe()}`)
      .finally(() => {
        const k = this.waiters.indexOf(w);
        if (k >= 0) this.waiters.splice(k, 1);
      });
  }

  // The reply to command `id`.
  reply(id, opts = {}) {
    return this.next((m) => m.id === id, { what: `reply to id ${id}`, ...opts });
  }

  // Next push (optionally for `channel` and of kind `kind`, e.g. 'pub').
  push({ channel, kind } = {}, opts = {}) {
    return this.next((m) => m.push && (channel === undefined || m.push.channel === channel)
      && (kind === undefined || m.push[kind] !== undefined), { what: `push ${kind || ''} in ${channel || 'any channel'}`, ...opts });
  }

  // Wait for the next server ping.
  ping(opts = {}) {
    return this.next((m) => m.__ping === true, { what: 'server ping {}', ...opts });
  }

  // Send one command with a fresh id; resolve with its reply.
  async command(body, opts = {}) {
    const id = this.nextId++;
    this.send({ id, ...body });
    return this.reply(id, opts);
  }

  // Send connect (optionally with a token and more fields); resolve with the reply.
  connect(connectReq = {}, opts) {
    return this.command({ connect: connectReq }, opts);
  }

  subscribe(channel, extra = {}, opts) {
    return this.command({ subscribe: { channel, ...extra } }, opts);
  }

  // Resolve with { code, reason } once the connection is closed (bounded).
  waitClose(timeout = 10000) {
    return withTimeout(this.closed.promise, timeout, `close of ${this.url}; received: ${this.describe()}`);
  }

  // Short printable summary of what arrived (for failure messages).
  describe(max = 600) {
    const s = JSON.stringify(this.frames.slice(-10));
    return (s.length > max ? s.slice(0, max) + '…' : s) + (this.closeInfo ? ` closed=${JSON.stringify(this.closeInfo)}` : '');
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      try { this.ws.terminate(); } catch { /* ignore */ }
    }
  }
}

// Open a raw client, optionally connect it (connect: true or a ConnectRequest
// object). Resolves with the client; `client.connectReply` holds the reply.
async function rawClient(url, { connect, ...opts } = {}) {
  const c = new RawClient(url, opts);
  await c.open();
  if (connect) {
    c.connectReply = await c.connect(connect === true ? {} : connect);
    if (!c.connectReply.connect) {
      c.close();
      throw new Error(`connect failed: ${JSON.stringify(c.connectReply)}`);
    }
    c.clientId = c.connectReply.connect.client;
  }
  return c;
}

module.exports = { RawClient, rawClient };
