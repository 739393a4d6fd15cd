/**
 * Loaded into a `mooring serve` child with `--import` (never into the product): makes the process
 * SIGKILL itself at the moment a lease record is removed, to put a real crash exactly between
 * "the abandoned update is stored" and "the lease record is removed" (or just after the removal).
 *
 *   MOORING_TEST_LEASE_CRASH=before-remove   kill instead of removing the record
 *   MOORING_TEST_LEASE_CRASH=after-remove    remove the record, then kill
 *
 * It wraps the one statement that removes lease records, found by its SQL text.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';

const mode = process.env.MOORING_TEST_LEASE_CRASH;
const prepare = DatabaseSync.prototype.prepare;

DatabaseSync.prototype.prepare = function (this: DatabaseSync, sql: string): StatementSync {
  const statement = prepare.call(this, sql);
  if (!/^DELETE FROM leases\b/.test(sql)) return statement;
  const run = (...args: SQLInputValue[]) => {
    if (mode === 'before-remove') process.kill(process.pid, 'SIGKILL');
    const result = statement.run(...args);
    if (mode === 'after-remove') process.kill(process.pid, 'SIGKILL');
    return result;
  };
  const wrapped = Object.create(statement) as StatementSync;
  Object.defineProperty(wrapped, 'run', { value: run });
  return wrapped;
};
