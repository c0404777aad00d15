// Shapes, non-owning float32 tensor views (NCHW) and the RAII buffer that owns device or host
// memory. Views never own; Buffer is move-only. Covered by tests/test_engine.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/check.h"

namespace u2pl {

enum class Device { CPU, CUDA };
const char* device_name(Device d);
Device parse_device(const std::string& s);  // "cpu" | "cuda"; anything else throws

// Up to four dimensions; 4-D shapes are NCHW.
struct Shape {
  int ndim = 0;
  int64_t d[4] = {0, 0, 0, 0};

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  static Shape nchw(int64_t n, int64_t c, int64_t h, int64_t w) { return Shape{n, c, h, w}; }

  int64_t operator[](int i) const { return d[i]; }
  int64_t numel() const;
  int64_t n() const { return d[0]; }
  int64_t c() const { return d[1]; }
  int64_t h() const { return d[2]; }
  int64_t w() const { return d[3]; }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "(2, 3, 5, 5)"
};

// A non-owning view of typed memory on one device: float32 tensors, int32 labels, uint8 masks.
template <class T>
struct View {
  T* data = nullptr;
  Shape shape;
  Device device = Device::CPU;

  View() = default;
  View(T* p, Shape s, Device dev) : data(p), shape(s), device(dev) {}
  bool defined() const { return data != nullptr; }
  int64_t numel() const { return shape.numel(); }
  // Entries [n0, n0 + count) along the leading dimension.
  View batch_slice(int64_t n0, int64_t count) const {
    U2PL_CHECK(shape.ndim >= 1 && n0 >= 0 && count >= 0 && n0 + count <= shape[0],
               "batch slice [" << n0 << ", " << n0 + count << ") out of range for " << shape.str());
    Shape s = shape;
    s.d[0] = count;
    const int64_t per = shape[0] ? shape.numel() / shape[0] : 0;
    return View(data + n0 * per, s, device);
  }
  View reshaped(Shape s) const {
    U2PL_CHECK(s.numel() == numel(), "cannot reshape " << shape.str() << " to " << s.str());
    return View(data, s, device);
  }
};
using TensorView = View<float>;
using LabelView = View<int32_t>;

// Whether two defined views share memory (ops that may not run in place check it).
template <class T>
bool overlaps(const View<T>& a, const View<T>& b) {
  return a.defined() && b.defined() && a.device == b.device && a.data < b.data + b.numel() &&
         b.data < a.data + a.numel();
}
using MaskView = View<uint8_t>;

// Owning, move-only memory on the CPU (256-byte aligned) or a CUDA device.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Device dev, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return ptr_; }
  float* floats() const { return static_cast<float*>(ptr_); }
  size_t bytes() const { return bytes_; }
  Device device() const { return dev_; }
  void zero();  // synchronous memset

 private:
  void release() noexcept;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device dev_ = Device::CPU;
};

// Synchronous copy of `bytes` between any two devices.
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
void zero_bytes(void* p, Device dev, size_t bytes);

// Copies between views of equal numel on any devices (synchronous).
template <class T>
void copy_tensor(View<T> dst, View<T> src) {
  U2PL_CHECK(dst.numel() == src.numel(),
             "copy between " << src.shape.str() << " and " << dst.shape.str());
  copy_bytes(dst.data, dst.device, src.data, src.device, static_cast<size_t>(src.numel()) * sizeof(T));
}
template <class T>
std::vector<T> to_host(View<T> v) {
  std::vector<T> out(static_cast<size_t>(v.numel()));
  copy_bytes(out.data(), Device::CPU, v.data, v.device, out.size() * sizeof(T));
  return out;
}
template <class T>
void fill_zero(View<T> v) {
  zero_bytes(v.data, v.device, static_cast<size_t>(v.numel()) * sizeof(T));
}

// A tensor that owns its memory: a Buffer plus the view over it (tests, apps, fixtures).
template <class T>
class Owned {
 public:
  Owned() = default;
  Owned(Shape s, Device dev) : buf_(dev, static_cast<size_t>(s.numel()) * sizeof(T)) {
    buf_.zero();  // zero-initialised
    view_ = View<T>(static_cast<T*>(buf_.data()), s, dev);
  }
  static Owned from_host(Shape s, const std::vector<T>& values, Device dev) {
    U2PL_CHECK(static_cast<int64_t>(values.size()) == s.numel(),
               "from_host: " << values.size() << " values for shape " << s.str());
    Owned t(s, dev);
    copy_bytes(t.view_.data, dev, values.data(), Device::CPU, values.size() * sizeof(T));
    return t;
  }

  View<T> view() const { return view_; }
  operator View<T>() const { return view_; }
  const Shape& shape() const { return view_.shape; }
  T* data() const { return view_.data; }
  Device device() const { return view_.device; }
  int64_t numel() const { return view_.numel(); }
  std::vector<T> to_host() const { return u2pl::to_host(view_); }

 private:
  Buffer buf_;
  View<T> view_;
};
using Tensor = Owned<float>;
using Labels = Owned<int32_t>;
using Mask = Owned<uint8_t>;

// Shape/device guards used at every public layer entry.
template <class T>
void check_shape(const View<T>& t, const Shape& expected, const char* what) {
  U2PL_CHECK(t.shape == expected,
             what << ": expected shape " << expected.str() << ", got " << t.shape.str());
}
template <class T>
void check_device(const View<T>& t, Device expected, const char* what) {
  U2PL_CHECK(t.device == expected, what << ": expected a " << device_name(expected)
                                        << " tensor, got a " << device_name(t.device) << " one");
}

}  // namespace u2pl
