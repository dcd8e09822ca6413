'use strict';
// A socket.io server for tests/integration/test_socketio.py.
//
//   node server.js PORT NAME
//
// Listens on 127.0.0.1:PORT (0 picks a free port) and prints "listening PORT" on stdout once
// it accepts connections. Every answer carries NAME and the transport the session is on, so
// the client can tell which server answered and whether the upgrade happened:
// - on connection it emits "hello" {server, transport, id};
// - on "msg" (data, ack) it acks {server, transport, echo: data, id}.
// Engine.io's handshake/upgrade errors (e.g. "Session ID unknown" when a request of a
// session reaches a server that did not create it) are logged on stderr, one line each.
const http = require('node:http');
const { Server } = require('socket.io');

const [portArg, name] = process.argv.slice(2);
if (portArg === undefined || !name) {
  console.error('usage: node server.js PORT NAME');
  process.exit(2);
}

const httpServer = http.createServer((req, res) => {
  // Anything socket.io does not handle (it handles /socket.io/).
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end(`${name}: not found\n`);
});

const io = new Server(httpServer, {
  transports: ['polling', 'websocket'],
  pingInterval: 5000,
  pingTimeout: 5000,
});

io.engine.on('connection_error', (err) => {
  const req = err.req || {};
  console.error(`${name} connection_error code=${err.code} message=${JSON.stringify(err.message)} ` +
                `${req.method || '-'} ${req.url || '-'}`);
});

io.on('connection', (socket) => {
  const transport = () => socket.conn.transport.name;
  console.error(`${name} connect id=${socket.id} transport=${transport()}`);
  socket.conn.on('upgrade', (t) => console.error(`${name} upgrade id=${socket.id} to=${t.name}`));
  socket.emit('hello', { server: name, transport: transport(), id: socket.id });
  socket.on('msg', (data, ack) => {
    if (typeof ack === 'function') ack({ server: name, transport: transport(), echo: data, id: socket.id });
  });
  socket.on('disconnect', (reason) => console.error(`${name} disconnect id=${socket.id} reason=${reason}`));
});

httpServer.listen(Number(portArg), '127.0.0.1', () => {
  process.stdout.write(`listening ${httpServer.address().port}\n`);
});

const stop = () => {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
