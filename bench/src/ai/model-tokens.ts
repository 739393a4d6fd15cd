/**
 * The model's text, shared by the stub that emits it and the clients that time its arrival: token k
 * of response r is a fixed word piece (mean ≈ 4.6 chars, nothing that needs JSON escaping), so a
 * client that has received `length` characters of a response knows which tokens have arrived
 * whatever the system merged or split on the way. The transports and catch-up scenarios publish
 * the same pieces.
 */

const PIECES = [
  ' The',
  ' session',
  ' resumes',
  ' from',
  ' its',
  ' position',
  ',',
  ' so',
  ' nothing',
  ' is',
  ' lost',
  ' when',
  ' the',
  ' network',
  ' drops',
  '.',
  ' A',
  ' response',
  ' is',
  ' one',
  ' message',
  ' that',
  ' grows',
  ' by',
  ' appen',
  'ds',
  ';',
  ' each',
  ' delta',
  ' costs',
  ' a',
  ' few',
  ' bytes',
  ' on',
  ' disk',
  ' and',
  ' on',
  ' the',
  ' wire',
  ' again',
];

export const tokenText = (response: number, k: number): string => PIECES[(response * 7 + k) % PIECES.length]!;

/** Cumulative end offsets: `ends[k]` = characters of the response once token k has arrived. */
export function tokenEnds(response: number, tokens: number): Uint32Array {
  const ends = new Uint32Array(tokens);
  let at = 0;
  for (let k = 0; k < tokens; k++) {
    at += tokenText(response, k).length;
    ends[k] = at;
  }
  return ends;
}
