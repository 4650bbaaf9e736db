'use strict';
// JWTs of every algorithm the server verifies (HS256/384/512, RS256/384/512,
// ES256/384/512), signed with node:crypto, and key pairs generated per test
// run (PEM text for the server's rsa_public_key / ecdsa_public_key).

const crypto = require('node:crypto');
const { HMAC_SECRET } = require('./config');

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const HASH = { 256: 'sha256', 384: 'sha384', 512: 'sha512' };

// claims: object (or a string used verbatim as the payload JSON).
// opts.alg (default HS256); opts.key: HMAC secret string, or a private key
// (PEM or KeyObject) for RS*/ES*; opts.header: extra header fields.
function signJwt(claims, { alg = 'HS256', key = HMAC_SECRET, header = {} } = {}) {
  const head = b64url(JSON.stringify({ alg, typ: 'JWT', ...header }));
  const body = b64url(typeof claims === 'string' ? claims : JSON.stringify(claims));
  const input = `${head}.${body}`;
  const hash = HASH[alg.slice(2)];
  if (!hash) throw new Error(`signJwt: unknown alg ${alg}`);
  let sig;
  if (alg.startsWith('HS')) sig = crypto.createHmac(hash, key).update(input).digest();
  else if (alg.startsWith('RS')) sig = crypto.sign(hash, Buffer.from(input), key);
  else if (alg.startsWith('ES')) sig = crypto.sign(hash, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  else throw new Error(`signJwt: unsupported alg ${alg}`);
  return `${input}.${b64url(sig)}`;
}

// { publicPem, privateKey } for 'rsa' (2048 bits) or an EC curve name
// ('P-256', 'P-384', 'P-521').
function keyPair(kind) {
  const { publicKey, privateKey } = kind === 'rsa'
    ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    : crypto.generateKeyPairSync('ec', { namedCurve: kind });
  return { publicPem: publicKey.export({ type: 'spki', format: 'pem' }), privateKey };
}

const nowSec = () => Math.floor(Date.now() / 1000);

module.exports = { signJwt, keyPair, nowSec };
