/**
 * The side panel's interactive parts:
 *
 *   Operator        handover: this tab takes the session over as a human (the agent stops
 *                   answering), replies as a human, and hands it back to the AI; other tabs see
 *                   who holds the session
 *   Network chaos   break this page's own connection through its FaultProxy — drop, blackhole for
 *                   8 s, refuse WebSocket, buffer streams — and clear it; the badge and the delivery
 *                   panel show the recovery, the answer carries on
 */
import type { Handover } from '@mooring/ai';
import type { ReactNode } from 'react';
import { createElement as h, useState } from 'react';
import type { Fault } from './session-grant.ts';
import { requestFault } from './session-grant.ts';

export function OperatorPanel(props: {
  clientId: string;
  holder: Handover;
  handover(to: 'human' | 'ai'): Promise<void>;
  reply(text: string): Promise<string>;
  report(err: unknown): void;
}): ReactNode {
  const [text, setText] = useState('');
  const mine = props.holder.holder === 'human' && props.holder.operator === props.clientId;
  const act = (action: () => Promise<unknown>) => () => {
    action().catch(props.report);
  };
  if (props.holder.holder === 'ai')
    return h(
      'div',
      { id: 'operator', 'data-holder': 'ai' },
      h('p', { className: 'muted' }, 'The assistant answers. Take over to answer as a human.'),
      h(
        'button',
        { id: 'take-over', type: 'button', className: 'small', onClick: act(() => props.handover('human')) },
        'Take over as operator',
      ),
    );
  if (!mine)
    return h(
      'div',
      { id: 'operator', 'data-holder': 'human' },
      h('p', null, `A human operator (${props.holder.operator ?? 'someone'}) holds this session.`),
    );
  return h(
    'div',
    { id: 'operator', 'data-holder': 'human', 'data-mine': 'true' },
    h('p', null, 'You hold this session: the assistant is paused. Reply to the last question as a human.'),
    h('textarea', {
      id: 'operator-input',
      rows: 2,
      value: text,
      placeholder: 'Your reply as the operator…',
      onChange: (e: { target: { value: string } }) => setText(e.target.value),
    }),
    h(
      'div',
      { className: 'actions' },
      h(
        'button',
        {
          id: 'operator-reply',
          type: 'button',
          className: 'small primary',
          disabled: text.trim() === '',
          onClick: act(async () => {
            const reply = text.trim();
            setText('');
            await props.reply(reply);
          }),
        },
        'Reply as operator',
      ),
      h(
        'button',
        { id: 'hand-back', type: 'button', className: 'small', onClick: act(() => props.handover('ai')) },
        'Hand back to the AI',
      ),
    ),
  );
}

const FAULT_BUTTONS: Array<{ fault: Fault; label: string; title: string }> = [
  { fault: 'drop', label: 'Drop', title: 'reset the connection (TCP RST): reconnect and resume at once' },
  {
    fault: 'blackhole',
    label: 'Blackhole 8 s',
    title: 'packets vanish, no FIN: the client notices the silence',
  },
  {
    fault: 'refuse-websocket',
    label: 'Refuse WebSocket',
    title: 'a proxy that rejects Upgrade: fall back to SSE',
  },
  { fault: 'buffer', label: 'Buffer streams', title: 'a buffering proxy: fall back to long-polling' },
  { fault: 'pass', label: 'Heal', title: 'clear the faults (WebSocket comes back in the background)' },
];

export function ChaosPanel(props: { clientId: string; report(err: unknown): void }): ReactNode {
  const [last, setLast] = useState<Fault | undefined>();
  return h(
    'div',
    { id: 'chaos', 'data-fault': last ?? 'none' },
    h('p', { className: 'muted' }, "Break this tab's own connection (other tabs stay healthy):"),
    h(
      'div',
      { className: 'chaos-buttons' },
      FAULT_BUTTONS.map((b) =>
        h(
          'button',
          {
            key: b.fault,
            type: 'button',
            className: 'small',
            'data-fault': b.fault,
            title: b.title,
            onClick: () => {
              requestFault(props.clientId, b.fault, b.fault === 'blackhole' ? 8 : undefined).then(
                () => setLast(b.fault),
                props.report,
              );
            },
          },
          b.label,
        ),
      ),
    ),
    h(
      'p',
      { id: 'chaos-state', className: 'muted' },
      last === undefined || last === 'pass' ? 'no fault' : `last fault: ${last}`,
    ),
  );
}
