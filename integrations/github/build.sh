#!/usr/bin/env bash
# The action's build step: `mobilepre build` with the action's inputs (environment variables set by
# action.yml). A failed budget fails the step, with mobilepre's one line as an error annotation.
set -euo pipefail

# A check of an earlier use of the action in this job must not show in this one's summary.
rm -f "${RUNNER_TEMP:?}/mobilepre-check.txt" "${RUNNER_TEMP}/mobilepre-check.xml"

args=(build)
[ -n "${MODEL:-}" ] && args+=("$MODEL")
args+=(--out "${OUTPUT:?the output input is empty}" --force)
[ -n "${DATA:-}" ] && args+=(--calibration "$DATA")
[ -n "${VALIDATION:-}" ] && args+=(--validation "$VALIDATION")
[ -n "${LABELS:-}" ] && args+=(--labels "$LABELS")
[ -n "${PROFILES:-}" ] && args+=(--profiles "$PROFILES")
[ -n "${PROFILE:-}" ] && args+=(--profile "$PROFILE")
[ -n "${CONFIG:-}" ] && args+=(--config "$CONFIG")
[ -n "${BASELINE:-}" ] && args+=(--baseline "$BASELINE")
if [ "${CACHE:-true}" = true ]; then
  args+=(--cache "${RUNNER_TEMP:?}/mobilepre-cache")  # the folder actions/cache restores and saves
else
  args+=(--no-cache)
fi
if [ -n "${SIGNING_KEY:-}" ]; then
  key=$(mktemp "${RUNNER_TEMP:?}/mobilepre-key.XXXXXX")  # mode 600
  trap 'rm -f "$key"' EXIT
  printf '%s\n' "$SIGNING_KEY" > "$key"
  args+=(--sign-key "$key")
fi
{
  echo "output=$OUTPUT"
  echo "report=$OUTPUT/report.md"
} >> "${GITHUB_OUTPUT:?}"

errors=$(mktemp "${RUNNER_TEMP:?}/mobilepre-build.XXXXXX")
status=0
# stderr shown as it comes and kept for the annotation; with pipefail the status is mobilepre's
{ mobilepre "${args[@]}" 2>&1 1>&3 3>&- | tee "$errors" >&2; } 3>&1 || status=$?
if [ "$status" != 0 ]; then
  reason=$(grep -E '^mobilepre: (error|failed): ' "$errors" | tail -n 1 || true)
  reason=${reason:-mobilepre build exited with code $status}
  reason=${reason//'%'/'%25'}
  echo "::error title=mobilepre build::${reason}"
fi
rm -f "$errors"
exit "$status"
