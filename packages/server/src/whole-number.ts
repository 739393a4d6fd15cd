/**
 * A count or port typed on a command line or in the environment: digits only, else NaN. `Number()`
 * would read `''` (an unset shell variable), `null` and `false` as 0 and `true` as 1, and take
 * `' 5'`, `'0x5'` or `'5e3'`, none of which anyone types for a port or a count on purpose.
 */
export function wholeNumber(text: string): number {
  return /^\d+$/.test(text) ? Number(text) : Number.NaN;
}
