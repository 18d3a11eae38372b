// The mainstream reference: a plain Node relay on the npm `ws` package, with the same
// protocol as `warmline-loadtest relay`. GET /pair/KEY/a and /pair/KEY/b are paired by
// KEY; each text frame is answered with {"type":"ack"} and forwarded as is; binary
// frames are forwarded. Prints "relay listening on HOST:PORT". Loopback only.
import { WebSocketServer } from 'ws';

const host = process.env.HOST || '127.0.0.1';
if (!/^127\.|^::1$|^localhost$/.test(host)) {
  console.error(`refusing to listen on ${host}: loopback only`);
  process.exit(2);
}
const port = Number(process.env.PORT || 0);
const waiting = new Map();
const ACK = '{"type":"ack"}';

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: 16 << 20 });
wss.on('listening', () => {
  const a = wss.address();
  console.log(`relay listening on ${a.address}:${a.port}`);
});
wss.on('connection', (ws, req) => {
  const path = req.url.split('?')[0];
  const key = path.replace(/\/(a|b)$/, '');
  let partner = null;
  const other = waiting.get(key);
  if (other && other !== ws) {
    waiting.delete(key);
    partner = other;
    other.partner = ws;
  } else {
    waiting.set(key, ws);
  }
  ws.partner = partner;
  ws.on('message', (data, isBinary) => {
    const p = ws.partner;
    if (!p) return;
    if (!isBinary) ws.send(ACK);
    p.send(data, { binary: isBinary });
  });
  ws.on('close', () => {
    if (waiting.get(key) === ws) waiting.delete(key);
  });
  ws.on('error', () => {});
});
