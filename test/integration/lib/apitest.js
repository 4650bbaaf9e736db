'use strict';
// Helpers for the server API tests (api_*.test.js): a raw HTTP/1.1 client on
// a bare TCP socket (exact request bytes, exact status line and header
// lines back, keep-alive or Connection: close), users whose connections are
// spread over two workers, and the "nothing else arrived" check through a
// sentinel publication.

const assert = require('node:assert/strict');
const net = require('node:net');
const { rawClient } = require('./wsclient');
const { makeToken } = require('./token');
const { onTwoWorkers } = require('./spread');
const { withTimeout } = require('./util');

// Parse one HTTP/1.x response from the front of `buf` (a Buffer). Returns
// null when incomplete, else { status, statusLine, headerLines, headers,
// body (Buffer), rest (Buffer after this response) }. `eof`: the peer closed,
// so a body without a length runs to the end.
function parseResponse(buf, eof) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = buf.subarray(0, end).toString('latin1');
  const lines = head.split('\r\n');
  const statusLine = lines[0];
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(statusLine)}`);
  const headerLines = lines.slice(1);
  const headers = {};
  for (const l of headerLines) {
    const i = l.indexOf(':');
    const k = l.slice(0, i).trim().toLowerCase();
    (headers[k] = headers[k] || []).push(l.slice(i + 1).trim());
  }
  let p = end + 4;
  let body;
  const te = (headers['transfer-encoding'] || []).join(',').toLowerCase();
  if (te.includes('chunked')) {
    const parts = [];
    for (;;) {
      const le = buf.indexOf('\r\n', p);
      if (le < 0) return null;
      const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
      if (Number.isNaN(size)) throw new Error('bad chunk size');
      if (buf.length < le + 2 + size + 2) return null;
      if (size === 0) {
        // Skip (empty) trailers.
        const t = buf.indexOf('\r\n', le + 2);
        if (t < 0) return null;
        p = t + 2;
        break;
      }
      parts.push(buf.subarray(le + 2, le + 2 + size));
      p = le + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length']) {
    const n = Number(headers['content-length'][0]);
    if (buf.length < p + n) return null;
    body = buf.subarray(p, p + n);
    p += n;
  } else if (Number(m[1]) === 204 || Number(m[1]) === 304 || Number(m[1]) < 200) {
    body = Buffer.alloc(0);
  } else {
    if (!eof) return null;
    body = buf.subarray(p);
    p = buf.length;
  }
  return { status: Number(m[1]), statusLine, headerLines, headers, body, text: body.toString('utf8'), rest: buf.subarray(p) };
}

// A raw HTTP/1.1 connection. request(bytes) writes the bytes verbatim and
// resolves with the next parsed response (see parseResponse) plus `json`.
class RawHttp {
  constructor(port) {
    this.port = port;
    this.buf = Buffer.alloc(0);
    this.eof = false;
    this.waiter = null;
    this.sock = net.connect(port, '127.0.0.1');
    this.connected = new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
    this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this._check(); });
    this.sock.on('end', () => { this.eof = true; this._check(); });
    this.sock.on('close', () => { this.eof = true; this._check(); });
    this.sock.on('error', () => { this.eof = true; this._check(); });
  }

  _check() {
    if (!this.waiter) return;
    let r;
    try {
      r = parseResponse(this.buf, this.eof);
    } catch (e) {
      const w = this.waiter; this.waiter = null; w.reject(e); return;
    }
    if (r) {
      this.buf = r.rest;
      try { r.json = JSON.parse(r.text); } catch { r.json = undefined; }
      const w = this.waiter; this.waiter = null; w.resolve(r);
    } else if (this.eof) {
      const w = this.waiter; this.waiter = null;
      w.reject(new Error(`connection closed before a complete response; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`));
    }
  }

  async request(bytes, { timeout = 10000 } = {}) {
    await this.connected;
    const p = new Promise((resolve, reject) => { this.waiter = { resolve, reject }; });
    this.sock.write(bytes);
    this._check();
    return withTimeout(p, timeout, 'raw HTTP response');
  }

  // Resolves true once the server closed the connection (bounded).
  waitEof(timeout = 5000) {
    return withTimeout(new Promise((resolve) => {
      if (this.eof) { resolve(true); return; }
      this.sock.once('close', () => resolve(true));
    }), timeout, 'server closing the HTTP connection');
  }

  close() { this.sock.destroy(); }
}

// Build HTTP/1.1 request bytes: header lines in the given order, and a
// Content-Length for the body unless opts.noLength.
function httpBytes(method, path, headerList, body = '', { noLength = false } = {}) {
  const b = Buffer.from(body, 'utf8');
  const lines = [`${method} ${path} HTTP/1.1`, ...headerList];
  if (!noLength && (body !== '' || method === 'POST')) lines.push(`Content-Length: ${b.length}`);
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), b]);
}

// One request on a fresh connection; closes it afterwards.
async function rawRequest(port, bytes, opts) {
  const c = new RawHttp(port);
  try {
    return await c.request(bytes, opts);
  } finally {
    c.close();
  }
}

// Connect a raw client as `user` (HS256 token; extra claims allowed).
function userClient(srv, user, claims = {}) {
  return rawClient(srv.wsUrl, { connect: { token: makeToken({ sub: user, ...claims }) } });
}

// Two connections of `user` held by different worker processes. Spare
// connections opened on the way are closed. Returns [a, b].
async function userOnTwoWorkers(srv, user, claims = {}) {
  const { a, b, spare } = await onTwoWorkers(srv, () => userClient(srv, user, claims), (c) => c.localPort, { max: 48 });
  for (const c of spare) c.close();
  return [a, b];
}

// Publish a sentinel into `channel` (to which every client in `clients` is
// subscribed), wait for it on each client, then assert that none of them
// holds an unread message matching `pred` (which would have had to arrive
// before the sentinel, as both travel the same path).
async function assertNothingBefore(srv, clients, channel, pred, what) {
  const mark = `sentinel-${Math.random().toString(36).slice(2)}`;
  await srv.publish(channel, { mark });
  for (const c of clients) {
    await c.next((m) => m.push && m.push.channel === channel && m.push.pub && m.push.pub.data && m.push.pub.data.mark === mark,
      { what: `sentinel in ${channel}` });
    const bad = c.pending.filter(pred);
    assert.deepEqual(bad, [], `${what}: unexpected ${JSON.stringify(bad)}`);
  }
}

// Raw bytes of the frame that carried the first push matching pred
// (for byte-exact assertions), or undefined.
function rawFrameOf(client, needle) {
  return client.frames.find((f) => f.includes(needle));
}

module.exports = {
  parseResponse, RawHttp, httpBytes, rawRequest, userClient, userOnTwoWorkers, assertNothingBefore, rawFrameOf,
};
