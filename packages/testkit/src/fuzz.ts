/**
 * Inputs for fuzzing a Mooring server: a seeded PRNG (so a failure can be replayed), valid frames to
 * start from, odd values to splice in, a structural mutator and random text. Used by the
 * malformed-input test and the 100k-input fuzz run in bench/.
 */

/** mulberry32: small, fast, deterministic. */
export function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Valid client frames (PROTOCOL.md §6) that mutations start from. */
export const SEED_FRAMES: readonly unknown[] = [
  { type: 'attach', channel: 'fuzz:a', rewind: 2 },
  { type: 'publish', channel: 'fuzz:a', ops: [{ name: 'n', data: 'x', headers: { a: 1 } }] },
  {
    type: 'publish',
    channel: 'fuzz:a',
    ops: [{ action: 'append', serial: 'aaaaaaaaaaaa.0000000000000001', data: 'y' }],
  },
  { type: 'presence', channel: 'fuzz:a', action: 'enter', data: { x: 1 } },
  { type: 'detach', channel: 'fuzz:a' },
  { type: 'auth', token: 'a.b.c' },
  { type: 'ping' },
];

const WEIRD: readonly unknown[] = [
  null,
  true,
  -1,
  Number.POSITIVE_INFINITY,
  '',
  'x'.repeat(300),
  [],
  {},
  { type: 'publish' },
  [1, [2, [3]]],
  { __proto__: { type: 'ping' } },
  { constructor: 'x' },
  'session:*',
  '\u0000\u0001',
];

const pick = <T>(list: readonly T[], rand: () => number): T => list[Math.floor(rand() * list.length)]!;

/** A structural mutation of `value`: fields dropped, replaced by odd values, or added. */
export function mutateFrame(value: unknown, rand: () => number, depth = 0): unknown {
  if (depth > 4 || value === null || typeof value !== 'object')
    return rand() < 0.5 ? pick(WEIRD, rand) : value;
  if (Array.isArray(value)) {
    const copy = value.map((v) => (rand() < 0.3 ? mutateFrame(v, rand, depth + 1) : v));
    if (rand() < 0.2) copy.push(pick(WEIRD, rand));
    return copy;
  }
  const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const key = keys[Math.floor(rand() * keys.length)];
  const roll = rand();
  if (key !== undefined && roll < 0.3) delete copy[key];
  else if (key !== undefined && roll < 0.8) copy[key] = mutateFrame(copy[key], rand, depth + 1);
  else copy[`extra${Math.floor(rand() * 3)}`] = pick(WEIRD, rand);
  return copy;
}

/** Random characters, mostly ASCII, up to `max` long. */
export function randomText(rand: () => number, max = 200): string {
  const len = Math.floor(rand() * max);
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(Math.floor(rand() * (rand() < 0.9 ? 128 : 65536)));
  return s;
}

/**
 * One fuzzed frame as text: random text (25%), deeply nested brackets (5%), a publish whose data
 * nests 3,000 levels (5%), or a mutated seed frame (65%).
 */
export function fuzzFrameText(rand: () => number): string {
  const roll = rand();
  if (roll < 0.25) return randomText(rand);
  if (roll < 0.3) return '['.repeat(5_000 + Math.floor(rand() * 50_000));
  if (roll < 0.35)
    return `{"type":"publish","channel":"fuzz:deep","ops":[{"data":${'['.repeat(3_000)}${']'.repeat(3_000)}}]}`;
  return JSON.stringify(mutateFrame(pick(SEED_FRAMES, rand), rand)) ?? 'undefined';
}

/** Valid `attach` parameters of a connection request (PROTOCOL.md §5.1) that mutations start from. */
const SEED_CONNECT_ATTACH: readonly unknown[] = [
  [
    { ref: 1, channel: 'fuzz:a', rewind: 2 },
    { ref: 'b', channel: 'fuzz:b', start: true },
    { channel: 'fuzz:c', from: 'aaaaaaaaaaaa.0000000000000001', echo: false },
  ],
  [{ ref: 7, channel: 'fuzz:d' }],
];

/**
 * One fuzzed `attach` query parameter: random text (20%), deeply nested brackets (5%), or a mutated
 * seed list (75%, sometimes left valid).
 */
export function fuzzConnectAttach(rand: () => number): string {
  const roll = rand();
  if (roll < 0.2) return randomText(rand);
  if (roll < 0.25) return '['.repeat(100 + Math.floor(rand() * 2_000));
  return JSON.stringify(mutateFrame(pick(SEED_CONNECT_ATTACH, rand), rand)) ?? 'undefined';
}
