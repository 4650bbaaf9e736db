'use strict';
// centrifuge-js against the real server: anonymous connect, subscribe,
// server-API publish delivery, client publish permissions per namespace.

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer } = require('./lib/harness');
const { sdkClient, connectSdk, subscribeSdk, waitPub } = require('./lib/sdk');
const { once } = require('./lib/util');

describe('SDK basics', () => {
  const h = useServer({});
  const clients = [];
  const newClient = (opts) => { const c = sdkClient(h.server.wsUrl, opts); clients.push(c); return c; };
  afterEach(() => { for (const c of clients.splice(0)) c.disconnect(); });

  h.test('anonymous connect, subscribe, API publish is delivered', async (t, srv) => {
    const c = newClient();
    const ctx = await connectSdk(c);
    assert.equal(typeof ctx.client, 'string');
    assert.ok(ctx.client.length > 0, 'connected ctx carries a client id');
    assert.equal(ctx.transport, 'websocket');
    const sub = await subscribeSdk(c, 'news');

    const r = await srv.api('publish', { channel: 'news', data: { text: 'hi' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.deepEqual(r.json, { result: {} });

    const pub = await waitPub(sub);
    assert.deepEqual(pub.data, { text: 'hi' });
    assert.equal(pub.channel, 'news');
    assert.equal(pub.info, undefined, 'server API publications carry no publisher info');
  });

  h.test('publications arrive in order', async (t, srv) => {
    const c = newClient();
    await connectSdk(c);
    const sub = await subscribeSdk(c, 'ordered');
    for (let i = 0; i < 20; i++) await srv.publish('ordered', { n: i });
    await waitPub(sub, (p) => p.data.n === 19);
    assert.deepEqual(sub.pubs.map((p) => p.data.n), Array.from({ length: 20 }, (_, i) => i));
  });

  h.test('client publish in "chat" reaches the other subscribers', async () => {
    const a = newClient();
    const b = newClient();
    const ctxA = await connectSdk(a);
    await connectSdk(b);
    const subA = await subscribeSdk(a, 'chat:room');
    const subB = await subscribeSdk(b, 'chat:room');
    await subA.publish({ msg: 'from A', n: [1, 2, 3] });
    const got = await waitPub(subB);
    assert.deepEqual(got.data, { msg: 'from A', n: [1, 2, 3] });
    assert.ok(got.info, 'client publication carries publisher info');
    assert.equal(got.info.client, ctxA.client);
    assert.equal(got.info.user, '');
    const own = await waitPub(subA);
    assert.deepEqual(own.data, { msg: 'from A', n: [1, 2, 3] }, 'publisher subscribed to the channel gets its own publication');
  });

  h.test('client publish to the top-level namespace is refused with 103', async () => {
    const c = newClient();
    await connectSdk(c);
    await assert.rejects(c.publish('news', { x: 1 }), (err) => {
      assert.equal(err.code, 103, JSON.stringify(err));
      assert.equal(err.message, 'permission denied');
      return true;
    });
    // Subscribed or not makes no difference for the top-level namespace.
    const sub = await subscribeSdk(c, 'news');
    await assert.rejects(sub.publish({ x: 2 }), (err) => err.code === 103);
    assert.equal(c.state, 'connected', 'a client error does not disconnect');
  });

  h.test('"subonly" publish needs a subscription (allow_publish_for_subscriber)', async () => {
    const c = newClient();
    const other = newClient();
    await connectSdk(c);
    await connectSdk(other);
    await assert.rejects(c.publish('subonly:x', { y: 1 }), (err) => {
      assert.equal(err.code, 103, JSON.stringify(err));
      return true;
    });
    const watcher = await subscribeSdk(other, 'subonly:x');
    const sub = await subscribeSdk(c, 'subonly:x');
    await sub.publish({ y: 2 });
    const got = await waitPub(watcher);
    assert.deepEqual(got.data, { y: 2 });
    // Client-level publish (not through the Subscription object) is also fine now.
    await c.publish('subonly:x', { y: 3 });
    await waitPub(watcher, (p) => p.data.y === 3);
  });

  h.test('subscribe to an unknown namespace fails with 102', async () => {
    const c = newClient();
    await connectSdk(c);
    const sub = c.newSubscription('nope:x');
    // centrifuge-js turns a non-temporary subscribe error into 'unsubscribed'
    // carrying the server's code and message.
    const unsub = once(sub, 'unsubscribed', { what: 'unsubscribed after 102' });
    sub.subscribe();
    const u = await unsub;
    assert.equal(u.code, 102, JSON.stringify(u));
    assert.equal(u.reason, 'unknown channel');
    assert.equal(c.state, 'connected');
  });
});
