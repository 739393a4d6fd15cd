/**
 * A Redis URL as it may be shown (logs, errors, the start banner): its credentials replaced by `***`.
 * A module of its own, without the Redis client, so the CLI can use it before any store is loaded.
 */
export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
