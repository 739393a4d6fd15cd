/**
 * The JSON behind `GET /v1/channels/:channel/health` and `GET /v1/health` (PROTOCOL.md §11):
 * one channel's delivery health, its leases and their deadlines, and how many are present; or the
 * channels in the most trouble. Both need `history` AND `presence` on a channel (what the session
 * inspector needs too): whoever may read a session's log and presence may see how it is delivered.
 * Subscribers and counts are this node's (with several nodes, ask each); presence and leases the channel's.
 */
import { type Access, requireAccess } from './capabilities.ts';
import type { ChannelService } from './channel-service.ts';
import type { ChannelHealth } from './delivery-health.ts';
import type { LeaseView } from './leases.ts';
import type { Presence } from './presence.ts';
import { ServerError } from './server-error.ts';

export interface ChannelHealthReport extends ChannelHealth {
  presenceMembers: number;
  leases: LeaseView[];
  /** Server time of the report (lease deadlines and `since` are on the same clock). */
  serverTime: number;
}

export function mayInspect(access: Access, channel: string): boolean {
  return access.allows(channel, 'history') && access.allows(channel, 'presence');
}

export async function channelHealthReport(
  channels: ChannelService,
  presence: Presence,
  access: Access,
  channel: string,
): Promise<ChannelHealthReport> {
  requireAccess(access, channel, 'history');
  requireAccess(access, channel, 'presence');
  const health = channels.metrics.health.channel(channel) ?? channels.metrics.health.empty(channel);
  return {
    ...health,
    presenceMembers: (await presence.members(channel)).length,
    leases: await channels.leases.list(channel),
    serverTime: Date.now(),
  };
}

/** `GET /v1/health?limit=N`: the N (default 20, at most 100) visible channels in the most trouble. */
export function troubleReport(
  channels: ChannelService,
  access: Access,
  limitParam: string | null,
): { channels: ChannelHealth[]; tracked: number; serverTime: number } {
  const limit = limitParam === null ? 20 : Number(limitParam);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100)
    throw new ServerError('bad_request', 'limit must be an integer from 1 to 100');
  const { health } = channels.metrics;
  return {
    channels: health.worst(limit, (channel) => mayInspect(access, channel)),
    tracked: health.trackedChannels,
    serverTime: Date.now(),
  };
}
