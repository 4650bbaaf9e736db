'use strict';
// centrifuge-js helpers: clients whose underlying `ws` socket is recorded
// (so a test can find which worker holds the connection) and bounded waits
// for SDK events.

const WebSocket = require('ws');
const { Centrifuge } = require('centrifuge');
const { once } = require('./util');

// A WebSocket class for the SDK's `websocket` option that remembers every
// socket it creates on `holder.sockets` (last one is the current transport).
function trackedWebSocket(holder) {
  holder.sockets = [];
  return class TrackedWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { perMessageDeflate: false });
      holder.sockets.push(this);
    }
  };
}

// new Centrifuge(...) with ws as transport. Extra options are passed through.
// Records every state event on client.events as [name, ctx].
function sdkClient(wsUrl, options = {}) {
  const holder = {};
  const client = new Centrifuge(wsUrl, {
    websocket: trackedWebSocket(holder),
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 5000,
    ...options,
  });
  client.holder = holder;
  client.events = [];
  for (const ev of ['connecting', 'connected', 'disconnected', 'error']) {
    client.on(ev, (ctx) => client.events.push([ev, ctx]));
  }
  return client;
}

// The local port of the client's current WebSocket (0 if none).
function sdkLocalPort(client) {
  const s = client.holder.sockets[client.holder.sockets.length - 1];
  return s && s._socket ? s._socket.localPort : 0;
}

// Connect and wait for 'connected' (rejects on 'disconnected').
async function connectSdk(client, timeout = 8000) {
  const connected = once(client, 'connected', { timeout, what: 'SDK connected' });
  const failed = once(client, 'disconnected', { timeout: timeout + 1000, what: 'SDK disconnected' })
    .then((ctx) => { throw new Error(`SDK disconnected: ${JSON.stringify(ctx)}`); });
  failed.catch(() => {});
  client.connect();
  return Promise.race([connected, failed]);
}

// Create a subscription and wait until it is subscribed. Publications are
// collected on sub.pubs.
async function subscribeSdk(client, channel, opts = {}, timeout = 8000) {
  const sub = client.newSubscription(channel, opts);
  sub.pubs = [];
  sub.on('publication', (ctx) => sub.pubs.push(ctx));
  const ok = once(sub, 'subscribed', { timeout, what: `SDK subscribed to ${channel}` });
  sub.subscribe();
  await ok;
  return sub;
}

// Wait for a publication on sub matching pred (looks at earlier ones too).
function waitPub(sub, pred = () => true, timeout = 8000) {
  const found = sub.pubs.find(pred);
  if (found) return Promise.resolve(found);
  return once(sub, 'publication', { timeout, pred, what: `publication on ${sub.channel}` });
}

module.exports = { Centrifuge, WebSocket, trackedWebSocket, sdkClient, sdkLocalPort, connectSdk, subscribeSdk, waitPub };
