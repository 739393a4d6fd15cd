/**
 * The soak's scripted model: what a run "generates" is a pure function of the seed and the run id, so
 * the agent that streams it, the agent restarted after a SIGKILL that streams it again, and the
 * verifier that checks every user's copy all agree without sharing memory.
 *
 *   token i of run R = `<i>.<word> `   word = WORDS[hash(seed, R, i)]
 *
 * The sequence number in each token is what lets the verifier say *how* a copy is wrong (a token
 * missing, seen twice, or before one it should follow); the word makes a corrupted token visible.
 */

const WORDS = [
  'anchor',
  'buoy',
  'cleat',
  'dock',
  'ebb',
  'fender',
  'gangway',
  'hawser',
  'jetty',
  'keel',
  'line',
  'mast',
  'knot',
  'pier',
  'quay',
  'rope',
  'sail',
  'tide',
  'wharf',
  'yacht',
  'harbor',
  'mooring',
];

/** 32-bit FNV-1a over the parts, then a murmur finaliser: a stable, well-spread hash. */
export function hash(...parts: Array<string | number>): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    const s = `${part}\u0000`;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** How many tokens run `runId` produces: uniform in [min, max]. */
export function runLength(seed: number, runId: string, min: number, max: number): number {
  return min + (hash(seed, runId, 'length') % (max - min + 1));
}

/** Token `i` of run `runId`, with its trailing space. */
export function tokenAt(seed: number, runId: string, i: number): string {
  return `${i}.${WORDS[hash(seed, runId, i) % WORDS.length]} `;
}

/** The first `n` tokens of run `runId`. */
export function modelText(seed: number, runId: string, n: number): string {
  let text = '';
  for (let i = 0; i < n; i++) text += tokenAt(seed, runId, i);
  return text;
}
