/** A Redis URL shown in the banner, logs and errors never carries its credentials. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { redactRedisUrl } from '../src/store/redis-url.ts';

it('replaces the user and password of a Redis URL, and only them', () => {
  const cases: Array<[string, string]> = [
    ['redis://default:hunter2@10.0.0.5:6379/2', 'redis://***@10.0.0.5:6379/2'],
    ['rediss://:hunter2@cache.example.com:6380', 'rediss://***@cache.example.com:6380'],
    ['redis+cluster://app:p%40ss@h1:7000,h2:7001', 'redis+cluster://***@h1:7000,h2:7001'],
    ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379'],
    // a password holding @ (as URL parsers read it: the userinfo ends at the last @ before the host)
    ['redis://default:p@ss@word@cache:6379/1', 'redis://***@cache:6379/1'],
    // an @ after the host (in a path) is not a credential
    ['redis://127.0.0.1:6379/0?name=a@b', 'redis://127.0.0.1:6379/0?name=a@b'],
  ];
  for (const [url, shown] of cases) assert.equal(redactRedisUrl(url), shown, url);
});
