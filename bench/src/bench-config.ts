/** Names shared by the load generator and the server processes. */

/** The API key the Mooring bench server accepts (`keyName:secret`). */
export const BENCH_KEY = 'bench:secret';
/** The one channel (Mooring) / room (Socket.IO) every fan-out subscriber listens on. */
export const FANOUT_CHANNEL = 'bench:fanout';

/**
 * The Node flags `mooring serve` runs with (packages/server/bin/mooring.js caps V8's young
 * generation); the bench's Mooring server processes stand for that command, so they run with them
 * too. `BENCH_MOORING_NODE_FLAGS` replaces them for A/B runs (`''`: Node's defaults).
 */
export const MOORING_SERVE_NODE_FLAGS = (process.env.BENCH_MOORING_NODE_FLAGS ?? '--max-semi-space-size=16')
  .split(' ')
  .filter(Boolean);
