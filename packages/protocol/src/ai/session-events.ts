/**
 * The AI session wire format (PROTOCOL.md §13): reserved message names, headers and data shapes, and
 * the readers that turn an inbound `Message` into a typed record — or say why it is malformed. Each
 * type sits beside the hand-written check that accepts exactly it.
 *
 * Everything here is ordinary Mooring messages; the server knows nothing of it beyond leases.
 *
 *   name         data                                        headers
 *   ai.input     { message, parent?, forkOf?, device? }      input
 *   ai.run       { runId, agent, input, parent?, replaces?,  run, agent, status
 *                  metadata?, finishReason?, reason? }
 *   ai.part      text | reasoning | tool-input: the text      run, kind, partId?, state, meta?,
 *                chunk: the UIMessageChunk (JSON), or its     toolCallId?, toolName?, type?, format?
 *                JSON text when `format: json-text`
 *   ai.control   { type, … } (§13.4)                         control, run?
 *
 * The runtime checks are hand-written on purpose: they accept what the types say and nothing else,
 * so a client never folds a record that would make the tree inconsistent, and they cost a browser
 * no schema library. This module does not depend on the AI SDK: messages and chunks are checked for
 * the structure the wire relies on (`WireUIMessage`, `WireChunk`), and the type parameters let
 * `@mooring/ai` name the SDK's own `UIMessage` and `UIMessageChunk`.
 */
import type { Headers, JsonValue, Message } from '../message.ts';

/** What the wire relies on in an AI SDK `UIMessage` (checked at runtime). */
export interface WireUIMessage {
  id: string;
  role: 'system' | 'user' | 'assistant';
  parts: unknown[];
}

/** What the wire relies on in an AI SDK `UIMessageChunk` (checked at runtime). */
export interface WireChunk {
  type: string;
}

export const EVENT_INPUT = 'ai.input';
export const EVENT_RUN = 'ai.run';
export const EVENT_PART = 'ai.part';
export const EVENT_CONTROL = 'ai.control';

export const RUN_STATUSES = ['running', 'complete', 'cancelled', 'error', 'abandoned'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
/** A run that has ended, whatever the way. */
export type FinalRunStatus = Exclude<RunStatus, 'running'>;

export const PART_KINDS = ['text', 'reasoning', 'tool-input', 'chunk'] as const;
export type PartKind = (typeof PART_KINDS)[number];

/** Data of an `ai.input` message: a user's message and its place in the conversation tree. */
export interface InputData<M extends WireUIMessage = WireUIMessage> {
  /** The user's message (role `user`); its `id` is the input id. */
  message: M;
  /**
   * The node this input follows: a run, or — for a message sent before the previous one had an
   * answer — that input. Absent for the first input.
   */
  parent?: string;
  /** For an edit: the input this one replaces (a sibling with the same parent). */
  forkOf?: string;
  /**
   * The sending device (a tab's or app instance's id): the one device that runs client-side tools
   * (`onToolCall`) for the runs answering this input.
   */
  device?: string;
}

/** Data of an `ai.run` message. */
export interface RunData {
  runId: string;
  /** The agent's name; operators' runs are `human:<clientId>`. */
  agent: string;
  /** The input this run answers. */
  input: string;
  /** The run's parent in the tree: always the input it answers (written for §13.2; readers use `input`). */
  parent?: string;
  /** For a regeneration: the run this one is an alternative to (they are siblings). */
  replaces?: string;
  /** Message metadata known when the run started (the `start` chunk's `messageMetadata`). */
  metadata?: JsonValue;
  /** Set by the final update. */
  finishReason?: string;
  /** Set by the final update of a run that ended `error`, `cancelled` or `abandoned`. */
  reason?: string;
}

/** The controls of PROTOCOL.md §13.4 (plus `regenerate`). */
export type ControlData<M extends WireUIMessage = WireUIMessage> =
  | { type: 'cancel'; runId?: string }
  | { type: 'steer'; runId: string; message: M }
  | { type: 'tool-approval'; runId?: string; approvalId: string; approved: boolean; reason?: string }
  | {
      type: 'tool-output';
      runId: string;
      toolCallId: string;
      output?: JsonValue;
      /** Set instead of `output` when the client-side tool failed. */
      errorText?: string;
    }
  | { type: 'handover'; to: 'human' | 'ai'; operator?: string }
  | { type: 'select'; node: string }
  | { type: 'regenerate'; inputId: string; runId?: string };

export type ControlType = ControlData['type'];

/** The `meta` header of text and reasoning parts (JSON text). */
export interface TextPartMeta {
  /** `providerMetadata` of the `*-start` chunk. */
  start?: JsonValue;
  /** The last `providerMetadata` seen on a delta or the `*-end` chunk (written when done). */
  end?: JsonValue;
  /** `citations` of the `text-end` chunk. */
  citations?: JsonValue;
}

// ---------------------------------------------------------------------------------------------
// Records read from the channel

export interface InputRecord<M extends WireUIMessage = WireUIMessage> {
  type: 'input';
  serial: string;
  id: string;
  message: M;
  parent: string | undefined;
  forkOf: string | undefined;
  device: string | undefined;
  clientId: string | undefined;
  timestamp: number;
}

export interface RunRecord {
  type: 'run';
  serial: string;
  version: string;
  runId: string;
  agent: string;
  input: string;
  replaces: string | undefined;
  status: RunStatus;
  metadata: JsonValue | undefined;
  finishReason: string | undefined;
  reason: string | undefined;
  clientId: string | undefined;
  timestamp: number;
}

export interface PartRecord<C extends WireChunk = WireChunk> {
  type: 'part';
  serial: string;
  version: string;
  runId: string;
  kind: PartKind;
  /** text / reasoning: the chunk id; tool-input: the tool call id. */
  partId: string | undefined;
  state: 'streaming' | 'done';
  /** The streamed text (text, reasoning, tool-input, and chunk parts in `json-text` format). */
  text: string;
  /** A complete `chunk` part's chunk. */
  chunk: C | undefined;
  headers: Headers;
}

export interface ControlRecord<M extends WireUIMessage = WireUIMessage> {
  type: 'control';
  serial: string;
  control: ControlData<M>;
  clientId: string | undefined;
  timestamp: number;
}

export type SessionRecord<M extends WireUIMessage = WireUIMessage, C extends WireChunk = WireChunk> =
  | InputRecord<M>
  | RunRecord
  | PartRecord<C>
  | ControlRecord<M>;

export type ReadResult<M extends WireUIMessage = WireUIMessage, C extends WireChunk = WireChunk> =
  | { ok: true; record: SessionRecord<M, C> }
  | { ok: false; reason: string }
  | undefined;

/**
 * Whether a `handover` control from `clientId` is taken (PROTOCOL.md §13.5): from anyone when the
 * reader names no operators, else only from one of them. Every reader (the tree, Temporal's bridge)
 * asks this one rule, so they agree on who holds the session.
 */
export function handoverAllowed(
  operators: readonly string[] | undefined,
  clientId: string | undefined,
): boolean {
  return operators === undefined || (clientId !== undefined && operators.includes(clientId));
}

/**
 * Reads a (folded) message as a session record. `undefined` for messages that are not AI session
 * events (other names, tombstones); `{ ok: false, reason }` for a malformed one. `M` and `C` name the
 * caller's message and chunk types: what passes the structural check is taken to be one (the JSON a
 * publisher made from one).
 */
export function readSessionMessage<M extends WireUIMessage = WireUIMessage, C extends WireChunk = WireChunk>(
  message: Message,
): ReadResult<M, C> {
  return readWireMessage(message) as ReadResult<M, C>;
}

function readWireMessage(message: Message): ReadResult {
  if (message.action === 'delete') return undefined;
  switch (message.name) {
    case EVENT_INPUT:
      return readInput(message);
    case EVENT_RUN:
      return readRun(message);
    case EVENT_PART:
      return readPart(message);
    case EVENT_CONTROL:
      return readControl(message);
    default:
      return undefined;
  }
}

function bad(message: Message, why: string): { ok: false; reason: string } {
  return { ok: false, reason: `${message.name} ${message.serial}: ${why}` };
}

function readInput(m: Message): ReadResult {
  const d = m.data;
  if (!isObject(d)) return bad(m, 'data is not an object');
  const message = d.message;
  if (!isUIMessage(message) || message.role !== 'user')
    return bad(m, `data.message is not a user UIMessage: ${uiMessageProblem(message) ?? 'role is not user'}`);
  if (!optionalString(d.parent) || !optionalString(d.forkOf) || !optionalString(d.device))
    return bad(m, 'parent/forkOf/device must be strings');
  return {
    ok: true,
    record: {
      type: 'input',
      serial: m.serial,
      id: message.id,
      message,
      parent: d.parent as string | undefined,
      forkOf: d.forkOf as string | undefined,
      device: d.device as string | undefined,
      clientId: m.clientId,
      timestamp: m.timestamp,
    },
  };
}

function readRun(m: Message): ReadResult {
  const d = m.data;
  if (!isObject(d)) return bad(m, 'data is not an object');
  if (typeof d.runId !== 'string' || typeof d.agent !== 'string' || typeof d.input !== 'string')
    return bad(m, 'runId, agent and input must be strings');
  // The message's creating id is in every copy of it, live or rolled up, and no update changes it:
  // bound to it, a run id is fixed at creation for every reader. Otherwise a member could create a
  // placeholder early and update it into a claim of an agent's run id once seen, and win as the
  // earlier claim (§13.5).
  if (m.id !== runMessageId(d.runId)) return bad(m, `a run message's id must be run:<runId>, not ${m.id}`);
  if (!optionalString(d.replaces) || !optionalString(d.finishReason) || !optionalString(d.reason))
    return bad(m, 'replaces/finishReason/reason must be strings');
  const status = m.headers?.status;
  if (typeof status !== 'string' || !(RUN_STATUSES as readonly string[]).includes(status))
    return bad(m, `unknown status ${JSON.stringify(status)}`);
  return {
    ok: true,
    record: {
      type: 'run',
      serial: m.serial,
      version: m.version,
      runId: d.runId,
      agent: d.agent,
      input: d.input,
      replaces: d.replaces as string | undefined,
      status: status as RunStatus,
      metadata: d.metadata,
      finishReason: d.finishReason as string | undefined,
      reason: d.reason as string | undefined,
      clientId: m.clientId,
      timestamp: m.timestamp,
    },
  };
}

function readPart(m: Message): ReadResult {
  const h = m.headers ?? {};
  const runId = h.run;
  const kind = h.kind;
  if (typeof runId !== 'string') return bad(m, 'no run header');
  if (typeof kind !== 'string' || !(PART_KINDS as readonly string[]).includes(kind))
    return bad(m, `unknown kind ${JSON.stringify(kind)}`);
  const state = h.state === 'streaming' ? 'streaming' : 'done';
  const partId =
    typeof h.partId === 'string' ? h.partId : typeof h.toolCallId === 'string' ? h.toolCallId : undefined;
  let text = '';
  let chunk: WireChunk | undefined;
  if (kind === 'chunk' && h.format !== 'json-text') {
    if (!isObject(m.data) || typeof m.data.type !== 'string')
      return bad(m, 'chunk data is not a UIMessageChunk');
    chunk = m.data as unknown as WireChunk; // JSON produced by a publisher from a UIMessageChunk
  } else {
    if (m.data !== undefined && typeof m.data !== 'string')
      return bad(m, 'streamed part data is not a string');
    text = m.data ?? '';
    if (kind === 'chunk' && state === 'done') {
      try {
        const parsed: unknown = JSON.parse(text);
        if (!isObject(parsed) || typeof parsed.type !== 'string') return bad(m, 'json-text is not a chunk');
        chunk = parsed as unknown as WireChunk;
      } catch {
        return bad(m, 'json-text chunk is not JSON');
      }
    }
    if ((kind === 'text' || kind === 'reasoning' || kind === 'tool-input') && partId === undefined)
      return bad(m, `${kind} part without partId/toolCallId`);
  }
  return {
    ok: true,
    record: {
      type: 'part',
      serial: m.serial,
      version: m.version,
      runId,
      kind: kind as PartKind,
      partId,
      state,
      text,
      chunk,
      headers: h,
    },
  };
}

function readControl(m: Message): ReadResult {
  const d = m.data;
  if (!isObject(d) || typeof d.type !== 'string') return bad(m, 'data is not a control');
  const control = parseControl(d);
  if (typeof control === 'string') return bad(m, control);
  return {
    ok: true,
    record: { type: 'control', serial: m.serial, control, clientId: m.clientId, timestamp: m.timestamp },
  };
}

function parseControl(d: Record<string, JsonValue>): ControlData | string {
  switch (d.type) {
    case 'cancel':
      return optionalString(d.runId) ? (d as unknown as ControlData) : 'cancel.runId must be a string';
    case 'steer':
      return typeof d.runId === 'string' && isUIMessage(d.message)
        ? (d as unknown as ControlData)
        : `steer needs runId and a UIMessage${typeof d.runId === 'string' ? `: ${uiMessageProblem(d.message)}` : ''}`;
    case 'tool-approval':
      return typeof d.approvalId === 'string' &&
        typeof d.approved === 'boolean' &&
        optionalString(d.runId) &&
        optionalString(d.reason)
        ? (d as unknown as ControlData)
        : 'tool-approval needs approvalId and approved';
    case 'tool-output':
      return typeof d.runId === 'string' &&
        typeof d.toolCallId === 'string' &&
        optionalString(d.errorText) &&
        (d.output !== undefined) !== (d.errorText !== undefined)
        ? (d as unknown as ControlData)
        : 'tool-output needs runId, toolCallId and one of output or errorText';
    case 'handover':
      return (d.to === 'human' || d.to === 'ai') && optionalString(d.operator)
        ? (d as unknown as ControlData)
        : 'handover.to must be "human" or "ai"';
    case 'select':
      return typeof d.node === 'string' ? (d as unknown as ControlData) : 'select needs node';
    case 'regenerate':
      return typeof d.inputId === 'string' && optionalString(d.runId)
        ? (d as unknown as ControlData)
        : 'regenerate needs inputId';
    default:
      return `unknown control ${JSON.stringify(d.type)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by publishers

/** The id of the operation that creates a run's message (§13.2), and so of the message. */
export function runMessageId(runId: string): string {
  return `run:${runId}`;
}

/** Headers of a control message. */
export function controlHeaders(control: ControlData<WireUIMessage>): Headers {
  const headers: Headers = { control: control.type };
  if ('runId' in control && control.runId !== undefined) headers.run = control.runId;
  return headers;
}

/** A UIMessage (or chunk) as a JSON value. They are JSON by the AI SDK's contract (sent over HTTP). */
export function asJson(value: unknown): JsonValue {
  return value as JsonValue;
}

export function isObject(value: unknown): value is Record<string, JsonValue> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(value: unknown): boolean {
  return value === undefined || typeof value === 'string';
}

function isUIMessage(value: unknown): value is WireUIMessage {
  return uiMessageProblem(value) === undefined;
}

/** Why `value` is not a UIMessage as the wire takes one, or undefined when it is one. */
function uiMessageProblem(value: unknown): string | undefined {
  if (!isObject(value) || typeof value.id !== 'string' || value.id.length === 0) return 'no id';
  if (value.role !== 'user' && value.role !== 'assistant' && value.role !== 'system') return 'no role';
  if (!Array.isArray(value.parts)) return 'no parts';
  const bad = value.parts.findIndex((part) => !isUIPart(part));
  return bad < 0 ? undefined : `parts[${bad}] is not a UIMessage part`;
}

/**
 * Whether a message part has the shape its readers rely on. Inputs and steers reach the agent's
 * `convertToModelMessages` and every member's UI, where one `null` part, a part without a string
 * `type` or a file whose `url` is no URL throws — for every later run of the branch, or in the agent
 * process itself (a steer). So each part must be an object with a string `type`, and the parts those
 * readers open must carry the fields they read. A part type this module does not know (the AI SDK
 * adds some now and then) passes with just its `type`: its readers skip what they do not know.
 */
function isUIPart(value: unknown): boolean {
  if (!isObject(value) || typeof value.type !== 'string' || value.type.length === 0) return false;
  switch (value.type) {
    case 'text':
    case 'reasoning':
      return typeof value.text === 'string' && optionalObject(value.providerMetadata);
    case 'file':
      return isFilePart(value);
    case 'dynamic-tool':
      return typeof value.toolName === 'string' && isToolPart(value);
    default:
      return value.type.startsWith('tool-') ? isToolPart(value) : true;
  }
}

/** A file part: the AI SDK reads `url` as a URL unless the file is a provider's reference. */
function isFilePart(part: Record<string, JsonValue>): boolean {
  if (typeof part.mediaType !== 'string' || typeof part.url !== 'string') return false;
  if (!optionalString(part.filename) || !optionalObject(part.providerMetadata)) return false;
  if (part.providerReference !== undefined && part.providerReference !== null)
    return isObject(part.providerReference);
  return parsesAsUrl(part.url);
}

/** A tool part (`tool-<name>`, `dynamic-tool`): UIs and the chat key it by call id and state. */
function isToolPart(part: Record<string, JsonValue>): boolean {
  return typeof part.toolCallId === 'string' && typeof part.state === 'string';
}

function parsesAsUrl(text: string): boolean {
  try {
    new URL(text);
    return true;
  } catch {
    return false;
  }
}

function optionalObject(value: unknown): boolean {
  return value === undefined || isObject(value);
}

export function isFinal(status: RunStatus): status is FinalRunStatus {
  return status !== 'running';
}

/** Parses a `meta` header (JSON text); `{}` when absent or not JSON. */
export function readMeta(headers: Headers): Record<string, JsonValue> {
  const raw = headers.meta;
  if (typeof raw !== 'string') return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    return isObject(parsed) ? parsed : {};
  } catch {
    return {};
  }
}
