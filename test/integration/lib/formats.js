'use strict';
// Both client protocol formats behind one interface, so a feature test can
// be written once and run for JSON and for Protobuf:
//   for (const fmt of FORMATS) describe(`... [${fmt}]`, () => { ... });
// rawClientF(fmt, url, opts)  raw client (RawClient or PbClient), same API
// sdkClientF(fmt, url, opts)  centrifuge-js client: the JSON build or the
//                             protobuf build (centrifuge/build/protobuf)
// enc(fmt, v) / dec(v)        application payloads for the SDK: the protobuf
//                             build wants and returns bytes (Uint8Array)
// trackedWebSocket(holder)   SDK transport recording sockets, with an offline switch
// infoOf(clientInfo)          SDK ClientInfo with connInfo/chanInfo decoded

const { Centrifuge: CentrifugeJson } = require('centrifuge');
const { Centrifuge: CentrifugePb } = require('centrifuge/build/protobuf');
const { RawClient } = require('./wsclient');
const { PbClient } = require('./pbclient');
const { WebSocket } = require('./sdk');

// A WebSocket class for the SDK's `websocket` option that records every
// socket on holder.sockets. While holder.offline is true new sockets are
// pointed at a closed port, so the SDK keeps failing to reconnect: with
// terminate() of the current socket this keeps a client away on purpose.
function trackedWebSocket(holder) {
  holder.sockets = [];
  holder.offline = false;
  return class TrackedWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(holder.offline ? 'ws://127.0.0.1:1/connection/websocket' : url, protocols, { perMessageDeflate: false });
      holder.sockets.push(this);
    }
  };
}

const FORMATS = ['json', 'protobuf'];

// Open a raw client of format fmt; connect it when opts.connect is true or a
// ConnectRequest object (client.connectReply, client.clientId are then set).
async function rawClientF(fmt, url, { connect, ...opts } = {}) {
  const c = fmt === 'protobuf' ? new PbClient(url, opts) : new RawClient(url, opts);
  if (!c.format) c.format = 'json';
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

// A centrifuge-js client of format fmt whose sockets are recorded on
// client.holder.sockets; state events are collected on client.events.
function sdkClientF(fmt, wsUrl, options = {}) {
  const holder = {};
  const Cls = fmt === 'protobuf' ? CentrifugePb : CentrifugeJson;
  const client = new Cls(wsUrl, {
    websocket: trackedWebSocket(holder),
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 5000,
    ...options,
  });
  client.format = fmt;
  client.holder = holder;
  client.events = [];
  for (const ev of ['connecting', 'connected', 'disconnected', 'error']) {
    client.on(ev, (ctx) => client.events.push([ev, ctx]));
  }
  return client;
}

// Application value -> what the SDK of format fmt publishes.
function enc(fmt, v) {
  return fmt === 'protobuf' ? new TextEncoder().encode(JSON.stringify(v)) : v;
}

// What the SDK delivered -> application value (bytes holding JSON are parsed).
function dec(v) {
  if (v instanceof Uint8Array || Buffer.isBuffer(v)) {
    const s = new TextDecoder().decode(v);
    if (s === '') return undefined;
    try { return JSON.parse(s); } catch { return s; }
  }
  return v;
}

function infoOf(info) {
  if (!info) return info;
  const out = { user: info.user, client: info.client };
  // The protobuf build hands absent bytes over as empty arrays: leave them out.
  const ci = dec(info.connInfo);
  const chi = dec(info.chanInfo);
  if (ci !== undefined) out.connInfo = ci;
  if (chi !== undefined) out.chanInfo = chi;
  return out;
}

module.exports = { trackedWebSocket, FORMATS, rawClientF, sdkClientF, enc, dec, infoOf };
