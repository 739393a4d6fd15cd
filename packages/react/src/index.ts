/**
 * @mooring/react — the public surface. Everything not named here is internal.
 * `useMooringChat` lives in `@mooring/react/chat` (it needs the optional peer `@ai-sdk/react`).
 */

export type { ConnectionStatusProps } from './connection-status.ts';
export { ConnectionStatus } from './connection-status.ts';
export type { ReactErrorCode } from './errors.ts';
export { MooringReactError } from './errors.ts';
export type { MooringProviderProps } from './mooring-provider.ts';
export { MooringProvider, useMooring } from './mooring-provider.ts';
export type { SessionSnapshot } from './session-store.ts';
export type { ChannelSnapshot, UseChannelOptions, UseChannelResult } from './use-channel.ts';
export { useChannel } from './use-channel.ts';
export type { ConnectionSnapshot, ConnectionStateResult } from './use-connection-state.ts';
export { useConnectionState } from './use-connection-state.ts';
export type { PresenceSnapshot, UsePresenceOptions, UsePresenceResult } from './use-presence.ts';
export { usePresence } from './use-presence.ts';
export type { SessionControls, UseSessionOptions, UseSessionResult } from './use-session.ts';
export { useSession } from './use-session.ts';
