// openapi-rpc.js - one RPC-style call to `immerge serve` through Alibaba's own generic OpenAPI
// client for Node.js (@alicloud/openapi-client, ACS3-HMAC-SHA256 signatures), as code written for
// the service makes it: object parameters go as JSON strings, as the service's SDKs send them.
// Shared by openapi-call.js and cluster-client.js.
'use strict';

const OpenApi = require('@alicloud/openapi-client');
const OpenApiUtil = require('@alicloud/openapi-util').default;
const Util = require('@alicloud/tea-util');

// $OPENAPI_SIGNATURE_ALGORITHM picks the client's signature (ACS3-HMAC-SHA256 by default).
function client(endpoint, ak, sk) {
  return new OpenApi.default(new OpenApi.Config({
    accessKeyId: ak, accessKeySecret: sk, endpoint, protocol: 'http', readTimeout: 60000,
    signatureAlgorithm: process.env.OPENAPI_SIGNATURE_ALGORITHM || undefined,
  }));
}

// {status: HTTP status, body: answer, ms}, or {error: {code, message, statusCode}, ms}: ms is
// how long the call took, from the request to its answer (this process's start not counted).
async function call(c, action, params) {
  const t0 = Date.now();
  const r = await call1(c, action, params);
  r.ms = Date.now() - t0;
  return r;
}

async function call1(c, action, params) {
  const query = {};
  for (const [k, v] of Object.entries(params || {}))
    query[k] = typeof v === 'object' ? JSON.stringify(v) : String(v);
  const p = new OpenApi.Params({
    action, version: '2020-09-30', protocol: 'HTTP', pathname: '/', method: 'POST',
    authType: 'AK', style: 'RPC', reqBodyType: 'formData', bodyType: 'json',
  });
  const request = new OpenApi.OpenApiRequest({ query: OpenApiUtil.query(query) });
  try {
    const r = await c.callApi(p, request, new Util.RuntimeOptions({}));
    return { status: r.statusCode, body: r.body };
  } catch (e) {
    return { error: { code: e.code, message: e.message, statusCode: e.statusCode } };
  }
}

module.exports = { client, call };
