#!/usr/bin/env node
// The `mooring` command. The sources are TypeScript run by Node 24's type stripping.
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(
    `mooring needs Node.js 24 or newer (this is ${process.version}); run it through npm/npx in the repo, which pins Node 24.\n`,
  );
  process.exit(1);
}
await import('../src/cli.ts');
