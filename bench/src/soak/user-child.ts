/**
 * The users of the soak, many in one process: one `Mooring` client and one `UserSession` per session
 * (a browser tab), following it and driving it — it sends the next question as soon as the previous
 * answer is complete, and reads every run through `session.stream(runId)`, the `UIMessageChunk`
 * stream a `MooringChatTransport` hands to `useChat`. What each stream yielded, and each run's final
 * folded message, go to the report for the verifier.
 *
 * A reload (asked by the orchestrator) replaces the tab: the old client is closed, its streams are
 * marked cut, and a fresh client starts either from the old one's recovery key (`recover`) or from
 * the beginning of the session (`start`). Input ids are `s<session>-t<turn>` with the turn taken
 * from the conversation, so a question re-sent by a reloaded tab is the same operation (dedup).
 *
 * argv[2]: UsersConfig (JSON). IPC in: UsersRequest; out: UsersReport.
 */
import { writeFileSync } from 'node:fs';
import { UserSession } from '@mooring/ai';
import { Mooring } from '@mooring/client';
import type {
  FinalRun,
  SessionReport,
  StreamRecord,
  UsersConfig,
  UsersReport,
  UsersRequest,
} from './messages.ts';

if (!process.send) throw new Error('user-child: start it with fork() (needs IPC)');
process.on('disconnect', () => process.exit(0));
const config = JSON.parse(process.argv[2] ?? '{}') as UsersConfig;
const send = (report: UsersReport) => process.send?.(report);

let tokens = 0;
let inputs = 0;
let errors = 0;
const reportError = (error: string) => {
  if (errors++ < 20) send({ type: 'error', error });
};

class Driver {
  readonly index: number;
  readonly url: string;
  readonly streams: StreamRecord[] = [];
  readonly transports = new Set<string>();
  /** Gaps repaired by the client instances closed so far. */
  gapsRepaired = 0;
  generation = -1;
  client: Mooring | undefined;
  session: UserSession | undefined;
  stopping = false;
  orphaned = false;
  #sending = false;
  /** This instance's presence enter was acknowledged (until then each tick asks again). */
  #entered = false;
  #entering = false;
  #streamed = new Set<string>();
  #cut: Array<() => void> = [];
  #offs: Array<() => void> = [];

  constructor(index: number, url: string) {
    this.index = index;
    this.url = url;
  }

  get name(): string {
    return `${config.prefix}${this.index}`;
  }

  async open(mode: 'new' | 'recover' | 'start'): Promise<void> {
    const recover = mode === 'recover' ? this.client?.recoveryKey() : undefined;
    this.close();
    this.generation++;
    const generation = this.generation;
    const client = new Mooring({
      url: this.url,
      key: config.key,
      clientId: `user-${this.index}`,
      environment: null,
      idleGrace: config.idleGraceMs,
      upgradeInterval: config.upgradeIntervalMs,
      transports: config.transports,
      ...(recover ? { recover } : {}),
    });
    const session = new UserSession({ channel: client.channels.get(this.name, { start: true }) });
    this.client = client;
    this.session = session;
    this.#streamed = new Set();
    this.#entered = false;
    this.#offs = [
      client.connection.on('transport', ({ current }) => {
        if (current) this.transports.add(current);
      }),
      session.on('run', (node) => this.#follow(node.id, generation)),
      session.on('change', () => this.tick()),
      session.on('error', (err) => reportError(`session ${this.index}: ${err.message}`)),
    ];
    await session.ready();
    if (client.connection.transport) this.transports.add(client.connection.transport);
    if (this.session !== session) return;
    for (const run of session.tree.runs) this.#follow(run.id, generation);
    this.tick();
  }

  close(): void {
    this.gapsRepaired += this.session?.channel.gapsRepaired ?? 0;
    for (const off of this.#offs.splice(0)) off();
    for (const cut of this.#cut.splice(0)) cut();
    this.session?.close();
    this.client?.close();
  }

  /** Reads one run's chunk stream to its end (or until this client instance is replaced). */
  #follow(runId: string, generation: number): void {
    const session = this.session;
    if (!session || generation !== this.generation || this.#streamed.has(runId)) return;
    this.#streamed.add(runId);
    const record: StreamRecord = {
      run: runId,
      generation,
      text: '',
      textStarts: 0,
      terminal: '',
      cut: false,
    };
    this.streams.push(record);
    const reader = session.stream(runId, { mode: 'replay' }).getReader();
    const cut = () => {
      if (record.terminal === '') record.cut = true;
      void reader.cancel();
    };
    this.#cut.push(cut);
    void (async () => {
      for (;;) {
        const r = await reader.read();
        if (r.done) return;
        const chunk = r.value;
        if (chunk.type === 'text-delta') {
          record.text += chunk.delta;
          for (const c of chunk.delta) if (c === ' ') tokens++;
        } else if (chunk.type === 'text-start') record.textStarts++;
        else if (chunk.type === 'finish' || chunk.type === 'abort' || chunk.type === 'error')
          record.terminal = chunk.type;
      }
    })().catch((err: unknown) => reportError(`stream ${runId}: ${String(err)}`));
  }

  /**
   * Enters the session's presence set once per client instance (a tab shows who is there); the
   * client keeps the membership from then on, whatever happens to the connection.
   */
  #enter(): void {
    const session = this.session;
    if (!session || this.#entered || this.#entering) return;
    this.#entering = true;
    session.channel.presence
      .enter({ tab: this.generation })
      .then(() => {
        if (this.session === session) this.#entered = true;
      })
      .catch(() => {
        // the connection was suspended, or the tab reloaded: the next tick asks again
      })
      .finally(() => {
        this.#entering = false;
      });
  }

  /** Sends the next question once the last answer is complete. */
  tick(): void {
    const session = this.session;
    if (session && !this.stopping) this.#enter();
    if (!session || this.stopping || this.#sending || !session.settled) return;
    const view = session.view();
    const last = view[view.length - 1];
    if (last && (last.kind === 'input' || last.status !== 'complete')) return;
    const turn = view.filter((n) => n.kind === 'input').length;
    const id = `s${this.index}-t${turn}`;
    this.#sending = true;
    session
      .send({ id, parts: [{ type: 'text', text: `question ${turn}` }] })
      .then(() => {
        inputs++;
      })
      .catch(() => {
        // Closed by a reload, or the connection suspended: the next tick sends it again (same id).
      })
      .finally(() => {
        this.#sending = false;
      });
  }

  /** Settled: nothing running and the last answer complete (or, orphaned, nothing running). */
  settled(): boolean {
    const session = this.session;
    if (!session?.settled) return false;
    if (session.tree.running().length > 0) return false;
    if (this.orphaned) return true;
    const view = session.view();
    const last = view[view.length - 1];
    return last?.kind === 'run' && last.status === 'complete';
  }

  describe(): string {
    const view = this.session?.view() ?? [];
    const last = view[view.length - 1];
    if (!last)
      return `${this.index}: empty (connection ${this.client?.connection.state}, channel ${this.session?.channel.state}, live ${this.session?.live})`;
    return last.kind === 'input'
      ? `${this.index}: input ${last.id} unanswered`
      : `${this.index}: run ${last.id} ${last.status}`;
  }

  async report(): Promise<SessionReport> {
    const session = this.session;
    const runs: FinalRun[] = [];
    // A tab that cannot get ready (attach or history never answered) is reported as such: stuck.
    const ready =
      session &&
      (await Promise.race([
        session.ready().then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
      ]));
    if (session && ready) {
      for (const node of session.tree.runs) {
        const run = session.run(node.id);
        const parts = (run?.message.parts ?? []).filter((p) => p.type === 'text');
        runs.push({
          run: node.id,
          status: run?.status ?? node.status,
          text: parts.map((p) => (p.type === 'text' ? p.text : '')).join(''),
          textParts: parts.length,
        });
      }
    }
    const view = session?.view() ?? [];
    const last = view[view.length - 1];
    let present: boolean | undefined;
    if (session && ready && this.#entered) {
      const members = await Promise.race([
        session.channel.presence.get().catch(() => undefined),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000)),
      ]);
      const me = this.client?.connection.id;
      present =
        members === undefined || me === undefined ? undefined : members.some((m) => m.connectionId === me);
    }
    return {
      index: this.index,
      generations: this.generation + 1,
      runs,
      streams: this.streams,
      last: !ready
        ? `not-ready:${this.client?.connection.state}/${session?.channel.state}`
        : !last
          ? ''
          : last.kind === 'input'
            ? `input:${last.id}`
            : `run:${last.id}:${last.status}`,
      inputs: view.filter((n) => n.kind === 'input').length,
      transports: [...this.transports],
      gapsRepaired: this.gapsRepaired + (session?.channel.gapsRepaired ?? 0),
      present,
      client: `${this.client?.connection.state}/${session?.channel.state}/${session?.live ? 'live' : 'not live'}/${session?.channel.position}`,
    };
  }
}

const drivers = new Map<number, Driver>();
for (const { index, url } of config.sessions) drivers.set(index, new Driver(index, url));
await Promise.all([...drivers.values()].map((d) => d.open('new')));
// A tick now and then: a send that failed while disconnected is retried even if nothing changes.
setInterval(() => {
  for (const d of drivers.values()) d.tick();
}, 1000).unref();
setInterval(() => {
  send({ type: 'progress', tokens, inputs });
  tokens = 0;
  inputs = 0;
}, 1000).unref();

process.on('message', (request: UsersRequest) => {
  switch (request.type) {
    case 'reload': {
      const d = drivers.get(request.session);
      const generation = (d?.generation ?? 0) + 1;
      d?.open(request.mode).catch((err: unknown) => {
        // A tab reloaded again before it was ready: the error belongs to the closed instance.
        if (d.generation === generation) reportError(`reload ${request.session}: ${String(err)}`);
      });
      break;
    }
    case 'stop':
      for (const d of drivers.values()) {
        d.stopping = true;
        d.orphaned = request.orphaned.includes(d.index);
      }
      break;
    case 'status': {
      const unsettled = [...drivers.values()].filter((d) => !d.settled());
      send({
        type: 'status',
        settled: drivers.size - unsettled.length,
        of: drivers.size,
        unsettled: unsettled.slice(0, 5).map((d) => d.describe()),
      });
      break;
    }
    case 'report':
      void (async () => {
        const reports: SessionReport[] = [];
        for (const d of drivers.values()) reports.push(await d.report());
        writeFileSync(config.report, JSON.stringify(reports));
        for (const d of drivers.values()) d.close();
        send({ type: 'reported' });
      })();
      break;
  }
});
send({ type: 'ready' });
