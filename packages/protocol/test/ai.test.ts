/**
 * The AI session vocabulary of `@mooring/protocol/ai` (PROTOCOL.md §13): each event the spec allows
 * is read as its record, each malformed one is refused with a reason, and other messages are not
 * AI events at all.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { JsonValue, Message } from '@mooring/protocol';
import {
  controlHeaders,
  EVENT_CONTROL,
  EVENT_INPUT,
  EVENT_PART,
  EVENT_RUN,
  isFinal,
  isObject,
  PART_KINDS,
  RUN_STATUSES,
  readMeta,
  readSessionMessage,
} from '@mooring/protocol/ai';

const S = 'mi9x2k0a7q3f.0000000000000042';
const user = { id: 'u1', role: 'user', parts: [{ type: 'text', text: 'hi' }] };

function msg(name: string, data: JsonValue | undefined, headers?: Record<string, string>): Message {
  // a run's message id is `run:<runId>` (§13.2); other events' ids are not read
  const runId = name === EVENT_RUN && isObject(data) ? data.runId : undefined;
  const id = typeof runId === 'string' ? `run:${runId}` : 'x';
  const m: Message = { serial: S, version: S, action: 'create', id, name, timestamp: 1 };
  if (data !== undefined) m.data = data;
  if (headers) m.headers = headers;
  return m;
}

function ok(m: Message) {
  const r = readSessionMessage(m);
  assert.ok(r?.ok, `accepted: ${r && !r.ok ? r.reason : 'not an AI event'}`);
  return r.record;
}

function refused(m: Message, reason: RegExp): void {
  const r = readSessionMessage(m);
  assert.ok(r && !r.ok, `refused ${JSON.stringify(m.data)} ${JSON.stringify(m.headers)}`);
  assert.match(r.reason, reason);
}

describe('AI session events (§13)', () => {
  test('names, statuses and part kinds', () => {
    assert.deepEqual(
      [EVENT_INPUT, EVENT_RUN, EVENT_PART, EVENT_CONTROL],
      ['ai.input', 'ai.run', 'ai.part', 'ai.control'],
    );
    assert.deepEqual(RUN_STATUSES, ['running', 'complete', 'cancelled', 'error', 'abandoned']);
    assert.deepEqual(PART_KINDS, ['text', 'reasoning', 'tool-input', 'chunk']);
    assert.deepEqual(
      RUN_STATUSES.filter((s) => isFinal(s)),
      ['complete', 'cancelled', 'error', 'abandoned'],
    );
  });

  test('other messages and tombstones are not AI events', () => {
    assert.equal(readSessionMessage(msg('text', 'hello')), undefined);
    assert.equal(readSessionMessage({ ...msg(EVENT_RUN, undefined), action: 'delete' }), undefined);
  });

  test('ai.input: a user UIMessage with optional parent, forkOf and device', () => {
    const r = ok(msg(EVENT_INPUT, { message: user, parent: 'run-1', forkOf: 'u0', device: 'tab-1' }));
    assert.equal(r.type, 'input');
    assert.equal(r.type === 'input' && r.id, 'u1');
    assert.equal(r.type === 'input' && r.device, 'tab-1');
    refused(msg(EVENT_INPUT, { message: user, device: 7 }), /device/);
    refused(msg(EVENT_INPUT, 'text'), /not an object/);
    refused(msg(EVENT_INPUT, { message: { ...user, role: 'assistant' } }), /user UIMessage/);
    refused(msg(EVENT_INPUT, { message: { id: '', role: 'user', parts: [] } }), /user UIMessage/);
    refused(msg(EVENT_INPUT, { message: { id: 'u', role: 'user' } }), /user UIMessage/);
    refused(msg(EVENT_INPUT, { message: user, parent: 3 }), /parent\/forkOf/);
  });

  // Review finding 1 and 2: a part the AI SDK's convertToModelMessages (or a UI) cannot read threw
  // in the agent process (a steer) or in every later run of the branch (an input).
  const badParts: JsonValue[] = [
    null,
    'text',
    [],
    {},
    { type: 5 },
    { type: '' },
    { type: 'text' },
    { type: 'text', text: 5 },
    { type: 'text', text: 'hi', providerMetadata: 'x' },
    { type: 'reasoning' },
    { type: 'file', mediaType: 'image/png' },
    { type: 'file', mediaType: 'image/png', url: 'not a url' },
    { type: 'file', url: 'https://example.com/a.png' },
    { type: 'file', mediaType: 'image/png', url: 'https://example.com/a.png', filename: 3 },
    { type: 'file', mediaType: 'image/png', url: '', providerReference: 'x' },
    { type: 'tool-weather' },
    { type: 'tool-weather', toolCallId: 'c1' },
    { type: 'dynamic-tool', toolCallId: 'c1', state: 'input-available' },
  ];
  const goodParts: JsonValue[] = [
    { type: 'text', text: '' },
    { type: 'text', text: 'hi', providerMetadata: { openai: { id: 'x' } }, state: 'done' },
    { type: 'reasoning', text: 'why' },
    { type: 'file', mediaType: 'image/png', url: 'data:image/png;base64,AAAA', filename: 'a.png' },
    { type: 'file', mediaType: 'image/png', url: '', providerReference: { openai: 'file-1' } },
    { type: 'tool-weather', toolCallId: 'c1', state: 'output-available', input: {}, output: 1 },
    { type: 'dynamic-tool', toolName: 'w', toolCallId: 'c1', state: 'input-available' },
    { type: 'data-weather', data: { city: 'Lyon' } },
    { type: 'step-start' },
    // a part type the AI SDK may add later passes with its object shape
    { type: 'hologram', frames: [1, 2] },
  ];

  test('ai.input and steer: every part is an object with a string type and the fields its readers read', () => {
    for (const part of badParts) {
      const message = { id: 'u1', role: 'user', parts: [{ type: 'text', text: 'ok' }, part] };
      refused(msg(EVENT_INPUT, { message }), /not a user UIMessage: parts\[1\]/);
      refused(msg(EVENT_CONTROL, { type: 'steer', runId: 'r1', message }), /steer needs.*parts\[1\]/);
    }
    const message = { id: 'u1', role: 'user', parts: goodParts };
    ok(msg(EVENT_INPUT, { message }));
    ok(msg(EVENT_CONTROL, { type: 'steer', runId: 'r1', message }));
  });

  test('ai.run: runId, agent and input, and a known status header', () => {
    const data = { runId: 'r1', agent: 'assistant', input: 'u1', replaces: 'r0', finishReason: 'stop' };
    for (const status of RUN_STATUSES) {
      const r = ok(msg(EVENT_RUN, data, { status }));
      assert.equal(r.type === 'run' && r.status, status);
    }
    refused(msg(EVENT_RUN, data, { status: 'done' }), /unknown status "done"/);
    // a run's message id binds its run id (§13.5): no update can re-aim it at another run
    refused({ ...msg(EVENT_RUN, data, { status: 'running' }), id: 'ph' }, /id must be run:<runId>, not ph/);
    refused({ ...msg(EVENT_RUN, data, { status: 'running' }), id: 'run:r2' }, /id must be run:<runId>/);
    refused(msg(EVENT_RUN, data), /unknown status/);
    refused(msg(EVENT_RUN, { runId: 'r1', agent: 'a' }, { status: 'running' }), /must be strings/);
    refused(msg(EVENT_RUN, { ...data, reason: 1 }, { status: 'error' }), /must be strings/);
    // each field alone, not only all of them missing at once
    for (const field of ['runId', 'agent', 'input'])
      refused(msg(EVENT_RUN, { ...data, [field]: 7 }, { status: 'running' }), /runId, agent and input/);
    for (const field of ['replaces', 'finishReason', 'reason'])
      refused(msg(EVENT_RUN, { ...data, [field]: false }, { status: 'complete' }), /replaces\/finishReason/);
  });

  test('ai.part: streamed text parts and chunk parts (JSON or json-text)', () => {
    const text = ok(msg(EVENT_PART, 'Hel', { run: 'r1', kind: 'text', partId: 't1', state: 'streaming' }));
    assert.equal(text.type === 'part' && text.text, 'Hel');
    ok(
      msg(EVENT_PART, '{"a"', {
        run: 'r1',
        kind: 'tool-input',
        toolCallId: 'c1',
        toolName: 'f',
        state: 'streaming',
      }),
    );
    const chunk = ok(msg(EVENT_PART, { type: 'source-url', url: 'u' }, { run: 'r1', kind: 'chunk' }));
    assert.deepEqual(chunk.type === 'part' && chunk.chunk, { type: 'source-url', url: 'u' });
    const jsonText = ok(
      msg(EVENT_PART, '{"type":"data-x"}', { run: 'r1', kind: 'chunk', format: 'json-text', state: 'done' }),
    );
    assert.deepEqual(jsonText.type === 'part' && jsonText.chunk, { type: 'data-x' });
    refused(msg(EVENT_PART, 'x', { kind: 'text', partId: 't' }), /no run header/);
    refused(msg(EVENT_PART, 'x', { run: 'r1', kind: 'image', partId: 't' }), /unknown kind/);
    refused(msg(EVENT_PART, 'x', { run: 'r1', kind: 'text' }), /without partId/);
    refused(msg(EVENT_PART, { x: 1 }, { run: 'r1', kind: 'text', partId: 't' }), /not a string/);
    refused(msg(EVENT_PART, 'x', { run: 'r1', kind: 'chunk' }), /not a UIMessageChunk/);
    refused(msg(EVENT_PART, { type: 5 }, { run: 'r1', kind: 'chunk' }), /not a UIMessageChunk/);
    for (const kind of ['reasoning', 'tool-input'])
      refused(msg(EVENT_PART, 'x', { run: 'r1', kind }), new RegExp(`${kind} part without partId`));
    for (const text of ['{"type":5}', '[1]', '"text"'])
      refused(
        msg(EVENT_PART, text, { run: 'r1', kind: 'chunk', format: 'json-text', state: 'done' }),
        /json-text is not a chunk/,
      );
    refused(
      msg(EVENT_PART, '{', { run: 'r1', kind: 'chunk', format: 'json-text', state: 'done' }),
      /not JSON/,
    );
  });

  test('ai.control: each control of §13.4 (and regenerate), with its required fields', () => {
    const controls: JsonValue[] = [
      { type: 'cancel' },
      { type: 'cancel', runId: 'r1' },
      { type: 'steer', runId: 'r1', message: user },
      { type: 'tool-approval', approvalId: 'a1', approved: true, reason: 'ok' },
      { type: 'tool-output', runId: 'r1', toolCallId: 'c1', output: { city: 'Lyon' } },
      { type: 'tool-output', runId: 'r1', toolCallId: 'c1', output: null },
      { type: 'tool-output', runId: 'r1', toolCallId: 'c1', errorText: 'denied by the user' },
      { type: 'handover', to: 'human', operator: 'op' },
      { type: 'handover', to: 'ai' },
      { type: 'select', node: 'r1' },
      { type: 'regenerate', inputId: 'u1', runId: 'r1' },
    ];
    for (const c of controls) ok(msg(EVENT_CONTROL, c));
    refused(msg(EVENT_CONTROL, { type: 'pause' }), /unknown control "pause"/);
    refused(msg(EVENT_CONTROL, { type: 'steer', runId: 'r1' }), /steer needs/);
    refused(msg(EVENT_CONTROL, { type: 'tool-approval', approvalId: 'a1' }), /tool-approval needs/);
    refused(msg(EVENT_CONTROL, { type: 'tool-output', runId: 'r1', toolCallId: 'c1' }), /tool-output needs/);
    refused(
      msg(EVENT_CONTROL, { type: 'tool-output', runId: 'r1', toolCallId: 'c1', output: 1, errorText: 'x' }),
      /tool-output needs/,
    );
    refused(msg(EVENT_CONTROL, { type: 'tool-output', toolCallId: 'c1', output: 1 }), /tool-output needs/);
    refused(msg(EVENT_CONTROL, { type: 'handover', to: 'robot' }), /handover\.to/);
    refused(msg(EVENT_CONTROL, { type: 'select' }), /select needs/);
    refused(msg(EVENT_CONTROL, { type: 'regenerate' }), /regenerate needs/);
    refused(msg(EVENT_CONTROL, 'cancel'), /not a control/);
    refused(msg(EVENT_CONTROL, null), /not a control/);
    refused(msg(EVENT_CONTROL, { type: 5 }), /not a control|unknown control/);
    // a steered message may have any of the three roles, and no other
    for (const role of ['assistant', 'system'])
      ok(msg(EVENT_CONTROL, { type: 'steer', runId: 'r1', message: { ...user, role } }));
    refused(
      msg(EVENT_CONTROL, { type: 'steer', runId: 'r1', message: { ...user, role: 'banana' } }),
      /steer needs/,
    );
    assert.deepEqual(
      controlHeaders({ type: 'cancel', runId: undefined } as unknown as Parameters<typeof controlHeaders>[0]),
      { control: 'cancel' },
      'a runId left undefined (plain JavaScript) gives no run header',
    );
    assert.deepEqual(controlHeaders({ type: 'cancel', runId: 'r1' }), { control: 'cancel', run: 'r1' });
    assert.deepEqual(controlHeaders({ type: 'select', node: 'n' }), { control: 'select' });
  });

  test('meta headers: JSON text, {} when absent or malformed', () => {
    assert.deepEqual(readMeta({ meta: '{"start":{"a":1}}' }), { start: { a: 1 } });
    assert.deepEqual(readMeta({}), {});
    assert.deepEqual(readMeta({ meta: '{' }), {});
    assert.deepEqual(readMeta({ meta: '[1]' }), {});
  });
});
