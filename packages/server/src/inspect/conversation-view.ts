/**
 * The conversation tree of an AI session, as text: inputs and runs (with status, agent, reason) in
 * tree order, each run's text so far. The fold is @mooring/ai's `ConversationTree` — the same code
 * every client runs — so the inspector shows what users' screens show. It is loaded only when the
 * channel holds AI session events, and only if @mooring/ai is installed (the server does not depend
 * on it: the dependency points the other way).
 */
import type { Message } from '@mooring/protocol';
import { EVENT_INPUT, EVENT_RUN } from '@mooring/protocol/ai';
import { preview } from './format-message.ts';

interface InputNodeView {
  id: string;
  serial: string;
  clientId: string | undefined;
  forkOf: string | undefined;
  message: { parts: unknown[] };
}
interface RunNodeView {
  id: string;
  serial: string;
  agent: string;
  status: string;
  reason: string | undefined;
  finishReason: string | undefined;
  replaces: string | undefined;
  clientId: string | undefined;
}
interface PartView {
  kind: string;
  text: string;
  state: string;
  chunk: { type: string } | undefined;
}
interface TreeView {
  apply(message: Message): void;
  inputsAfter(id: string | undefined): InputNodeView[];
  runsOf(inputId: string): RunNodeView[];
  parts(runId: string): PartView[];
  on(event: 'malformed', listener: (why: string) => void): () => void;
  readonly handover: { holder: string; operator: string | undefined };
}
type AiModule = { ConversationTree: new () => TreeView };

/** Whether the messages look like an AI session (inputs or runs). */
export function isAiSession(messages: Message[]): boolean {
  return messages.some((m) => m.name === EVENT_INPUT || m.name === EVENT_RUN);
}

/** The tree as lines, or a line saying why it cannot be shown. */
export async function conversationLines(messages: Message[]): Promise<string[]> {
  let ai: AiModule;
  try {
    const specifier = '@mooring/ai'; // not a literal import: an optional package, not a dependency
    ai = (await import(specifier)) as AiModule;
  } catch {
    return ['(install @mooring/ai next to @mooring/server to see the conversation tree)'];
  }
  const tree = new ai.ConversationTree();
  const malformed: string[] = [];
  tree.on('malformed', (why) => malformed.push(why));
  for (const message of messages) tree.apply(message);
  const lines: string[] = [];
  if (tree.handover.holder === 'human')
    lines.push(`handed over to a human: ${tree.handover.operator ?? '?'}`);
  const walk = (parent: string | undefined, depth: number, seen: Set<string>) => {
    for (const input of tree.inputsAfter(parent)) {
      if (seen.has(input.id)) continue;
      seen.add(input.id);
      const pad = '  '.repeat(depth);
      const fork = input.forkOf ? ` (edit of ${input.forkOf})` : '';
      lines.push(
        `${pad}› input ${input.id} from ${input.clientId ?? '?'}${fork}: ${preview(textOf(input.message.parts), 120)}`,
      );
      walk(input.id, depth + 1, seen);
      for (const run of tree.runsOf(input.id)) {
        if (seen.has(run.id)) continue;
        seen.add(run.id);
        const why = run.reason ?? run.finishReason;
        const replaces = run.replaces ? ` (regenerates ${run.replaces})` : '';
        lines.push(
          `${pad}  ◆ run ${run.id} · ${run.agent} · ${run.status}${why ? ` (${why})` : ''}${replaces}`,
        );
        for (const part of tree.parts(run.id)) {
          const body = part.kind === 'chunk' ? (part.chunk?.type ?? 'chunk') : preview(part.text, 200);
          lines.push(`${pad}      ${part.kind}${part.state === 'streaming' ? ' (streaming)' : ''}: ${body}`);
        }
        walk(run.id, depth + 2, seen);
      }
    }
  };
  walk(undefined, 0, new Set());
  for (const why of malformed.slice(0, 20)) lines.push(`! malformed: ${why}`);
  return lines;
}

function textOf(parts: unknown[]): string {
  return parts
    .map((p) =>
      typeof p === 'object' && p !== null && (p as { type?: unknown }).type === 'text'
        ? String((p as { text?: unknown }).text ?? '')
        : '',
    )
    .join('');
}
