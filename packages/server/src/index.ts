export type { ApiKey } from './auth.ts';
export { parseApiKey } from './auth.ts';
export type { CapabilitySpec, Operation } from './capabilities.ts';
export { OPERATIONS } from './capabilities.ts';
export type { ServeConfig } from './config.ts';
export {
  developmentKey,
  isLoopback,
  loadServeConfig,
  loopbackDevelopmentKey,
  parseDuration,
} from './config.ts';
export type { ConnectionRegistry, Identity, OpenedConnection } from './connection-registry.ts';
export type { ChannelHealth, SubscriberHealth } from './delivery-health.ts';
export type { DurableStreamsOptions } from './durable-streams/durable-streams-api.ts';
export type { ChannelHealthReport } from './health-report.ts';
export type { ExpireLease, LeaseManagerOptions, Leases, LeaseView } from './leases.ts';
export type { ListenErrorCode } from './listen.ts';
export { ListenError } from './listen.ts';
export type { LocalTransport, LocalTransportHandlers } from './local-transport.ts';
export type { MetricsHistorySnapshot } from './metrics-history.ts';
export type { Presence, PresenceListener, PresenceOptions } from './presence.ts';
export type { RedisHub, RedisHubOptions, RedisHubStats } from './redis-hub.ts';
export type { MooringServer, NamespaceRules, ServerOptions } from './server.ts';
export { DEFAULT_RETENTION, startServer } from './server.ts';
export type { StoreSpec } from './store/create-store.ts';
export { createStore } from './store/create-store.ts';
export { MemoryStore } from './store/memory-store.ts';
export type { RedisStore, RedisStoreOptions } from './store/redis-store.ts';
export type {
  AppendOptions,
  AppendResult,
  ChannelInfo,
  HistoryQuery,
  NewOperation,
  RetentionFor,
  RolledUpPage,
  Store,
} from './store/store.ts';
export { StoreError } from './store/store.ts';
export type {
  AppendOutcome as StreamAppendOutcome,
  AppendSpec as StreamAppendSpec,
  CreateOutcome as StreamCreateOutcome,
  CreateSpec as StreamCreateSpec,
  DeleteOutcome as StreamDeleteOutcome,
  ForkSpec,
  ProducerClaim,
  ReadPage as StreamReadPage,
  StreamChunk,
  StreamMeta,
  StreamStore,
} from './store/stream-store.ts';
export type { MintedToken, TokenRequest } from './tokens.ts';
export { createToken } from './tokens.ts';
