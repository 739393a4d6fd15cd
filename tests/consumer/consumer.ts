// A consumer's TypeScript, typechecked by tests/consumer.test.ts against the packed `.d.ts` with the
// consumer's own strict tsconfig (no `allowImportingTsExtensions`, no `skipLibCheck`).
import type { ViewRun } from '@mooring/ai';
import { AgentSession, UserSession } from '@mooring/ai';
import { applyMessage, Mooring } from '@mooring/client';
import {
  type ClientFrame,
  compareSerials,
  ERRORS,
  type ErrorCode,
  type Message,
  TRANSPORT_KINDS,
} from '@mooring/protocol';
import { EVENT_RUN, type RunStatus, readSessionMessage } from '@mooring/protocol/ai';
import { clientFrameSchema } from '@mooring/protocol/schemas';
import { ConnectionStatus, MooringProvider, useChannel } from '@mooring/react';
import { useMooringChat } from '@mooring/react/chat';
import { createToken, startServer } from '@mooring/server';
import { ControlBridge, streamToSession } from '@mooring/temporal';
import { runIdFor, useMooringSession } from '@mooring/temporal/workflow';
import { FaultProxy } from '@mooring/testkit';
import { createElement, type ReactNode } from 'react';

export async function example(url: string): Promise<string> {
  const client = new Mooring({ url, key: 'app:secret', clientId: 'me' });
  const channel = client.channels.get('session:1', { start: true });
  const held = new Map<string, Message>();
  await channel.subscribe((m: Message) => held.set(m.serial, applyMessage(held.get(m.serial), m)));
  const serial: string = await channel.publish('text', 'Hel');
  await channel.append(serial, 'lo');
  const session = new UserSession({ channel });
  const runs: ViewRun[] = session.view().filter((n): n is ViewRun => n.kind === 'run');
  const agent = new AgentSession({
    channel,
    agent: 'a',
    onInput: async (_input, run) => run.writeText('hi'),
  });
  await agent.close();
  const frame: ClientFrame = { type: 'attach', channel: 'session:1', rewind: 10 };
  const parsed = clientFrameSchema.safeParse(frame);
  const code: ErrorCode = 'rate_limited';
  const status: RunStatus | undefined = runs[0]?.status;
  const read = readSessionMessage({
    serial,
    version: serial,
    action: 'create',
    id: 'x',
    name: EVENT_RUN,
    timestamp: 0,
  });
  await client.close();
  return `${parsed.success} ${ERRORS[code].status} ${TRANSPORT_KINDS.join()} ${status} ${read?.ok} ${compareSerials(serial, serial)}`;
}

export async function serve(): Promise<void> {
  const server = await startServer({ port: 0, keys: ['app:secret'] });
  const minted = await createToken({ name: 'app', secret: 'secret' }, { clientId: 'me' });
  const proxy = await FaultProxy.start({ port: server.port });
  void minted.token;
  await proxy.close();
  await server.close();
}

// @mooring/react and @mooring/temporal: every entry point, against the consumer's own React, AI SDK
// and Temporal packages (peers).
export function ChatPanel({ channel }: { channel: string }): ReactNode {
  const { messages } = useChannel(channel);
  const chat = useMooringChat({ channel });
  return createElement(
    MooringProvider,
    { options: { url: 'http://127.0.0.1:8080', authUrl: '/api/mooring-token' } },
    createElement(ConnectionStatus),
    `${messages.length} ${chat.messages.length} ${chat.status}`,
  );
}

export function chatWorkflow(): Promise<unknown> {
  const session = useMooringSession();
  return session.run(runIdFor('wf', 'input-1'), () => session.nextInput());
}

export const activities = { streamToSession, bridge: ControlBridge };
