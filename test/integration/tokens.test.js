'use strict';
// Connection JWTs (HS256): valid token identity reaches publications, bad
// signature -> 3500, expired -> 109 then getToken, no credentials -> 3501.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer, assertHealthy } = require('./lib/harness');
const { sdkClient, connectSdk, subscribeSdk, waitPub } = require('./lib/sdk');
const { rawClient } = require('./lib/wsclient');
const { makeToken, nowSec } = require('./lib/token');
const { once } = require('./lib/util');

describe('connection tokens', () => {
  const h = useServer({});
  const clients = [];
  const newClient = (opts) => { const c = sdkClient(h.server.wsUrl, opts); clients.push(c); return c; };
  afterEach(() => { for (const c of clients.splice(0)) c.disconnect(); });

  h.test('valid HS256 token: user and conn_info show in client publications', async () => {
    const token = makeToken({ sub: '42', exp: nowSec() + 3600, info: { name: 'Ann' } });
    const a = newClient({ token });
    const b = newClient();
    const ctx = await connectSdk(a);
    await connectSdk(b);
    const subA = await subscribeSdk(a, 'chat:tok');
    const subB = await subscribeSdk(b, 'chat:tok');
    await subA.publish({ text: 'signed' });
    const pub = await waitPub(subB);
    assert.deepEqual(pub.data, { text: 'signed' });
    assert.equal(pub.info.user, '42');
    assert.equal(pub.info.client, ctx.client);
    assert.deepEqual(pub.info.connInfo, { name: 'Ann' });
  });

  h.test('valid token over raw WebSocket: connect reply has expires/ttl', async (t, srv) => {
    const token = makeToken({ sub: '42', exp: nowSec() + 3600 });
    const c = await rawClient(srv.wsUrl, { connect: { token } });
    try {
      const res = c.connectReply.connect;
      assert.equal(res.expires, true, JSON.stringify(res));
      assert.ok(res.ttl > 3000 && res.ttl <= 3600, `ttl ${res.ttl}`);
    } finally {
      c.close();
    }
  });

  h.test('namespace without *_for_anonymous: anonymous gets 103, a token user is allowed', async (t, srv) => {
    const anon = await rawClient(srv.wsUrl, { connect: true });
    const user = await rawClient(srv.wsUrl, { connect: { token: makeToken({ sub: '7', exp: nowSec() + 600 }) } });
    try {
      let r = await anon.subscribe('users:1');
      assert.deepEqual(r.error, { code: 103, message: 'permission denied' }, JSON.stringify(r));
      r = await anon.command({ publish: { channel: 'users:1', data: { a: 1 } } });
      assert.deepEqual(r.error, { code: 103, message: 'permission denied' }, JSON.stringify(r));
      r = await user.subscribe('users:1');
      assert.deepEqual(r.subscribe, {}, JSON.stringify(r));
      r = await user.command({ publish: { channel: 'users:1', data: { a: 2 } } });
      assert.deepEqual(r.publish, {}, JSON.stringify(r));
      const p = await user.push({ channel: 'users:1', kind: 'pub' });
      assert.equal(p.push.pub.info.user, '7');
    } finally {
      anon.close();
      user.close();
    }
  });

  h.test('bad signature: disconnect 3500 "invalid token" (SDK terminal)', async (t, srv) => {
    const token = makeToken({ sub: '42', exp: nowSec() + 3600 }, { secret: 'wrong-secret' });
    const c = newClient({ token });
    const disc = once(c, 'disconnected', { timeout: 8000, what: 'SDK disconnected after bad token' });
    c.connect();
    const ctx = await disc;
    assert.equal(ctx.code, 3500, JSON.stringify(ctx));
    assert.equal(ctx.reason, 'invalid token');

    const raw = await rawClient(srv.wsUrl);
    raw.send({ id: 1, connect: { token } });
    const cl = await raw.waitClose();
    assert.deepEqual(cl, { code: 3500, reason: 'invalid token' });
    await assertHealthy(srv);
  });

  h.test('malformed token: disconnect 3500', async (t, srv) => {
    for (const token of ['not-a-jwt', 'a.b.c', makeToken({ sub: '1' }).slice(0, -3) + 'xyz']) {
      const raw = await rawClient(srv.wsUrl);
      raw.send({ id: 1, connect: { token } });
      const cl = await raw.waitClose();
      assert.equal(cl.code, 3500, `token ${token}: ${JSON.stringify(cl)}`);
    }
    await assertHealthy(srv);
  });

  h.test('expired token: error 109, SDK calls getToken and connects', async (t, srv) => {
    const expired = makeToken({ sub: '42', exp: nowSec() - 60 });
    const raw = await rawClient(srv.wsUrl);
    try {
      const reply = await raw.connect({ token: expired });
      assert.deepEqual(reply.error, { code: 109, message: 'token expired' }, JSON.stringify(reply));
    } finally {
      raw.close();
    }

    let calls = 0;
    const c = newClient({
      token: expired,
      getToken: async () => { calls++; return makeToken({ sub: '42', exp: nowSec() + 3600 }); },
    });
    const ctx = await connectSdk(c, 15000);
    assert.equal(typeof ctx.client, 'string');
    assert.ok(calls >= 1, 'getToken was called');
    const errs = c.events.filter(([ev]) => ev === 'error').map(([, e]) => e.error && e.error.code);
    assert.ok(errs.includes(109), `SDK saw error 109 first (errors: ${JSON.stringify(errs)})`);
  });

  h.test('token with "channel" claim is invalid (3500)', async (t, srv) => {
    const token = makeToken({ sub: '42', exp: nowSec() + 3600, channel: 'news' });
    const raw = await rawClient(srv.wsUrl);
    raw.send({ id: 1, connect: { token } });
    const cl = await raw.waitClose();
    assert.equal(cl.code, 3500, JSON.stringify(cl));
  });
});

describe('anonymous connections disabled', () => {
  const h = useServer({ workers: 1, client: { allow_anonymous_connect_without_token: false } });
  const clients = [];
  afterEach(() => { for (const c of clients.splice(0)) c.disconnect(); });

  h.test('connect without token: disconnect 3501', async (t, srv) => {
    const raw = await rawClient(srv.wsUrl);
    raw.send({ id: 1, connect: {} });
    const cl = await raw.waitClose();
    assert.equal(cl.code, 3501, JSON.stringify(cl));
    assert.equal(cl.reason, 'bad request');

    const c = sdkClient(srv.wsUrl);
    clients.push(c);
    const disc = once(c, 'disconnected', { timeout: 8000, what: 'SDK disconnected without credentials' });
    c.connect();
    const ctx = await disc;
    assert.equal(ctx.code, 3501, JSON.stringify(ctx));
    await assert.rejects(assertHealthy(srv), /connect failed|3501|closed/, 'anonymous still refused');
    assert.equal(await srv.health(), 200);
  });

  h.test('a valid token still connects', async (t, srv) => {
    const token = makeToken({ sub: 'u1', exp: nowSec() + 600 });
    const raw = await rawClient(srv.wsUrl, { connect: { token } });
    assert.equal(typeof raw.clientId, 'string');
    raw.close();
  });
});
