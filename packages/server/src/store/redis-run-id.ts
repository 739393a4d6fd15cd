/**
 * Lua put before the scripts that ask which Redis runs them: `runId()` answers its `run_id`, which
 * a restart, a restored backup or a failover change (and such a Redis may hold less than the one
 * before acknowledged), or '' when the server does not say (not Redis). One `INFO server` a call.
 */
export const RUN_ID_LUA = `local function runId()
  local server = redis.call('INFO', 'server')
  local at = string.find(server, 'run_id:', 1, true)
  return at and string.match(server, '^[0-9a-f]+', at + 7) or ''
end
`;

/** The `run_id` in the text of an `INFO server` reply, '' when it has none. */
export function runIdOf(info: string): string {
  return /run_id:([0-9a-f]+)/.exec(info)?.[1] ?? '';
}
