/**
 * How a refusal's message says where the problem is (`issueText`): the first schema issue's path,
 * after the caller's prefix, then its message; the caller's fallback when there is no issue.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { issueText } from '../src/server-error.ts';

it('names the first issue by its path after the prefix, or falls back when there is none', () => {
  const issue = (path: PropertyKey[], message = 'Invalid input') => ({ path, message });
  assert.equal(issueText([issue(['ops', 0, 'data'])], 'invalid body'), 'ops.0.data: Invalid input');
  assert.equal(issueText([issue(['from'])], 'invalid', 'attach[1]'), 'attach[1].from: Invalid input');
  assert.equal(issueText([issue([])], 'invalid', 'attach[1]'), 'attach[1]: Invalid input');
  assert.equal(issueText([issue([], 'Expected object')], 'invalid body'), 'Expected object');
  assert.equal(issueText([], 'invalid body'), 'invalid body');
  assert.equal(issueText([], 'invalid attach request', 'attach[0]'), 'attach[0]: invalid attach request');
});
