/**
 * A session's conversation tree loaded over REST (PROTOCOL.md §11 history), for code without a
 * realtime connection — a serverless function that answers an input needs the conversation so far.
 */
import type { Rest } from '@mooring/client';
import { ConversationTree } from './conversation-tree.ts';

export async function loadSession(options: {
  rest: Rest;
  channel: string;
  /** The session's agents' clientIds (PROTOCOL.md §13.5); default: every clientId. */
  agents?: readonly string[];
  /** The clientIds allowed to hand the session over (PROTOCOL.md §13.5); default: every clientId. */
  operators?: readonly string[];
}): Promise<ConversationTree> {
  const tree = new ConversationTree({ agents: options.agents, operators: options.operators });
  let page = await options.rest.history(options.channel, { direction: 'forwards', limit: 1000 });
  for (;;) {
    for (const message of page.items) tree.apply(message);
    const next = await page.next();
    if (!next) return tree;
    page = next;
  }
}
