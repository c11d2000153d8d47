#!/usr/bin/env bash
# The action's release gate: `mobilepre check` on the build output; sets the step output `passed`.
set -euo pipefail

args=(check "${OUTPUT:?}" --junit "${RUNNER_TEMP:?}/mobilepre-check.xml")
[ -n "${PROFILES:-}" ] && args+=(--profiles "$PROFILES")
[ -n "${PROFILE:-}" ] && args+=(--only-present)  # a build of some profiles: the others have no bundle here
if [ -n "${VERIFY_KEY:-}" ]; then
  args+=(--verify-key "$VERIFY_KEY" --require-signature)
else
  echo "::notice title=mobilepre check::no verify-key input: signatures are not checked, every bundle is reported unsigned"
fi
status=0
mobilepre "${args[@]}" > "${RUNNER_TEMP}/mobilepre-check.txt" 2>&1 || status=$?
cat "${RUNNER_TEMP}/mobilepre-check.txt"
if [ "$status" = 0 ]; then
  echo "passed=true" >> "${GITHUB_OUTPUT:?}"
else
  echo "passed=false" >> "${GITHUB_OUTPUT:?}"
  reason=$(grep -E '^mobilepre: (error|failed): ' "${RUNNER_TEMP}/mobilepre-check.txt" | tail -n 1 || true)
  reason=${reason:-mobilepre check exited with code $status}
  echo "::error title=mobilepre check::${reason//'%'/'%25'}"
fi
exit "$status"
