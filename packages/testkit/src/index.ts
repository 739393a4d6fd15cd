export type { FaultProxyOptions, ProxyTarget } from './fault-proxy.ts';
export { FaultProxy } from './fault-proxy.ts';
export type { BufferOptions, FaultProxyStats, Faults } from './faults.ts';
export { fuzzFrameText, mutateFrame, prng, randomText, SEED_FRAMES } from './fuzz.ts';
export type { RedisServer, RedisServerOptions } from './redis-server.ts';
export { redisServerPath, redisSkipReason, startRedis } from './redis-server.ts';
export type { Deferred, OnceOptions, WaitForOptions } from './wait.ts';
export { deferred, once, waitFor } from './wait.ts';
