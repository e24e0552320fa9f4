#!/usr/bin/env node
// lossy-proxy.js - a TCP proxy on 127.0.0.1 that loses one answer, for tests: what a connection
// that breaks after the server committed, before the client heard, looks like.
//
//   node lossy-proxy.js --to PORT --drop TEXT
//
// Bytes go both ways unchanged until the first chunk from the server that holds TEXT: that
// chunk is dropped and its connection goes silent both ways (nothing forwarded, nothing
// closed), as a partition would leave it. Other connections, before and after, pass. It prints
// "listening on PORT" once ready; GET-free: it speaks no HTTP.
'use strict';

const net = require('net');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].slice(2)] = process.argv[i + 1];
const to = Number(args.to);
const drop = Buffer.from(args.drop || '');
let dropped = false;

const server = net.createServer(client => {
  const upstream = net.connect(to, '127.0.0.1');
  let silent = false;
  client.on('data', d => { if (!silent) upstream.write(d); });
  upstream.on('data', d => {
    if (silent) return;
    if (!dropped && drop.length && d.includes(drop)) {
      dropped = silent = true;
      process.stderr.write(`dropped an answer of ${d.length} bytes holding ${args.drop}\n`);
      return;
    }
    client.write(d);
  });
  const end = () => { if (!silent) { client.destroy(); upstream.destroy(); } };
  client.on('close', end);
  upstream.on('close', end);
  client.on('error', () => {});
  upstream.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening on ${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
