'use strict';
// Test certificates made with the openssl command line tool: a CA, and
// certificates it signs for a server or a client, in a temporary directory.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

// A fresh directory with a CA; returns { dir, caCert, caKey, issue(name, { cn, sans, client }) }.
// issue() writes <name>.crt and <name>.key signed by the CA and returns their paths.
function makeCA(label = 'test') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-tls-'));
  const caKey = path.join(dir, 'ca.key');
  const caCert = path.join(dir, 'ca.crt');
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caCert,
    '-days', '2', '-subj', `/CN=${label} CA`], dir);
  const issue = (name, { cn = name, sans = [], client = false } = {}) => {
    const key = path.join(dir, `${name}.key`);
    const csr = path.join(dir, `${name}.csr`);
    const cert = path.join(dir, `${name}.crt`);
    const ext = path.join(dir, `${name}.ext`);
    const lines = [`extendedKeyUsage=${client ? 'clientAuth' : 'serverAuth'}`];
    if (sans.length) lines.push(`subjectAltName=${sans.join(',')}`);
    fs.writeFileSync(ext, `${lines.join('\n')}\n`);
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`], dir);
    openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial',
      '-out', cert, '-days', '2', '-extfile', ext], dir);
    return { cert, key };
  };
  return { dir, caCert, caKey, issue, dispose: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

module.exports = { makeCA };
