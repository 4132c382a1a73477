"""The build: SIMD levels are isolated from each other.

The AVX2 and AVX-512 kernels are compiled into the same module as the baseline
ones. Code that the linker may merge between the objects (inline functions and
template instances from headers) must never carry AVX2 or AVX-512 instructions,
or a CPU without them would run them through a lower level's path. Every
function in the AVX2 objects that uses ymm registers must therefore live in
the avx2 namespace, and every one in the AVX-512 objects that uses zmm registers
in the avx512 namespace.
"""
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _objects(level):
    return sorted(ROOT.glob(f"build/*/CMakeFiles/fr_simd_{level}.dir/**/*.o"))


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not available")
@pytest.mark.parametrize("level,registers", [("avx2", ("%ymm",)), ("avx512", ("%zmm", "%ymm"))])
def test_vector_code_of_each_level_lives_in_its_namespace(level, registers):
    """AVX2 code (ymm registers) of the avx2 objects and AVX-512 or AVX2 code (zmm, ymm) of the
    avx512 objects only in functions of that level's namespace."""
    objects = _objects(level)
    if not objects:
        pytest.skip(f"no {level} build objects under build/ (not an x86-64 build from this checkout)")
    offenders = set()
    uses = set()
    for obj in objects:
        listing = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", str(obj)],
                                 capture_output=True, text=True, check=True).stdout
        function = None
        for line in listing.splitlines():
            header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
            if header:
                function = header.group(1)
            elif function and any(r in line for r in registers):
                uses.add(function)
                if f"fedrobust::cpu::{level}::" not in function:
                    offenders.add(function)
    assert uses, f"the {level} objects contain no {registers[0]} code at all"
    assert not offenders, f"{level} code outside the {level} namespace: {sorted(offenders)[:5]}"
