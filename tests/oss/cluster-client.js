#!/usr/bin/env node
// cluster-client.js - drives several `immerge serve` processes as one service, through Alibaba's
// own generic OpenAPI client (@alicloud/openapi-client, RPC style, ACS3-HMAC-SHA256), as code
// written for the service would: CreateMediaConvertTask round-robin over the endpoints, then
// (with --wait) GetTask on another endpoint than the one that took the call, until every task
// has ended.
//
//   node cluster-client.js --endpoints H:P,H:P,... --ak AK --sk SK --requests FILE.jsonl
//        [--concurrency N] [--wait] [--timeout SECONDS]
//
// FILE.jsonl holds one request per line ({ProjectName, Sources, Targets, ...}). Prints one JSON
// object: {seconds, accepted, refused: {CODE: n}, refusedBy: {ENDPOINT: n}, tasks: [{id,
// endpoint, created (epoch ms, when the call was sent), status, start, end, code}], errors: [...]}.
'use strict';

const fs = require('fs');
const rpc = require('./openapi-rpc.js');

const args = { concurrency: '8', timeout: '600' };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--wait') args.wait = true;
  else if (a.startsWith('--')) args[a.slice(2)] = process.argv[++i];
}
const endpoints = args.endpoints.split(',');
const clients = endpoints.map((endpoint) => rpc.client(endpoint, args.ak, args.sk));
const call = (k, action, params) => rpc.call(clients[k], action, params);

// Runs fn(i) for i in 0..n-1, at most `limit` at once.
async function pool(n, limit, fn) {
  let next = 0;
  const worker = async () => { while (next < n) await fn(next++); };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const requests = fs.readFileSync(args.requests, 'utf8').split('\n').filter(Boolean).map(JSON.parse);
  const t0 = Date.now();
  const tasks = [], refused = {}, refusedBy = {}, errors = [];
  await pool(requests.length, Number(args.concurrency), async (i) => {
    const k = i % endpoints.length;
    const sent = Date.now();
    const r = await call(k, 'CreateMediaConvertTask', requests[i]);
    if (r.body && r.body.TaskId) {
      tasks[i] = { id: r.body.TaskId, project: requests[i].ProjectName, endpoint: endpoints[k], created: sent };
    } else {
      const code = r.error ? r.error.code : `HTTP${r.status}`;
      refused[code] = (refused[code] || 0) + 1;
      refusedBy[endpoints[k]] = (refusedBy[endpoints[k]] || 0) + 1;
      if (errors.length < 5) errors.push(r.error || r);
    }
  });
  const accepted = tasks.filter(Boolean);
  if (args.wait) {
    const deadline = Date.now() + Number(args.timeout) * 1000;
    let open = accepted.slice();
    while (open.length && Date.now() < deadline) {
      await pool(open.length, Number(args.concurrency), async (i) => {
        const t = open[i];
        const k = (endpoints.indexOf(t.endpoint) + 1) % endpoints.length;
        const r = await call(k, 'GetTask', { ProjectName: t.project, TaskType: 'MediaConvert', TaskId: t.id });
        if (r.body && r.body.Status) {
          t.status = r.body.Status;
          t.start = Date.parse(r.body.StartTime);
          t.end = r.body.EndTime ? Date.parse(r.body.EndTime) : undefined;
          t.code = r.body.Code;
        }
      });
      open = open.filter((t) => !['Succeeded', 'Failed', 'Cancelled'].includes(t.status));
      if (open.length) await sleep(250);
    }
  }
  process.stdout.write(JSON.stringify({
    seconds: (Date.now() - t0) / 1000, accepted: accepted.length, refused, refusedBy, tasks: accepted, errors,
  }) + '\n');
}
main();
