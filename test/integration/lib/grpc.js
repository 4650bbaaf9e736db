'use strict';
// A raw GRPC-over-HTTP/2 (h2c) client for the CentrifugoApi service, with a
// Protobuf writer and reader small enough to check field numbers by hand
// (the schema is written from the spec, never generated from ours).

const http2 = require('node:http2');
const net = require('node:net');
const zlib = require('node:zlib');
const { withTimeout } = require('./util');

const SERVICE = 'centrifugal.centrifugo.api.CentrifugoApi';

function pbVarint(n) {
  const out = [];
  let v = BigInt.asUintN(64, BigInt(n));
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Buffer.from(out);
}
const pbKey = (field, wt) => pbVarint((field << 3) | wt);
const pbUint = (field, n) => Buffer.concat([pbKey(field, 0), pbVarint(n)]);
const pbBool = (field, b) => pbUint(field, b ? 1 : 0);
const pbBytes = (field, buf) => Buffer.concat([pbKey(field, 2), pbVarint(buf.length), buf]);
const pbStr = (field, s) => pbBytes(field, Buffer.from(s, 'utf8'));
const pbMsg = (field, ...parts) => pbBytes(field, Buffer.concat(parts));
// map<string,string> entry
const pbMapStr = (field, k, v) => pbMsg(field, pbStr(1, k), pbStr(2, v));

// Decode a message into { field: [values] } (varints as Numbers,
// length-delimited as Buffers, fixed64/32 as Buffers).
function pbDecode(buf) {
  const out = {};
  let i = 0;
  const varint = () => {
    let v = 0n; let s = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << s;
      if (!(b & 0x80)) return v;
      s += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const f = key >> 3; const wt = key & 7;
    let val;
    if (wt === 0) val = Number(varint());
    else if (wt === 2) { const n = Number(varint()); val = buf.subarray(i, i + n); i += n; if (i > buf.length) throw new Error('truncated'); }
    else if (wt === 1) { val = buf.subarray(i, i + 8); i += 8; }
    else if (wt === 5) { val = buf.subarray(i, i + 4); i += 4; }
    else throw new Error(`wire type ${wt}`);
    (out[f] = out[f] || []).push(val);
  }
  return out;
}
// The one value of field f (a Buffer decoded again when sub is true).
const one = (m, f) => (m && m[f] ? m[f][0] : undefined);
const sub = (m, f) => (m && m[f] ? pbDecode(m[f][0]) : undefined);
// map<string, X> field f as { key: Buffer|Number }.
function pbMap(m, f) {
  const out = {};
  for (const e of (m && m[f]) || []) {
    const d = pbDecode(e);
    out[one(d, 1).toString()] = one(d, 2);
  }
  return out;
}

// The 5-byte GRPC message prefix.
function frame(payload, compressed = false) {
  const out = Buffer.alloc(5 + payload.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

/*
 * One unary call over a fresh h2c connection.  Resolves
 * { status, grpcMessage, message (Buffer|null), headers, trailers,
 *   httpStatus, rstCode } - status is NaN when the stream was reset.
 * opts: gzip (compress the request), metadata (extra headers), body (raw
 * DATA bytes instead of framing req), path, method (HTTP), contentType.
 */
function grpcCall(port, rpc, req, opts = {}) {
  req = req || Buffer.alloc(0);
  return withTimeout(new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    const body = opts.body !== undefined ? opts.body
      : opts.gzip ? frame(zlib.gzipSync(req), true) : frame(req);
    const headers = {
      ':method': opts.method || 'POST',
      ':path': opts.path || `/${SERVICE}/${rpc}`,
      'content-type': opts.contentType || 'application/grpc',
      te: 'trailers',
      'user-agent': 'grpc-go/1.64.0',
      ...(opts.gzip ? { 'grpc-encoding': 'gzip' } : {}),
      ...(opts.metadata || {}),
    };
    const stream = session.request(headers, { endStream: headers[':method'] === 'GET' });
    const chunks = [];
    let respHeaders = {};
    let trailers = {};
    stream.on('response', (hd) => { respHeaders = hd; });
    stream.on('trailers', (tr) => { trailers = tr; });
    stream.on('data', (d) => chunks.push(d));
    stream.on('error', () => {});
    stream.on('close', () => {
      session.close();
      const data = Buffer.concat(chunks);
      let message = null;
      if (data.length >= 5) {
        const n = data.readUInt32BE(1);
        message = data.subarray(5, 5 + n);
        if (data[0] === 1) message = zlib.gunzipSync(message);
      }
      const pick = (k) => (trailers[k] !== undefined ? trailers[k] : respHeaders[k]);
      const st = pick('grpc-status');
      resolve({
        status: st === undefined ? NaN : Number(st),
        grpcMessage: pick('grpc-message') !== undefined ? decodeURIComponent(pick('grpc-message')) : undefined,
        details: pick('grpc-status-details-bin'),
        message,
        headers: respHeaders,
        trailers,
        httpStatus: respHeaders[':status'],
        rstCode: stream.rstCode,
      });
    });
    if (headers[':method'] !== 'GET') stream.end(body);
  }), opts.timeout || 10000, `GRPC ${rpc}`);
}

// Decode a response body { error = 1, result = 2 }: { error: {code, message}, result: decoded }.
function resp(r) {
  const m = pbDecode(r.message || Buffer.alloc(0));
  const e = sub(m, 1);
  return {
    error: e ? { code: one(e, 1) || 0, message: (one(e, 2) || Buffer.alloc(0)).toString() } : undefined,
    result: sub(m, 2),
    raw: m,
  };
}

// Writes bytes on a plain TCP connection to port and collects everything
// the server sends until it closes (or timeoutMs passes: closed = false).
function rawExchange(port, bytes, timeoutMs = 10000) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ closed, data: Buffer.concat(chunks) });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
  });
}

// HTTP/2 frames in data: [{ type, flags, stream, payload }].
function h2Frames(data) {
  const out = [];
  let i = 0;
  while (i + 9 <= data.length) {
    const len = data.readUIntBE(i, 3);
    out.push({ type: data[i + 3], flags: data[i + 4], stream: data.readUInt32BE(i + 5) & 0x7fffffff, payload: data.subarray(i + 9, i + 9 + len) });
    i += 9 + len;
  }
  return out;
}

module.exports = {
  SERVICE, pbVarint, pbUint, pbBool, pbBytes, pbStr, pbMsg, pbMapStr, pbDecode, pbMap, one, sub,
  frame, grpcCall, resp, rawExchange, h2Frames,
};
