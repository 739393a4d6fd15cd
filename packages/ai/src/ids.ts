/**
 * Ids of runs, messages and devices: a prefix and 128 random bits in 22 base64url characters. As
 * unique as a UUID (122 random bits) in 14 fewer characters, which matters because a run's id is in
 * the op id of every token it streams (`<runId>:p<part>:<n>`).
 */
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function randomId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let id = prefix;
  // 16 bytes = 5 groups of 3 bytes (4 characters each) + 1 byte (2 characters)
  for (let i = 0; i < 15; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    id += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + ALPHABET[n & 63]!;
  }
  const last = bytes[15]!;
  return id + ALPHABET[last >> 2]! + ALPHABET[(last & 3) << 4]!;
}
