"""The build: SIMD levels are isolated from each other.

The AVX2 kernels are compiled into the same module as the baseline ones.
Code that the linker may merge between the two objects (inline functions
and template instances from headers) must never carry AVX2 instructions,
or a CPU without AVX2 would run them through the generic path. Every
function in the AVX2 objects that uses ymm registers must therefore live in
the avx2 namespace.
"""
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _avx2_objects():
    return sorted(ROOT.glob("build/*/CMakeFiles/fr_simd_avx2.dir/**/*.o"))


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not available")
def test_ymm_code_of_the_avx2_objects_lives_in_the_avx2_namespace():
    objects = _avx2_objects()
    if not objects:
        pytest.skip("no AVX2 build objects under build/ (not an x86-64 build from this checkout)")
    offenders = set()
    uses_ymm = set()
    for obj in objects:
        listing = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", str(obj)],
                                 capture_output=True, text=True, check=True).stdout
        function = None
        for line in listing.splitlines():
            header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
            if header:
                function = header.group(1)
            elif function and "%ymm" in line:
                uses_ymm.add(function)
                if "fedrobust::cpu::avx2::" not in function:
                    offenders.add(function)
    assert uses_ymm, "the AVX2 objects contain no AVX code at all"
    assert not offenders, f"AVX2 code outside the avx2 namespace: {sorted(offenders)[:5]}"
