/**
 * The JSON behind `GET /v1/channels/:channel/health` and `GET /v1/health` (PROTOCOL.md §11):
 * one channel's delivery health, its leases and their deadlines, and how many are present; or the
 * channels in the most trouble. Both need `history` AND `presence` on a channel (what the session
 * inspector needs too): whoever may read a session's log and presence may see how it is delivered.
 * `GET /v1/channels/:channel/conversation` (same rights) folds an AI session's tree for the inspector.
 * Subscribers and counts are this node's (with several nodes, ask each); presence and leases the channel's.
 */
import { type Access, requireAccess } from './capabilities.ts';
import type { ChannelService } from './channel-service.ts';
import type { ChannelHealth } from './delivery-health.ts';
import { conversationLines, isAiSession } from './inspect/conversation-view.ts';
import type { LeaseView } from './leases.ts';
import type { Presence } from './presence.ts';
import { ServerError } from './server-error.ts';

/**
 * A report lists at most this many of the channel's leases (the earliest messages first), and
 * counts them all in `leaseCount`: one holder may take 1,000 (`maxLeasesPerClient`) and a channel
 * has as many holders as publish there, so the list alone could make the answer MBs, built and sent
 * whole to anyone who may inspect the channel (as `MAX_SUBSCRIBERS_LISTED` bounds its subscribers).
 */
export const MAX_LEASES_LISTED = 200;

export interface ChannelHealthReport extends ChannelHealth {
  presenceMembers: number;
  /** The first `MAX_LEASES_LISTED` leases, by serial (see `leaseCount`). */
  leases: LeaseView[];
  /** How many leases the channel's messages have, listed or not. */
  leaseCount: number;
  /** Server time of the report (lease deadlines and `since` are on the same clock). */
  serverTime: number;
}

export function mayInspect(access: Access, channel: string): boolean {
  return access.allows(channel, 'history') && access.allows(channel, 'presence');
}

/**
 * Presence is counted, never read (`Presence.count`: the members' data may be MiBs); the leases
 * are looked through node-wide (memory) or scanned (Redis), so the report holds a read slot like
 * other large reads (PROTOCOL.md §10): a caller repeating it waits in line, or is refused past it.
 */
export async function channelHealthReport(
  channels: ChannelService,
  presence: Presence,
  access: Access,
  channel: string,
  /** Who asks (a holder key, `holderKey`): its share of the read slots is bounded (read-limiter.ts). */
  reader?: string,
  /** Whether the caller sees who subscribes (`seesSubscribers`), or only how many. */
  listed = true,
): Promise<ChannelHealthReport> {
  requireAccess(access, channel, 'history');
  requireAccess(access, channel, 'presence');
  const release = await channels.reads.acquire('bounded', reader);
  try {
    const [presenceMembers, leases] = await Promise.all([
      presence.count(channel),
      channels.leases.list(channel),
    ]);
    const health = channels.metrics.health.channel(channel) ?? channels.metrics.health.empty(channel);
    return {
      ...unlisted(health, listed),
      presenceMembers,
      leases: leases.length > MAX_LEASES_LISTED ? leases.slice(0, MAX_LEASES_LISTED) : leases,
      leaseCount: leases.length,
      serverTime: Date.now(),
    };
  } finally {
    release();
  }
}

/**
 * Who may see a channel's subscribers (their clientIds and connections) in its health: API keys
 * (operators, agents). A token holder with `history` and `presence` — what an end user usually has —
 * sees how many: presence is how a user chooses to be seen, and a silent watcher (a supervisor)
 * has not chosen to.
 */
export function seesSubscribers(identity: { viaToken: boolean }): boolean {
  return !identity.viaToken;
}

/** `health` without its subscriber list (its count kept) for a caller that does not see it. */
function unlisted(health: ChannelHealth, listed: boolean): ChannelHealth {
  return listed || health.subscribers.length === 0 ? health : { ...health, subscribers: [] };
}

/** `GET /v1/health?limit=N`: the N (default 20, at most 100) visible channels in the most trouble. */
export function troubleReport(
  channels: ChannelService,
  access: Access,
  limitParam: string | null,
  listed = true,
): { channels: ChannelHealth[]; tracked: number; serverTime: number } {
  const limit = limitParam === null ? 20 : Number(limitParam);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100)
    throw new ServerError('bad_request', 'limit must be an integer from 1 to 100');
  const { health } = channels.metrics;
  return {
    channels: health.worst(limit, (channel) => mayInspect(access, channel)).map((h) => unlisted(h, listed)),
    tracked: health.trackedChannels,
    serverTime: Date.now(),
  };
}

/** How many of the latest messages `GET /v1/channels/:channel/conversation` folds (default; at most 1000). */
export const CONVERSATION_MESSAGES = 500;
/** …and at most this many bytes of their data (the history page bound, PROTOCOL.md §10). */
export const CONVERSATION_BYTES = 1024 * 1024;

export interface ConversationReport {
  channel: string;
  /** Whether the messages read hold AI session events (inputs or runs). */
  ai: boolean;
  /** How many of the latest messages were folded. */
  messages: number;
  /** True when the log holds older messages than those folded (the tree may lack its start). */
  truncated: boolean;
  /** The conversation tree as text, the same lines `mooring inspect` prints; [] if not an AI session. */
  lines: string[];
}

/**
 * `GET /v1/channels/:channel/conversation?limit=N`: the AI conversation tree with run statuses,
 * folded from the latest N (default 500, at most 1000) rolled-up messages and at most 1 MiB of
 * their data, read in one bounded history read while holding a read slot. Needs what the inspector
 * needs: `history` AND `presence`.
 */
export async function conversationReport(
  channels: ChannelService,
  access: Access,
  channel: string,
  limitParam: string | null,
  /** Who asks (a holder key, `holderKey`): its share of the read slots is bounded (read-limiter.ts). */
  reader?: string,
): Promise<ConversationReport> {
  requireAccess(access, channel, 'history');
  requireAccess(access, channel, 'presence');
  const limit = limitParam === null ? CONVERSATION_MESSAGES : Number(limitParam);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new ServerError('bad_request', 'limit must be an integer from 1 to 1000');
  const release = await channels.reads.acquire('bounded', reader);
  let page: Awaited<ReturnType<ChannelService['history']>>;
  try {
    page = await channels.history(channel, { direction: 'backwards', limit, maxBytes: CONVERSATION_BYTES });
  } finally {
    release();
  }
  const messages = page.messages.slice().reverse();
  const ai = isAiSession(messages);
  return {
    channel,
    ai,
    messages: messages.length,
    truncated: page.more,
    lines: ai ? await conversationLines(messages) : [],
  };
}
