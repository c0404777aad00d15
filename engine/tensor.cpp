// Shapes, views, Buffer and Tensor (engine/tensor.h).
#include "engine/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <utility>

#include "engine/device_memory.h"

namespace u2pl {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::CPU;
  if (s == "cuda") return Device::CUDA;
  U2PL_FAIL("unknown device '" << s << "': expected 'cpu' or 'cuda'");
}

Device default_device() {
  const CudaProbe p = cuda_probe();
  U2PL_CHECK(p.error.empty(), p.error << "; pass --device cpu to run on the CPU");
  return p.devices > 0 ? Device::CUDA : Device::CPU;
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  U2PL_CHECK(dims.size() <= 4, "shapes have at most 4 dimensions, got " << dims.size());
  for (int64_t v : dims) {
    U2PL_CHECK(v >= 0, "negative dimension " << v);
    d[ndim++] = v;
  }
}

int64_t Shape::numel() const {
  if (ndim == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= d[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (d[i] != o.d[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << d[i];
  os << ")";
  return os.str();
}

Buffer::Buffer(Device dev, size_t bytes) : bytes_(bytes), dev_(dev) {
  if (bytes == 0) return;
  if (dev == Device::CPU) {
    const size_t rounded = (bytes + 255) / 256 * 256;  // 256-byte aligned, as cudaMalloc is
    ptr_ = std::aligned_alloc(256, rounded);
    U2PL_CHECK(ptr_ != nullptr, "host allocation of " << bytes << " bytes failed");
  } else {
    ptr_ = cuda_malloc(bytes);
  }
}

Buffer::~Buffer() { release(); }

void Buffer::release() noexcept {
  if (!ptr_) return;
  if (dev_ == Device::CPU)
    std::free(ptr_);
  else
    cuda_free(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

Buffer::Buffer(Buffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), dev_(o.dev_) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    dev_ = o.dev_;
  }
  return *this;
}

void Buffer::zero() {
  if (ptr_) zero_bytes(ptr_, dev_, bytes_);
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev == Device::CPU && src_dev == Device::CPU)
    std::memcpy(dst, src, bytes);
  else if (dst_dev == Device::CUDA && src_dev == Device::CPU)
    cuda_memcpy(dst, src, bytes, CopyKind::HostToDevice);
  else if (dst_dev == Device::CPU && src_dev == Device::CUDA)
    cuda_memcpy(dst, src, bytes, CopyKind::DeviceToHost);
  else
    cuda_memcpy(dst, src, bytes, CopyKind::DeviceToDevice);
}

void zero_bytes(void* p, Device dev, size_t bytes) {
  if (bytes == 0) return;
  if (dev == Device::CPU)
    std::memset(p, 0, bytes);
  else
    cuda_memset_zero(p, bytes);
}

}  // namespace u2pl
