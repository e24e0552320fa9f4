#!/usr/bin/env node
// sdk-fields.js - every field of the SDK's CreateMediaConvertTaskRequest, sent through `immerge
// serve` with Alibaba's own OpenAPI client, one at a time: each must be honoured (the answer, the
// objects written or the messages sent differ from the same request without it), refused by name
// (InvalidArgument whose message names the field or the part of the request that holds it), or
// be one of the inert leaves tests/sdk/probes.json names with its reason. Anything else, a field
// accepted and without effect, is a silent drop, and fails.
//
//   node sdk-fields.js ENDPOINT AK SK BUCKET-DIR RECEIVER-URL MODELS.json PROBES.json [ONLY]
//
// BUCKET-DIR is the local folder of oss://test-bucket (serve --oss-root), RECEIVER-URL the
// notify-receiver.js that serve's --mns-endpoint publishes to. Prints one JSON line per leaf
// ({field, outcome: honoured|refused|inert|dropped|unnamed|..., detail}) and a last line with the
// counts; exits 1 when any leaf fails. ONLY, a regular expression, keeps the leaves it matches.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { client, call } = require('./openapi-rpc.js');

const [endpoint, ak, sk, bucketDir, receiver, modelsFile, probesFile, only] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(modelsFile, 'utf8'));
const probes = JSON.parse(fs.readFileSync(probesFile, 'utf8'));
const c = client(endpoint, ak, sk);
const SCALARS = { string: 'x', number: 1, boolean: true, 'number[]': [0], map: { k: 'v' } };

// Every leaf of the model tree, as "Targets[].Audio.TranscodeAudio.Codec".
function leaves(type, at) {
  if (type in SCALARS) return [at];
  if (type.startsWith('[')) return leaves(type.slice(1, -1), at + '[]');
  const model = spec.models[type];
  if (!model) throw new Error(`no model ${type}`);
  return Object.entries(model).flatMap(([k, t]) => leaves(t, at ? `${at}.${k}` : k));
}

// "Targets[0].Audio" -> [["Targets", 0], ["Audio", null]]; a [] is element 0.
function segments(p) {
  return p.split('.').map((s) => {
    const m = /^([^[]+)(?:\[(\d*)\])?$/.exec(s);
    return [m[1], m[2] === undefined ? null : Number(m[2] || 0)];
  });
}

// Sets (null: deletes) the value at p in obj, making the objects and arrays on the way.
function set(obj, p, value) {
  const segs = segments(p);
  let o = obj;
  segs.forEach(([name, index], i) => {
    const last = i === segs.length - 1;
    if (index === null) {
      if (last) {
        if (value === null) delete o[name];
        else o[name] = value;
      } else {
        o = o[name] = o[name] && typeof o[name] === 'object' ? o[name] : {};
      }
      return;
    }
    const arr = (o[name] = Array.isArray(o[name]) ? o[name] : []);
    if (last) {
      if (value === null) arr.splice(index, 1);
      else arr[index] = value;
    } else {
      o = arr[index] = arr[index] && typeof arr[index] === 'object' ? arr[index] : {};
    }
  });
}

function withRun(v, run) {
  return JSON.parse(JSON.stringify(v).split('{run}').join(run));
}

function get(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

// Every file under dir, relative, with its SHA-256.
function files(dir, rel = '') {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name), `${rel}${e.name}/`)
      : [`${rel}${e.name} ${crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, e.name))).digest('hex')}`]));
}

// What the answer says apart from what changes on every run: ids and times.
const VOLATILE = new Set(['RequestId', 'EventId', 'TaskId', 'StartTime', 'EndTime', 'MessageId', 'ms']);
function stable(v) {
  if (Array.isArray(v)) return v.map(stable);
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).filter(([k]) => !VOLATILE.has(k)).map(([k, x]) => [k, stable(x)]));
  return v;
}

let runs = 0;
const invocation = crypto.randomBytes(4).toString('hex'); // a run's folder is new, whatever ran before
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs one request to its end. What it did, as one string: refused with its message, or the
// task's stable answer, the objects in its folder and the MNS messages it sent.
async function outcome(request) {
  const run = `${invocation}-${++runs}`;
  const params = withRun(request, run);
  const before = JSON.parse(await get(`${receiver}/__messages`)).length;
  const r = await call(c, 'CreateMediaConvertTask', params);
  if (r.error) return { refused: true, message: r.error.message, code: r.error.code, sig: `refused ${r.error.code}: ${r.error.message}` };
  const q = { ProjectName: params.ProjectName, TaskType: 'MediaConvert', TaskId: r.body.TaskId };
  let task;
  for (let i = 0; i < 600; i++) {
    task = await call(c, 'GetTask', q);
    if (task.error || task.body.Status !== 'Running') break;
    await sleep(50);
  }
  if (task.error) return { refused: false, sig: `GetTask failed: ${task.error.message}` };
  await sleep(100); // a message goes out after the record says Succeeded
  const sent = JSON.parse(await get(`${receiver}/__messages`)).slice(before)
    .filter((m) => m.kind === 'mns').map((m) => m.topic);
  const answer = JSON.stringify(stable(task.body)).split(run).join('{run}').split(r.body.TaskId).join('{task}');
  return {
    refused: false, status: task.body.Status, code: task.body.Code, message: task.body.Message,
    sig: `${answer}\nobjects: ${files(path.join(bucketDir, 'sdk', run)).join(', ')}\nmessages: ${sent.join(', ')}`,
  };
}

// The names a refusal of leaf may give: the leaf's path or one of the parts holding it (with
// its index, as the messages write it), but not a whole source or target.
function names(leaf) {
  const segs = segments(leaf);
  const out = [];
  for (let k = 1; k <= segs.length; k++) {
    const part = segs.slice(0, k);
    const full = part.map(([n, i]) => (i === null ? n : `${n}[${i}]`)).join('.');
    const bare = part.map(([n, i], j) => (i === null || j === k - 1 ? n : `${n}[${i}]`)).join('.');
    for (const s of new Set([full, bare]))
      if (!/^(Sources|Targets)(\[0\])?$/.test(s)) out.push(s);
  }
  return out;
}

function named(message, leaf) {
  return names(leaf).some((n) => {
    for (let at = message.indexOf(n); at >= 0; at = message.indexOf(n, at + 1))
      if (!/[A-Za-z0-9]/.test(message[at + n.length] || '')) return true;
    return false;
  });
}

async function main() {
  const all = leaves(spec.root, '').filter((l) => !only || new RegExp(only).test(l));
  const baselines = new Map();
  const counts = {};
  let failed = 0;
  // The same request twice gives the same outcome, or no difference could be told from noise.
  const again = [await outcome(probes.base), await outcome(probes.base)];
  if (again[0].sig !== again[1].sig || again[0].refused) {
    console.log(JSON.stringify({ outcome: 'unstable-base', detail: again.map((a) => a.sig) }));
    process.exit(1);
  }
  for (const leaf of all) {
    const probe = probes.probes[leaf] || {};
    const base = JSON.parse(JSON.stringify(probes.base));
    for (const [p, v] of Object.entries(probe.with || {})) set(base, p, v);
    const key = JSON.stringify(base);
    if (!baselines.has(key)) baselines.set(key, await outcome(base));
    const was = baselines.get(key);
    const request = JSON.parse(key);
    set(request, leaf, 'value' in probe ? probe.value : SCALARS[leafType(leaf)]);
    const now = await outcome(request);
    let result;
    if (now.refused && now.sig !== was.sig) {
      result = named(now.message, leaf) && now.code === 'InvalidArgument'
        ? { outcome: 'refused', detail: now.message }
        : { outcome: 'unnamed', detail: `${now.code}: ${now.message}`, fail: true };
    } else if (now.sig !== was.sig) {
      result = { outcome: 'honoured', detail: now.status === 'Succeeded' ? 'Succeeded, and not as without it' : `${now.status} ${now.code}: ${now.message}` };
    } else if (probes.inert[leaf]) {
      result = { outcome: 'inert', detail: probes.inert[leaf] };
    } else {
      result = { outcome: 'dropped', detail: `accepted without effect: ${now.sig.slice(0, 300)}`, fail: true };
    }
    counts[result.outcome] = (counts[result.outcome] || 0) + 1;
    if (result.fail) failed++;
    console.log(JSON.stringify({ field: leaf, outcome: result.outcome, detail: result.detail }));
  }
  console.log(JSON.stringify({ fields: all.length, counts, failed }));
  process.exit(failed ? 1 : 0);
}

// The type of a leaf, from the models.
function leafType(leaf) {
  let type = spec.root;
  for (const [name] of segments(leaf)) {
    type = spec.models[type.replace(/^\[|\]$/g, '')][name];
  }
  return type;
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
