#!/usr/bin/env node
// mock-oss.js - an OSS-compatible server on 127.0.0.1 for immerge's storage tests.
//
// Objects live on disk (DIR/bucket/key; a bucket is a folder). It speaks HeadObject, ranged
// GetObject with OSS's range semantics, PutObject, DeleteObject and multipart upload (100 KB part
// minimum, Abort, NoSuchUpload), user metadata (x-oss-meta-*, x-amz-meta-*, kept in memory), the
// conditional writes of both (OSS's x-oss-forbid-overwrite: 409 FileAlreadyExists; S3's
// If-None-Match: * and If-Match: 412 PreconditionFailed, on PutObject and
// CompleteMultipartUpload), answers OSS error XML, and checks every request's Authorization
// with the signing functions of Alibaba's official Node.js client ali-oss (V1 and V4), or, for
// AWS SigV4 (OSS's S3-compatible face), with the widely used `aws4` package: our signatures are
// judged by code we did not write.
//
//   node mock-oss.js --dir DIR --ak ID --sk SECRET [--region R] [--token STS] [--anonymous]
//
// It prints "listening on PORT" once ready. Test hooks, outside any bucket (bucket names cannot
// start with "_"): GET /__stats (bytes served per object, requests per operation, writes and
// refused writes per object, open uploads), POST /__faults (a JSON list of faults to inject; see
// `matchFault`), GET /__held (the writes a "hold" fault holds), POST /__release (lets them go),
// POST /__reset.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const signUtils = require('ali-oss/lib/common/signUtils');
const aws4 = require('aws4');

const args = {};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--anonymous') args.anonymous = true;
  else if (a.startsWith('--')) args[a.slice(2)] = process.argv[++i];
}
const root = path.resolve(args.dir || '.');
const region = args.region || 'cn-hangzhou';
const MIN_PART = 100 * 1024;
const SUBRESOURCES = new Set(['uploads', 'uploadId', 'partNumber', 'acl', 'append', 'position',
  'delete', 'tagging', 'symlink', 'restore', 'versionId', 'security-token']);

let stats, faults, uploads, held;
const metadata = new Map(); // object file -> its user metadata headers
function reset() {
  stats = { bytesServed: {}, requests: {}, writes: {}, refused: {}, authChecked: 0, authFailed: 0,
    lastAuth: {} };
  faults = [];
  uploads = new Map();
  for (const h of held || []) h.release();
  held = [];
}
reset();

function userMetadata(req) {
  const meta = {};
  for (const [k, v] of Object.entries(req.headers))
    if (k.startsWith('x-oss-meta-') || k.startsWith('x-amz-meta-')) meta[k] = v;
  return meta;
}

// Whether a write may replace what is at file, as OSS and S3 judge their conditions: null, or the
// error [status, code, message].
function conditionError(req, file) {
  let st = null;
  try { st = fs.statSync(file); } catch (e) { st = null; }
  const h = req.headers;
  if (st && String(h['x-oss-forbid-overwrite']).toLowerCase() === 'true')
    return [409, 'FileAlreadyExists', 'The object you specified already exists and can not be overwritten.'];
  if (st && h['if-none-match'] === '*')
    return [412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'];
  if (h['if-match'] && !st) return [404, 'NoSuchKey', 'The specified key does not exist.'];
  if (h['if-match'] && h['if-match'] !== fileEtag(file, st))
    return [412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'];
  return null;
}

// A write that stores data at file (bucket/key) with meta, unless its condition fails.
function storeObject(req, res, bucket, key, file, data, meta) {
  const refused = conditionError(req, file);
  const name = `${bucket}/${key}`;
  if (refused) {
    stats.refused[name] = (stats.refused[name] || 0) + 1;
    sendError(res, ...refused);
    return false;
  }
  writeAtomically(file, data);
  metadata.set(file, meta);
  stats.writes[name] = (stats.writes[name] || 0) + 1;
  return true;
}

// A "hold" fault keeps a write of its key waiting, "before" it is judged and stored or "after"
// (stored, the answer not sent), until /__release.
function hold(fault, op, bucket, key, when) {
  if (!fault || fault.kind !== 'hold' || (fault.when || 'before') !== when) return null;
  return new Promise(resolve => held.push({ op, key: `${bucket}/${key}`, when, release: resolve }));
}

let requestCounter = 0;
function requestId() {
  return `MOCK${(++requestCounter).toString(16).padStart(20, '0').toUpperCase()}`;
}

function sendError(res, status, code, message, extra = '') {
  const rid = requestId();
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>${code}</Code>\n` +
    `  <Message>${message}</Message>\n  <RequestId>${rid}</RequestId>\n` +
    `  <HostId>127.0.0.1</HostId>\n${extra}</Error>\n`;
  // Like OSS, a HEAD answer carries its error XML base64-encoded in x-oss-err.
  const head = res.req.method === 'HEAD';
  res.writeHead(status, { 'Content-Type': 'application/xml', 'x-oss-request-id': rid,
    'Content-Length': head ? 0 : Buffer.byteLength(body),
    ...(head ? { 'x-oss-err': Buffer.from(body).toString('base64') } : {}) });
  res.end(head ? undefined : body);
}

function objectPath(bucket, key) {
  const p = path.join(root, bucket, key);
  if (!p.startsWith(path.join(root, bucket) + path.sep)) throw new Error('key escapes bucket');
  return p;
}

// An object's ETag is its MD5 (as OSS gives for a PutObject), computed once per version.
const etagCache = new Map();
function fileEtag(file, st) {
  const id = `${st.size}:${st.mtimeMs}:${st.ino}`;
  const hit = etagCache.get(file);
  if (hit && hit.id === id) return hit.etag;
  const hash = crypto.createHash('md5');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(1 << 20);
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally { fs.closeSync(fd); }
  const etag = `"${hash.digest('hex').toUpperCase()}"`;
  etagCache.set(file, { id, etag });
  return etag;
}

function etagOf(buf) {
  return `"${crypto.createHash('md5').update(buf).digest('hex').toUpperCase()}"`;
}

// Returns an error [status, code, message] or null. The expected Authorization is computed by
// ali-oss from the request as received, and compared byte for byte.
function checkAuth(req, bucket, key, query) {
  const auth = req.headers.authorization;
  if (!auth) return args.anonymous ? null : [403, 'AccessDenied', 'Anonymous access is forbidden.'];
  stats.authChecked++;
  const headers = req.headers; // node gives lower-case names
  if (args.token && (headers['x-oss-security-token'] || headers['x-amz-security-token']) !== args.token)
    return [403, 'InvalidSecurityToken', 'The security token is missing or wrong.'];
  let expected;
  if (auth.startsWith('OSS4-HMAC-SHA256 ')) {
    const m = /Credential=([^/]+)\/(\d{8})\/([^/]+)\/oss\/aliyun_v4_request(?:,AdditionalHeaders=([^,]*))?,Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) return [400, 'InvalidArgument', 'Malformed OSS4 Authorization.'];
    if (m[1] !== args.ak) return [403, 'InvalidAccessKeyId', 'The OSS Access Key Id you provided does not exist in our records.'];
    if (m[3] !== region) return [400, 'InvalidArgument', `Region ${m[3]} is not ${region}.`];
    const date = headers['x-oss-date'];
    if (!date || !date.startsWith(m[2])) return [403, 'AccessDenied', 'x-oss-date is missing or does not match the credential date.'];
    const when = Date.UTC(+date.slice(0, 4), +date.slice(4, 6) - 1, +date.slice(6, 8),
      +date.slice(9, 11), +date.slice(11, 13), +date.slice(13, 15));
    if (Math.abs(Date.now() - when) > 15 * 60 * 1000) return [403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.'];
    if (headers['x-oss-content-sha256'] !== 'UNSIGNED-PAYLOAD') return [400, 'InvalidArgument', 'x-oss-content-sha256 must be UNSIGNED-PAYLOAD.'];
    const queries = {};
    for (const [k, v] of query) queries[k] = v === '' ? null : v;
    const additional = m[4] ? m[4].split(';') : undefined;
    expected = signUtils.authorizationV4(args.ak, args.sk, region, req.method,
      { headers, queries }, bucket, key || undefined, additional);
  } else if (auth.startsWith('OSS ')) {
    const parameters = {};
    for (const [k, v] of query) if (SUBRESOURCES.has(k)) parameters[k] = v;
    if (!headers.date) return [403, 'AccessDenied', 'The Date header is missing.'];
    const canonical = signUtils.buildCanonicalString(req.method, `/${bucket}/${key}`,
      { headers, parameters }, headers['x-oss-date'] ? undefined : headers.date);
    if (auth.slice(4).split(':')[0] !== args.ak) return [403, 'InvalidAccessKeyId', 'The OSS Access Key Id you provided does not exist in our records.'];
    expected = signUtils.authorization(args.ak, args.sk, canonical);
  } else if (auth.startsWith('AWS4-HMAC-SHA256 ')) {
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, SignedHeaders=([^,]+), Signature=[0-9a-f]{64}$/.exec(auth);
    if (!m) return [400, 'InvalidArgument', 'Malformed AWS4 Authorization.'];
    if (m[1] !== args.ak) return [403, 'InvalidAccessKeyId', 'The Access Key Id you provided does not exist in our records.'];
    if (!headers['x-amz-content-sha256']) return [400, 'InvalidRequest', 'Missing required header x-amz-content-sha256.'];
    const signed = {};
    for (const name of m[4].split(';')) signed[name] = headers[name];
    const opts = aws4.sign({ method: req.method, host: headers.host, path: req.url, headers: signed,
      service: 's3', region: m[3] }, { accessKeyId: args.ak, secretAccessKey: args.sk });
    expected = opts.headers.Authorization;
  } else {
    return [400, 'InvalidArgument', 'Authorization is not OSS, OSS4-HMAC-SHA256 or AWS4-HMAC-SHA256.'];
  }
  stats.lastAuth = { scheme: auth.split(' ')[0], matched: expected === auth };
  if (expected !== auth) {
    stats.authFailed++;
    return [403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.'];
  }
  return null;
}

// A fault: {op, key (bucket/key; any when absent), kind: "status"|"reset"|"slow"|"truncate"|"hold",
// count (-1 = always), status, code, after (bytes before a reset), delayMs, when ("before" or
// "after", for a hold)}. The first matching one with count left applies.
function matchFault(op, name) {
  for (const f of faults) {
    if ((f.op === op || f.op === '*') && (!f.key || f.key === name) && f.count !== 0) {
      if (f.count > 0) f.count--;
      return f;
    }
  }
  return null;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', c => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function checkMd5(req, body) {
  const md5 = req.headers['content-md5'];
  return !md5 || crypto.createHash('md5').update(body).digest('base64') === md5;
}

function writeAtomically(file, data) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = path.join(path.dirname(file), `.mock-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

function opName(method, query) {
  if (method === 'HEAD') return 'HeadObject';
  if (method === 'GET') return 'GetObject';
  if (method === 'PUT') return query.has('uploadId') ? 'UploadPart' : 'PutObject';
  if (method === 'POST') return query.has('uploads') ? 'InitiateMultipartUpload' : 'CompleteMultipartUpload';
  if (method === 'DELETE') return query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  return method;
}

async function handleObject(req, res, bucket, key, query) {
  const op = opName(req.method, query);
  stats.requests[op] = (stats.requests[op] || 0) + 1;
  const body = await readBody(req);
  const authError = checkAuth(req, bucket, key, query);
  if (authError) return sendError(res, ...authError);
  const fault = matchFault(op, `${bucket}/${key}`);
  if (fault && fault.kind === 'status')
    return sendError(res, fault.status || 500, fault.code || 'InternalError', 'Injected fault.');
  if (fault && fault.kind === 'slow') {
    await new Promise(r => setTimeout(r, fault.delayMs || 1000));
    if (!res.socket || res.socket.destroyed) return; // the client gave up: nothing was served
  }
  if (!fs.existsSync(path.join(root, bucket)) || !fs.statSync(path.join(root, bucket)).isDirectory())
    return sendError(res, 404, 'NoSuchBucket', 'The specified bucket does not exist.');
  if (!key) return sendError(res, 400, 'InvalidArgument', 'Bucket-level operations are not mocked.');
  const file = objectPath(bucket, key);

  if (op === 'HeadObject' || op === 'GetObject') {
    let st;
    try { st = fs.statSync(file); } catch (e) { st = null; }
    if (!st || !st.isFile()) return sendError(res, 404, 'NoSuchKey', 'The specified key does not exist.');
    const size = st.size;
    const headers = { 'ETag': fileEtag(file, st), 'Last-Modified': st.mtime.toUTCString(),
      'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes',
      'x-oss-request-id': requestId(), ...(metadata.get(file) || {}) };
    if (op === 'HeadObject') {
      res.writeHead(200, { ...headers, 'Content-Length': size });
      return res.end();
    }
    let start = 0, end = size - 1, status = 200;
    const range = req.headers.range;
    const m = range && /^bytes=(\d*)-(\d*)$/.exec(range);
    const standard = req.headers['x-oss-range-behavior'] === 'standard';
    if (m && (m[1] !== '' || m[2] !== '')) {
      let a = m[1] === '' ? size - Number(m[2]) : Number(m[1]);
      const b = m[1] === '' || m[2] === '' ? size - 1 : Number(m[2]);
      if (a < 0) a = 0;
      const valid = a <= b && a < size;
      if (valid) {
        start = a;
        end = Math.min(b, size - 1);
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
      } else if (standard) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` });
        return res.end();
      } // else OSS's legacy behaviour: the whole object with 200
    }
    const slice = Buffer.alloc(end + 1 - start);
    const fd = fs.openSync(file, 'r');
    try { fs.readSync(fd, slice, 0, slice.length, start); } finally { fs.closeSync(fd); }
    res.writeHead(status, { ...headers, 'Content-Length': slice.length });
    if (fault && fault.kind === 'reset') {
      const part = slice.subarray(0, Math.min(fault.after || 0, slice.length));
      stats.bytesServed[`${bucket}/${key}`] = (stats.bytesServed[`${bucket}/${key}`] || 0) + part.length;
      return res.write(part, () => res.socket.destroy());
    }
    stats.bytesServed[`${bucket}/${key}`] = (stats.bytesServed[`${bucket}/${key}`] || 0) + slice.length;
    return res.end(slice);
  }

  if (op === 'PutObject') {
    if (!checkMd5(req, body)) return sendError(res, 400, 'InvalidDigest', 'The Content-MD5 you specified is not valid.');
    await hold(fault, op, bucket, key, 'before');
    if (!storeObject(req, res, bucket, key, file, body, userMetadata(req))) return;
    await hold(fault, op, bucket, key, 'after');
    res.writeHead(200, { 'ETag': etagOf(body), 'x-oss-request-id': requestId(), 'Content-Length': 0 });
    return res.end();
  }
  if (op === 'DeleteObject') {
    fs.rmSync(file, { force: true });
    metadata.delete(file);
    res.writeHead(204, { 'x-oss-request-id': requestId() });
    return res.end();
  }
  if (op === 'InitiateMultipartUpload') {
    const id = crypto.randomBytes(16).toString('hex').toUpperCase();
    uploads.set(id, { bucket, key, parts: new Map(), meta: userMetadata(req) });
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult>\n` +
      `  <Bucket>${bucket}</Bucket>\n  <Key>${key}</Key>\n  <UploadId>${id}</UploadId>\n` +
      `</InitiateMultipartUploadResult>\n`;
    res.writeHead(200, { 'Content-Type': 'application/xml', 'x-oss-request-id': requestId(), 'Content-Length': Buffer.byteLength(xml) });
    return res.end(xml);
  }
  const upload = uploads.get(query.get('uploadId'));
  if (!upload || upload.bucket !== bucket || upload.key !== key)
    return sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
  if (op === 'UploadPart') {
    const n = Number(query.get('partNumber'));
    if (!(n >= 1 && n <= 10000)) return sendError(res, 400, 'InvalidArgument', 'partNumber must be 1..10000.');
    if (!checkMd5(req, body)) return sendError(res, 400, 'InvalidDigest', 'The Content-MD5 you specified is not valid.');
    upload.parts.set(n, body);
    res.writeHead(200, { 'ETag': etagOf(body), 'x-oss-request-id': requestId(), 'Content-Length': 0 });
    return res.end();
  }
  if (op === 'AbortMultipartUpload') {
    uploads.delete(query.get('uploadId'));
    res.writeHead(204, { 'x-oss-request-id': requestId() });
    return res.end();
  }
  if (op === 'CompleteMultipartUpload') {
    const listed = [...body.toString().matchAll(/<Part>\s*<PartNumber>(\d+)<\/PartNumber>\s*<ETag>([^<]+)<\/ETag>\s*<\/Part>/g)]
      .map(m => [Number(m[1]), m[2]]);
    if (!listed.length) return sendError(res, 400, 'MalformedXML', 'No parts listed.');
    const buffers = [];
    for (let i = 0; i < listed.length; i++) {
      const [n, etag] = listed[i];
      const data = upload.parts.get(n);
      if (i && listed[i - 1][0] >= n) return sendError(res, 400, 'InvalidPartOrder', 'Parts must be ascending.');
      if (!data || etagOf(data) !== etag.replace(/&quot;/g, '"')) return sendError(res, 400, 'InvalidPart', `Part ${n} is missing or its ETag differs.`);
      if (i < listed.length - 1 && data.length < MIN_PART) return sendError(res, 400, 'EntityTooSmall', `Part ${n} is smaller than 100 KB.`);
      buffers.push(data);
    }
    const all = Buffer.concat(buffers);
    await hold(fault, op, bucket, key, 'before');
    if (!storeObject(req, res, bucket, key, file, all, upload.meta)) return;
    await hold(fault, op, bucket, key, 'after');
    uploads.delete(query.get('uploadId'));
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult>\n` +
      `  <Bucket>${bucket}</Bucket>\n  <Key>${key}</Key>\n  <ETag>"${crypto.createHash('md5').update(all).digest('hex').toUpperCase()}-${listed.length}"</ETag>\n` +
      `</CompleteMultipartUploadResult>\n`;
    res.writeHead(200, { 'Content-Type': 'application/xml', 'x-oss-request-id': requestId(), 'Content-Length': Buffer.byteLength(xml) });
    return res.end(xml);
  }
  return sendError(res, 405, 'MethodNotAllowed', `${req.method} is not mocked.`);
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/__stats') {
    const body = JSON.stringify({ ...stats, openUploads: uploads.size });
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end(body);
  }
  if (url.pathname === '/__held') {
    const body = JSON.stringify(held.map(h => ({ op: h.op, key: h.key, when: h.when })));
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end(body);
  }
  if (url.pathname === '/__faults' || url.pathname === '/__reset' || url.pathname === '/__release') {
    const body = await readBody(req);
    if (url.pathname === '/__reset') reset();
    else if (url.pathname === '/__release') { for (const h of held) h.release(); held = []; }
    else faults = JSON.parse(body.toString() || '[]');
    res.writeHead(204);
    return res.end();
  }
  // Virtual-hosted ("bucket.localhost:PORT") or path style ("/bucket/key").
  const host = (req.headers.host || '').split(':')[0];
  let bucket, key;
  const raw = url.pathname.slice(1);
  if (host.endsWith('.localhost')) {
    bucket = host.slice(0, -'.localhost'.length);
    key = decodeURIComponent(raw);
  } else {
    const slash = raw.indexOf('/');
    bucket = decodeURIComponent(slash < 0 ? raw : raw.slice(0, slash));
    key = slash < 0 ? '' : decodeURIComponent(raw.slice(slash + 1));
  }
  if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket))
    return sendError(res, 400, 'InvalidBucketName', 'The specified bucket is not valid.');
  if (key.split('/').some(s => s === '..' || s === '.'))
    return sendError(res, 400, 'InvalidObjectName', 'The specified object is not valid.');
  return handleObject(req, res, bucket, key, url.searchParams);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch(e => {
    if (!res.headersSent) sendError(res, 500, 'InternalError', String(e.message));
    else res.socket.destroy();
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening on ${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
