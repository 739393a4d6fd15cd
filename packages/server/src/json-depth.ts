/** A guard against pathologically nested JSON, which would exhaust recursive validators. */

/**
 * True when `value` nests arrays/objects deeper than `limit` (the outermost one is level 1).
 * Recursive, but never deeper than `limit + 1` calls: it stops at the first container past the limit,
 * so a 100,000-level value costs a few frames of stack. It allocates nothing (every frame passes
 * through it).
 */
export function exceedsDepth(value: unknown, limit: number): boolean {
  return deeper(value, 1, limit);
}

function deeper(value: unknown, depth: number, limit: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (depth > limit) return true;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (deeper(value[i], depth + 1, limit)) return true;
    return false;
  }
  for (const key in value)
    if (Object.hasOwn(value, key) && deeper((value as Record<string, unknown>)[key], depth + 1, limit))
      return true;
  return false;
}
