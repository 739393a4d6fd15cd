/**
 * Publishes over REST from its own process (so that the measured process holds no HTTP client state):
 *   publisher-child.ts <url> <key> <json: { channels?: string[], channel?: string, count?: number, size: number }>
 * One message to each of `channels`, or `count` messages to `channel`. Exits when every one is stored.
 */
import { Mooring } from '../../src/mooring.ts';

const [url = '', key = '', spec = '{}'] = process.argv.slice(2);
const {
  channels,
  channel,
  count = 0,
  size,
} = JSON.parse(spec) as {
  channels?: string[];
  channel?: string;
  count?: number;
  size: number;
};
const client = new Mooring({ url, key, environment: null, autoConnect: false });
const data = 'x'.repeat(size);
const targets = channels ?? Array.from({ length: count }, () => channel ?? '');
for (let i = 0; i < targets.length; i += 50) {
  await Promise.all(
    targets
      .slice(i, i + 50)
      .map((name, k) => client.rest.publish(name, { name: 'text', data: `${i + k}:${data}` })),
  );
}
process.exit(0);
