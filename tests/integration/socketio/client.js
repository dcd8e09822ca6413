'use strict';
// A socket.io client for tests/integration/test_socketio.py.
//
//   node client.js URL [--messages N] [--deadline MS]
//
// Connects to URL (e.g. http://127.0.0.1:8080) the way a browser would: HTTP long-polling
// first, then an upgrade to WebSocket (transports ['polling', 'websocket'], the default), with
// cookies kept between requests (withCredentials: in Node.js that turns on engine.io-client's
// cookie jar, which sends what Set-Cookie stored on later polling requests and on the upgrade).
// Once the session is on WebSocket it sends N "msg" events, each waiting for its ack.
//
// Prints one JSON line on stdout, then exits 0 when everything worked, 1 otherwise:
//   {"ok", "upgraded", "transport", "first_transport", "messages": {"sent", "acked"},
//    "servers": [names that answered], "hello": {...}, "cookies": [names], "errors": [...],
//    "elapsed_ms"}
// ok = connected, upgraded to websocket, every message acked, one server answered everything
// and no error. Never runs past the deadline (default 15000 ms): then it reports and exits 1.
const { io } = require('socket.io-client');

function parseArgs(argv) {
  const args = { url: null, messages: 5, deadline: 15000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--messages') args.messages = Number(argv[++i]);
    else if (a === '--deadline') args.deadline = Number(argv[++i]);
    else if (!args.url) args.url = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (!args.url || !(args.messages >= 0) || !(args.deadline > 0)) {
    throw new Error('usage: node client.js URL [--messages N] [--deadline MS]');
  }
  return args;
}

const started = Date.now();
let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error(e.message);
  process.exit(2);
}

const result = {
  ok: false,
  upgraded: false,
  transport: null,
  first_transport: null,
  messages: { sent: 0, acked: 0 },
  servers: [],
  hello: null,
  cookies: [],
  errors: [],
  elapsed_ms: 0,
};
const servers = new Set();
let finished = false;
let socket = null;

function describe(err) {
  if (!err) return String(err);
  const parts = [err.message || String(err)];
  if (err.description !== undefined) {
    const d = err.description;
    parts.push(typeof d === 'object' ? (d.message || JSON.stringify(d)) : String(d));
  }
  if (err.context && err.context.status !== undefined) parts.push(`status ${err.context.status}`);
  if (err.context && typeof err.context.responseText === 'string' && err.context.responseText) {
    parts.push(err.context.responseText.slice(0, 200));
  }
  return parts.join(': ');
}

function finish(extraError) {
  if (finished) return;
  finished = true;
  if (extraError) result.errors.push(extraError);
  const engine = socket && socket.io.engine;
  if (engine && engine.transport) result.transport = engine.transport.name;
  if (engine && engine._cookieJar) result.cookies = [...engine._cookieJar.cookies].map(([n]) => n);
  result.servers = [...servers].sort();
  result.elapsed_ms = Date.now() - started;
  result.ok = result.upgraded && result.transport === 'websocket' &&
              result.messages.acked === args.messages && servers.size === 1 &&
              result.errors.length === 0;
  process.stdout.write(JSON.stringify(result) + '\n', () => {
    if (socket) socket.close();
    process.exit(result.ok ? 0 : 1);
  });
}

setTimeout(() => finish(`deadline of ${args.deadline} ms passed`), args.deadline).unref();

socket = io(args.url, {
  transports: ['polling', 'websocket'],
  upgrade: true,
  rememberUpgrade: false,
  withCredentials: true,
  reconnection: false,
  forceNew: true,
  timeout: Math.max(1000, args.deadline - 1000),
});

const engineReady = new Promise((resolve) => socket.io.on('open', resolve));

engineReady.then(() => {
  const engine = socket.io.engine;
  result.first_transport = engine.transport.name;
  engine.on('upgrade', (t) => { result.upgraded = t.name === 'websocket'; });
  engine.on('upgradeError', (err) => result.errors.push(`upgrade failed: ${describe(err)}`));
  engine.on('close', (reason, description) => {
    if (!finished) result.errors.push(`engine closed: ${reason}${description ? ': ' + describe(description) : ''}`);
  });
});

socket.on('hello', (hello) => {
  result.hello = hello;
  servers.add(hello.server);
});
socket.on('connect_error', (err) => finish(`connect_error: ${describe(err)}`));
socket.on('disconnect', (reason, details) => {
  if (!finished) result.errors.push(`disconnect: ${reason}${details ? ': ' + describe(details) : ''}`);
  finish();
});

function waitUpgrade() {
  const engine = socket.io.engine;
  if (engine.transport.name === 'websocket') {
    result.upgraded = true;
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    engine.once('upgrade', () => resolve());
    engine.once('upgradeError', (err) => reject(new Error(`upgrade failed: ${describe(err)}`)));
    engine.once('close', (reason) => reject(new Error(`closed before the upgrade: ${reason}`)));
  });
}

socket.on('connect', async () => {
  try {
    await waitUpgrade();
    for (let i = 0; i < args.messages; i++) {
      result.messages.sent++;
      const answer = await socket.timeout(3000).emitWithAck('msg', { seq: i });
      if (!answer || answer.echo === undefined || answer.echo.seq !== i) {
        throw new Error(`message ${i}: unexpected ack ${JSON.stringify(answer)}`);
      }
      servers.add(answer.server);
      if (answer.transport !== 'websocket') {
        throw new Error(`message ${i} was answered on ${answer.transport}, not websocket`);
      }
      result.messages.acked++;
    }
    finish();
  } catch (e) {
    // upgradeError may already have been recorded by the listener above; keep one entry.
    const msg = e.message || String(e);
    if (!result.errors.includes(msg)) result.errors.push(msg);
    finish();
  }
});
