/**
 * Lua put before the scripts that ask which Redis runs them: `runId()` answers its `run_id`, which
 * a restart, a restored backup or a failover change (and such a Redis may hold less than the one
 * before acknowledged), or '' when the server does not say (not Redis).
 */

/** Lua: `runIdIn(server)`, the `run_id` in the text of an `INFO server` reply, '' when it has none. */
const RUN_ID_IN_LUA = `local function runIdIn(server)
  local at = string.find(server, 'run_id:', 1, true)
  return at and string.match(server, '^[0-9a-f]+', at + 7) or ''
end
`;

/** For a script run by EVAL, which keeps nothing from one call to the next: one `INFO server` a call. */
export const RUN_ID_LUA = `${RUN_ID_IN_LUA}local function runId()
  return runIdIn(redis.call('INFO', 'server'))
end
`;

/**
 * For the top of a function library (redis-functions.ts): `INFO server` once, then the answer kept in
 * the library (a local of its code). Exact, not a cache that can go stale: the library's Lua state
 * lives in one Redis process and never longer (a restart loads the library from RDB/AOF anew, a
 * failover runs it in another process; FUNCTION LOAD, FLUSH and RESTORE run its code anew too), and
 * a process's run_id never changes.
 */
export const CACHED_RUN_ID_LUA = `${RUN_ID_IN_LUA}local thisRunId
local function runId()
  if thisRunId == nil then thisRunId = runIdIn(redis.call('INFO', 'server')) end
  return thisRunId
end
`;

/** The `run_id` in the text of an `INFO server` reply, '' when it has none. */
export function runIdOf(info: string): string {
  return /run_id:([0-9a-f]+)/.exec(info)?.[1] ?? '';
}
