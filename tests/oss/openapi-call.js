#!/usr/bin/env node
// openapi-call.js - calls `immerge serve` with Alibaba's own generic OpenAPI client for Node.js
// (@alicloud/openapi-client, RPC style, ACS3-HMAC-SHA256 signatures), as code written for the
// service would.
//
//   node openapi-call.js ENDPOINT AK SK ACTION PARAMS-JSON [N]
//
// PARAMS-JSON holds the call's parameters; object values are sent as JSON strings, as the
// service's SDKs send complex parameters. Prints {"status": HTTP status, "body": answer} or
// {"error": {code, message, statusCode}}, with "ms" (the call's time). With N, makes the call N
// times on one client, one line each: the later ones are timed without the client's warm-up.
'use strict';

const { client, call } = require('./openapi-rpc.js');

async function main() {
  const [endpoint, ak, sk, action, paramsJson, times] = process.argv.slice(2);
  const c = client(endpoint, ak, sk);
  for (let i = 0; i < (Number(times) || 1); i++) {
    const r = await call(c, action, JSON.parse(paramsJson || '{}'));
    process.stdout.write(JSON.stringify(r) + '\n');
  }
}
main();
