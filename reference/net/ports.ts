/** Loopback ports for tests, benchmarks and the harness. */
import net from 'node:net';

/** A free TCP port on 127.0.0.1: free when asked (bound, then released); a server should take it soon after. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}
