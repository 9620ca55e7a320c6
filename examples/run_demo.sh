#!/usr/bin/env bash
# The main job on the embedded default encoder, offline: build a workspace from a small
# labeled set, classify new texts with their evidence, show the status.
# `make run` calls this; FEWSHOT_STORE (default ./index) picks the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
fewshot=${FEWSHOT:-.venv/bin/fewshot}

echo "== fewshot import examples/tickets.csv"
"$fewshot" import examples/tickets.csv
echo
echo "== fewshot classify --input examples/new_tickets.txt --explain"
"$fewshot" classify --input examples/new_tickets.txt --explain --format table
echo
echo "== fewshot status"
"$fewshot" status
