/**
 * Where `mooring inspect` / `mooring tail` connect and with what: `--url` (or MOORING_URL, default
 * http://127.0.0.1:8080) and an API key `--key` / MOORING_KEY or a token `--token` / MOORING_TOKEN.
 * The credential travels only in the `authorization` header, never in a URL, and is never printed:
 * what these commands write is safe to paste into a support ticket. The flags both commands share
 * (connection, channel, integer bounds) are parsed here once, so they answer alike.
 */
import { wholeNumber } from '../whole-number.ts';

export interface InspectTarget {
  /** `http(s)://host:port`, no trailing slash. */
  url: string;
  /** The `authorization` header value. */
  authorization: string;
}

export const CONNECTION_HELP = `  --url       the server (default http://127.0.0.1:8080)        [MOORING_URL]
  --key       an API key <name>:<secret>                          [MOORING_KEY]
  --token     or a token (JWT); it needs history + presence on the channel  [MOORING_TOKEN]`;

/** The `parseArgs` options both commands take (each adds its own). */
export const CONNECTION_OPTIONS = {
  url: { type: 'string' },
  key: { type: 'string' },
  token: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The one channel a command names, or an error that shows its usage. */
export function oneChannel(positionals: string[], help: string): string {
  const channel = positionals[0];
  if (channel === undefined || positionals.length > 1) throw new Error(`one channel is required\n\n${help}`);
  return channel;
}

/** An optional integer flag within [min, max], `fallback` when absent. */
export function integerOption(
  name: string,
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  const value = raw === undefined ? fallback : wholeNumber(raw);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new Error(`--${name} must be an integer from ${min} to ${max}`);
  return value;
}

export function inspectTarget(
  values: { url?: string | undefined; key?: string | undefined; token?: string | undefined },
  environment: NodeJS.ProcessEnv,
): InspectTarget {
  // an empty variable is unset, as for `mooring serve`
  const env = Object.fromEntries(Object.entries(environment).filter(([, value]) => value !== ''));
  const raw = values.url ?? env.MOORING_URL ?? 'http://127.0.0.1:8080';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error('--url must be a URL like http://127.0.0.1:8080');
  }
  if (url.username || url.password || url.search)
    throw new Error('--url must not carry credentials or a query: use --key or --token');
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('--url must be http: or https:');
  const key = values.key ?? (values.token === undefined ? env.MOORING_KEY : undefined);
  const token = values.token ?? (key === undefined ? env.MOORING_TOKEN : undefined);
  const credential = key ?? token;
  if (!credential)
    throw new Error(
      'credentials are required: --key <name>:<secret> or --token <jwt> (or MOORING_KEY / MOORING_TOKEN)',
    );
  return { url: url.origin + url.pathname.replace(/\/+$/, ''), authorization: `Bearer ${credential}` };
}

/** GET a JSON path of the server; a typed error answer becomes an Error with its code. */
export async function getJson<T>(target: InspectTarget, path: string): Promise<T> {
  const res = await fetch(target.url + path, { headers: { authorization: target.authorization } }).catch(
    (err: Error) => {
      // fetch says only "fetch failed"; the reason (refused, unknown host, reset) is its cause
      const cause = (err.cause as { code?: string; message?: string } | undefined) ?? {};
      throw new Error(`cannot reach ${target.url}: ${cause.code ?? cause.message ?? err.message}`);
    },
  );
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${path}: HTTP ${res.status}, not JSON`);
  }
  if (!res.ok) {
    const error = (body as { error?: { code?: string; message?: string } }).error;
    throw Object.assign(new Error(`${error?.code ?? res.status}: ${error?.message ?? 'request failed'}`), {
      code: error?.code,
    });
  }
  return body as T;
}
