'use strict';
// Builds libconfig text (the server's configuration format) from plain JS
// objects, and holds the default test configuration.
//
// Mapping: object -> group `{ k = v; }`, array of objects -> list `( {..}, {..} )`,
// array of scalars -> array `[ a, b ]`, string -> quoted, number/boolean -> literal.
// Keys whose value is undefined are left out, so an override can drop a default.

function quote(s) {
  return '"' + String(s)
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r')
    .replace(/\t/g, '\\t') + '"';
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function value(v, indent) {
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`libconfig: bad number ${v}`);
    return Number.isInteger(v) ? String(v) : String(v);
  }
  if (Array.isArray(v)) {
    if (v.length > 0 && v.every(isPlainObject)) {
      const pad = '  '.repeat(indent + 1);
      return '(\n' + v.map((g) => pad + group(g, indent + 1)).join(',\n') + '\n' + '  '.repeat(indent) + ')';
    }
    return '[ ' + v.map((x) => value(x, indent)).join(', ') + ' ]';
  }
  if (isPlainObject(v)) return group(v, indent);
  throw new Error(`libconfig: unsupported value ${JSON.stringify(v)}`);
}

function settings(obj, indent) {
  const pad = '  '.repeat(indent);
  return Object.entries(obj)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${pad}${k} = ${value(v, indent)};`)
    .join('\n');
}

function group(obj, indent) {
  const body = settings(obj, indent + 1);
  return body ? '{\n' + body + '\n' + '  '.repeat(indent) + '}' : '{ }';
}

// Serialise a whole configuration (top level is a list of settings).
function toLibconfig(obj) {
  return settings(obj, 0) + '\n';
}

// Deep merge: plain objects merge key by key, everything else (arrays
// included) is replaced by the override.
function merge(base, over) {
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = (isPlainObject(v) && isPlainObject(base[k])) ? merge(base[k], v) : v;
  }
  return out;
}

const HMAC_SECRET = 'test-secret';
const API_KEY = 'test-api-key';

// The configuration every test server starts from; `port` is filled in by
// the harness.
function defaultConfig() {
  return {
    http_server: { address: '127.0.0.1', port: 0 },
    workers: 2,
    log: { level: 'info' },
    health: { enabled: true },
    client: {
      allow_anonymous_connect_without_token: true,
      insecure: false,
      token: { hmac_secret_key: HMAC_SECRET },
      allowed_origins: ['*'],
      ping_interval: '25s',
      pong_timeout: '8s',
      queue_max_size: 1048576,
    },
    websocket: { message_size_limit: 65536 },
    http_api: { key: API_KEY },
    // Anonymous connections need the *_for_anonymous permissions (spec
    // §4.5.2 / §4.8); the "users" namespace leaves them out on purpose.
    channel: {
      without_namespace: {
        allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true, allow_publish_for_client: false,
      },
      namespaces: [
        {
          name: 'chat', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
          allow_publish_for_client: true, allow_publish_for_anonymous: true,
        },
        {
          name: 'subonly', allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
          allow_publish_for_subscriber: true, allow_publish_for_anonymous: true,
        },
        { name: 'users', allow_subscribe_for_client: true, allow_publish_for_client: true },
      ],
    },
  };
}

module.exports = { toLibconfig, merge, defaultConfig, HMAC_SECRET, API_KEY };
