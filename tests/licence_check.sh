#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every source file of the project carries an SPDX licence identifier (the licence is in
# LICENSE), so that a file copied on its own still says under which terms. Lists the files
# that lack it and fails.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[ -f LICENSE ] || { echo "licence: LICENSE is missing" >&2; exit 1; }
if [ -d .git ] && command -v git >/dev/null 2>&1; then
  list() { git ls-files; }
else
  list() { find . -path ./build -prune -o -path '*/node_modules' -prune -o -type f -print | sed 's#^\./##'; }
fi
missing=0
while IFS= read -r f; do
  case "$f" in
    fuzz/corpus/*|docs/*) continue ;;
    *.c|*.h|*.css|*.js|*.mjs|*.sh|*.html|*.cmake|*.lua|*.pc.in|*CMakeLists.txt|*Makefile|.ci/run) ;;
    *) continue ;;
  esac
  [ -f "$f" ] || continue # deleted in the work tree, not yet in a commit
  if ! head -n 3 "$f" | grep -q 'SPDX-License-Identifier: MIT'; then
    echo "licence: $f has no SPDX-License-Identifier line" >&2
    missing=$((missing + 1))
  fi
done < <(list)
if [ "$missing" -ne 0 ]; then
  echo "licence: $missing file(s) without an SPDX identifier" >&2
  exit 1
fi
echo "licence: every source file carries SPDX-License-Identifier: MIT"
