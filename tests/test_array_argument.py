"""The one array argument type of both native modules (csrc/bindings/array.h): what it reads
from the buffer protocol, DLPack and __cuda_array_interface__ (pointer, shape, strides in
elements, dtype, memory, stream), the errors it gives, and the checks on outputs. A host
buffer posing as CUDA memory stands in for a device array, so no GPU is needed."""
import numpy as np
import pytest

from fedrobust import _emulation
from fedrobust._native import cpu, cuda


def describe(obj):
    return _emulation.describe_array(obj)


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


class CudaInterface:
    """An object offering only __cuda_array_interface__ (over host memory: never dereferenced here)."""

    def __init__(self, a: np.ndarray, version=2, strides=True, stream=None, mask=None):
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": a.dtype.str, "data": (address(a), not a.flags.writeable),
            "strides": a.strides if strides else None, "version": version}
        if version >= 3:
            self.__cuda_array_interface__["stream"] = stream
        if mask is not None:
            self.__cuda_array_interface__["mask"] = mask


@pytest.mark.parametrize("dtype, name", [(np.float32, "float32"), (np.float64, "float64"), (np.int8, "int8"),
                                         (np.int64, "int64"), (np.bool_, "bool"), (np.float16, "float16"),
                                         (np.uint16, "uint16"), (np.int32, "int32")])
def test_the_buffer_protocol_gives_pointer_shape_element_strides_and_dtype(dtype, name):
    base = np.zeros((6, 10), dtype=dtype)
    for view in (base, base.T, base[::2, 1::3], base[::-1], base[:, ::-1], base[3:, 2]):
        got = describe(view)
        assert got["memory"] == "host" and got["stream"] == 0
        assert got["data"] == address(view)
        assert got["shape"] == view.shape
        assert got["strides"] == tuple(s // view.itemsize for s in view.strides)
        assert got["dtype"] == name and got["itemsize"] == view.itemsize
        assert got["known_dtype"] == (name in ("float32", "float64", "int8", "int64", "bool"))
        assert got["c_contiguous"] == view.flags.c_contiguous
        assert got["readonly"] is False


def test_readonly_buffers_and_memoryviews_are_read():
    a = np.arange(12.0).reshape(3, 4)
    a.flags.writeable = False
    assert describe(a)["readonly"] is True
    m = memoryview(np.arange(6, dtype=np.float32).reshape(2, 3))
    got = describe(m)
    assert got["shape"] == (2, 3) and got["strides"] == (3, 1) and got["dtype"] == "float32"


def test_a_foreign_byte_order_is_refused():
    with pytest.raises(TypeError, match="U: expected values in the machine's byte order"):
        describe(np.zeros((2, 2), dtype=">f4"))


def test_dlpack_reads_cpu_torch_tensors_without_a_copy():
    torch = pytest.importorskip("torch")
    t = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    for view in (t, t.T, t[1::2, 3:], t[:, 7]):
        got = describe(view)
        assert got["memory"] == "host" and got["data"] == view.data_ptr()
        assert got["shape"] == tuple(view.shape) and got["strides"] == tuple(view.stride())
        assert got["dtype"] == "float32"
    assert describe(torch.zeros(3, dtype=torch.int64))["dtype"] == "int64"
    assert describe(torch.zeros(3, dtype=torch.bool))["dtype"] == "bool"


def test_the_cpu_kernels_read_cpu_torch_tensors_and_write_into_them():
    torch = pytest.importorskip("torch")
    U = torch.randn(9, 33, dtype=torch.float64)
    out = torch.empty(33, dtype=torch.float64)
    cpu.median(U.T.contiguous().T, None, out)  # a column-major view, through DLPack
    np.testing.assert_array_equal(out.numpy(), np.median(U.numpy(), axis=0))


@pytest.mark.parametrize("strides", [True, False])
def test_cuda_array_interface_gives_cuda_memory_and_its_stream(strides):
    a = np.zeros((4, 5), dtype=np.float32)
    got = describe(CudaInterface(a, strides=strides))
    assert got["memory"] == "cuda" and got["data"] == address(a)
    assert got["shape"] == (4, 5) and got["strides"] == (5, 1) and got["dtype"] == "float32"
    assert got["stream"] == 0  # version 2: no stream, the legacy default
    assert describe(CudaInterface(a, version=3, stream=7))["stream"] == 7
    assert describe(CudaInterface(a, version=3, stream=None))["stream"] == 0
    t = a.T
    assert describe(CudaInterface(t))["strides"] == (1, 5)


def test_masked_cuda_arrays_are_refused():
    with pytest.raises(TypeError, match="masked"):
        describe(CudaInterface(np.zeros((2, 2)), mask=object()))


def test_an_object_without_an_array_protocol_is_refused_by_name():
    with pytest.raises(TypeError, match=r"U: expected an array \(the buffer protocol, __cuda_array_interface__ or "
                                        r"DLPack.*got list"):
        describe([[1.0, 2.0]])


def test_each_module_refuses_the_other_memory():
    a = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="U: expected an array in host memory .* got CUDA memory"):
        cpu.median(CudaInterface(a), None, np.empty(4, np.float32))
    if cuda is not None and cuda.device_count() > 0:
        with pytest.raises(TypeError, match="U: expected an array in CUDA memory"):
            cuda.median(a, None, np.empty(4, np.float32))


@pytest.mark.parametrize("out, error, match", [
    (np.empty(5, np.float64), TypeError, "out: expected dtype float32, got float64"),
    (np.empty(4, np.float32), ValueError, r"out: expected shape \(5,\), got \(4,\)"),
    (np.empty((1, 5), np.float32), ValueError, r"out: expected shape \(5,\), got \(1, 5\)"),
    (np.empty(10, np.float32)[::2], ValueError, "out: expected a C-contiguous array"),
    ("readonly", ValueError, "out: expected a writable array"),
])
def test_outputs_are_checked(out, error, match):
    U = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    if isinstance(out, str):
        out = np.empty(5, np.float32)
        out.flags.writeable = False
    with pytest.raises(error, match=match):
        cpu.median(U, None, out)


def test_the_matrix_checks_name_what_was_expected():
    with pytest.raises(TypeError, match="U: expected float32 or float64 values, got dtype int32"):
        cpu.median(np.zeros((3, 3), np.int32), None, np.empty(3, np.float32))
    with pytest.raises(ValueError, match=r"U: expected a 2-D array .* got shape \(3,\)"):
        cpu.median(np.zeros(3), None, np.empty(3))
    with pytest.raises(ValueError, match=r"U: expected at least one row and one column, got shape \(0, 3\)"):
        cpu.median(np.zeros((0, 3)), None, np.empty(3))
