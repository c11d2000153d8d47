#!/usr/bin/env bash
# The action's cache fingerprint: the candidate cache is saved under a key naming its entries, and only
# when they differ from the ones restored (GitHub keeps every saved cache until evicted: saving an
# unchanged cache on every commit would push out the useful ones).
set -euo pipefail

entries="${CACHE_DIR:?}/entries"
if [ ! -d "$entries" ]; then
  echo "changed=false" >> "${GITHUB_OUTPUT:?}"
  exit 0
fi
# an entry's folder is named by its candidate key (the model's, the settings' and the tools' digests)
digest=$(find "$entries" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | LC_ALL=C sort | sha256sum | cut -c1-16)
key="${PREFIX:?}${digest}"
echo "key=$key" >> "$GITHUB_OUTPUT"
if [ "$key" = "${RESTORED_KEY:-}" ]; then
  echo "changed=false" >> "$GITHUB_OUTPUT"
  echo "mobilepre's candidate cache is the one restored ($key): not saved again"
else
  echo "changed=true" >> "$GITHUB_OUTPUT"
fi
