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

const OpenApi = require('@alicloud/openapi-client');
const OpenApiUtil = require('@alicloud/openapi-util').default;
const Util = require('@alicloud/tea-util');

async function main() {
  const [endpoint, ak, sk, action, paramsJson] = process.argv.slice(2);
  const client = new OpenApi.default(new OpenApi.Config({
    accessKeyId: ak, accessKeySecret: sk, endpoint, protocol: 'http', readTimeout: 60000,
  }));
  const query = {};
  for (const [k, v] of Object.entries(JSON.parse(paramsJson || '{}')))
    query[k] = typeof v === 'object' ? JSON.stringify(v) : String(v);
  const params = new OpenApi.Params({
    action, version: '2020-09-30', protocol: 'HTTP', pathname: '/', method: 'POST',
    authType: 'AK', style: 'RPC', reqBodyType: 'formData', bodyType: 'json',
  });
  const request = new OpenApi.OpenApiRequest({ query: OpenApiUtil.query(query) });
  try {
    const r = await client.callApi(params, request, new Util.RuntimeOptions({}));
    process.stdout.write(JSON.stringify({ status: r.statusCode, body: r.body }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: { code: e.code, message: e.message, statusCode: e.statusCode } }) + '\n');
  }
}
main();
