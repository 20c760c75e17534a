#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs, builds, runs every tap test (unit tests and
# functional tests that start real daemons on 127.0.0.1), and ends with `N passed, M failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

log=$(mktemp)
npx tap --reporter=tap "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^# \{ total: ' "$log" | tail -n 1)
# CI keeps only the tail of this output: repeat every failed test, with the path of subtests
# leading to it and the first lines of its diagnostics, just before the totals.
failures=$(awk '
  /^ *# Subtest: / { depth = index($0, "#") - 1; path[depth / 4] = substr($0, depth + 12); next }
  /^ *not ok / {
    depth = index($0, "n") - 1; line = ""
    for (i = 0; i < depth / 4; i++) line = line path[i] " > "
    print line substr($0, depth + 1); shown = 0; inDiag = 1; next
  }
  inDiag && /^ *---$/ { next }
  inDiag && /^ *\.\.\.$/ { inDiag = 0; next }
  # where a failure happened is in the test file; what happened (found, wanted, error) is shown
  inDiag && /^ +/ {
    indent = match($0, /[^ ]/)
    if (skipping && indent > skipIndent) next
    skipping = 0
    if (match($0, /^ +[A-Za-z]+:/)) {
      key = $0; sub(/^ +/, "", key); sub(/:.*/, "", key)
      if (key ~ /^(at|fileName|lineNumber|columnNumber|typeName|isToplevel|stack|source|methodName|functionName)$/) { skipping = 1; skipIndent = indent; next }
    }
    if (shown < 12) { print "    " $0; shown++ }
    next
  }
  { inDiag = 0 }
' "$log" | head -n 120)
rm -f "$log"
if [ -n "$failures" ]; then
  echo "# failed tests:"
  echo "$failures"
fi
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
skip=$(sed -nE 's/.*skip: ([0-9]+).*/\1/p' <<<"$summary")
pass=${pass:-0}
fail=${fail:-0}
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
if [ -n "$skip" ] && [ "$skip" -gt 0 ]; then
  echo "$pass passed, $fail failed, $skip skipped"
else
  echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
