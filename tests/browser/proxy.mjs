// A TCP proxy in front of Warmline whose network can be cut: `cut()` destroys every
// connection through it and refuses new ones until `restore()`. The browser sees what
// it sees when Wi-Fi drops: sockets fail, reconnects fail, then work again.
import net from 'node:net';

export async function startProxy(target) {
  const url = new URL(target);
  const sockets = new Set();
  let down = false;
  const server = net.createServer((client) => {
    if (down) { client.destroy(); return; }
    const upstream = net.connect(Number(url.port), url.hostname);
    sockets.add(client); sockets.add(upstream);
    const end = () => {
      client.destroy(); upstream.destroy();
      sockets.delete(client); sockets.delete(upstream);
    };
    client.on('error', end); upstream.on('error', end);
    client.on('close', end); upstream.on('close', end);
    client.pipe(upstream); upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() { down = true; for (const s of sockets) s.destroy(); sockets.clear(); },
    restore() { down = false; },
    close() { this.cut(); return new Promise((resolve) => server.close(resolve)); },
  };
}
