/**
 * MessageScanner: where a client's WebSocket messages begin and end in the bytes read, however the
 * reads split them (the transport holds a message begun and not whole to one of its identity's
 * reading slots).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageScanner } from '../src/message-scanner.ts';
import { wsFrame } from './support/stalled-client.ts';

const TEXT = 0x1;
const CONTINUATION = 0x0;
const PING = 0x9;
const PONG = 0xa;

/** One client frame of `payloadLength` bytes (masked, as every client frame is, unless `masked` is false). */
const frame = (opcode: number, final: boolean, payloadLength: number, masked = true): Buffer =>
  wsFrame(opcode, final, Buffer.alloc(payloadLength, 0x61), masked);

/** Feeds `bytes` in reads of `size`; returns `partial` after each read. */
function scanIn(bytes: Buffer, size: number, scanner = new MessageScanner()): boolean[] {
  const seen: boolean[] = [];
  for (let at = 0; at < bytes.length; at += size) {
    scanner.scan(bytes.subarray(at, at + size));
    seen.push(scanner.partial);
  }
  return seen;
}

describe('MessageScanner', () => {
  it('a whole message is not partial after it; each part of one is, until its last byte', () => {
    for (const length of [0, 5, 125, 126, 300, 65_535, 65_536, 70_000]) {
      const whole = frame(TEXT, true, length);
      assert.deepEqual(scanIn(whole, whole.length), [false], `${length} bytes in one read`);
      const split = scanIn(whole, 1);
      assert.equal(split.at(-1), false, `${length} bytes read byte by byte: whole at the end`);
      assert.ok(
        split.slice(0, -1).every((partial) => partial),
        `${length} bytes read byte by byte: partial before the end`,
      );
    }
  });

  it('follows several frames in one read, and a read that ends inside the next', () => {
    const two = Buffer.concat([frame(TEXT, true, 10), frame(TEXT, true, 200)]);
    assert.deepEqual(scanIn(two, two.length), [false]);
    const scanner = new MessageScanner();
    scanner.scan(Buffer.concat([frame(TEXT, true, 10), frame(TEXT, true, 200).subarray(0, 50)]));
    assert.equal(scanner.partial, true, 'the second has begun');
    scanner.scan(frame(TEXT, true, 200).subarray(50));
    assert.equal(scanner.partial, false);
    scanner.scan(frame(TEXT, true, 3));
    assert.equal(scanner.partial, false, 'and the next header is found where the payload ends');
  });

  it('a fragmented message is partial until its final fragment, whatever control frames come between', () => {
    const scanner = new MessageScanner();
    scanner.scan(frame(TEXT, false, 1_000));
    assert.equal(scanner.partial, true, 'first fragment');
    scanner.scan(frame(PING, true, 4));
    scanner.scan(frame(PONG, true, 0));
    assert.equal(scanner.partial, true, 'a ping or pong between fragments does not end it');
    scanner.scan(frame(CONTINUATION, false, 70_000));
    assert.equal(scanner.partial, true, 'a continuation that is not the last');
    scanner.scan(frame(CONTINUATION, true, 0));
    assert.equal(scanner.partial, false, 'the final fragment, even empty, ends it');
  });

  it('control frames alone, and a control frame read in pieces, begin no message', () => {
    const pings = Buffer.concat([frame(PING, true, 125), frame(PONG, true, 3)]);
    assert.deepEqual(scanIn(pings, 1), Array(pings.length).fill(false));
  });

  it('reads the length the same without a mask (ws refuses such a frame; until then the count holds)', () => {
    const unmasked = Buffer.concat([frame(TEXT, true, 300, false), frame(TEXT, true, 2, false)]);
    assert.deepEqual(scanIn(unmasked, unmasked.length), [false]);
    assert.equal(scanIn(unmasked, 150).at(0), true);
  });
});
