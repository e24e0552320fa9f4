#!/usr/bin/env node
// openapi-call.js - calls `immerge serve` with Alibaba's own generic OpenAPI client for Node.js
// (@alicloud/openapi-client, RPC style, ACS3-HMAC-SHA256 signatures), as code written for the
// service would.
//
//   node openapi-call.js ENDPOINT AK SK ACTION PARAMS-JSON
//
// PARAMS-JSON holds the call's parameters; object values are sent as JSON strings, as the
// service's SDKs send complex parameters. Prints {"status": HTTP status, "body": answer} or
// {"error": {code, message, statusCode}}.
'use strict';

const { client, call } = require('./openapi-rpc.js');

async function main() {
  const [endpoint, ak, sk, action, paramsJson] = process.argv.slice(2);
  const r = await call(client(endpoint, ak, sk), action, JSON.parse(paramsJson || '{}'));
  process.stdout.write(JSON.stringify(r) + '\n');
}
main();
