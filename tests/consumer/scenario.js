// What a new user does with the published packages, run by tests/consumer.test.ts inside a temp
// project that installed the packed tarballs: `node scenario.js <server url> <api key>`. Plain
// JavaScript, so it runs unchanged on every Node version the packages support. Prints one JSON line.
import { AgentSession, UserSession } from '@mooring/ai';
import { applyMessage, Mooring } from '@mooring/client';

const [url, key] = process.argv.slice(2);
const tag = `${process.pid}-${Date.now()}`;
const clients = [];
const connect = (clientId) => {
  const client = new Mooring({ url, key, clientId });
  clients.push(client);
  return client;
};
const timeout = setTimeout(() => {
  console.error('scenario timed out');
  process.exit(1);
}, 30_000);

/** Resolves once `test` holds for the folded messages of `channel`. */
function foldUntil(channel, test) {
  const held = new Map();
  return new Promise((resolve) => {
    channel.subscribe((m) => {
      held.set(m.serial, applyMessage(held.get(m.serial), m));
      if (test(held)) resolve(held);
    });
  });
}

// 1. Publish and append: a streamed text is one message.
const writer = connect('writer');
const notes = `notes:${tag}`;
const wch = writer.channels.get(notes);
const serial = await wch.publish('text', 'Hel');
await wch.append(serial, 'lo');

// 2. Resume: a reader folds the channel, goes away; a new client resumes from its position and
//    receives only what it missed.
const reader = connect('reader');
const rch = reader.channels.get(notes, { start: true });
await foldUntil(rch, (held) => held.get(serial)?.data === 'Hello');
const position = rch.position;
await reader.close();
await wch.append(serial, ' world');
const again = connect('reader');
const ach = again.channels.get(notes, { from: position });
const missed = [];
const gotMissed = new Promise((resolve) =>
  ach.subscribe((m) => {
    missed.push(m);
    resolve();
  }),
);
const attached = await ach.attach();
await gotMissed;

// 3. An AI run, folded on the user's side.
const session = `session:${tag}`;
const agent = new AgentSession({
  channel: connect('assistant').channels.get(session, { start: true }),
  agent: 'assistant',
  onInput: async (_input, run) => {
    run.writeText('Hi from the agent');
  },
});
await agent.start();
const user = new UserSession({ channel: connect('user').channels.get(session, { start: true }) });
await user.start();
const ended = new Promise((resolve) => user.on('runEnd', resolve));
await user.send({ id: `m-${tag}`, role: 'user', parts: [{ type: 'text', text: 'hello' }] });
await ended;
await user.ready(); // the run's message is rebuilt from its parts
const answer = user.messages.at(-1);
const runs = user.view().filter((node) => node.kind === 'run');

await agent.close();
for (const client of clients) await client.close();
clearTimeout(timeout);
console.log(
  JSON.stringify({
    node: process.version,
    resumed: attached.resumed,
    missed: missed.map((m) => ({ action: m.action, data: m.data })),
    answerRole: answer?.role,
    answerText: answer?.parts
      .filter((p) => p.type === 'text')
      .map((p) => p.text)
      .join(''),
    runStatus: runs[0]?.status,
  }),
);
