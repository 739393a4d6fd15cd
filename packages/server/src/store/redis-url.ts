/**
 * A Redis URL as it may be shown (logs, errors, the start banner): its credentials replaced by `***`.
 * A module of its own, without the Redis client, so the CLI can use it before any store is loaded.
 */
export function redactRedisUrl(url: string): string {
  // up to the last `@` before the host's path, as URL parsers read it (a password may hold `@`)
  return url.replace(/\/\/[^/]*@/, '//***@');
}
