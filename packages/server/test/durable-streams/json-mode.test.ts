/**
 * JSON mode (PROTOCOL.md §16.5–16.6): one level of arrays flattened, `[]` refused on append and
 * accepted on create, invalid JSON or UTF-8 refused, and JSON nested too deeply to re-serialise refused
 * with a reason instead of throwing (which would be a 500). Also (from the mutation sweep of
 * json-mode.ts): the depth bound exactly (512 levels taken, 513 refused, arrays and objects), nesting
 * after a string counted, and brackets inside strings (after an escaped quote or backslash) not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsonArray, jsonFragment } from '../../src/durable-streams/json-mode.ts';
import { MAX_JSON_DEPTH } from '../../src/limits.ts';

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

// PROTOCOL.md §16.5: nested deeper than 512 levels (the outermost array or object is level 1) → 400,
// found by a scan before parsing; brackets inside strings are text, not nesting
test('nesting of 512 levels is taken and 513 refused; brackets inside strings, also after an escaped quote, do not nest', async () => {
  const arrays = (n: number) => `${'['.repeat(n)}0${']'.repeat(n)}`;
  const objects = (n: number) => `${'{"a":'.repeat(n)}0${'}'.repeat(n)}`;
  assert.equal(await frag(arrays(MAX_JSON_DEPTH)), arrays(MAX_JSON_DEPTH - 1), 'one level flattened');
  assert.equal(await frag(objects(MAX_JSON_DEPTH)), objects(MAX_JSON_DEPTH));
  const tooDeep = `error: the JSON body is nested deeper than ${MAX_JSON_DEPTH} levels`;
  assert.equal(await frag(arrays(MAX_JSON_DEPTH + 1)), tooDeep);
  assert.equal(await frag(objects(MAX_JSON_DEPTH + 1)), tooDeep);
  assert.equal(await frag(`["a",${arrays(MAX_JSON_DEPTH)}]`), tooDeep, 'nesting after a string counts');
  // a closed bracket leaves its level: many siblings are as deep as one
  const siblings = `[${new Array(MAX_JSON_DEPTH + 1).fill('[0]').join(',')},{"b":{}}]`;
  assert.ok(!(await frag(siblings)).startsWith('error'));
  const brackets = '[{'.repeat(MAX_JSON_DEPTH + 1);
  for (const text of [brackets, `"${brackets}`, `\\${brackets}`]) {
    const body = JSON.stringify([text]);
    assert.equal(await frag(body), JSON.stringify(text), body.slice(0, 8));
  }
});

test('many messages are re-serialised in slices: other work gets the event loop between them, whatever the clock says', async () => {
  // a clock on which every look is 11 ms later: each 1,024 messages exceed a slice
  let t = 0;
  const clock = () => {
    t += 11;
    return t;
  };
  let turns = 0;
  let done = false;
  const tick = () => {
    turns++;
    if (!done) setImmediate(tick);
  };
  setImmediate(tick);
  const body = Buffer.from(`[${new Array(4096).fill('{}').join(',')}]`);
  const out = await jsonFragment(body, false, clock);
  done = true;
  assert.ok(out.ok);
  assert.equal(Buffer.from(out.fragment).toString(), new Array(4096).fill('{}').join(','));
  assert.ok(turns >= 3, `other work ran ${turns} times while 4,096 messages were re-serialised`);
  // and on a clock that stands still, one slice: no yield for a small body
  turns = 0;
  done = false;
  setImmediate(tick);
  await jsonFragment(body, false, () => 0);
  done = true;
  assert.equal(turns, 0);
});
