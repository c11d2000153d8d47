#!/usr/bin/env bash
# The action's job summary: the build's report.md, then what `mobilepre check` said.
set -euo pipefail

summary=${GITHUB_STEP_SUMMARY:?}
if [ -f "${OUTPUT:?}/report.md" ]; then
  cat "$OUTPUT/report.md" >> "$summary"
else
  echo "mobilepre wrote no report in \`$OUTPUT\`: the build step's log says why." >> "$summary"
fi
checked="${RUNNER_TEMP:?}/mobilepre-check.txt"
if [ -f "$checked" ]; then
  {
    printf '\n### mobilepre check\n\n```\n'
    cat "$checked"
    printf '```\n'
  } >> "$summary"
fi
