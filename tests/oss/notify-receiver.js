#!/usr/bin/env node
// notify-receiver.js - the far end of immerge's completion messages, on 127.0.0.1, for tests.
//
//   node notify-receiver.js --ak ID --sk SECRET [--topic NAME]...
//
// POST /topics/TOPIC/messages is MNS PublishMessage: its Authorization is recomputed with the
// signing code of Alibaba's official @alicloud/mns client (Client.prototype.sign) and compared byte
// for byte; the answer is MNS's 201 XML with MessageId and MessageBodyMD5. POST /hook takes any
// JSON (for --notify-url). GET /__messages lists what arrived; POST /__faults makes the next N
// requests fail ({"status": 500, "count": N}), or holds the next N hooks S seconds before
// answering ({"hold": N, "seconds": S}): a held hook whose sender hangs up meanwhile was never
// acknowledged, so it is not recorded. It prints "listening on PORT" once ready.
'use strict';

const crypto = require('crypto');
const http = require('http');
const MnsClient = require('@alicloud/mns/lib/client.js');

const args = { topic: [] };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--topic') args.topic.push(process.argv[++i]);
  else if (a.startsWith('--')) args[a.slice(2)] = process.argv[++i];
}

const messages = [];
const held = []; // the hooks held, answered or not (GET /__held)
let fault = { status: 0, count: 0 };
let counter = 0;

function unescapeXml(s) {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

function mnsError(res, status, code, message) {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error xmlns="http://mns.aliyuncs.com/doc/v1/">` +
    `<Code>${code}</Code><Message>${message}</Message><RequestId>R${++counter}</RequestId>` +
    `<HostId>127.0.0.1</HostId></Error>`;
  res.writeHead(status, { 'Content-Type': 'text/xml;charset=utf-8' });
  res.end(body);
}

function publish(req, res, topic, body) {
  const h = req.headers;
  const auth = h.authorization || '';
  const m = /^MNS ([^:]+):(.+)$/.exec(auth);
  if (!m) return mnsError(res, 403, 'AccessDenied', 'No MNS Authorization.');
  if (m[1] !== args.ak) return mnsError(res, 403, 'InvalidAccessKeyId', 'Unknown AccessKeyId.');
  if (h['x-mns-version'] !== '2015-06-06') return mnsError(res, 400, 'MissingVersionHeader', 'x-mns-version is 2015-06-06.');
  if (!h.date || Math.abs(Date.now() - Date.parse(h.date)) > 15 * 60 * 1000)
    return mnsError(res, 403, 'TimeExpired', 'The Date header is missing or too far off.');
  const resource = req.url;
  const expected = MnsClient.prototype.sign.call({ accessKeySecret: args.sk }, 'POST', h, resource);
  if (expected !== m[2]) return mnsError(res, 403, 'SignatureDoesNotMatch', 'The signature does not match.');
  if (args.topic.length && !args.topic.includes(topic)) return mnsError(res, 404, 'TopicNotExist', `Topic ${topic} does not exist.`);
  const x = /<MessageBody>([\s\S]*)<\/MessageBody>/.exec(body);
  if (!x) return mnsError(res, 400, 'MalformedXML', 'No MessageBody.');
  const text = unescapeXml(x[1]);
  const id = `MSG-${++counter}`;
  messages.push({ kind: 'mns', topic, id, token: h['security-token'] || null, body: text });
  const md5 = crypto.createHash('md5').update(text).digest('hex').toUpperCase();
  res.writeHead(201, { 'Content-Type': 'text/xml;charset=utf-8', 'x-mns-version': '2015-06-06' });
  res.end(`<?xml version="1.0" encoding="utf-8"?>\n<Message xmlns="http://mns.aliyuncs.com/doc/v1/">` +
    `<MessageId>${id}</MessageId><MessageBodyMD5>${md5}</MessageBodyMD5></Message>`);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString();
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/__messages') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify(messages));
    }
    if (url.pathname === '/__held') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify(held));
    }
    if (url.pathname === '/__faults') {
      fault = JSON.parse(body || '{}');
      res.writeHead(204);
      return res.end();
    }
    if (fault.count > 0) {
      fault.count--;
      res.writeHead(fault.status || 500);
      return res.end('injected fault');
    }
    const t = /^\/topics\/([^/]+)\/messages$/.exec(url.pathname);
    if (req.method === 'POST' && t) return publish(req, res, t[1], body);
    if (req.method === 'POST' && url.pathname === '/hook') {
      const take = () => {
        let parsed = null;
        try { parsed = JSON.parse(body); } catch (e) { /* recorded as unparsed */ }
        messages.push({ kind: 'hook', type: req.headers['content-type'], body, parsed: parsed !== null });
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"ok":true}');
      };
      if (!(fault.hold > 0)) return take();
      fault.hold--;
      held.push(body);
      return setTimeout(() => { if (!req.socket.destroyed) take(); }, (fault.seconds || 10) * 1000);
    }
    res.writeHead(404);
    res.end();
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening on ${server.address().port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
