'use strict';
// Connection tokens verified with keys from a JWKS endpoint
// (client.token.jwks_public_endpoint): a node http server serves the key set,
// tokens are signed here with node:crypto (RS256). Valid token connects;
// bad signature, unknown kid and HS256 (static keys are ignored under JWKS)
// get 3500.
//
// The positive test stays  until client.c passes
// jwks_public_endpoint into struct auth_keys (see src/auth.h).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const { describe, before, after } = require('node:test');
const { useServer, assertHealthy } = require('./lib/harness');
const { rawClient } = require('./lib/wsclient');
const { makeToken, nowSec } = require('./lib/token');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function signRS256(privateKey, kid, claims) {
  const head = b64url(JSON.stringify({ alg: 'RS256', kid, typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.sign('sha256', Buffer.from(`${head}.${body}`), privateKey);
  return `${head}.${body}.${b64url(sig)}`;
}

describe('JWKS connection tokens', () => {
  const good = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...good.publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig', alg: 'RS256' };
  let requests = 0;
  const jwksServer = http.createServer((req, res) => {
    requests++;
    if (req.url !== '/jwks') { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  // Filled in before the server starts (hooks run in registration order).
  const overrides = { client: { token: { jwks_public_endpoint: '' } } };
  before(async () => {
    await new Promise((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    overrides.client.token.jwks_public_endpoint = `http://127.0.0.1:${jwksServer.address().port}/jwks`;
  });
  after(() => new Promise((resolve) => jwksServer.close(resolve)));
  const h = useServer(overrides);

  h.test('RS256 token whose kid is in the JWKS connects', async (t, srv) => {
    const token = signRS256(good.privateKey, 'k1', { sub: 'jwks-user', exp: nowSec() + 3600 });
    const c = await rawClient(srv.wsUrl, { connect: { token } });
    try {
      const res = c.connectReply.connect;
      assert.equal(typeof res.client, 'string', JSON.stringify(res));
      assert.equal(res.expires, true, JSON.stringify(res));
    } finally {
      c.close();
    }
    assert.ok(requests >= 1, 'the server fetched the JWKS');
  });

  // Refused with or without the client.c wiring (no static RSA key either).
  h.test('bad signature and unknown kid: disconnect 3500', async (t, srv) => {
    const tokens = {
      'wrong key': signRS256(other.privateKey, 'k1', { sub: 'x', exp: nowSec() + 3600 }),
      'unknown kid': signRS256(other.privateKey, 'nope', { sub: 'x', exp: nowSec() + 3600 }),
    };
    for (const [what, token] of Object.entries(tokens)) {
      const raw = await rawClient(srv.wsUrl);
      raw.send({ id: 1, connect: { token } });
      const cl = await raw.waitClose();
      assert.deepEqual(cl, { code: 3500, reason: 'invalid token' }, what);
    }
    await assertHealthy(srv);
  });

  h.test('HS256 token is refused: static keys are ignored under JWKS', async (t, srv) => {
    const raw = await rawClient(srv.wsUrl);
    raw.send({ id: 1, connect: { token: makeToken({ sub: 'x', exp: nowSec() + 3600 }) } });
    const cl = await raw.waitClose();
    assert.deepEqual(cl, { code: 3500, reason: 'invalid token' });
  });
});
