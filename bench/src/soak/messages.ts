/**
 * What the soak's processes tell each other over IPC, and what the agents write in their
 * transcripts. One place, so the orchestrator, the agents and the users agree on the shapes.
 */

/** Agent process configuration (argv[2], JSON). */
export interface AgentConfig {
  /** This agent process's name: its clients are `<name>-c<k>`, the same after every restart. */
  name: string;
  url: string;
  key: string;
  seed: number;
  prefix: string;
  sessions: number[];
  sessionsPerConnection: number;
  tokensPerSecond: number;
  minTokens: number;
  maxTokens: number;
  leaseMs: number;
  coalesceMs: number;
  idleGraceMs: number;
  upgradeIntervalMs: number;
  /** Transcript file (JSON lines, appended; shared by every incarnation of this agent). */
  transcript: string;
}

/** One transcript line: what the model of one run did, as the agent saw it. */
export type TranscriptLine =
  /** An attempt of the run began (`n` tokens to come). */
  | { t: 'start'; run: string; session: number; n: number; pid: number; at: number }
  /** The first `k` tokens are stored (the publisher's flush resolved after they were written). */
  | { t: 'acked'; run: string; k: number; at: number }
  /** The model finished: all `n` tokens written and stored. */
  | { t: 'done'; run: string; n: number; at: number };

export type AgentReport =
  | { type: 'ready' }
  /** Tokens the models emitted since the last report (replays after a restart included). */
  | { type: 'progress'; tokens: number }
  | { type: 'error'; error: string };

/** Users process configuration (argv[2], JSON). */
export interface UsersConfig {
  key: string;
  seed: number;
  prefix: string;
  /** Session index → the proxy URL its user goes through. */
  sessions: Array<{ index: number; url: string }>;
  idleGraceMs: number;
  upgradeIntervalMs: number;
  /** The transports the users' clients may use (default: all, with automatic fallback). */
  transports: Array<'websocket' | 'sse' | 'longpoll'>;
  /** Report file written on `report`. */
  report: string;
}

export type UsersRequest =
  | { type: 'reload'; session: number; mode: 'recover' | 'start' }
  /** Stop sending new inputs (`orphaned`: sessions whose agent is gone for good). */
  | { type: 'stop'; orphaned: number[] }
  | { type: 'status' }
  | { type: 'report' };

export type UsersReport =
  | { type: 'ready' }
  | { type: 'progress'; tokens: number; inputs: number }
  | { type: 'status'; settled: number; of: number; unsettled: string[] }
  | { type: 'reported' }
  | { type: 'error'; error: string };

/** What one user saw of one run: its folded message at the end. */
export interface FinalRun {
  run: string;
  status: string;
  text: string;
  textParts: number;
}

/** What one live chunk stream (one per run per client instance) yielded. */
export interface StreamRecord {
  run: string;
  /** Which client instance of the session (0, then +1 per reload). */
  generation: number;
  text: string;
  textStarts: number;
  /** The terminal chunk: finish, abort, error; '' while still open. */
  terminal: string;
  /** The client was reloaded (closed) before the stream ended. */
  cut: boolean;
}

export interface SessionReport {
  index: number;
  generations: number;
  runs: FinalRun[];
  streams: StreamRecord[];
  /**
   * The last node of the view: `input:<id>` (unanswered) or `run:<id>:<status>`, '' if empty;
   * `not-ready:<connection state>/<channel state>` if the tab never got ready.
   */
  last: string;
  inputs: number;
  /** Every transport this session's clients used. */
  transports: string[];
  /** Holes in the live stream the clients' continuity check found and repaired (all instances). */
  gapsRepaired: number;
  /**
   * Where the last client instance stood at the end, to tell a stuck view's cause: connection state,
   * channel state, whether the session was live (not catching up or reloading), channel position.
   */
  client: string;
  /**
   * Whether the last client instance found itself in its channel's presence set at the end (it
   * entered when it opened; the client restores the membership across reconnects, Redis restarts
   * and node kills); undefined when the set could not be read.
   */
  present: boolean | undefined;
}
