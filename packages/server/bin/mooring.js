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
await import('#cli');
