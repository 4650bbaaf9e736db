'use strict';
// Raw Protobuf client for protocol-level tests: the same API as RawClient
// (lib/wsclient.js) but speaking the `centrifuge-protobuf` WebSocket
// subprotocol with binary frames of varint length-delimited messages.
//
// The schema below is written here from the field table of
// shared/spec/protocol.md §3 (not taken from the server's own .proto), so a
// field-number mistake in the server shows up as a test failure.
//
// Messages are handed to tests in the same shape as the JSON format: snake_case
// keys, 64-bit integers as numbers, zero values left out, present-but-empty
// messages kept as {}. `bytes` fields holding valid JSON text are parsed
// (test payloads are JSON), other bytes stay Buffers. Outgoing commands may
// carry `data` as any JS value: it is sent as its JSON text (a Buffer is sent
// verbatim). With opts.keepBytes every bytes field stays a Buffer (for
// byte-exact checks).

const protobuf = require('protobufjs/light');
const { RawClient } = require('./wsclient');

const F = (id, type, extra = {}) => ({ id, type, ...extra });
const R = (id, type) => ({ id, type, rule: 'repeated' });
const M = (id, keyType, type) => ({ id, keyType, type });

const SCHEMA = {
  nested: {
    proto: {
      nested: {
        Error: { fields: { code: F(1, 'uint32'), message: F(2, 'string'), temporary: F(3, 'bool') } },
        Command: {
          fields: {
            id: F(1, 'uint32'), connect: F(4, 'ConnectRequest'), subscribe: F(5, 'SubscribeRequest'),
            unsubscribe: F(6, 'UnsubscribeRequest'), publish: F(7, 'PublishRequest'),
            presence: F(8, 'PresenceRequest'), presence_stats: F(9, 'PresenceStatsRequest'),
            history: F(10, 'HistoryRequest'), ping: F(11, 'Empty'), send: F(12, 'SendRequest'),
            rpc: F(13, 'RPCRequest'), refresh: F(14, 'RefreshRequest'), sub_refresh: F(15, 'SubRefreshRequest'),
          },
        },
        Reply: {
          fields: {
            id: F(1, 'uint32'), error: F(2, 'Error'), push: F(4, 'Push'), connect: F(5, 'ConnectResult'),
            subscribe: F(6, 'SubscribeResult'), unsubscribe: F(7, 'Empty'), publish: F(8, 'Empty'),
            presence: F(9, 'PresenceResult'), presence_stats: F(10, 'PresenceStatsResult'),
            history: F(11, 'HistoryResult'), ping: F(12, 'Empty'), rpc: F(13, 'RPCResult'),
            refresh: F(14, 'RefreshResult'), sub_refresh: F(15, 'SubRefreshResult'),
          },
        },
        Empty: { fields: {} },
        Push: {
          fields: {
            id: F(1, 'int64'), channel: F(2, 'string'), pub: F(4, 'Publication'), join: F(5, 'Join'),
            leave: F(6, 'Leave'), unsubscribe: F(7, 'UnsubscribePush'), message: F(8, 'Message'),
            subscribe: F(9, 'SubscribePush'), connect: F(10, 'ConnectResult'), disconnect: F(11, 'Disconnect'),
            refresh: F(12, 'RefreshPush'),
          },
        },
        ClientInfo: {
          fields: { user: F(1, 'string'), client: F(2, 'string'), conn_info: F(3, 'bytes'), chan_info: F(4, 'bytes') },
        },
        Publication: {
          fields: {
            data: F(4, 'bytes'), info: F(5, 'ClientInfo'), offset: F(6, 'uint64'), tags: M(7, 'string', 'string'),
            delta: F(8, 'bool'), time: F(9, 'int64'), channel: F(10, 'string'), key: F(11, 'string'),
            removed: F(12, 'bool'), score: F(13, 'sint64'), epoch: F(14, 'string'), prev_data: F(15, 'bytes'),
            version: F(16, 'uint64'),
          },
        },
        Join: { fields: { info: F(1, 'ClientInfo') } },
        Leave: { fields: { info: F(1, 'ClientInfo') } },
        UnsubscribePush: { fields: { code: F(2, 'uint32'), reason: F(3, 'string') } },
        SubscribePush: {
          fields: {
            recoverable: F(1, 'bool'), epoch: F(4, 'string'), offset: F(5, 'uint64'), positioned: F(6, 'bool'),
            data: F(7, 'bytes'),
          },
        },
        Message: { fields: { data: F(1, 'bytes') } },
        Disconnect: { fields: { code: F(1, 'uint32'), reason: F(2, 'string'), reconnect: F(3, 'bool') } },
        RefreshPush: { fields: { expires: F(1, 'bool'), ttl: F(2, 'uint32') } },
        ConnectRequest: {
          fields: {
            token: F(1, 'string'), data: F(2, 'bytes'), subs: M(3, 'string', 'SubscribeRequest'),
            name: F(4, 'string'), version: F(5, 'string'), headers: M(6, 'string', 'string'),
          },
        },
        ConnectResult: {
          fields: {
            client: F(1, 'string'), version: F(2, 'string'), expires: F(3, 'bool'), ttl: F(4, 'uint32'),
            data: F(5, 'bytes'), subs: M(6, 'string', 'SubscribeResult'), ping: F(7, 'uint32'),
            pong: F(8, 'bool'), session: F(9, 'string'), node: F(10, 'string'), time: F(11, 'int64'),
          },
        },
        RefreshRequest: { fields: { token: F(1, 'string') } },
        RefreshResult: {
          fields: { client: F(1, 'string'), version: F(2, 'string'), expires: F(3, 'bool'), ttl: F(4, 'uint32') },
        },
        SubscribeRequest: {
          fields: {
            channel: F(1, 'string'), token: F(2, 'string'), recover: F(3, 'bool'), epoch: F(6, 'string'),
            offset: F(7, 'uint64'), data: F(8, 'bytes'), positioned: F(9, 'bool'), recoverable: F(10, 'bool'),
            join_leave: F(11, 'bool'), delta: F(12, 'string'), flag: F(14, 'int64'),
          },
        },
        SubscribeResult: {
          fields: {
            expires: F(1, 'bool'), ttl: F(2, 'uint32'), recoverable: F(3, 'bool'), epoch: F(6, 'string'),
            publications: R(7, 'Publication'), recovered: F(8, 'bool'), offset: F(9, 'uint64'),
            positioned: F(10, 'bool'), data: F(11, 'bytes'), was_recovering: F(12, 'bool'), delta: F(13, 'bool'),
          },
        },
        SubRefreshRequest: { fields: { channel: F(1, 'string'), token: F(2, 'string') } },
        SubRefreshResult: { fields: { expires: F(1, 'bool'), ttl: F(2, 'uint32') } },
        UnsubscribeRequest: { fields: { channel: F(1, 'string') } },
        PublishRequest: { fields: { channel: F(1, 'string'), data: F(2, 'bytes') } },
        PresenceRequest: { fields: { channel: F(1, 'string') } },
        PresenceResult: { fields: { presence: M(1, 'string', 'ClientInfo') } },
        PresenceStatsRequest: { fields: { channel: F(1, 'string') } },
        PresenceStatsResult: { fields: { num_clients: F(1, 'uint32'), num_users: F(2, 'uint32') } },
        StreamPosition: { fields: { offset: F(1, 'uint64'), epoch: F(2, 'string') } },
        HistoryRequest: {
          fields: { channel: F(1, 'string'), limit: F(7, 'int32'), since: F(8, 'StreamPosition'), reverse: F(9, 'bool') },
        },
        HistoryResult: { fields: { publications: R(1, 'Publication'), epoch: F(2, 'string'), offset: F(3, 'uint64') } },
        RPCRequest: { fields: { data: F(1, 'bytes'), method: F(2, 'string') } },
        RPCResult: { fields: { data: F(1, 'bytes') } },
        SendRequest: { fields: { data: F(1, 'bytes') } },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(SCHEMA);
const Command = root.lookupType('proto.Command');
const Reply = root.lookupType('proto.Reply');

const isBytes = (v) => Buffer.isBuffer(v) || v instanceof Uint8Array;

// Command `data` fields (publish, rpc, send, connect, subscribe) as bytes.
function bytesifyData(v) {
  if (Array.isArray(v)) return v.map(bytesifyData);
  if (v === null || typeof v !== 'object' || isBytes(v)) return v;
  const out = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === 'data' && x !== undefined) out[k] = isBytes(x) ? Buffer.from(x) : Buffer.from(JSON.stringify(x));
    else out[k] = bytesifyData(x);
  }
  return out;
}

// Bytes holding JSON text -> the parsed value; other bytes -> Buffer.
function unbytes(v) {
  if (isBytes(v)) {
    const b = Buffer.from(v);
    try { return JSON.parse(b.toString('utf8')); } catch { return b; }
  }
  if (Array.isArray(v)) return v.map(unbytes);
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = unbytes(x);
    return out;
  }
  return v;
}

// Encode commands (objects in the JSON-format shape) into one frame.
function encodeCommands(list) {
  const w = protobuf.Writer.create();
  for (const c of list) {
    const msg = Command.fromObject(bytesifyData(c));
    Command.encodeDelimited(msg, w);
  }
  return Buffer.from(w.finish());
}

// Decode one frame into JSON-shaped replies; throws on malformed input.
function decodeReplies(buf, { keepBytes = false } = {}) {
  const r = protobuf.Reader.create(buf);
  const out = [];
  while (r.pos < r.len) {
    const m = Reply.decodeDelimited(r);
    const o = Reply.toObject(m, { longs: Number, defaults: false });
    out.push(keepBytes ? o : unbytes(o));
  }
  return out;
}

class PbClient extends RawClient {
  constructor(url, opts = {}) {
    super(url, { ...opts, protocols: opts.protocols || ['centrifuge-protobuf'] });
    this.format = 'protobuf';
    this.keepBytes = !!opts.keepBytes;
    this.rawFrames = []; // Buffers as received
  }

  get protocol() { return this.ws.protocol; }

  _onFrame(data, isBinary) {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
    this.rawFrames.push(buf);
    this.frames.push(buf.toString('hex'));
    this.frameTypes.push(isBinary ? 'binary' : 'text');
    let msgs;
    try {
      msgs = decodeReplies(buf, { keepBytes: this.keepBytes });
    } catch (e) {
      this._emit({ __unparsable: buf.toString('hex'), error: e.message });
      return;
    }
    for (const msg of msgs) {
      if (Object.keys(msg).length === 0) {
        this.pings++;
        if (this.autoPong && this.ws.readyState === 1) this.ws.send(Buffer.from([0]));
        this._emit({ __ping: true });
        continue;
      }
      this._emit(msg);
    }
  }

  // A Buffer is sent as is (binary); an object or array of objects is
  // encoded as Commands into one binary frame.
  send(payload, opts = {}) {
    if (typeof payload === 'string' || Buffer.isBuffer(payload)) {
      super.send(payload, opts);
      return;
    }
    const list = Array.isArray(payload) ? payload : [payload];
    this.ws.send(encodeCommands(list), { binary: true });
  }
}

module.exports = { PbClient, encodeCommands, decodeReplies, SCHEMA };
