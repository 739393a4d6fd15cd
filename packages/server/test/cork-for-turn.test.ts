/**
 * Frames written to one socket in one turn of the event loop leave in one write (cork-for-turn.ts),
 * in order, counted in the stream's buffered bytes while they wait, and never held past the turn.
 * The stream here records each write call the way a socket makes one system call per call.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { corkForTurn, flushTurn } from '../src/cork-for-turn.ts';

/** A stream that records each underlying write: one entry per call, the chunks it carried. */
function recordingStream(): { stream: Writable; calls: string[][] } {
  const calls: string[][] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      calls.push([chunk.toString()]);
      callback();
    },
    writev(chunks, callback) {
      calls.push(chunks.map(({ chunk }) => (chunk as Buffer).toString()));
      callback();
    },
  });
  return { stream, calls };
}

/** Writes like `ws` does: corked around the frame's header and payload. */
function writeFrame(stream: Writable, header: string, payload: string): void {
  corkForTurn(stream);
  stream.cork();
  stream.write(Buffer.from(header));
  stream.write(Buffer.from(payload));
  stream.uncork();
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('corkForTurn', () => {
  it('sends the frames of one turn in one write, in order, counted as buffered until then', async () => {
    const { stream, calls } = recordingStream();
    writeFrame(stream, 'h1', 'ack 1');
    writeFrame(stream, 'h2', 'ack 2');
    writeFrame(stream, 'h3', 'ping');
    assert.equal(calls.length, 0, 'nothing written before the turn ends');
    assert.equal(stream.writableLength, 20, 'the waiting bytes count as buffered (backpressure)');
    await nextTurn();
    assert.deepEqual(calls, [['h1', 'ack 1', 'h2', 'ack 2', 'h3', 'ping']]);
    assert.equal(stream.writableLength, 0);
  });

  it('writes frames sent from microtasks of the turn (acks after a store) with the rest', async () => {
    const { stream, calls } = recordingStream();
    writeFrame(stream, 'h1', 'a');
    await Promise.resolve();
    writeFrame(stream, 'h2', 'b');
    await nextTurn();
    assert.deepEqual(calls, [['h1', 'a', 'h2', 'b']]);
  });

  it('holds nothing past the turn: each turn writes its own frames', async () => {
    const { stream, calls } = recordingStream();
    const other = recordingStream();
    writeFrame(stream, 'h1', 'a');
    writeFrame(other.stream, 'h', 'x');
    await nextTurn();
    writeFrame(stream, 'h2', 'b');
    await nextTurn();
    assert.deepEqual(calls, [
      ['h1', 'a'],
      ['h2', 'b'],
    ]);
    assert.deepEqual(other.calls, [['h', 'x']]);
    assert.equal(stream.writableCorked, 0);
  });

  it('flushTurn writes at once (what was sent before a terminate still goes)', async () => {
    const { stream, calls } = recordingStream();
    writeFrame(stream, 'h', 'disconnect');
    flushTurn(stream);
    assert.deepEqual(calls, [['h', 'disconnect']]);
    flushTurn(stream);
    await nextTurn();
    assert.equal(calls.length, 1, 'nothing written twice, the end of the turn leaves it alone');
    assert.equal(stream.writableCorked, 0);
  });
});
