/**
 * Loaded into a `mooring serve` child with `--import` (never into the product): makes the process
 * SIGKILL itself at a chosen point of a SQLite write, to put a real crash exactly where it hurts.
 *
 *   MOORING_TEST_CRASH=lease:before-remove  kill instead of removing a lease record (after the
 *                                           expiry's `abandoned` update was stored)
 *   MOORING_TEST_CRASH=lease:after-remove   remove the lease record, then kill
 *   MOORING_TEST_CRASH=commit:<n>           run the n-th COMMIT, then kill: its operations are
 *                                           stored, and their acknowledgements never sent
 *
 * It wraps the statements involved, found by their SQL text.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';

const [point = '', arg = ''] = (process.env.MOORING_TEST_CRASH ?? '').split(':');
const prepare = DatabaseSync.prototype.prepare;
let commits = 0;

const die = () => process.kill(process.pid, 'SIGKILL');

function wrap(statement: StatementSync, before: () => void, after: () => void): StatementSync {
  const run = (...args: SQLInputValue[]) => {
    before();
    const result = statement.run(...args);
    after();
    return result;
  };
  const wrapped = Object.create(statement) as StatementSync;
  Object.defineProperty(wrapped, 'run', { value: run });
  return wrapped;
}

DatabaseSync.prototype.prepare = function (this: DatabaseSync, sql: string): StatementSync {
  const statement = prepare.call(this, sql);
  if (point === 'lease' && /^DELETE FROM leases\b/.test(sql)) {
    return wrap(
      statement,
      () => arg === 'before-remove' && die(),
      () => arg === 'after-remove' && die(),
    );
  }
  if (point === 'commit' && sql === 'COMMIT') {
    return wrap(
      statement,
      () => {},
      () => ++commits === Number(arg) && die(),
    );
  }
  return statement;
};
