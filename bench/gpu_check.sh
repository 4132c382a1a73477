#!/usr/bin/env bash
# The whole GPU check in one command, on a machine with a CUDA device (no network needed):
#
#   OUT=/some/dir [FEDROBUST_TEST_DATA=dir-with-mnist/] bash bench/gpu_check.sh
#
# builds fedrobust with its CUDA module, prints what was built, runs the GPU tests
# (pytest -m gpu) and the GPU benchmark, and writes to $OUT (default ./gpu-check).
# The benchmark's end-to-end MNIST run reads $FEDROBUST_TEST_DATA/mnist, like the tests
# (default ../shared/data next to the repository root; on a machine without it, copy the IDX
# files to ./gpu-data/mnist, which git ignores, and set FEDROBUST_TEST_DATA=gpu-data); without
# it, it runs on synthetic MNIST-shaped data and says so.
#   gpu_check.log     everything printed
#   backend.json      fedrobust.backend_info()
#   gpu_tests.xml     the GPU tests' JUnit report
#   gpu_bench.json    the benchmark's numbers
# The exit status is that of the first step that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
status=0
step() {
  echo "== $*"
  "$@" || { rc=$?; echo "== failed ($rc): $*"; [ "$status" -ne 0 ] || status=$rc; }
}
{
  step env FEDROBUST_CUDA=ON pip install --no-build-isolation --no-deps .
  # (from $OUT: the repository root would put the source tree first on sys.path)
  step sh -c "cd '$OUT' && python -c \"import fedrobust, json; s = json.dumps(fedrobust.backend_info(), indent=2); open('backend.json', 'w').write(s); print(s)\""
  step pytest -m gpu tests -q -rs --junitxml "$OUT/gpu_tests.xml"
  # A GPU check passes only if GPU tests ran (they skip where no CUDA library sees a device).
  step python -c "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); s = r if r.tag == 'testsuite' else r[0]; ran = int(s.get('tests')) - int(s.get('skipped')); print(f'GPU tests run: {ran}, skipped: {s.get(\"skipped\")}'); sys.exit(0 if ran > 0 else 1)" "$OUT/gpu_tests.xml"
  step python bench/gpu_bench.py --json "$OUT/gpu_bench.json"
  echo "== exit status $status"
  exit "$status"
} 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
