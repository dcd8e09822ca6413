'use strict';
// WebSocket sessions on Node.js's `ws` package (Debian's node-ws) for
// tests/integration/test_lua.py: the scenarios python3-websockets runs, from another
// implementation.
//
//   node node_ws_client.js < SPEC_JSON
//
// SPEC (on stdin: messages can be larger than a command line allows) is a list of sessions,
// run one after the other:
//   [{"url", "headers": {...}, "deflate": false, "send": ["text", ...], "expect": N | null,
//     "close": 1000}, ...]
// Each opens its WebSocket (offering permessage-deflate only with "deflate": true), sends
// every message of "send" at once, then waits for "expect" messages and closes with "close";
// with "expect": null it reads until the server closes.
//
// Prints one JSON line on stdout, a list with one result per session, and exits 0 (a refused
// upgrade is a result too: the test judges):
//   {"status": 101 | the refusal's status, "headers": {lower-case name: value},
//    "body": the refusal's body | null, "extensions": "negotiated" | "",
//    "received": [text...], "close_code": N | null, "close_reason": "...", "errors": [...]}
// Exits 1 when something broke (the deadline passed, a socket error), printing what it had.
const WebSocket = require('ws');

const DEADLINE_MS = Number(process.env.NODE_WS_DEADLINE_MS || 10000);

function runSession(spec) {
  return new Promise((resolve) => {
    const result = {
      status: null,
      headers: {},
      body: null,
      extensions: '',
      received: [],
      close_code: null,
      close_reason: '',
      errors: [],
    };
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(result);
    };
    const timer = setTimeout(() => {
      result.errors.push(`deadline of ${DEADLINE_MS} ms passed`);
      ws.terminate();
      finish();
    }, DEADLINE_MS);

    const ws = new WebSocket(spec.url, {
      headers: spec.headers || {},
      perMessageDeflate: !!spec.deflate,
    });
    const expect = spec.expect === undefined ? null : spec.expect;

    ws.on('upgrade', (res) => {
      result.status = res.statusCode;
      result.headers = res.headers;
    });
    ws.on('unexpected-response', (req, res) => {
      result.status = res.statusCode;
      result.headers = res.headers;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        result.body = Buffer.concat(chunks).toString('utf8');
        req.destroy();
        finish();
      });
    });
    ws.on('open', () => {
      result.extensions = ws.extensions;
      for (const m of spec.send || []) ws.send(m);
      if (expect === 0) ws.close(spec.close || 1000);
    });
    ws.on('message', (data, isBinary) => {
      result.received.push(isBinary ? data.toString('base64') : data.toString('utf8'));
      if (expect !== null && result.received.length === expect) ws.close(spec.close || 1000);
    });
    ws.on('close', (code, reason) => {
      result.close_code = code;
      result.close_reason = reason.toString('utf8');
      finish();
    });
    ws.on('error', (err) => {
      if (result.status !== null && result.status !== 101) return;  // the refusal is the result
      result.errors.push(String(err && err.message ? err.message : err));
      finish();
    });
  });
}

async function main() {
  const specs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const results = [];
  for (const spec of specs) results.push(await runSession(spec));
  const failed = results.some((r) => r.errors.length > 0);
  process.stdout.write(JSON.stringify(results) + '\n', () => process.exit(failed ? 1 : 0));
}

main();
