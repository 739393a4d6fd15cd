/** The zod-free reader of server frames (PROTOCOL.md §6.3) that browsers use. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseServerFrame, type ServerFrame, TRANSPORT_KINDS, toServerFrame } from '@mooring/protocol';

const S = 'mi9x2k0a7q3f.0000000000000042';

describe('server frames', () => {
  test('every frame type of §6.3 is read as itself', () => {
    const frames: ServerFrame[] = [
      {
        type: 'connected',
        connectionId: 'c1',
        connectionKey: 'k',
        resumed: false,
        heartbeatInterval: 15_000,
        maxIdleInterval: 20_000,
        connectionStateTtl: 120_000,
        limits: {
          maxOperationSize: 1,
          maxMessageSize: 1,
          maxFrameSize: 1,
          maxOpsPerPublish: 1,
          maxChannelsPerConnection: 1,
        },
        serverTime: 0,
      },
      { type: 'attached', ref: 1, channel: 'c', resumed: true, epoch: 'mi9x2k0a7q3f', position: S },
      {
        type: 'messages',
        channel: 'c',
        messages: [{ serial: S, version: S, action: 'create', id: 'a', timestamp: 0 }],
      },
      { type: 'detached', channel: 'c' },
      { type: 'ack', ref: 'r', channel: 'c', results: [{ serial: S }, { serial: S, duplicate: true }] },
      { type: 'error', error: { code: 'bad_request', status: 400, retryable: false, message: 'x' } },
      { type: 'presence', channel: 'c', action: 'sync', members: [] },
      { type: 'authorized', expiresAt: 1 },
      { type: 'heartbeat', serverTime: 1 },
      { type: 'pong', serverTime: 1 },
      { type: 'disconnect', reason: 'bye', reconnect: true },
    ];
    for (const frame of frames) {
      assert.deepEqual(parseServerFrame(JSON.stringify(frame)), frame, frame.type);
      assert.deepEqual(toServerFrame(frame), frame, frame.type);
    }
  });

  test('what is not a server frame is explained, not thrown', () => {
    const cases: [string, string][] = [
      ['not json', 'frame is not JSON'],
      ['[]', 'frame is not a JSON object'],
      ['null', 'frame is not a JSON object'],
      ['{"type":"attach","channel":"c"}', 'unknown frame type "attach"'],
      ['{"channel":"c"}', 'unknown frame type undefined'],
      ['{"type":"attached"}', 'attached frame without a channel'],
      ['{"type":"messages","channel":"c"}', 'messages frame without a messages array'],
      ['{"type":"ack","channel":"c","results":{}}', 'ack frame without a results array'],
    ];
    for (const [text, why] of cases) assert.equal(parseServerFrame(text), why, text);
  });

  test('the transports, best first, are listed once', () => {
    assert.deepEqual(TRANSPORT_KINDS, ['websocket', 'sse', 'longpoll']);
  });
});
