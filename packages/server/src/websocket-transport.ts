/**
 * The WebSocket transport (`ws`): a thin adapter between a socket and a `Connection`.
 * Authentication happens on the HTTP upgrade, before the socket exists: bad credentials get a plain
 * HTTP 401 with a JSON error body, so a client can tell "refused" from "network trouble".
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import type { Admission } from './connect-attaches.ts';
import type { Connection, TransportSink } from './connection.ts';
import { corkForTurn, flushTurn } from './cork-for-turn.ts';
import type { InboundBudget, SlotWaiter } from './inbound-budget.ts';
import { MessageScanner } from './message-scanner.ts';
import { whenStreamDrained } from './stream-drained.ts';

export interface WebSocketTransportOptions {
  maxFrameSize: number;
  /** Creates the connection core for an accepted socket. */
  accept: (transport: TransportSink, admission: Admission) => Connection;
  onClose: (connection: Connection, code: number) => void;
  /** `n` frames of one read waited for later turns (past `FRAMES_PER_TURN`). */
  onDeferred?: (n: number) => void;
}

const TEXT = { binary: false } as const;

/**
 * Frames of one connection handled in one turn of the event loop, at most. `ws` parses every frame
 * of a read at once (up to 64 KiB: a thousand small frames), and each one's handling — a publish
 * stored and fanned out — runs before any other socket is read: a client pipelining thousands of
 * frames held every other connection of the node for hundreds of ms. Past its share a connection's
 * frames wait, in order, for the next turns, as an upstream POST's do (http-transports.ts).
 */
export const FRAMES_PER_TURN = 64;

/** A binary frame, kept in order in a backlog to be refused in its turn. */
const BINARY = Symbol('mooring.binary');
type Inbound = string | typeof BINARY;

/**
 * The event loop's turn, for the frames-per-turn count: moved on in the check phase after a turn
 * in which frames were handled (one `setImmediate` a turn for every connection, not one each).
 */
let turn = 0;
let turnCounted = false;

function nextTurn(): void {
  turn++;
  turnCounted = false;
}

function countTurns(): void {
  if (turnCounted) return;
  turnCounted = true;
  setImmediate(nextTurn);
}

function handleBacklog(sink: WebSocketSink): void {
  sink.handleBacklog();
}

/**
 * A connection's way out to its socket. A class rather than an object of closures: at 100,000 idle
 * connections each closure is memory held per connection (bench/README, "Idle connections").
 */
class WebSocketSink implements TransportSink {
  readonly kind = 'websocket';
  readonly answersHeartbeats = true;
  readonly #ws: WebSocket;
  /** The socket `ws` writes to. */
  readonly #socket: Duplex;
  /** The connection it serves, and what to call when its socket closes (set once accepted). */
  connection: Connection | undefined;
  onClose: ((connection: Connection, code: number) => void) | undefined;
  onDeferred: ((n: number) => void) | undefined;
  /** The turn (`turn`) its `#handled` frames were handled in. */
  #turn = -1;
  #handled = 0;
  /** Frames past this turn's share, handled in later turns (the socket is not read meanwhile). */
  #backlog: Inbound[] | undefined;
  #next = 0;

  constructor(ws: WebSocket, socket: Duplex) {
    this.#ws = ws;
    this.#socket = socket;
  }

  /**
   * A frame `ws` has read: handled now, unless this connection has had its `FRAMES_PER_TURN` this
   * turn (or older ones wait), then in a later turn, in the order they came.
   */
  take(frame: Inbound): void {
    if (this.#backlog !== undefined) {
      this.#backlog.push(frame);
      return;
    }
    if (this.#turn !== turn) {
      this.#turn = turn;
      this.#handled = 0;
      countTurns();
    }
    if (this.#handled < FRAMES_PER_TURN) {
      this.#handled++;
      this.#handle(frame);
      return;
    }
    // what the read that brought it holds is parsed on, into the backlog; nothing more is read
    // until the backlog is handled, so a pipelining client waits in its own TCP window
    this.#backlog = [frame];
    this.#next = 0;
    this.#ws.pause();
    setImmediate(handleBacklog, this);
  }

  /** The next `FRAMES_PER_TURN` frames of the backlog; reads on once it is empty. */
  handleBacklog(): void {
    const backlog = this.#backlog;
    if (backlog === undefined) return;
    const start = this.#next;
    const end = Math.min(start + FRAMES_PER_TURN, backlog.length);
    while (this.#next < end && this.#backlog !== undefined) this.#handle(backlog[this.#next++]!);
    this.onDeferred?.(this.#next - start);
    if (this.#backlog === undefined) return; // closed meanwhile
    if (this.#next < backlog.length) {
      setImmediate(handleBacklog, this);
      return;
    }
    // what is read next, before the turn moves on, shares this turn's count with the last slice
    this.#backlog = undefined;
    this.#turn = turn;
    this.#handled = end - start;
    countTurns();
    if (!(this.#ws as Tagged)[GATE]?.holding && this.#ws.readyState === this.#ws.OPEN) this.#ws.resume();
  }

  /** Whether frames wait in the backlog (the socket is not read meanwhile). */
  get backlogged(): boolean {
    return this.#backlog !== undefined;
  }

  /** The socket has closed: what waits is dropped, as frames unread in a closed socket are. */
  dropBacklog(): void {
    this.#backlog = undefined;
  }

  #handle(frame: Inbound): void {
    const connection = this.connection;
    if (connection === undefined) return;
    if (frame === BINARY) connection.receiveUnreadable('binary frames are not supported; send JSON text');
    else connection.receive(frame);
  }

  send(frame: Buffer): void {
    this.#ws.send(frame, TEXT);
  }

  sendSoon(frame: Buffer): void {
    corkForTurn(this.#socket);
    this.#ws.send(frame, TEXT);
  }

  bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  whenDrained(drained: () => void): void {
    whenStreamDrained(this.#socket, drained);
  }

  ping(): void {
    corkForTurn(this.#socket);
    this.#ws.ping();
  }

  close(code: number, reason: string): void {
    const ws = this.#ws;
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason.slice(0, 120));
    // a peer that does not complete the close handshake (dead network) must not hold the socket
    setTimeout(() => ws.terminate(), 2_000).unref();
  }

  terminate(): void {
    flushTurn(this.#socket);
    this.#ws.terminate();
  }
}

export class WebSocketTransport {
  readonly wss: WebSocketServer;
  readonly #options: WebSocketTransportOptions;

  constructor(options: WebSocketTransportOptions) {
    this.#options = options;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxFrameSize,
      perMessageDeflate: false,
    });
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, admission: Admission): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => this.#attach(ws, socket, admission));
  }

  /** `socket`: the one `ws` writes to; frames of one turn leave in one write (cork-for-turn.ts). */
  #attach(ws: WebSocket, socket: Duplex, admission: Admission): void {
    const sink = new WebSocketSink(ws, socket);
    const connection = this.#options.accept(sink, admission);
    sink.connection = connection;
    sink.onClose = this.#options.onClose;
    sink.onDeferred = this.#options.onDeferred;
    (ws as Tagged)[SINK] = sink;
    if (connection.inbound) {
      // read before `ws` parses anything: the bytes are counted, and messages followed, as they come
      const gate = new InboundGate(ws, connection, connection.inbound.budget, connection.inbound.key);
      (ws as Tagged)[GATE] = gate;
      (socket as GatedSocket)[GATE] = gate;
      socket.prependListener('data', onSocketData);
    }
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('error', onError);
    ws.on('close', onClose);
  }
}

/**
 * The socket's listeners are shared by every connection (`this` is the socket, and its sink is on
 * it): closures made per connection are memory held per connection.
 */
const SINK = Symbol('mooring.sink');
type Tagged = WebSocket & { [SINK]?: WebSocketSink; [GATE]?: InboundGate };

/** A token identity's connection: its socket's reads, paced by the identity's inbound budget. */
const GATE = Symbol('mooring.gate');
type GatedSocket = Duplex & { [GATE]?: InboundGate };

const NO_SLOT = 0;
const HOLDS_SLOT = 1;
const WAITS_FOR_SLOT = 2;

/**
 * Paces the reading of one token identity's socket (inbound-budget.ts), by the bytes read from it,
 * before `ws` parses them:
 *
 * - past the identity's `maxInboundBytesRate`, the socket is not read until the budget refills;
 * - while a message has begun and is not whole (`ws` holds what has come of it, up to
 *   `maxFrameSize`), it holds one of the identity's `BODIES_PER_IDENTITY` reading slots; with all of
 *   them taken, the socket is not read until one is handed to it. What the read that began the
 *   message brought (one socket read, at most 64 KiB) is all such a connection holds meanwhile;
 * - any bytes read count as hearing from the peer for the heartbeat, as an upstream POST's do;
 * - a renewed token without a clientId is a new holder (`Connection.inbound` names its key): from
 *   the next read on, the bytes and messages count against it; a message begun before keeps its
 *   slot with the old holder until it is whole.
 *
 * `ws.pause()` rather than the socket's own: `ws` resumes its socket after its own back-pressure
 * unless the WebSocket is paused.
 */
export class InboundGate implements SlotWaiter {
  readonly #ws: WebSocket;
  readonly #connection: Connection;
  readonly #budget: InboundBudget;
  /** The holder's key, held by this gate (it moves with a renewal). */
  #key: string;
  /** The key the slot (held or waited for) was taken at; held by this gate while it is not `#key`. */
  #slotKey: string;
  readonly #messages = new MessageScanner();
  /** Set while the budget refills. */
  #refilling: NodeJS.Timeout | undefined;
  #slot = NO_SLOT;
  #closed = false;

  constructor(ws: WebSocket, connection: Connection, budget: InboundBudget, key: string) {
    this.#ws = ws;
    this.#connection = connection;
    this.#budget = budget;
    this.#key = key;
    this.#slotKey = key;
    budget.hold(key); // its own use of the bucket, given back when the socket has closed
  }

  /** `chunk` was read from the socket; `ws` parses it next. */
  read(chunk: Buffer): void {
    if (this.#closed) return;
    // bytes arriving are not silence: a frame longer than two heartbeat rounds on a slow uplink
    // (where no pong can come between its bytes) keeps its connection, as an upstream POST does
    this.#connection.alive = true;
    const holder = this.#connection.inbound?.key;
    if (holder !== undefined && holder !== this.#key) this.#move(holder);
    const wait = this.#budget.take(this.#key, chunk.length);
    if (wait > 0 && this.#refilling === undefined) {
      this.#refilling = setTimeout(refilled, wait, this);
      this.#refilling.unref();
    }
    this.#messages.scan(chunk);
    if (this.#messages.partial) {
      if (this.#slot === NO_SLOT) {
        this.#slotKey = this.#key;
        this.#slot = this.#budget.enter(this.#key, this) ? HOLDS_SLOT : WAITS_FOR_SLOT;
      }
    } else this.#endSlot();
    if (this.holding) this.#ws.pause();
  }

  /** The connection's token was renewed to another holder: its bucket is used from now on. */
  #move(key: string): void {
    // held: `#key`, and `#slotKey` while a slot is taken there: a slot taken with the old holder
    // keeps its key held until the slot is given back
    const slotted = this.#slot !== NO_SLOT;
    if (!slotted || this.#slotKey !== key) this.#budget.hold(key);
    if (!slotted || this.#slotKey !== this.#key) this.#budget.release(this.#key);
    this.#key = key;
  }

  /** Gives back the slot (or its place in line), and the old holder's key if it was kept for it. */
  #endSlot(): void {
    if (this.#slot === HOLDS_SLOT) this.#budget.leave(this.#slotKey);
    else if (this.#slot === WAITS_FOR_SLOT) this.#budget.cancel(this.#slotKey, this);
    else return;
    this.#slot = NO_SLOT;
    if (this.#slotKey !== this.#key) this.#budget.release(this.#slotKey);
    this.#slotKey = this.#key;
  }

  /** The socket has closed: its slot (or its place in line) and its bucket are given back. */
  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#refilling);
    this.#refilling = undefined;
    this.#endSlot();
    this.#budget.release(this.#key);
  }

  /** The budget has refilled (a timer's callback, shared by every gate: no closure per connection). */
  refilled(): void {
    this.#refilling = undefined;
    this.#readOn();
  }

  /** A slot was handed to it. */
  granted(): void {
    this.#slot = HOLDS_SLOT;
    this.#readOn();
  }

  /** Whether it keeps the socket from being read (the budget refills, or it waits for a slot). */
  get holding(): boolean {
    return this.#refilling !== undefined || this.#slot === WAITS_FOR_SLOT;
  }

  #readOn(): void {
    if (!this.holding && !(this.#ws as Tagged)[SINK]?.backlogged && this.#ws.readyState === this.#ws.OPEN)
      this.#ws.resume();
  }
}

function refilled(gate: InboundGate): void {
  gate.refilled();
}

function onSocketData(this: GatedSocket, chunk: Buffer): void {
  this[GATE]?.read(chunk);
}

function onMessage(this: Tagged, data: RawData, isBinary: boolean): void {
  const sink = this[SINK];
  if (sink?.connection === undefined) return;
  sink.take(isBinary ? BINARY : data.toString());
}

function onPong(this: Tagged): void {
  const connection = this[SINK]?.connection;
  if (connection !== undefined) connection.alive = true;
}

function onError(): void {
  // ws reports oversized frames and protocol violations here and closes the socket itself
  // (1009 "message too big", 1002 protocol error); 'close' cleans up.
}

function onClose(this: Tagged, code: number): void {
  this[GATE]?.closed();
  const sink = this[SINK];
  sink?.dropBacklog();
  if (sink?.connection !== undefined) sink.onClose?.(sink.connection, code);
}
