/**
 * `mooring inspect <channel>`: the first thing a support engineer opens when "the answer vanished" —
 * the channel's delivery health on this node (subscribers and transports, reconnects, resumes,
 * continuity lost, time offline, catch-up, slow-consumer drops, publishes awaiting their ack), its
 * leases and their deadlines, its presence, its log rolled up (serials, versions, ids, clientIds,
 * headers), and for an AI session the conversation tree with run statuses. One-shot, over REST;
 * `--json` prints the same as one JSON document. Needs `history` and `presence` on the channel.
 */

import { parseArgs } from 'node:util';
import type { Message, PresenceMember } from '@mooring/protocol';
import type { ChannelHealthReport } from '../health-report.ts';
import { conversationLines, isAiSession } from './conversation-view.ts';
import { bytes, duration, formatMessage, preview } from './format-message.ts';
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  getJson,
  type InspectTarget,
  inspectTarget,
  integerOption,
  oneChannel,
} from './inspect-options.ts';

export const INSPECT_HELP = `Usage: mooring inspect <channel> [--limit <n>] [--json] [--url <url>] (--key <key> | --token <jwt>)

  Shows one channel: delivery health on this node, leases and deadlines, presence, the last <n>
  messages rolled up (default 200), and for an AI session the conversation tree with run statuses.

${CONNECTION_HELP}
  --limit     how many of the latest messages to read (1-10000, default 200)
  --json      print one JSON document instead of text`;

interface HistoryPage {
  items: Message[];
  next?: string;
}

export async function inspectCommand(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...CONNECTION_OPTIONS, limit: { type: 'string' }, json: { type: 'boolean' } },
    strict: true,
  });
  if (values.help) return out(INSPECT_HELP);
  const channel = oneChannel(positionals, INSPECT_HELP);
  const limit = integerOption('limit', values.limit, 200, 1, 10_000);
  const target = inspectTarget(values, env);
  const path = `/v1/channels/${encodeURIComponent(channel)}`;
  const [health, presence, messages] = await Promise.all([
    getJson<ChannelHealthReport>(target, `${path}/health`),
    getJson<{ members: PresenceMember[] }>(target, `${path}/presence`),
    latest(target, `${path}/messages`, limit),
  ]);
  if (values.json) {
    out(JSON.stringify({ channel, health, presence: presence.members, messages }, null, 2));
    return;
  }
  const at = (t: number) => new Date(t).toISOString().replace('T', ' ').slice(0, 19);
  out(`channel ${channel}   (server time ${at(health.serverTime)} UTC; numbers are this node's)`);
  out('');
  // a server from before subscriberCount lists them all
  const subscriberCount = health.subscriberCount ?? health.subscribers.length;
  const unlisted = subscriberCount - health.subscribers.length;
  out(
    `subscribers (${subscriberCount}${unlisted > 0 ? `, the first ${health.subscribers.length} listed` : ''}):`,
  );
  for (const s of health.subscribers)
    out(
      `  ${s.connectionId}  ${s.clientId ?? '(anonymous)'}  ${s.transport}  attached ${duration(health.serverTime - s.since)} ago`,
    );
  out(
    `last ${health.windowMinutes} min: reconnects ${health.reconnects} · resumed ${health.resumes} · continuity lost ${health.continuityLost}` +
      (health.lastContinuityLost
        ? ` (last: ${health.lastContinuityLost.reason} at ${at(health.lastContinuityLost.at)})`
        : '') +
      ` · connections lost ${health.connectionsLost} · slow-consumer drops ${health.slowConsumerDrops}`,
  );
  out(
    `  offline ${duration(health.offlineMs)} in all, longest ${duration(health.maxOfflineMs)} · caught up ${health.caughtUpMessages} messages (${bytes(health.caughtUpBytes)})` +
      ` · publishes awaiting ack ${health.unackedPublishes}${health.oldestUnackedMs === null ? '' : ` (oldest ${duration(health.oldestUnackedMs)})`}`,
  );
  out('');
  // a server from before leaseCount lists them all
  const leaseCount = health.leaseCount ?? health.leases.length;
  out(
    `leases (${leaseCount}${leaseCount > health.leases.length ? `, the first ${health.leases.length} listed` : ''}):`,
  );
  for (const l of health.leases) {
    const state = l.held
      ? 'held: its publisher is connected'
      : `abandoned in ${duration(Math.max(0, (l.deadline ?? health.serverTime) - health.serverTime))} unless its publisher writes again`;
    out(`  ${l.serial}  ${l.clientId ?? '(anonymous)'}  lease ${duration(l.ms)}  ${state}`);
  }
  out(`presence (${presence.members.length}):`);
  for (const m of presence.members)
    out(`  ${m.clientId}  ${m.connectionId}${m.data === undefined ? '' : `  ${preview(m.data, 120)}`}`);
  out('');
  out(`log (${messages.length} latest messages, rolled up, oldest first):`);
  for (const m of messages) out(`  ${formatMessage(m)}`);
  if (isAiSession(messages)) {
    out('');
    out('conversation:');
    for (const line of await conversationLines(messages)) out(`  ${line}`);
  }
}

/** The latest `limit` messages, oldest first (history pages backwards, following `next`). */
async function latest(target: InspectTarget, path: string, limit: number): Promise<Message[]> {
  const messages: Message[] = [];
  let next: string | undefined = `${path}?direction=backwards&limit=${Math.min(limit, 1000)}`;
  while (next !== undefined && messages.length < limit) {
    const page: HistoryPage = await getJson<HistoryPage>(target, next);
    messages.push(...page.items);
    next = page.next;
  }
  return messages.slice(0, limit).reverse();
}
