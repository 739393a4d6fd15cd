/**
 * JSON mode (PROTOCOL.md §16.5–16.6): one level of arrays flattened, `[]` refused on append and
 * accepted on create, invalid JSON or UTF-8 refused, and JSON nested too deeply to re-serialise refused
 * with a reason instead of throwing (which would be a 500).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsonArray, jsonFragment } from '../../src/durable-streams/json-mode.ts';

const frag = async (text: string, allowEmpty = false) => {
  const out = await jsonFragment(Buffer.from(text), allowEmpty);
  return out.ok ? Buffer.from(out.fragment).toString() : `error: ${out.reason}`;
};

test('one level of arrays is flattened into messages, re-serialised compactly', async () => {
  assert.equal(await frag('{ "a" : 1 }'), '{"a":1}');
  assert.equal(await frag('[{"a":1}, {"b":2}]'), '{"a":1},{"b":2}');
  assert.equal(await frag('[[1,2],[3,4]]'), '[1,2],[3,4]');
  assert.equal(await frag('[[[1,2,3]]]'), '[[1,2,3]]');
  assert.equal(jsonArray([Buffer.from('{"a":1}'), Buffer.from('2,3')]).toString(), '[{"a":1},2,3]');
  assert.equal(jsonArray([]).toString(), '[]');
});

test('empty arrays, invalid JSON, invalid UTF-8 and too-deep nesting are refused, never thrown', async () => {
  assert.match(await frag('[]'), /^error/);
  assert.equal(await frag('[]', true), '');
  assert.match(await frag('{"a":'), /^error/);
  assert.ok(!(await jsonFragment(new Uint8Array([0x22, 0xff, 0x22]), false)).ok);
  const deep = `${'['.repeat(500_000)}${']'.repeat(500_000)}`;
  assert.match(await frag(deep), /^error/);
});
