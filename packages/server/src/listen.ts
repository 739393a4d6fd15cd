/**
 * Binding the server's port, with errors a caller can switch on (`ListenError.code`) and messages
 * that say what to do instead of libuv's `listen EADDRINUSE`.
 *
 * `reusePort` (SO_REUSEPORT): several processes listen on one port and the kernel spreads new
 * connections over them — one Mooring node per core on one machine. Every process on the port must
 * ask for it; a port already held without it stays refused. Linux 3.9+, FreeBSD 12+, DragonFlyBSD
 * 3.6+, Solaris 11.4 and AIX 7.2.5+ support it; elsewhere (macOS, Windows) libuv refuses with
 * ENOTSUP, reported as `reuse_port_unsupported`.
 */
import type { Server } from 'node:net';

export type ListenErrorCode = 'address_in_use' | 'reuse_port_unsupported' | 'listen_failed';

export class ListenError extends Error {
  readonly code: ListenErrorCode;
  constructor(code: ListenErrorCode, message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'ListenError';
    this.code = code;
  }
}

export interface ListenOptions {
  port: number;
  host: string;
  reusePort: boolean;
}

export function listen(server: Server, options: ListenOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => reject(toListenError(err, options));
    server.once('error', failed);
    server.listen(
      { port: options.port, host: options.host, ...(options.reusePort ? { reusePort: true } : {}) },
      () => {
        server.off('error', failed);
        resolve();
      },
    );
  });
}

/** A listen failure as a `ListenError` whose message names the way out. */
export function toListenError(err: NodeJS.ErrnoException, options: ListenOptions): ListenError {
  const where = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
  if (err.code === 'EADDRINUSE')
    return new ListenError(
      'address_in_use',
      options.reusePort
        ? `${where} is already in use by a process that did not ask to share it: start every node on this port with reusePort (mooring serve --reuse-port), or choose another port`
        : `${where} is already in use: choose another port, or start every node on this port with reusePort (mooring serve --reuse-port) to share it`,
      err,
    );
  if (err.code === 'ENOTSUP' && options.reusePort)
    return new ListenError(
      'reuse_port_unsupported',
      `this platform (${process.platform}) cannot spread one port over several processes (SO_REUSEPORT: Linux 3.9+, FreeBSD 12+); give each node its own port behind a load balancer`,
      err,
    );
  return new ListenError('listen_failed', `cannot listen on ${where}: ${err.message}`, err);
}
