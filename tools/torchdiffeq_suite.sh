#!/usr/bin/env bash
# Run torchdiffeq's own unittest suite (tests/ of a local mirror of rtqichen/torchdiffeq; nothing
# is downloaded) against contdepth through the shim in tools/torchdiffeq_shim, and print pass/fail
# counts per test and in total. Every subTest counts once; a test without subtests counts once.
#
#   tools/torchdiffeq_suite.sh                      # the whole suite against contdepth
#   tools/torchdiffeq_suite.sh --reference          # the same tests against the installed torchdiffeq
#   tools/torchdiffeq_suite.sh odeint_tests.TestGridConstructor norm_tests   # some tests only
#
# TORCHDIFFEQ_MIRROR: the git directory of the mirror (default /work/.mirror/rtqichen+torchdiffeq/repo).
# TORCHDIFFEQ_REV: the revision whose tests/ are run (default HEAD).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mirror="${TORCHDIFFEQ_MIRROR:-/work/.mirror/rtqichen+torchdiffeq/repo}"
rev="${TORCHDIFFEQ_REV:-HEAD}"
shim="$here/torchdiffeq_shim"
root="$(dirname "$here")"
if [[ "${1:-}" == "--reference" ]]; then
  shim=""
  shift
fi
if ! git -C "$mirror" rev-parse --verify -q "$rev^{commit}" >/dev/null; then
  echo "no torchdiffeq mirror at $mirror (set TORCHDIFFEQ_MIRROR to a git directory of rtqichen/torchdiffeq)" >&2
  exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/tests"
git -C "$mirror" archive "$rev:tests" | tar -x -C "$work/tests"
target="the installed torchdiffeq"
[[ -n "$shim" ]] && target="contdepth at $root (through the shim)"
echo "torchdiffeq tests at $(git -C "$mirror" rev-parse "$rev"), against $target"
cd "$work/tests"
PYTHONPATH="${shim:+$shim:$root:}$work/tests${PYTHONPATH:+:$PYTHONPATH}" python - "$@" <<'PY'
import collections
import sys
import unittest
import warnings

import torchdiffeq

print("torchdiffeq from", torchdiffeq.__file__)
names = sys.argv[1:] or ["api_tests", "event_tests", "gradient_tests", "norm_tests", "odeint_tests"]
counts = collections.defaultdict(lambda: [0, 0])  # test id -> [passed, failed]
with_subtests = set()
first_error = {}


class Counting(unittest.TestResult):
    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        with_subtests.add(test.id())
        counts[test.id()][err is not None] += 1
        if err is not None and test.id() not in first_error:
            first_error[test.id()] = f"{subtest._subDescription()}: {err[0].__name__}: {str(err[1])[:300]}"

    def addSuccess(self, test):
        if test.id() not in with_subtests:
            counts[test.id()][0] += 1

    def _fail(self, test, err):
        counts[test.id()][1] += 1
        first_error.setdefault(test.id(), f"{err[0].__name__}: {str(err[1])[:300]}")

    addError = addFailure = _fail

    def stopTest(self, test):
        super().stopTest(test)
        p, f = counts[test.id()]
        print(f"{test.id()}: {p} passed, {f} failed" + (f"  (first: {first_error[test.id()]})"
                                                        if test.id() in first_error else ""), flush=True)


suite = unittest.defaultTestLoader.loadTestsFromNames(names)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    suite.run(Counting())
passed, failed = sum(p for p, _ in counts.values()), sum(f for _, f in counts.values())
print(f"TOTAL: {passed} passed, {failed} failed (subtests)")
PY
