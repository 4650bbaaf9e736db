'use strict';
// HS256 JWT maker for connection tokens (node:crypto, base64url).

const crypto = require('node:crypto');
const { HMAC_SECRET } = require('./config');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// claims: object; opts.secret (default the test secret), opts.alg header.
function makeToken(claims, { secret = HMAC_SECRET, alg = 'HS256' } = {}) {
  const head = b64url(JSON.stringify({ alg, typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

const nowSec = () => Math.floor(Date.now() / 1000);

module.exports = { makeToken, nowSec };
