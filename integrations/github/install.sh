#!/usr/bin/env bash
# The action's install step: mobilepre's own set-up (`make install`: the pinned Python and npm packages,
# Debian's chromium) in the action's folder, then its CLI on PATH for the later steps.
set -euo pipefail
make -C "${GITHUB_ACTION_PATH:?}" install
echo "${GITHUB_ACTION_PATH}/.venv/bin" >> "${GITHUB_PATH:?}"
