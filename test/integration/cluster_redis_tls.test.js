'use strict';
// The Redis engine over TLS (engine.redis.tls, rediss:// addresses), against
// real redis-servers with TLS ports and certificates made by openssl for the
// test: two nodes exchanging publications and history through a TLS Redis,
// the certificate's name and chain checked (a wrong name or CA is refused,
// with the reason in the log, and the node keeps serving),
// insecure_skip_verify, a client certificate for a Redis that demands one
// (inline PEM and base64 PEM), no tunnel socket left behind, and an outage of
// the TLS Redis. Skipped only when redis-server is not installed.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, before, after, afterEach } = require('node:test');

const { freePort } = require('./lib/server');
const { pollUntil } = require('./lib/util');
const { makeCA } = require('./lib/tlscerts');
const {
  redisSkip, startRedisWith, uniquePrefix, startNodes, clusterTest,
  apiOk, sdkOn, subscribeOn, waitPubOf, publishUntilDelivered, closeAll,
} = require('./lib/services');

const OPEN = { allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true };
const CHANNELS = {
  without_namespace: { ...OPEN },
  namespaces: [{ name: 'hist', ...OPEN, history_size: 10, history_ttl: '300s' }],
};

let seq = 0;
const uniq = (ns) => `${ns ? `${ns}:` : ''}t${++seq}-${Math.random().toString(36).slice(2, 7)}`;

// A redis-server with a plain port (for the test's own commands) and a TLS
// port serving `cert`; authClients: 'no' or 'yes'.
async function startTlsRedis(ca, cert, authClients) {
  const tlsPort = await freePort();
  const r = await startRedisWith(['--tls-port', String(tlsPort), '--tls-cert-file', cert.cert,
    '--tls-key-file', cert.key, '--tls-ca-cert-file', ca.caCert, '--tls-auth-clients', authClients]);
  r.tlsPort = tlsPort;
  return r;
}

function nodeConfig(address, tls, prefix) {
  return {
    engine: { type: 'redis', redis: { address, prefix, io_timeout: '2s', connect_timeout: '1s', tls } },
    channel: CHANNELS,
  };
}

const logOf = (node) => fs.readFileSync(node.logPath, 'utf8');

// Publishes until one is accepted (the node connects in the background).
async function publishAccepted(node, channel, what) {
  await pollUntil(async () => {
    const r = await node.api('publish', { channel, data: { probe: true } });
    return r.json && r.json.result !== undefined;
  }, { timeout: 15000, interval: 200, what });
}

// The node answers publish with 100 and its log says why TLS failed.
async function refusedWith(node, pattern, what) {
  const log = await pollUntil(() => {
    const l = logOf(node);
    return pattern.test(l) ? l : null;
  }, { timeout: 15000, interval: 200, what: `${what}: log line matching ${pattern}` });
  assert.match(log, pattern);
  const r = await node.api('publish', { channel: uniq(), data: {} });
  assert.equal(r.json && r.json.error && r.json.error.code, 100, `${what}: publish must fail: ${r.text}`);
  assert.equal(await node.health(), 200, `${what}: the node keeps serving`);
}

describe('redis engine over TLS', { skip: redisSkip }, () => {
  const ctx = { nodes: [], services: [] };
  let ca;
  let otherCa;
  let plainTls; // TLS port, no client certificates asked
  let mutualTls; // TLS port, client certificate required
  let tmpdir;
  const open = [];

  before(async () => {
    ca = makeCA('test');
    otherCa = makeCA('other');
    // The server certificate names redis.test only: 127.0.0.1 does not match it.
    const srvCert = ca.issue('redis', { cn: 'redis.test', sans: ['DNS:redis.test'] });
    plainTls = await startTlsRedis(ca, srvCert, 'no');
    mutualTls = await startTlsRedis(ca, srvCert, 'yes');
    ctx.services.push(plainTls, mutualTls);
    tmpdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-tls-tmp-'));
  }, { timeout: 60000 });
  after(async () => {
    for (const n of ctx.nodes) await n.stop();
    for (const s of ctx.services) await s.dispose();
    ca.dispose();
    otherCa.dispose();
    fs.rmSync(tmpdir, { recursive: true, force: true });
  }, { timeout: 60000 });
  afterEach(async () => {
    closeAll(open);
  });

  const nodes = async (names, address, tls, env = {}) => {
    const prefix = uniquePrefix('cfit-tls');
    const list = await startNodes(names, () => nodeConfig(address, tls, prefix), { env });
    ctx.nodes.push(...list);
    return { list, prefix };
  };
  const stopAll = async (list) => {
    for (const n of list) {
      await n.stop();
      ctx.nodes.splice(ctx.nodes.indexOf(n), 1);
    }
  };
  const T = (name, fn, opts) => clusterTest(ctx, name, fn, opts);

  T('two nodes over rediss:// (CA file, server_name): delivery and history across nodes, data in Redis, no tunnel socket left', async () => {
    const tls = { server_ca_pem: ca.caCert, server_name: 'redis.test' };
    const { list: [A, B], prefix } = await nodes(['A', 'B'], `rediss://127.0.0.1:${plainTls.tlsPort}`, tls, { TMPDIR: tmpdir });
    await publishAccepted(A, uniq(), 'publish on A over TLS');
    await publishAccepted(B, uniq(), 'publish on B over TLS');

    const ch = uniq('hist');
    const ca1 = await sdkOn(A, 'ua', open);
    const sa = await subscribeOn(ca1, ch, 'client on A');
    await apiOk(B, 'publish', { channel: ch, data: { n: 1 } });
    assert.deepEqual((await waitPubOf(sa, (p) => p.data.n === 1)).data, { n: 1 });
    const h = await apiOk(A, 'history', { channel: ch, limit: 10 });
    assert.deepEqual(h.publications.map((p) => p.data), [{ n: 1 }], JSON.stringify(h));

    const keys = await plainTls.keys(`${prefix}.*`);
    assert.ok(keys.includes(`${prefix}.stream.${ch}`), `stream key in Redis: ${JSON.stringify(keys)}`);
    assert.deepEqual(fs.readdirSync(tmpdir), [], 'tunnel sockets and their directories are removed once connected');
    await stopAll([A, B]);
  });

  T('a certificate that does not name the address (no server_name): publish answers 100, the log says why, the node keeps serving', async () => {
    const { list: [C] } = await nodes(['C'], `rediss://127.0.0.1:${plainTls.tlsPort}`, { server_ca_pem: ca.caCert });
    await refusedWith(C, /redis shard 0: TLS to 127\.0\.0\.1:\d+: .*certificate verify failed.*(mismatch|hostname|IP address)/i, 'name mismatch');
    await stopAll([C]);
  });

  T('a CA that did not sign the server certificate: refused; insecure_skip_verify: accepted', async () => {
    const addr = `rediss://127.0.0.1:${plainTls.tlsPort}`;
    const { list: [D] } = await nodes(['D'], addr, { server_ca_pem: otherCa.caCert, server_name: 'redis.test' });
    await refusedWith(D, /TLS to 127\.0\.0\.1:\d+: .*certificate verify failed/, 'wrong CA');
    const { list: [E] } = await nodes(['E'], addr, { insecure_skip_verify: true });
    await publishAccepted(E, uniq(), 'publish with insecure_skip_verify');
    await stopAll([D, E]);
  });

  T('a Redis that demands client certificates: tls.enabled with cert_pem inline and key_pem base64 works, none is refused', async () => {
    const client = ca.issue('client', { cn: 'centrifugo', client: true });
    const certText = fs.readFileSync(client.cert, 'utf8');
    const keyB64 = fs.readFileSync(client.key).toString('base64');
    const base = { enabled: true, server_ca_pem: fs.readFileSync(ca.caCert).toString('base64'), server_name: 'redis.test' };
    const addr = `127.0.0.1:${mutualTls.tlsPort}`;
    const { list: [F] } = await nodes(['F'], addr, { ...base, cert_pem: certText, key_pem: keyB64 });
    await publishAccepted(F, uniq(), 'publish with a client certificate');
    const { list: [G] } = await nodes(['G'], addr, base);
    // TLS 1.3: the refusal comes after the handshake, as an alert, a reset or a close.
    await refusedWith(G, /TLS to 127\.0\.0\.1:\d+: .*(certificate required|before the server answered|before it answered)/, 'no client certificate');
    await stopAll([F, G]);
  });

  T('the TLS Redis killed and restarted: errors while down, clients stay, delivery after', async () => {
    const tls = { server_ca_pem: ca.caCert, server_name: 'redis.test' };
    const { list: [A, B] } = await nodes(['H', 'I'], `rediss://127.0.0.1:${plainTls.tlsPort}`, tls);
    await publishAccepted(A, uniq(), 'publish on H');
    await publishAccepted(B, uniq(), 'publish on I');
    const ch = uniq('hist');
    const ca1 = await sdkOn(A, 'ka', open);
    const cb1 = await sdkOn(B, 'kb', open);
    const sa = await subscribeOn(ca1, ch, 'client on H');
    const sb = await subscribeOn(cb1, ch, 'client on I');

    await plainTls.kill();
    await pollUntil(async () => {
      const r = await B.api('publish', { channel: ch, data: { down: true } });
      return r.json && r.json.error && r.json.error.code === 100;
    }, { timeout: 15000, interval: 200, what: 'publish answering 100 while the TLS Redis is down' });
    assert.equal(ca1.state, 'connected');
    assert.equal(cb1.state, 'connected');

    await plainTls.start();
    await publishUntilDelivered(B, ch, [sa, sb], 'publish on I delivered on H and I after the TLS Redis came back');
    assert.ok(!sa.pubs.some((p) => p.data.down), 'a publish answered 100 is not delivered');
    await stopAll([A, B]);
  }, { timeout: 60000 });
});
