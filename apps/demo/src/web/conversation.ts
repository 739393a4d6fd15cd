/**
 * The conversation, as `useChat` holds it (`messages` from `useMooringChat`), with what the session
 * knows about each message beside it: a run's status and agent, the alternatives of a node (‹ 1/2 ›).
 *
 *   <article class="msg user" data-id>                       .bubble, ‹ › for edits
 *   <article class="msg assistant" data-run-id data-status>  header: agent · status · ‹ 1/2 ›
 *     parts: [data-part=reasoning] · [data-part=text] · [data-part=tool] (.tool-name, .tool-input,
 *            .tool-output, and Approve / Deny while a tool asks first)
 *
 * While the chat replays a run it resumes (a reload, another device), its copy of that message
 * restarts from the run's start; the session's copy is shown whenever it is further along, so text
 * never shrinks on screen. A run counts as ended once the session has rebuilt its message
 * (`settled`), so "complete" is never shown beside older text.
 */
import type { ViewNode } from '@mooring/ai';
import type { UIMessage } from 'ai';
import type { ReactNode } from 'react';
import { createElement as h } from 'react';

type Part = UIMessage['parts'][number];
type RunStatus = 'running' | 'complete' | 'cancelled' | 'error' | 'abandoned';

const STATUS_LABELS: Record<RunStatus, string> = {
  running: 'streaming',
  complete: 'complete',
  cancelled: 'cancelled',
  error: 'error',
  abandoned: 'abandoned',
};

export interface ConversationProps {
  messages: readonly UIMessage[];
  view: readonly ViewNode[];
  settled: boolean;
  select(nodeId: string): void;
  approve(approvalId: string, approved: boolean): void;
}

export function Conversation(props: ConversationProps): ReactNode {
  const nodes = new Map(props.view.map((n) => [n.id, n]));
  return h(
    'div',
    { id: 'conversation', className: 'conversation', 'aria-live': 'polite' },
    props.messages.map((message) => {
      const node = nodes.get(message.id);
      return message.role === 'user'
        ? h(UserMessage, { key: message.id, message, node, select: props.select })
        : h(AssistantMessage, {
            key: message.id,
            message,
            node,
            settled: props.settled,
            select: props.select,
            approve: props.approve,
          });
    }),
  );
}

function UserMessage(props: {
  message: UIMessage;
  node: ViewNode | undefined;
  select(id: string): void;
}): ReactNode {
  const text = props.message.parts
    .map((p) => (p.type === 'text' ? p.text : ''))
    .join('\n')
    .trim();
  return h(
    'article',
    { className: 'msg user', 'data-id': props.message.id },
    h('div', { className: 'bubble' }, text),
    h(Branches, { id: props.message.id, siblings: props.node?.siblings ?? [], select: props.select }),
  );
}

function AssistantMessage(props: {
  message: UIMessage;
  node: ViewNode | undefined;
  settled: boolean;
  select(id: string): void;
  approve(approvalId: string, approved: boolean): void;
}): ReactNode {
  const run = props.node?.kind === 'run' ? props.node : undefined;
  const status: RunStatus =
    run === undefined ? 'running' : run.status !== 'running' && !props.settled ? 'running' : run.status;
  const message = run && textLength(run.message) > textLength(props.message) ? run.message : props.message;
  const shown = message.parts.filter(isShown);
  const last = shown[shown.length - 1];
  return h(
    'article',
    {
      className: `msg assistant${shown.length === 0 && status === 'running' ? ' waiting' : ''}`,
      'data-id': props.message.id,
      'data-run-id': props.message.id,
      'data-status': status,
    },
    h(
      'header',
      { className: 'run-header' },
      h('span', { className: 'agent' }, run?.agent ?? 'assistant'),
      h(
        'span',
        { className: 'status', 'data-status': status, title: run?.reason ?? '' },
        STATUS_LABELS[status],
      ),
      h(Branches, { id: props.message.id, siblings: run?.siblings ?? [], select: props.select }),
    ),
    h(
      'div',
      { className: 'parts' },
      shown.map((part, i) =>
        h(PartView, {
          key: i,
          part,
          caret: status === 'running' && part === last && part.type === 'text',
          approve: props.approve,
        }),
      ),
    ),
  );
}

function PartView(props: {
  part: Part;
  caret: boolean;
  approve(approvalId: string, approved: boolean): void;
}): ReactNode {
  const part = props.part;
  if (part.type === 'text' || part.type === 'reasoning')
    return h(
      'div',
      { className: `${part.type}${props.caret ? ' caret' : ''}`, 'data-part': part.type },
      part.text,
    );
  const tool = part as {
    type: string;
    toolName?: string;
    state: string;
    input?: unknown;
    output?: unknown;
    errorText?: string;
    approval?: { id: string; approved?: boolean };
  };
  const name = tool.type === 'dynamic-tool' ? (tool.toolName ?? 'tool') : tool.type.slice('tool-'.length);
  const asking = tool.state === 'approval-requested' && tool.approval !== undefined;
  const label =
    tool.state === 'output-available'
      ? 'done'
      : tool.state === 'output-error'
        ? 'failed'
        : tool.state === 'output-denied'
          ? 'denied'
          : asking
            ? 'waiting for your approval'
            : tool.state === 'approval-responded'
              ? tool.approval?.approved
                ? 'approved'
                : 'denied'
              : 'running…';
  const output = tool.errorText ?? (tool.output === undefined ? '' : `← ${compact(tool.output)}`);
  return h(
    'div',
    { className: 'tool', 'data-part': 'tool', 'data-state': tool.state },
    h(
      'div',
      { className: 'tool-head' },
      h('span', { className: 'tool-name' }, name),
      h('span', { className: 'tool-state' }, label),
    ),
    h('pre', { className: 'tool-input' }, tool.input === undefined ? '' : `→ ${compact(tool.input)}`),
    h('pre', { className: 'tool-output' }, output),
    asking && tool.approval
      ? h(
          'div',
          { className: 'approval' },
          h(
            'button',
            {
              type: 'button',
              className: 'approve primary',
              onClick: () => props.approve(tool.approval?.id ?? '', true),
            },
            'Approve',
          ),
          h(
            'button',
            {
              type: 'button',
              className: 'deny',
              onClick: () => props.approve(tool.approval?.id ?? '', false),
            },
            'Deny',
          ),
        )
      : null,
  );
}

function Branches(props: { id: string; siblings: readonly string[]; select(id: string): void }): ReactNode {
  const index = props.siblings.indexOf(props.id);
  if (props.siblings.length < 2 || index < 0) return h('nav', { className: 'branches' });
  const previous = props.siblings[index - 1];
  const next = props.siblings[index + 1];
  return h(
    'nav',
    { className: 'branches' },
    h(
      'button',
      {
        type: 'button',
        className: 'branch',
        title: 'previous alternative',
        disabled: previous === undefined,
        onClick: () => previous && props.select(previous),
      },
      '‹',
    ),
    h('span', { className: 'branch-label' }, `${index + 1}/${props.siblings.length}`),
    h(
      'button',
      {
        type: 'button',
        className: 'branch',
        title: 'next alternative',
        disabled: next === undefined,
        onClick: () => next && props.select(next),
      },
      '›',
    ),
  );
}

function isShown(part: Part): boolean {
  return (
    part.type === 'text' ||
    part.type === 'reasoning' ||
    part.type === 'dynamic-tool' ||
    part.type.startsWith('tool-')
  );
}

function textLength(message: UIMessage): number {
  let n = message.parts.length;
  for (const part of message.parts)
    if (part.type === 'text' || part.type === 'reasoning') n += part.text.length;
  return n;
}

function compact(value: unknown): string {
  const text = JSON.stringify(value);
  return text.length > 240 ? `${text.slice(0, 237)}...` : text;
}
