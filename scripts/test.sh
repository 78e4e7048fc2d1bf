#!/usr/bin/env bash
# The whole podroutes test suite: lint, types, layering contracts, and every test tier
# (pure unit tests, and, as root, namespace and lab end-to-end tests with real sshd).
source "$(dirname "$0")/setup.sh"
export PODROUTES_REQUIRE_ROOT=1  # root tests fail rather than skip
say "ruff";          ruff check src tests
say "mypy";          mypy
say "import-linter"; lint-imports
say "pytest"
set +e
pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi
leftover="$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^prt[0-9a-f]{6}-' || true)"
if [ -n "$leftover" ]; then
  echo "tests left network namespaces behind:" >&2; echo "$leftover" >&2; exit 1
fi
exit "$rc"
