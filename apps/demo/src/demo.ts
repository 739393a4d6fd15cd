/**
 * `startDemo()`: everything the demo needs in one process —
 *
 *   browser ──GET / , /app.js─────────▶ demo web server (:3000) ── POST /api/session: token + agent
 *      │                                        │
 *      └──WebSocket / SSE / long-poll──▶ Mooring server (:8080, SQLite) ◀── demo agents (API key)
 *
 * Used by `main.ts` (fixed ports for people) and by the e2e tests (port 0, a temp data dir).
 */
import type { ApiKey, MooringServer } from '@mooring/server';
import { startServer } from '@mooring/server';
import { ChaosProxies } from './chaos-proxies.ts';
import { DemoAgents } from './demo-agents.ts';
import { buildWebBundle } from './web-bundle.ts';
import type { WebServer } from './web-server.ts';
import { startWebServer } from './web-server.ts';

export interface DemoOptions {
  /** The API key agents use and tokens are signed with. */
  key: ApiKey;
  /** Listen address of both servers. Default 127.0.0.1. */
  host?: string;
  /** The demo page's port. Default 3000; 0 = any free port. */
  port?: number;
  /** Mooring's port. Default 8080; 0 = any free port. */
  mooringPort?: number;
  /** Where the SQLite store lives; without it the store is in memory. */
  dataDir?: string;
  /** Multiplies the agent's pauses: 1 ≈ 30 tokens/s (default), 0.5 twice as fast. */
  pace?: number;
  /** Token lifetime, ms. Default 1 h. */
  tokenTtl?: number;
  /** Mooring's log level (pino). Default 'warn'. */
  logLevel?: string;
  /** The Mooring URL given to browsers. Default: the page's host name with Mooring's port. */
  publicMooringUrl?: string;
  /**
   * The network chaos panel: each page reaches Mooring through its own FaultProxy. Default: on when
   * the demo listens on 127.0.0.1 (the proxies do) and no `publicMooringUrl` is set.
   */
  chaos?: boolean;
  /** Mooring's heartbeat interval, ms (how soon a blackholed page notices). Default 5 000. */
  heartbeatInterval?: number;
}

export interface Demo {
  /** The page: `http://host:port`. */
  url: string;
  /** The Mooring server: `http://host:port`. */
  mooringUrl: string;
  mooring: MooringServer;
  /** The pages' fault proxies (undefined when the chaos panel is off). */
  chaos: ChaosProxies | undefined;
  agents: DemoAgents;
  close(): Promise<void>;
}

export async function startDemo(options: DemoOptions): Promise<Demo> {
  const host = options.host ?? '127.0.0.1';
  const key = `${options.key.name}:${options.key.secret}`;
  const assets = await buildWebBundle();
  const mooring = await startServer({
    host,
    port: options.mooringPort ?? 8080,
    keys: [options.key],
    store: options.dataDir === undefined ? { kind: 'memory' } : { kind: 'sqlite', dataDir: options.dataDir },
    logger: options.logLevel ?? 'warn',
    heartbeatInterval: options.heartbeatInterval ?? 5_000,
  });
  const chaosOn = options.chaos ?? (host === '127.0.0.1' && options.publicMooringUrl === undefined);
  const chaos = chaosOn ? new ChaosProxies({ port: mooring.port }) : undefined;
  // the agents run in this process: they reach the server without a socket
  const agentOptions: ConstructorParameters<typeof DemoAgents>[0] = {
    url: mooring.url,
    key,
    transport: mooring.localTransport,
  };
  if (options.pace !== undefined) agentOptions.pace = options.pace;
  const agents = new DemoAgents(agentOptions);
  let web: WebServer;
  try {
    web = await startWebServer({
      host,
      port: options.port ?? 3000,
      assets,
      api: {
        key,
        agents,
        ...(options.tokenTtl === undefined ? {} : { tokenTtl: options.tokenTtl }),
        mooringUrlFor: async (pageHost, clientId) => {
          if (options.publicMooringUrl !== undefined) return { url: options.publicMooringUrl, chaos: false };
          if (chaos && isLoopback(pageHost))
            return { url: `http://127.0.0.1:${await chaos.portFor(clientId)}`, chaos: true };
          return { url: sameHost(pageHost, mooring), chaos: false };
        },
      },
      chaos,
    });
  } catch (err) {
    await chaos?.close();
    await agents.close();
    await mooring.close();
    throw err;
  }
  return {
    url: web.url,
    mooringUrl: mooring.url,
    mooring,
    agents,
    chaos,
    async close() {
      await web.close();
      await chaos?.close();
      await agents.close();
      await mooring.close();
    },
  };
}

function isLoopback(pageHost: string | undefined): boolean {
  if (pageHost === undefined) return false;
  try {
    const name = new URL(`http://${pageHost}`).hostname;
    return name === '127.0.0.1' || name === 'localhost' || name === '[::1]';
  } catch {
    return false;
  }
}

/** Mooring on the host name the page was loaded from (localhost, 127.0.0.1, a LAN address). */
function sameHost(pageHost: string | undefined, mooring: MooringServer): string {
  if (pageHost === undefined) return mooring.url;
  try {
    return `http://${new URL(`http://${pageHost}`).hostname}:${mooring.port}`;
  } catch {
    return mooring.url;
  }
}
