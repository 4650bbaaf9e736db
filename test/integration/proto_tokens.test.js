'use strict';
// Connection and subscription JWTs (protocol.md §4.4, §6), in both formats,
// on a 2-worker server: HS256/384/512, RS256/384/512 and ES256 keys made at
// run time with node:crypto; claims sub, exp, info, b64info, expire_at;
// expiry and the `refresh` command (SDK getToken, 3005 without refresh);
// subscription tokens for private "$" channels and every failure code of
// §6.5. sub_refresh and subscription expiry (2501).

const assert = require('node:assert/strict');
const { describe, afterEach } = require('node:test');
const { useServer } = require('./lib/harness');
const { FORMATS, rawClientF, sdkClientF, dec, infoOf } = require('./lib/formats');
const { signJwt, keyPair, nowSec } = require('./lib/jwt');
const { once, pollUntil, sleep } = require('./lib/util');

const RSA = keyPair('rsa');
const EC = keyPair('P-256');
const OTHER_RSA = keyPair('rsa');
const OTHER_EC = keyPair('P-256');

const OPEN = {
  allow_subscribe_for_client: true, allow_subscribe_for_anonymous: true,
  allow_publish_for_client: true, allow_publish_for_anonymous: true,
};
const CONFIG = {
  workers: 2,
  client: {
    token: { rsa_public_key: RSA.publicPem, ecdsa_public_key: EC.publicPem },
    expired_close_delay: '1s',
    expired_sub_close_delay: '1s',
    presence_update_interval: '1s',
  },
  channel: {
    namespaces: [
      { name: 'tok', ...OPEN, presence: true, allow_presence_for_client: true, allow_presence_for_anonymous: true },
      // private channels: $priv:x; no subscribe permission without a token
      { name: 'priv', presence: true, allow_presence_for_client: true, allow_presence_for_anonymous: true },
    ],
  },
};

const hs = (claims, alg = 'HS256') => signJwt(claims, { alg });
let seq = 0;
const uniq = (ns, fmt) => `${ns}:t${++seq}-${fmt}`;
const errOf = (r) => r.error && { code: r.error.code, message: r.error.message };

describe('tokens', () => {
  const h = useServer(CONFIG);
  const open = [];
  afterEach(() => {
    for (const c of open.splice(0)) {
      try { if (c.disconnect) c.disconnect(); else c.close(); } catch { /* ignore */ }
    }
  });

  for (const fmt of FORMATS) {
    describe(`[${fmt}]`, () => {
      const raw = async (opts = {}) => {
        const c = await rawClientF(fmt, h.server.wsUrl, opts);
        open.push(c);
        return c;
      };
      const sdk = (opts) => { const c = sdkClientF(fmt, h.server.wsUrl, opts); open.push(c); return c; };
      // Connect raw with token; expect the connection to be closed with code.
      const expectClose = async (connectReq, code, reason) => {
        const c = await raw();
        c.send({ id: 1, connect: connectReq });
        const cl = await c.waitClose();
        assert.deepEqual(cl, { code, reason }, `connect ${JSON.stringify(connectReq).slice(0, 80)}: ${c.describe()}`);
      };
      // The ClientInfo the server gives a client publication of connection c.
      const identity = async (c) => {
        const ch = uniq('tok', fmt);
        assert.ok((await c.subscribe(ch)).subscribe);
        assert.deepEqual((await c.command({ publish: { channel: ch, data: { me: 1 } } })).publish, {});
        const p = await c.push({ channel: ch, kind: 'pub' });
        await c.command({ unsubscribe: { channel: ch } });
        return p.push.pub.info;
      };

      const algs = [
        ['HS256', undefined], ['HS384', undefined], ['HS512', undefined],
        ['RS256', RSA.privateKey], ['RS384', RSA.privateKey], ['RS512', RSA.privateKey],
        ['ES256', EC.privateKey],
      ];
      h.test('connection tokens of every configured algorithm: sub and info reach ClientInfo', async () => {
        for (const [alg, key] of algs) {
          const token = signJwt({ sub: `u-${alg}`, exp: nowSec() + 600, info: { alg } }, { alg, key });
          const c = await raw({ connect: { token } });
          assert.equal(c.connectReply.connect.expires, true, `${alg}: ${JSON.stringify(c.connectReply)}`);
          assert.deepEqual(await identity(c), { user: `u-${alg}`, client: c.clientId, conn_info: { alg } }, alg);
          c.close();
        }
      });

      h.test('bad signatures and algorithms: disconnect 3500 "invalid token"', async (t, srv) => {
        const claims = { sub: 'x', exp: nowSec() + 600 };
        const bad = {
          'RS256 by another key': signJwt(claims, { alg: 'RS256', key: OTHER_RSA.privateKey }),
          'ES256 by another key': signJwt(claims, { alg: 'ES256', key: OTHER_EC.privateKey }),
          'HS256 with the wrong secret': signJwt(claims, { alg: 'HS256', key: 'nope' }),
          'HS256 keyed with the RSA public PEM (alg confusion)': signJwt(claims, { alg: 'HS256', key: RSA.publicPem }),
          'RS256 signature under alg RS512': (() => {
            const tk = signJwt(claims, { alg: 'RS256', key: RSA.privateKey }).split('.');
            const head = Buffer.from(JSON.stringify({ alg: 'RS512', typ: 'JWT' })).toString('base64url');
            return [head, tk[1], tk[2]].join('.');
          })(),
          'ES256 with a DER signature': (() => {
            const tk = signJwt(claims, { alg: 'ES256', key: EC.privateKey }).split('.');
            const crypto = require('node:crypto');
            const der = crypto.sign('sha256', Buffer.from(`${tk[0]}.${tk[1]}`), EC.privateKey);
            return `${tk[0]}.${tk[1]}.${der.toString('base64url')}`;
          })(),
          'alg none': (() => {
            const head = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
            return `${head}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
          })(),
          'sub not a string': hs({ sub: 42, exp: nowSec() + 600 }),
          'exp not a number': hs({ sub: 'x', exp: 'tomorrow' }),
          'b64info not base64': hs({ sub: 'x', exp: nowSec() + 600, b64info: '!!!not base64!!!' }),
        };
        for (const [what, token] of Object.entries(bad)) {
          await t.test(what, () => expectClose({ token }, 3500, 'invalid token'));
        }
        assert.equal(await srv.health(), 200);
      });

      h.test('claims: b64info wins over info; no exp: no expiry; expire_at', async () => {
        const b64 = Buffer.from('{"from":"b64"}').toString('base64');
        let c = await raw({ connect: { token: hs({ sub: 'b', info: { from: 'info' }, b64info: b64 }) } });
        assert.equal(c.connectReply.connect.expires, undefined, `no exp: ${JSON.stringify(c.connectReply)}`);
        assert.deepEqual(await identity(c), { user: 'b', client: c.clientId, conn_info: { from: 'b64' } });

        // expire_at decides the connection expiry; exp only the token validity
        c = await raw({ connect: { token: hs({ sub: 'e', exp: nowSec() + 3600, expire_at: nowSec() + 120 }) } });
        const r = c.connectReply.connect;
        assert.equal(r.expires, true, JSON.stringify(r));
        assert.ok(r.ttl > 60 && r.ttl <= 120, `ttl from expire_at: ${JSON.stringify(r)}`);
        c = await raw({ connect: { token: hs({ sub: 'e', exp: nowSec() + 3600, expire_at: 0 }) } });
        assert.equal(c.connectReply.connect.expires, undefined, `expire_at 0 never expires: ${JSON.stringify(c.connectReply)}`);

        c = await raw();
        let rep = await c.connect({ token: hs({ sub: 'e', exp: nowSec() + 3600, expire_at: nowSec() - 10 }) });
        assert.deepEqual(errOf(rep), { code: 110, message: 'expired' }, `expire_at in the past: ${JSON.stringify(rep)}`);
        c = await raw();
        rep = await c.connect({ token: hs({ sub: 'e', exp: nowSec() - 10 }) });
        assert.deepEqual(errOf(rep), { code: 109, message: 'token expired' }, JSON.stringify(rep));
        c = await raw();
        rep = await c.connect({ token: signJwt({ sub: 'e', exp: nowSec() - 10 }, { alg: 'ES256', key: EC.privateKey }) });
        assert.deepEqual(errOf(rep), { code: 109, message: 'token expired' }, `ES256 expired: ${JSON.stringify(rep)}`);
        c = await raw();
        rep = await c.connect({ token: hs({ sub: 'e', nbf: nowSec() + 600 }) });
        assert.deepEqual(errOf(rep), { code: 109, message: 'token expired' }, `nbf in the future: ${JSON.stringify(rep)}`);
      });

      h.test('SDK: expired token -> 109 -> getToken -> connected', async () => {
        let calls = 0;
        const c = sdk({
          token: hs({ sub: 'g', exp: nowSec() - 5 }),
          getToken: async () => { calls++; return hs({ sub: 'g', exp: nowSec() + 600 }); },
        });
        const ok = once(c, 'connected', { timeout: 10000 });
        c.connect();
        await ok;
        assert.ok(calls >= 1);
        const errs = c.events.filter(([ev]) => ev === 'error').map(([, e]) => e.error && e.error.code);
        assert.ok(errs.includes(109), `errors: ${JSON.stringify(errs)}`);
      });

      h.test('refresh: new expiry; errors 3005 (expired), 3500 (bad, other user), 3501 (empty)', async () => {
        const c = await raw({ connect: { token: hs({ sub: 'r', exp: nowSec() + 600 }) } });
        let r = await c.command({ refresh: { token: hs({ sub: 'r', exp: nowSec() + 3600 }) } });
        assert.ok(r.refresh, JSON.stringify(r));
        assert.equal(r.refresh.expires, true, JSON.stringify(r));
        assert.ok(r.refresh.ttl > 3000 && r.refresh.ttl <= 3600, JSON.stringify(r));
        r = await c.command({ refresh: { token: signJwt({ sub: 'r', exp: nowSec() + 1800 }, { alg: 'RS256', key: RSA.privateKey }) } });
        assert.ok(r.refresh.ttl > 1000 && r.refresh.ttl <= 1800, `RS256 refresh: ${JSON.stringify(r)}`);

        const cases = [
          ['expired token', hs({ sub: 'r', exp: nowSec() - 5 }), 3005, 'connection expired'],
          ['bad signature', signJwt({ sub: 'r', exp: nowSec() + 600 }, { key: 'wrong' }), 3500, 'invalid token'],
          ['another user', hs({ sub: 'someone-else', exp: nowSec() + 600 }), 3500, 'invalid token'],
          ['empty token', '', 3501, 'bad request'],
        ];
        for (const [what, token, code, reason] of cases) {
          const x = await raw({ connect: { token: hs({ sub: 'r', exp: nowSec() + 600 }) } });
          x.send({ id: 2, refresh: { token } });
          const cl = await x.waitClose();
          assert.deepEqual(cl, { code, reason }, `refresh with ${what}: ${x.describe()}`);
        }
      });

      h.test('connection expiry: refreshed connection survives; unrefreshed one closed with 3005', async () => {
        const exp = nowSec() + 2;
        const kept = await raw({ connect: { token: hs({ sub: 'x1', exp }) } });
        const lost = await raw({ connect: { token: hs({ sub: 'x2', exp }) } });
        assert.equal(lost.connectReply.connect.expires, true);
        assert.ok(lost.connectReply.connect.ttl <= 2, JSON.stringify(lost.connectReply));
        const r = await kept.command({ refresh: { token: hs({ sub: 'x1', exp: nowSec() + 600 }) } });
        assert.equal(r.refresh.expires, true, JSON.stringify(r));
        const cl = await lost.waitClose(20000);
        assert.deepEqual(cl, { code: 3005, reason: 'connection expired' }, lost.describe());
        // Past exp + expired_close_delay for both: the refreshed one still answers.
        while (nowSec() <= exp + 2) await sleep(200);
        const p = await kept.command({ presence_stats: { channel: uniq('tok', fmt) } });
        assert.ok(p.presence_stats, JSON.stringify(p));
        assert.equal(kept.closeInfo, null);
      }, { timeout: 40000 });

      h.test('refresh with a token without exp: expiry cleared, the connection is not closed later', async () => {
        const exp = nowSec() + 2;
        const c = await raw({ connect: { token: hs({ sub: 'ne', exp }) } });
        const r = await c.command({ refresh: { token: hs({ sub: 'ne' }) } });
        assert.ok(r.refresh, JSON.stringify(r));
        assert.equal(r.refresh.expires, undefined, `no expiry: ${JSON.stringify(r)}`);
        while (nowSec() <= exp + 3) await sleep(200);
        const p = await c.command({ presence_stats: { channel: uniq('tok', fmt) } });
        assert.ok(p.presence_stats, `spec §10.2: expiry cleared: ${JSON.stringify(p)} ${c.describe()}`);
      }, { timeout: 40000 });

      h.test('SDK: connection token refreshed through getToken before it expires', async () => {
        let calls = 0;
        const c = sdk({
          token: hs({ sub: 'sdkr', exp: nowSec() + 2 }),
          getToken: async () => { calls++; return hs({ sub: 'sdkr', exp: nowSec() + 600 }); },
        });
        const ok = once(c, 'connected', { timeout: 8000 });
        c.connect();
        await ok;
        const seen = c.events.length;
        await pollUntil(() => calls >= 1, { timeout: 15000, what: 'getToken called for refresh' });
        const start = nowSec();
        while (nowSec() <= start + 4) await sleep(200);
        const disc = c.events.slice(seen).filter(([ev]) => ev === 'disconnected' || ev === 'connecting');
        assert.deepEqual(disc, [], `stayed connected through the refresh: ${JSON.stringify(c.events)}`);
        const st = await c.presenceStats(uniq('tok', fmt));
        assert.deepEqual(st, { numClients: 0, numUsers: 0 });
      }, { timeout: 40000 });

      h.test('subscription tokens on private channels: chan_info, 103, 3500, 109, 110, expires/ttl', async (t) => {
        const user = 'pv';
        const connect = { token: hs({ sub: user, info: { c: 1 } }) };
        const ch = `$${uniq('priv', fmt)}`;
        const c = await raw({ connect });
        let r = await c.subscribe(ch, { token: hs({ sub: user, channel: ch, info: { seat: 3 } }) });
        assert.ok(r.subscribe, `valid HS256 token: ${JSON.stringify(r)}`);
        assert.equal(r.subscribe.expires, undefined, JSON.stringify(r));
        const pr = await pollUntil(async () => {
          const x = await c.command({ presence: { channel: ch } });
          return x.presence && x.presence.presence && x.presence.presence[c.clientId] ? x : null;
        }, { timeout: 8000, what: 'own presence entry' });
        assert.deepEqual(pr.presence.presence[c.clientId], { user, client: c.clientId, conn_info: { c: 1 }, chan_info: { seat: 3 } });

        const ch2 = `$${uniq('priv', fmt)}`;
        r = await c.subscribe(ch2, { token: signJwt({ sub: user, channel: ch2, exp: nowSec() + 600 }, { alg: 'ES256', key: EC.privateKey }) });
        assert.equal(r.subscribe && r.subscribe.expires, true, `ES256 sub token with exp: ${JSON.stringify(r)}`);
        assert.ok(r.subscribe.ttl > 500 && r.subscribe.ttl <= 600, JSON.stringify(r));

        const err = async (what, channel, token, want) => {
          const x = await c.subscribe(channel, token === undefined ? {} : { token });
          assert.deepEqual(errOf(x), want, `${what}: ${JSON.stringify(x)}`);
        };
        const ch3 = `$${uniq('priv', fmt)}`;
        await err('no token on a $ channel', ch3, undefined, { code: 103, message: 'permission denied' });
        await err('bad signature', ch3, signJwt({ sub: user, channel: ch3 }, { key: 'wrong' }), { code: 103, message: 'permission denied' });
        await err('RS256 by another key', ch3, signJwt({ sub: user, channel: ch3 }, { alg: 'RS256', key: OTHER_RSA.privateKey }), { code: 103, message: 'permission denied' });
        await err('empty channel claim', ch3, hs({ sub: user }), { code: 103, message: 'permission denied' });
        await err('expired', ch3, hs({ sub: user, channel: ch3, exp: nowSec() - 5 }), { code: 109, message: 'token expired' });
        await err('expire_at in the past', ch3, hs({ sub: user, channel: ch3, exp: nowSec() + 600, expire_at: nowSec() - 5 }), { code: 110, message: 'expired' });
        await err('unknown namespace', '$nosuch:x', hs({ sub: user, channel: '$nosuch:x' }), { code: 102, message: 'unknown channel' });
        r = await c.subscribe(ch3, { token: hs({ sub: user, channel: ch3 }) });
        assert.ok(r.subscribe, `still usable, valid token works: ${JSON.stringify(r)}`);

        for (const what of ['token for another channel', 'token for another user']) {
          const x = await raw({ connect });
          const chx = `$${uniq('priv', fmt)}`;
          const claims = what.endsWith('channel') ? { sub: user, channel: `${chx}-other` } : { sub: 'someone', channel: chx };
          x.send({ id: 5, subscribe: { channel: chx, token: hs(claims) } });
          const cl = await x.waitClose();
          assert.deepEqual(cl, { code: 3500, reason: 'invalid token' }, `${what}: ${x.describe()}`);
        }
        t.diagnostic('every subscription token failure gave its §6.5 code');
      });

      h.test('subscription token override: presence off for this subscriber', async () => {
        const user = 'ov';
        const ch = `$${uniq('priv', fmt)}`;
        const c = await raw({ connect: { token: hs({ sub: user }) } });
        const d = await raw({ connect: { token: hs({ sub: 'ov2' }) } });
        let r = await c.subscribe(ch, { token: hs({ sub: user, channel: ch, override: { presence: { value: false } } }) });
        assert.ok(r.subscribe, JSON.stringify(r));
        r = await d.subscribe(ch, { token: hs({ sub: 'ov2', channel: ch }) });
        assert.ok(r.subscribe, JSON.stringify(r));
        const p = await pollUntil(async () => {
          const x = await d.command({ presence: { channel: ch } });
          return x.presence && x.presence.presence && x.presence.presence[d.clientId] ? x.presence.presence : null;
        }, { timeout: 8000, what: 'presence of the second subscriber' });
        assert.deepEqual(Object.keys(p), [d.clientId], `override presence false keeps c out: ${JSON.stringify(p)}`);
      });

      h.test('SDK: private channel with Subscription getToken; token fetched again after 109', async () => {
        const user = 'sp';
        const ch = `$${uniq('priv', fmt)}`;
        let calls = 0;
        const c = sdk({ token: hs({ sub: user }) });
        const sub = c.newSubscription(ch, {
          token: hs({ sub: user, channel: ch, exp: nowSec() - 5 }),
          getToken: async (ctx) => {
            calls++;
            assert.equal(ctx.channel, ch);
            return hs({ sub: user, channel: ch, info: { n: calls } });
          },
        });
        const got = [];
        sub.on('publication', (ctx) => got.push(dec(ctx.data)));
        const ok = once(sub, 'subscribed', { timeout: 10000 });
        sub.subscribe();
        c.connect();
        await ok;
        assert.ok(calls >= 1, 'getToken called after 109');
        await h.server.publish(ch, { p: 1 });
        await pollUntil(() => got.length === 1, { timeout: 5000, what: 'publication on the private channel' });
        const pres = await sub.presence();
        const me = Object.values(pres.clients).map(infoOf);
        assert.deepEqual(me.map((x) => x.chanInfo), [{ n: calls }]);
      });

      h.test('SDK: sub_refresh before the subscription token expires', async () => {
        const user = 'sr';
        const ch = `$${uniq('priv', fmt)}`;
        let calls = 0;
        const c = sdk({ token: hs({ sub: user }) });
        const sub = c.newSubscription(ch, {
          getToken: async () => { calls++; return hs({ sub: user, channel: ch, exp: nowSec() + (calls === 1 ? 2 : 600) }); },
        });
        const states = [];
        sub.on('unsubscribed', (ctx) => states.push(['unsubscribed', ctx]));
        sub.on('subscribing', (ctx) => states.push(['subscribing', ctx]));
        const ok = once(sub, 'subscribed', { timeout: 10000 });
        sub.subscribe();
        c.connect();
        await ok;
        states.length = 0;
        await pollUntil(() => calls >= 2, { timeout: 15000, what: 'getToken called again for sub_refresh' });
        const start = nowSec();
        while (nowSec() <= start + 4) await sleep(200);
        assert.deepEqual(states, [], 'refreshed in place: no resubscribe');
        assert.equal(sub.state, 'subscribed');
      }, { timeout: 40000 });

      h.test('raw sub_refresh: result, errors; unrefreshed subscription gets unsubscribe 2501', async () => {
        const user = 'sq';
        const ch = `$${uniq('priv', fmt)}`;
        const c = await raw({ connect: { token: hs({ sub: user }) } });
        let r = await c.subscribe(ch, { token: hs({ sub: user, channel: ch, exp: nowSec() + 600 }) });
        assert.equal(r.subscribe.expires, true, JSON.stringify(r));
        r = await c.command({ sub_refresh: { channel: ch, token: hs({ sub: user, channel: ch, exp: nowSec() + 3600 }) } });
        assert.equal(r.sub_refresh && r.sub_refresh.expires, true, JSON.stringify(r));
        assert.ok(r.sub_refresh.ttl > 3000, JSON.stringify(r));
        r = await c.command({ sub_refresh: { channel: `$${uniq('priv', fmt)}`, token: hs({ sub: user, channel: ch }) } });
        assert.deepEqual(errOf(r), { code: 103, message: 'permission denied' }, `not subscribed: ${JSON.stringify(r)}`);
        r = await c.command({ sub_refresh: { channel: ch, token: '' } });
        assert.deepEqual(errOf(r), { code: 107, message: 'bad request' }, `empty token: ${JSON.stringify(r)}`);
        r = await c.command({ sub_refresh: { channel: ch, token: hs({ sub: user, channel: ch, exp: nowSec() - 5 }) } });
        assert.deepEqual(errOf(r), { code: 110, message: 'expired' }, `expired token, spec §10.1: ${JSON.stringify(r)}`);

        const ch2 = `$${uniq('priv', fmt)}`;
        r = await c.subscribe(ch2, { token: hs({ sub: user, channel: ch2, exp: nowSec() + 2 }) });
        assert.equal(r.subscribe.expires, true);
        const u = await c.push({ channel: ch2, kind: 'unsubscribe' }, { timeout: 20000 });
        assert.deepEqual(u.push.unsubscribe, { code: 2501, reason: 'subscription expired' });

        c.send({ id: 99, sub_refresh: { channel: ch, token: hs({ sub: user, channel: ch2 }) } });
        const cl = await c.waitClose();
        assert.deepEqual(cl, { code: 3500, reason: 'invalid token' }, `sub_refresh token for another channel: ${c.describe()}`);
      }, { timeout: 40000 });
    });
  }
});
