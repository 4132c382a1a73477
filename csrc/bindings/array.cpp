#include "array.h"

#include <cstring>
#include <stdexcept>

namespace fedrobust::bindings {

namespace {

// The DLPack structures this reader needs (DLPack 0.x, the "dltensor" capsule).
struct DLDevice {
  int32_t device_type;
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // 0 int, 1 uint, 2 float, 6 bool
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null = C-contiguous
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};
constexpr int32_t kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13;

[[noreturn]] void type_error(const std::string& text) { throw py::type_error(text); }

// The element type from a kind ('f' float, 'i' signed, 'u' unsigned, 'b' bool) and a size.
void set_dtype(Array& a, char kind, int64_t size) {
  a.itemsize = size;
  const std::string bits = std::to_string(8 * size);
  if (kind == 'f') {
    a.dtype = size == 4 ? DType::kFloat32 : size == 8 ? DType::kFloat64 : DType::kOther;
    a.dtype_name = "float" + bits;
  } else if (kind == 'i') {
    a.dtype = size == 1 ? DType::kInt8 : size == 8 ? DType::kInt64 : DType::kOther;
    a.dtype_name = "int" + bits;
  } else if (kind == 'u') {
    a.dtype = DType::kOther;
    a.dtype_name = "uint" + bits;
  } else if (kind == 'b') {
    a.dtype = size == 1 ? DType::kBool : DType::kOther;
    a.dtype_name = "bool";
  } else {
    a.dtype = DType::kOther;
    a.dtype_name = std::string("'") + kind + "' of " + std::to_string(size) + " bytes";
  }
}

bool little_endian() {
  const uint16_t one = 1;
  uint8_t first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// Strides in bytes -> in elements (they must be multiples of the item size).
void set_strides(Array& a, const std::vector<int64_t>& byte_strides) {
  a.strides.clear();
  for (int64_t s : byte_strides) {
    if (a.itemsize == 0 || s % a.itemsize != 0)
      type_error(a.name + ": strides must be multiples of the item size, got " + std::to_string(s) + " bytes for " +
                 std::to_string(a.itemsize) + "-byte items");
    a.strides.push_back(s / a.itemsize);
  }
}

void set_contiguous_strides(Array& a) {
  a.strides.assign(a.shape.size(), 1);
  for (int64_t k = a.ndim() - 2; k >= 0; --k) a.strides[k] = a.strides[k + 1] * a.shape[k + 1];
}

// --- the buffer protocol -------------------------------------------------------
Array from_buffer(const py::handle& obj, Array a) {
  auto* view = new Py_buffer;
  if (PyObject_GetBuffer(obj.ptr(), view, PyBUF_RECORDS_RO) != 0) {
    delete view;
    throw py::error_already_set();
  }
  a.keep_alive = std::shared_ptr<void>(view, [](void* p) {
    PyBuffer_Release(static_cast<Py_buffer*>(p));
    delete static_cast<Py_buffer*>(p);
  });
  a.data = view->buf;
  a.readonly = view->readonly != 0;
  a.memory = Memory::kHost;
  const char* f = view->format ? view->format : "B";
  if (*f == '@' || *f == '=' || (*f == '<' && little_endian()) || (*f == '>' && !little_endian())) {
    ++f;
  } else if (*f == '<' || *f == '>' || *f == '!') {
    type_error(a.name + ": expected values in the machine's byte order, got buffer format '" +
               std::string(view->format) + "'");
  }
  const std::string code(f);
  char kind = '?';
  if (code.size() == 1) {
    const char c = code[0];
    if (std::strchr("efdg", c)) kind = 'f';
    else if (std::strchr("bhilqn", c)) kind = 'i';
    else if (std::strchr("BHILQN", c)) kind = 'u';
    else if (c == '?') kind = 'b';
  }
  if (kind == '?') type_error(a.name + ": cannot read buffer format '" + std::string(view->format) + "'");
  set_dtype(a, kind, view->itemsize);
  for (int k = 0; k < view->ndim; ++k) a.shape.push_back(view->shape[k]);
  std::vector<int64_t> byte_strides;
  for (int k = 0; k < view->ndim; ++k) byte_strides.push_back(view->strides[k]);
  set_strides(a, byte_strides);
  return a;
}

// --- __cuda_array_interface__ ----------------------------------------------------
Array from_cuda_array_interface(const py::dict& cai, Array a) {
  a.memory = Memory::kCuda;
  const std::string typestr = py::str(cai["typestr"]);
  if (typestr.size() < 3) type_error(a.name + ": cannot read typestr '" + typestr + "'");
  if (typestr[0] == (little_endian() ? '>' : '<'))
    type_error(a.name + ": expected values in the machine's byte order, got typestr '" + typestr + "'");
  set_dtype(a, typestr[1], std::stoll(typestr.substr(2)));
  const py::tuple data = cai["data"];
  a.data = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  a.readonly = data[1].cast<bool>();
  for (const auto& n : py::tuple(cai["shape"])) a.shape.push_back(n.cast<int64_t>());
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    std::vector<int64_t> byte_strides;
    for (const auto& s : py::tuple(cai["strides"])) byte_strides.push_back(s.cast<int64_t>());
    set_strides(a, byte_strides);
  } else {
    set_contiguous_strides(a);
  }
  if (cai.contains("mask") && !cai["mask"].is_none()) type_error(a.name + ": masked CUDA arrays are not supported");
  if (cai.contains("stream") && !cai["stream"].is_none()) a.stream = cai["stream"].cast<uintptr_t>();
  return a;
}

// --- DLPack --------------------------------------------------------------------
Array from_dlpack(const py::handle& obj, Array a) {
  const py::tuple device = obj.attr("__dlpack_device__")();
  const int32_t kind = device[0].cast<int32_t>();
  const bool cuda = kind == kDLCUDA || kind == kDLCUDAManaged;
  if (!cuda && kind != kDLCPU && kind != kDLCUDAHost)
    type_error(a.name + ": got a DLPack array on device type " + std::to_string(kind) +
               "; expected host memory (1, 3) or CUDA memory (2, 13)");
  // CUDA: the producer makes its data ready on the legacy default stream (1), where the kernels run.
  py::object capsule = cuda ? obj.attr("__dlpack__")(py::arg("stream") = 1) : obj.attr("__dlpack__")();
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  if (!managed) throw py::error_already_set();
  // Borrowed, not consumed: the capsule's own destructor frees the tensor when the Array goes.
  a.keep_alive = std::shared_ptr<void>(new py::object(capsule), [](void* p) { delete static_cast<py::object*>(p); });
  const DLTensor& t = managed->dl_tensor;
  if (t.dtype.lanes != 1) type_error(a.name + ": vector DLPack element types are not supported");
  const char kinds[] = {'i', 'u', 'f', '?', '?', '?', 'b'};
  set_dtype(a, t.dtype.code < 7 ? kinds[t.dtype.code] : '?', t.dtype.bits / 8);
  a.data = static_cast<char*>(t.data) + t.byte_offset;
  a.memory = cuda ? Memory::kCuda : Memory::kHost;
  a.stream = cuda ? 1 : 0;
  a.shape.assign(t.shape, t.shape + t.ndim);
  if (t.strides) a.strides.assign(t.strides, t.strides + t.ndim);
  else set_contiguous_strides(a);
  return a;
}

}  // namespace

int64_t Array::size() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

bool Array::c_contiguous() const {
  int64_t expected = 1;
  for (int64_t k = ndim() - 1; k >= 0; --k) {
    if (shape[k] != 1 && strides[k] != expected) return false;
    expected *= shape[k];
  }
  return true;
}

std::string Array::shape_text() const {
  std::string text = "(";
  for (int64_t k = 0; k < ndim(); ++k) text += (k ? ", " : "") + std::to_string(shape[k]);
  return text + (ndim() == 1 ? ",)" : ")");
}

Array array_of(const py::handle& obj, const char* name) {
  Array a;
  a.name = name;
  if (PyObject_CheckBuffer(obj.ptr())) return from_buffer(obj, std::move(a));
  if (py::hasattr(obj, "__cuda_array_interface__"))
    return from_cuda_array_interface(obj.attr("__cuda_array_interface__"), std::move(a));
  if (py::hasattr(obj, "__dlpack__") && py::hasattr(obj, "__dlpack_device__")) return from_dlpack(obj, std::move(a));
  type_error(a.name + ": expected an array (the buffer protocol, __cuda_array_interface__ or DLPack: numpy, torch, "
             "cupy, ...), got " + std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
}

std::unique_ptr<Array> optional_array_of(const py::handle& obj, const char* name) {
  if (obj.is_none()) return nullptr;
  return std::make_unique<Array>(array_of(obj, name));
}

const char* dtype_text(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt8: return "int8";
    case DType::kInt64: return "int64";
    case DType::kBool: return "bool";
    default: return "other";
  }
}

void require_memory(const Array& a, Memory where) {
  if (a.memory == where) return;
  if (where == Memory::kHost)
    throw py::type_error(a.name + ": expected an array in host memory (numpy, a CPU torch tensor), got CUDA memory");
  throw py::type_error(a.name + ": expected an array in CUDA memory (a torch CUDA tensor, a cupy array), got host "
                       "memory");
}

void check_float_matrix(const Array& a) {
  if (a.dtype != DType::kFloat32 && a.dtype != DType::kFloat64)
    throw py::type_error(a.name + ": expected float32 or float64 values, got dtype " + a.dtype_name);
  if (a.ndim() != 2)
    throw py::value_error(a.name + ": expected a 2-D array of shape (m workers, d parameters), got shape " +
                          a.shape_text());
  if (a.shape[0] < 1 || a.shape[1] < 1)
    throw py::value_error(a.name + ": expected at least one row and one column, got shape " + a.shape_text());
}

void check_dense(const Array& a, const std::vector<int64_t>& shape, DType dtype, bool writable) {
  if (a.dtype != dtype)
    throw py::type_error(a.name + ": expected dtype " + dtype_text(dtype) + ", got " + a.dtype_name);
  if (a.shape != shape) {
    Array want;
    want.shape = shape;
    throw py::value_error(a.name + ": expected shape " + want.shape_text() + ", got " + a.shape_text());
  }
  if (!a.c_contiguous()) throw py::value_error(a.name + ": expected a C-contiguous array");
  if (writable && a.readonly) throw py::value_error(a.name + ": expected a writable array");
}

void check_direction(const Array& s, int64_t cols) {
  if (s.ndim() != 1 || s.shape[0] != cols)
    throw py::value_error(s.name + ": expected " + std::to_string(cols) + " signs (one per column of U), got shape " +
                          s.shape_text());
  check_dense(s, {cols}, DType::kInt8, false);
}

}  // namespace fedrobust::bindings
