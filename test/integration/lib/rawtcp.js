'use strict';
// A WebSocket client written directly on a TCP socket, for tests that need
// control below the `ws` library: a peer that completes the handshake and
// then stops reading or answering.

const net = require('node:net');
const crypto = require('node:crypto');
const { withTimeout, deferred } = require('./util');

// Encode one masked client frame (FIN set).
function encodeFrame(opcode, payload) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const len = data.length;
  let head;
  if (len < 126) {
    head = Buffer.alloc(2);
    head[1] = 0x80 | len;
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 0x80 | 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = 0x80 | opcode;
  const mask = crypto.randomBytes(4);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = data[i] ^ mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

// Incremental parser for (unmasked) server frames.
class FrameParser {
  constructor() { this.buf = Buffer.alloc(0); }
  push(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    const out = [];
    for (;;) {
      if (this.buf.length < 2) break;
      const opcode = this.buf[0] & 0x0f;
      let len = this.buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) break;
        len = this.buf.readUInt16BE(2); off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) break;
        len = Number(this.buf.readBigUInt64BE(2)); off = 10;
      }
      if (this.buf[1] & 0x80) off += 4; // servers must not mask, tolerate anyway
      if (this.buf.length < off + len) break;
      out.push({ opcode, payload: this.buf.subarray(off, off + len) });
      this.buf = this.buf.subarray(off + len);
    }
    return out;
  }
}

// Open a TCP connection to 127.0.0.1:port and perform the WebSocket
// handshake for `path`. Resolves with { socket, frames, ended, localPort,
// sendText(str) } once the 101 response has been read. `frames` collects
// every server frame ({opcode, payload}); `ended` resolves when the TCP
// connection ends or closes.
function tcpWebSocket(port, path = '/connection/websocket', timeout = 5000) {
  const socket = net.connect({ host: '127.0.0.1', port });
  const ready = deferred();
  const ended = deferred();
  const frames = [];
  const parser = new FrameParser();
  const key = crypto.randomBytes(16).toString('base64');
  let handshake = Buffer.alloc(0);
  let upgraded = false;
  socket.on('connect', () => {
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n`
      + `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  });
  socket.on('data', (chunk) => {
    if (!upgraded) {
      handshake = Buffer.concat([handshake, chunk]);
      const end = handshake.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = handshake.subarray(0, end).toString('latin1');
      if (!/^HTTP\/1\.1 101/.test(head)) {
        ready.reject(new Error(`handshake refused: ${head.split('\r\n')[0]}`));
        socket.destroy();
        return;
      }
      upgraded = true;
      chunk = handshake.subarray(end + 4);
      ready.resolve();
    }
    for (const f of parser.push(chunk)) frames.push(f);
  });
  socket.on('error', (err) => { ready.reject(err); ended.resolve({ error: err.code || err.message }); });
  socket.on('end', () => ended.resolve({ end: true }));
  socket.on('close', () => ended.resolve({ close: true }));
  const api = {
    socket,
    frames,
    ended: ended.promise,
    get localPort() { return socket.localPort; },
    sendText: (s) => socket.write(encodeFrame(0x1, s)),
    // Text payloads of the data frames received so far.
    texts: () => frames.filter((f) => f.opcode === 0x1 || f.opcode === 0x2).map((f) => f.payload.toString('utf8')),
    // The close frame received, if any: { code, reason }.
    closeFrame: () => {
      const f = frames.find((x) => x.opcode === 0x8);
      if (!f) return null;
      return { code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005, reason: f.payload.subarray(2).toString('utf8') };
    },
  };
  return withTimeout(ready.promise, timeout, 'raw TCP WebSocket handshake').then(() => api);
}

module.exports = { tcpWebSocket, encodeFrame, FrameParser };
