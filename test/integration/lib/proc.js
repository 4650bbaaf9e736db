'use strict';
// /proc helpers: process trees, titles, and which process owns a TCP socket.
// Linux only; everything is read fresh on each call.

const fs = require('node:fs');

function readFileOrNull(path) {
  try { return fs.readFileSync(path, 'utf8'); } catch { return null; }
}

// Parse /proc/PID/stat; returns { pid, comm, state, ppid, pgrp } or null.
function stat(pid) {
  const s = readFileOrNull(`/proc/${pid}/stat`);
  if (s === null) return null;
  const close = s.lastIndexOf(')');
  const comm = s.slice(s.indexOf('(') + 1, close);
  const rest = s.slice(close + 2).split(' ');
  return { pid: Number(pid), comm, state: rest[0], ppid: Number(rest[1]), pgrp: Number(rest[2]) };
}

// True when the pid exists and is not a zombie.
function alive(pid) {
  const st = stat(pid);
  return st !== null && st.state !== 'Z' && st.state !== 'X';
}

function allPids() {
  return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
}

// Direct children of `ppid` that are alive.
function children(ppid) {
  const out = [];
  for (const pid of allPids()) {
    const st = stat(pid);
    if (st && st.ppid === ppid && st.state !== 'Z') out.push(pid);
  }
  return out;
}

// All live descendants of `pid` (not including pid itself).
function descendants(pid) {
  const byParent = new Map();
  for (const p of allPids()) {
    const st = stat(p);
    if (!st || st.state === 'Z') continue;
    if (!byParent.has(st.ppid)) byParent.set(st.ppid, []);
    byParent.get(st.ppid).push(p);
  }
  const out = [];
  const stack = [pid];
  while (stack.length) {
    const cur = stack.pop();
    for (const c of byParent.get(cur) || []) { out.push(c); stack.push(c); }
  }
  return out;
}

// The process title as `ps -o args` shows it (NULs turned into spaces).
function cmdline(pid) {
  const s = readFileOrNull(`/proc/${pid}/cmdline`);
  if (s === null) return null;
  return s.replace(/\0+$/, '').replace(/\0/g, ' ').trim();
}

// Children of the supervisor classified by title:
// { workers: [{pid, index, title}], brokers: [pid], other: [{pid,title}] }
function serverChildren(supervisorPid) {
  const res = { workers: [], brokers: [], other: [] };
  for (const pid of children(supervisorPid)) {
    const title = cmdline(pid) || '';
    let m;
    if ((m = /centrifugo: worker (\d+)/.exec(title))) res.workers.push({ pid, index: Number(m[1]), title });
    else if (/centrifugo: broker/.test(title)) res.brokers.push(pid);
    else res.other.push({ pid, title });
  }
  res.workers.sort((a, b) => a.index - b.index);
  return res;
}

// Parse /proc/net/tcp (IPv4) into [{ local: {ip, port}, remote: {ip, port}, state, inode }].
// state is the kernel's hex code: '01' ESTABLISHED, '0A' LISTEN, etc.
function tcpTable(path = '/proc/net/tcp') {
  const text = readFileOrNull(path) || '';
  const rows = [];
  const addr = (a) => {
    const [ipHex, portHex] = a.split(':');
    const n = parseInt(ipHex, 16);
    const ip = [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
    return { ip, port: parseInt(portHex, 16) };
  };
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    rows.push({ local: addr(f[1]), remote: addr(f[2]), state: f[3], inode: Number(f[9]) });
  }
  return rows;
}

const TCP_STATES = {
  '01': 'ESTABLISHED', '02': 'SYN_SENT', '03': 'SYN_RECV', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT', '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0A': 'LISTEN', '0B': 'CLOSING',
};

// The server side of the connection between server port `serverPort` and the
// client's local port `clientPort`: { state, stateName, inode } or null when
// the kernel no longer lists it.
function serverSideSocket(serverPort, clientPort) {
  const row = tcpTable().find((r) => r.local.port === serverPort && r.remote.port === clientPort);
  if (!row) return null;
  return { state: row.state, stateName: TCP_STATES[row.state] || row.state, inode: row.inode };
}

// Socket inodes held open by pid.
function socketInodes(pid) {
  const out = new Set();
  let fds;
  try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch { return out; }
  for (const fd of fds) {
    let link;
    try { link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) out.add(Number(m[1]));
  }
  return out;
}

// Which of `pids` holds the server side of the connection from clientPort
// to serverPort; returns the pid or null.
function socketOwner(pids, serverPort, clientPort) {
  const sock = serverSideSocket(serverPort, clientPort);
  if (!sock || !sock.inode) return null;
  for (const pid of pids) {
    if (socketInodes(pid).has(sock.inode)) return pid;
  }
  return null;
}

module.exports = {
  stat, alive, children, descendants, cmdline, serverChildren,
  tcpTable, serverSideSocket, socketInodes, socketOwner, TCP_STATES,
};
