/** Names shared by the load generator and the server processes. */

/** The API key the Mooring bench server accepts (`keyName:secret`). */
export const BENCH_KEY = 'bench:secret';
/** The one channel (Mooring) / room (Socket.IO) every fan-out subscriber listens on. */
export const FANOUT_CHANNEL = 'bench:fanout';
