"""The aggregation rules' checks that both native modules export (csrc/bindings/checks.h):
check_krum, check_multi_krum, check_trimmed_mean and check_bulyan accept the boundary values,
refuse one past them with the message the kernels give, and are the very checks the kernels
run. fedrobust._cuda exports the same functions, which need no GPU."""
import re

import numpy as np
import pytest

from fedrobust._native import cpu, cuda

CHECKS = ["check_krum", "check_multi_krum", "check_trimmed_mean", "check_bulyan"]
MODULES = [cpu] + ([cuda] if cuda is not None else [])
MODULE_IDS = ["cpu"] + (["cuda"] if cuda is not None else [])


def message(function, *args):
    """The message of the ValueError that function(*args) raises."""
    with pytest.raises(ValueError) as info:
        function(*args)
    return str(info.value)


def krum_message(m, c):
    return f"Krum needs m > 2c + 2 workers: got m = {m}, c = {c} (at most c = {(m - 3) // 2} for this m)"


def trimmed_mean_message(m, beta):
    return f"trimmed mean needs 2*beta < m: got beta = {beta}, m = {m} (at most beta = {(m - 1) // 2} for this m)"


def bulyan_message(m, c):
    return f"Bulyan needs m >= 4c + 3 workers: got m = {m}, c = {c}"


@pytest.fixture(params=MODULES, ids=MODULE_IDS)
def module(request):
    return request.param


# ---------------------------------------------------------------------------
# The exported checks: boundary values in, one past them out, with the message.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("c", [0, 1, 2, 7, 40])
def test_krum_takes_m_equal_to_2c_plus_3_and_refuses_2c_plus_2(module, c):
    assert module.check_krum(2 * c + 3, c) is None
    assert module.check_krum(2 * c + 30, c) is None
    assert message(module.check_krum, 2 * c + 2, c) == krum_message(2 * c + 2, c)


@pytest.mark.parametrize("m", [0, 1, 2])
def test_krum_refuses_fewer_than_3_workers_with_no_valid_c_in_the_hint(module, m):
    assert message(module.check_krum, m, 0) == krum_message(m, 0)
    assert "(at most c = -" in krum_message(m, 0)


@pytest.mark.parametrize("m", [1, 2, 3, 8, 9, 100])
def test_trimmed_mean_takes_2beta_below_m_and_refuses_2beta_equal_to_m_or_more(module, m):
    largest = (m - 1) // 2
    assert module.check_trimmed_mean(m, 0) is None
    assert module.check_trimmed_mean(m, largest) is None
    assert message(module.check_trimmed_mean, m, largest + 1) == trimmed_mean_message(m, largest + 1)


def test_trimmed_mean_of_no_workers_is_refused(module):
    assert message(module.check_trimmed_mean, 0, 0) == trimmed_mean_message(0, 0)


@pytest.mark.parametrize("c", [0, 1, 2, 7, 30])
def test_bulyan_takes_m_equal_to_4c_plus_3_and_refuses_4c_plus_2(module, c):
    assert module.check_bulyan(4 * c + 3, c) is None
    assert message(module.check_bulyan, 4 * c + 2, c) == bulyan_message(4 * c + 2, c)


@pytest.mark.parametrize("m, c", [(3, 0), (9, 1), (9, 3), (40, 10)])
def test_multi_krum_takes_1_to_m_minus_c_and_refuses_0_and_m_minus_c_plus_1(module, m, c):
    assert module.check_multi_krum(m, c, 1) is None
    assert module.check_multi_krum(m, c, m - c) is None
    for multi in (0, m - c + 1, -1):
        assert message(module.check_multi_krum, m, c, multi) == (
            f"multi must be in [1, m - c] = [1, {m - c}], got {multi}")


def test_multi_krum_checks_krums_rule_first(module):
    assert message(module.check_multi_krum, 8, 3, 1) == krum_message(8, 3)


@pytest.mark.parametrize("name, args, text", [
    ("check_krum", (9, -1), "c must be >= 0, got -1"),
    ("check_multi_krum", (9, -1, 1), "c must be >= 0, got -1"),
    ("check_bulyan", (9, -2), "c must be >= 0, got -2"),
    ("check_trimmed_mean", (9, -1), "beta must be >= 0, got -1"),
])
def test_negative_counts_are_refused_naming_the_count(module, name, args, text):
    assert message(getattr(module, name), *args) == text


@pytest.mark.parametrize("name, args", [
    ("check_krum", (5, 2**62)), ("check_multi_krum", (5, 2**62, 1)), ("check_bulyan", (5, 2**61)),
    ("check_trimmed_mean", (5, 2**62)), ("check_krum", (2**62, 2**61)), ("check_trimmed_mean", (2**62, 2**61)),
])
def test_huge_counts_are_refused_not_overflowed(module, name, args):
    with pytest.raises(ValueError):
        getattr(module, name)(*args)


@pytest.mark.parametrize("name, params", [
    ("check_krum", ["m", "c"]), ("check_multi_krum", ["m", "c", "multi"]),
    ("check_trimmed_mean", ["m", "beta"]), ("check_bulyan", ["m", "c"]),
])
def test_the_checks_take_their_arguments_by_keyword(module, name, params):
    documented = re.match(rf"{name}\((.*?)\) -> None", getattr(module, name).__doc__).group(1)
    assert [arg.split(":")[0].strip() for arg in documented.split(",")] == params
    getattr(module, name)(**{p: v for p, v in zip(params, [100, 1, 1])})


# ---------------------------------------------------------------------------
# The kernels run these very checks: the same message for the same m, c / beta.
# ---------------------------------------------------------------------------
def assert_kernels_raise_the_checks_messages(module, U, out):
    """module's Krum, Multi-Krum, Bulyan and trimmed-mean bindings on U (m, 5) with output
    `out` (5,) raise the exported checks' messages wherever the rule does not hold."""
    m = U.shape[0]
    for c in (-1, 0, 1, 2, 3, 5):
        if c < 0 or m <= 2 * c + 2:
            expected = message(cpu.check_krum, m, c)
            assert message(module.krum_select, U, c, 1, True) == expected
            assert message(module.krum_select, U, c, 2, False) == message(cpu.check_multi_krum, m, c, 2)
        else:
            for multi in (0, m - c + 1):
                assert message(module.krum_select, U, c, multi, True) == message(cpu.check_multi_krum, m, c, multi)
        if c < 0 or m < 4 * c + 3:
            assert message(module.bulyan, U, c, True, out) == message(cpu.check_bulyan, m, c)
    for beta in (-1, (m - 1) // 2 + 1, m, 2**62):
        assert message(module.trimmed_mean, U, beta, None, out) == message(cpu.check_trimmed_mean, m, beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 6, 9, 11])
def test_the_cpu_kernels_raise_the_exported_checks_message(m, dtype):
    U = np.random.default_rng(m).standard_normal((m, 5)).astype(dtype)
    assert_kernels_raise_the_checks_messages(cpu, U, np.empty(5, dtype))


@pytest.mark.skipif(cuda is None, reason="the CUDA module is not built")
@pytest.mark.parametrize("name", CHECKS)
def test_the_cuda_module_exports_the_same_checks_with_the_same_messages(name):
    """No GPU needed: the checks never touch the device."""
    assert getattr(cuda, name).__doc__ == getattr(cpu, name).__doc__
    arity = {"check_multi_krum": 3}.get(name, 2)
    for args in [(9, -1, 1), (9, 4, 1), (9, 1, 0), (9, 1, 9), (2, 0, 1), (5, 2**62, 1), (8, 3, 1), (14, 3, 1)]:
        args = args[:arity]
        on_cpu, on_cuda = (getattr(module, name) for module in (cpu, cuda))
        try:
            on_cpu(*args)
        except ValueError as error:
            assert message(on_cuda, *args) == str(error)
        else:
            assert on_cuda(*args) is None


@pytest.mark.gpu
@pytest.mark.skipif(cuda is None or cuda.device_count() == 0, reason="no CUDA device")
@pytest.mark.parametrize("m", [1, 2, 4, 9, 11])
def test_the_cuda_kernels_raise_the_exported_checks_message(m):
    torch = pytest.importorskip("torch")
    from fedrobust import dispatch

    U = torch.randn(m, 5, device="cuda")
    out = torch.empty(5, device="cuda")
    assert_kernels_raise_the_checks_messages(_ArgsOnTheDevice(dispatch._TorchCuda), U, out)


class _ArgsOnTheDevice:
    """fedrobust._cuda with each torch tensor argument passed as the backend passes it."""

    def __init__(self, lib):
        self.lib = lib

    def __getattr__(self, name):
        import torch

        def call(*args):
            return getattr(cuda, name)(*(self.lib.arg(a) if isinstance(a, torch.Tensor) else a for a in args))

        return call
