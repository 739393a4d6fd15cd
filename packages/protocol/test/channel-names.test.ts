/** Channel names and namespaces (PROTOCOL.md §2): the one check the client, the server and the schemas share. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isChannelName, namespaceOf } from '@mooring/protocol';

describe('channel names', () => {
  test('1–256 printable ASCII characters without spaces, `*` or `?`', () => {
    for (const name of ['a', 'session:8f3a', 'x'.repeat(256), '!#$%&()+,-./09:;<=>@AZ[\\]^_`az{|}~', 'a"b'])
      assert.equal(isChannelName(name), true, name);
    for (const name of [
      '',
      'x'.repeat(257),
      'a b',
      'a*',
      'a?',
      'tab\there',
      'new\nline',
      'é',
      'a\u0000',
      'a\x7f',
    ])
      assert.equal(isChannelName(name), false, JSON.stringify(name));
  });

  test('is false for what is not a string, whatever it prints as', () => {
    for (const value of [42, null, undefined, ['session:a'], { toString: () => 'session:a' }, true])
      assert.equal(isChannelName(value), false, String(value));
  });

  test('the namespace is the part before the first `:`, or empty without one', () => {
    assert.equal(namespaceOf('session:8f3a'), 'session');
    assert.equal(namespaceOf('a:b:c'), 'a');
    assert.equal(namespaceOf('plain'), '');
    assert.equal(namespaceOf(':lead'), '');
  });
});
