/**
 * A Mooring server in its own process for the measurements, so that the client's heap and event loop
 * are measured alone. Options come as JSON in argv[2]; prints `listening <url>` on stdout.
 */
import type { ServerOptions } from '@mooring/server';
import { startServer } from '@mooring/server';

const options = JSON.parse(process.argv[2] ?? '{}') as ServerOptions;
const server = await startServer({ host: '127.0.0.1', port: 0, ...options });
process.stdout.write(`listening ${server.url}\n`);
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
