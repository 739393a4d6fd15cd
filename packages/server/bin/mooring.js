#!/usr/bin/env node
// The `mooring` command. It runs the built JavaScript (`dist/cli.js`); inside the repository, Node
// started with `--conditions=@mooring/source` (as every npm script there is) runs the sources instead.
//
// The server stores channels with Node's built-in `node:sqlite`, which is usable from Node 22.16
// (22.13 loads it but lacks `isTransaction`, which the store needs to roll back safely). This file
// stays plain JavaScript with no imports, so it can say so on any Node version instead of crashing.
const MINIMUM = [22, 16];
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < MINIMUM[0] || (major === MINIMUM[0] && minor < MINIMUM[1])) {
  process.stderr.write(
    `mooring needs Node.js ${MINIMUM.join('.')} or newer (this is ${process.version}): the server stores ` +
      'channels with the built-in node:sqlite module. Install a current Node.js LTS and run it again.\n',
  );
  process.exit(1);
}

// `mooring serve` caps V8's young generation at 2 × 16 MB. Node 24 lets it grow to 2 × 64 MB on a
// machine with a few GB of memory, and keeps those pages once grown: at 16,000 idle connections that
// was 96 MB, 6 KB per connection, of memory holding nothing. A server's state lives long (connections,
// channels), so the bigger nursery buys it nothing measurable (bench/README.md, "Idle connections").
// The flag is a start-up one, so the process re-executes itself with it (same pid, same stdio).
// A --max-semi-space-size of your own (on the command line or in NODE_OPTIONS) is kept as it is;
// MOORING_NODE_DEFAULTS=0 keeps Node's default.
const YOUNG_GENERATION_FLAG = '--max-semi-space-size=16';
if (
  process.argv[2] === 'serve' &&
  process.env.MOORING_NODE_DEFAULTS !== '0' &&
  typeof process.execve === 'function' &&
  ![...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((flag) =>
    /^--max[-_]semi[-_]space[-_]size\b/.test(flag),
  )
) {
  // the environment passed explicitly: Node 22's execve does not default to it (MOORING_KEY was lost)
  process.execve(
    process.execPath,
    [process.execPath, YOUNG_GENERATION_FLAG, ...process.execArgv, ...process.argv.slice(1)],
    process.env,
  );
}
await import('#cli');
