// Rendering of one synthetic sample (data/synth.h): a textured background, 1-4 shaped and
// textured objects composited with 4x4 supersampling (mixed pixels become the 255 band), then
// Gaussian image noise. Every draw comes from the image's own Philox stream.
// Covered by tests/test_synth.cpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "data/synth.h"
#include "engine/check.h"
#include "engine/rng.h"

namespace u2pl {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kSub = 4;              // sub-samples per pixel side
constexpr double kHueStep = 36;      // degrees between neighbouring class hue means
constexpr double kHueJitter = 14;    // per-instance hue σ, degrees
constexpr double kHueSwap = 0.3;     // chance an instance takes a neighbouring class's hue
constexpr double kTextureSwap = 0.2;  // chance an instance takes a random texture

using Rgb = std::array<double, 3>;  // each channel in [0, 1]

// Uniform and normal draws over an Rng.
struct Draw {
  Rng& rng;
  double u(double a, double b) { return a + (b - a) * rng.uniform(); }
  int pick(int n) { return static_cast<int>(rng.below(static_cast<uint32_t>(n))); }  // [0, n)
  double normal() {
    const double u1 = rng.uniform(), u2 = rng.uniform();
    return std::sqrt(-2 * std::log(1 - u1)) * std::cos(2 * kPi * u2);
  }
};

Rgb hsv(double h_deg, double s, double v) {
  const double h = std::fmod(std::fmod(h_deg, 360) + 360, 360) / 60;
  const int k = static_cast<int>(h) % 6;
  const double f = h - std::floor(h), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  const Rgb table[6] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  return table[k];
}

Rgb mix(const Rgb& a, const Rgb& b, double t) {
  return {a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t};
}

double clamp01(double x) { return std::min(1.0, std::max(0.0, x)); }
double frac(double x) { return x - std::floor(x); }

Rgb background_colour(Draw& d) { return hsv(d.u(0, 360), d.u(0.05, 0.75), d.u(0.25, 0.95)); }

// Smooth value noise in [0, 1]: random values on a grid of `cell` px, smoothstep-interpolated.
struct ValueNoise {
  int n = 0;
  double cell = 1;
  std::vector<double> grid;  // (n, n)
  ValueNoise(Draw& d, int size, double cell_px) : n(static_cast<int>(size / cell_px) + 2), cell(cell_px) {
    grid.resize(size_t(n) * n);
    for (double& g : grid) g = d.rng.uniform();
  }
  double at(double x, double y) const {
    const double gx = x / cell, gy = y / cell;
    const int ix = static_cast<int>(gx), iy = static_cast<int>(gy);
    const double fx = gx - ix, fy = gy - iy;
    const double sx = fx * fx * (3 - 2 * fx), sy = fy * fy * (3 - 2 * fy);
    const double* r0 = &grid[size_t(iy) * n + ix];
    const double* r1 = r0 + n;
    return (r0[0] * (1 - sx) + r0[1] * sx) * (1 - sy) + (r1[0] * (1 - sx) + r1[1] * sx) * sy;
  }
};

// (size, size) background colours at pixel centres: a gradient, value noise, stripes or blobs.
std::vector<Rgb> draw_background(Draw& d, int size) {
  const double S = size;
  std::vector<Rgb> bg(size_t(size) * size);
  const Rgb a = background_colour(d), b = background_colour(d);
  const int kind = d.pick(4);
  const double angle = d.u(0, 2 * kPi), ca = std::cos(angle), sa = std::sin(angle);
  auto fill = [&](auto&& f) {
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) bg[size_t(y) * size + x] = f(x + 0.5, y + 0.5);
  };
  if (kind == 0) {  // linear gradient across the frame
    fill([&](double x, double y) {
      return mix(a, b, clamp01(0.5 + ((x - S / 2) * ca + (y - S / 2) * sa) / (S * 1.2)));
    });
  } else if (kind == 1) {  // two octaves of value noise, contrast-stretched
    const ValueNoise coarse(d, size, S * d.u(0.12, 0.35)), fine(d, size, S * d.u(0.05, 0.1));
    const double contrast = d.u(1, 2.5);
    fill([&](double x, double y) {
      const double t = (2 * coarse.at(x, y) + fine.at(x, y)) / 3;
      return mix(a, b, clamp01(0.5 + (t - 0.5) * contrast * 2));
    });
  } else if (kind == 2) {  // sinusoidal stripes, sharpened towards square waves
    const double period = S * d.u(0.06, 0.2), phase = d.u(0, 2 * kPi), sharp = d.u(1, 4);
    fill([&](double x, double y) {
      const double s = std::sin(2 * kPi * (x * ca + y * sa) / period + phase);
      return mix(a, b, clamp01(0.5 + 0.5 * s * sharp));
    });
  } else {  // soft Gaussian blobs over a flat colour
    fill([&](double, double) { return a; });
    const int blobs = 3 + d.pick(6);
    for (int k = 0; k < blobs; ++k) {
      const double cx = d.u(0, S), cy = d.u(0, S), rx = S * d.u(0.08, 0.25), ry = S * d.u(0.08, 0.25);
      const double t = d.u(0, kPi), ct = std::cos(t), st = std::sin(t), strength = d.u(0.5, 1);
      const Rgb c = background_colour(d);
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x) {
          const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
          const double u = (dx * ct + dy * st) / rx, v = (-dx * st + dy * ct) / ry;
          Rgb& p = bg[size_t(y) * size + x];
          p = mix(p, c, strength * std::exp(-0.5 * (u * u + v * v)));
        }
    }
  }
  return bg;
}

enum class Texture { Solid, Stripes, Checks, Dots, Gradient };

struct Object {
  int cls = 0;
  double cx = 0, cy = 0, r = 1, ct = 1, st = 0, aspect = 1;  // centre, radius (px), rotation, aspect
  double reach = 1;                                         // bounding radius, px
  Texture tex = Texture::Solid;
  double period = 4, ph0 = 0, ph1 = 0;  // texture period (px) and phases
  Rgb tone0{}, tone1{};                 // base and second texture tone
};

// Even-odd point-in-polygon over n (x, y) vertices.
bool in_polygon(const double (*p)[2], int n, double x, double y) {
  bool in = false;
  for (int i = 0, j = n - 1; i < n; j = i++)
    if ((p[i][1] > y) != (p[j][1] > y) &&
        x < (p[j][0] - p[i][0]) * (y - p[i][1]) / (p[j][1] - p[i][1]) + p[i][0])
      in = !in;
  return in;
}

struct Polygons {
  double triangle[3][2], star[10][2];
  Polygons() {
    for (int i = 0; i < 3; ++i) {  // equilateral, circumradius 1.2 (area ≈ disc's 0.6)
      const double t = kPi / 2 + 2 * kPi * i / 3;
      triangle[i][0] = 1.2 * std::cos(t), triangle[i][1] = 1.2 * std::sin(t);
    }
    for (int i = 0; i < 10; ++i) {  // five points, outer radius 1.15, inner 0.5
      const double t = kPi / 2 + kPi * i / 5, r = i % 2 ? 0.5 : 1.15;
      star[i][0] = r * std::cos(t), star[i][1] = r * std::sin(t);
    }
  }
};
constexpr double kEll[6][2] = {{-0.75, -0.9}, {0.85, -0.9}, {0.85, -0.35},
                               {-0.2, -0.35}, {-0.2, 0.95}, {-0.75, 0.95}};

// Class shapes in unit coordinates (the object's radius is 1).
bool inside_shape(int cls, double x, double y) {
  static const Polygons poly;
  const double rr = x * x + y * y;
  switch (cls) {
    case 1: return rr <= 1;                                        // disc
    case 2: return std::max(std::fabs(x), std::fabs(y)) <= 0.82;   // square
    case 3: return in_polygon(poly.triangle, 3, x, y);             // triangle
    case 4: return rr <= 1 && rr >= 0.55 * 0.55;                   // ring
    case 5: return (std::fabs(x) <= 0.3 && std::fabs(y) <= 1) ||   // cross
                   (std::fabs(y) <= 0.3 && std::fabs(x) <= 1);
    case 6: return in_polygon(poly.star, 10, x, y);                // star
    case 7: return rr <= 1 && (x - 0.5) * (x - 0.5) + y * y > 0.85 * 0.85;  // crescent
    default: return in_polygon(kEll, 6, x, y);                     // L
  }
}

double hue_mean(int cls, int objects) { return 10 + (cls - 1) * std::min(kHueStep, 360.0 / objects); }

Object make_object(Draw& d, int cls, int objects, int size) {
  Object o;
  o.cls = cls;
  o.r = size * 0.11 * std::exp(d.u(0, std::log(3.0)));  // log-uniform radius, 11-33% of the side
  o.cx = size * d.u(0.1, 0.9);
  o.cy = size * d.u(0.1, 0.9);
  const double angle = d.u(0, 2 * kPi);
  o.ct = std::cos(angle), o.st = std::sin(angle);
  o.aspect = std::exp(d.u(-0.2, 0.2));
  o.reach = 1.25 * o.r * std::max(o.aspect, 1 / o.aspect);
  o.tex = static_cast<Texture>(d.rng.uniform() < kTextureSwap ? d.pick(5) : (cls - 1) % 5);
  o.period = d.u(3.5, 7) * size / 96;
  o.ph0 = d.u(0, 1), o.ph1 = d.u(0, 1);
  int hue_cls = cls;
  if (objects > 1 && d.rng.uniform() < kHueSwap)
    hue_cls = cls == 1 ? 2 : cls == objects ? cls - 1 : cls + (d.pick(2) ? 1 : -1);
  const double h = hue_mean(hue_cls, objects) + kHueJitter * d.normal();
  const double s = d.u(0.45, 0.95), v = d.u(0.5, 0.95);
  o.tone0 = hsv(h, s, v);
  o.tone1 = hsv(h, s * d.u(0.6, 1), v * d.u(0.4, 0.65));
  return o;
}

// Whether (px, py) lies inside `o`; on success (u, v) are the rotated pixel offsets.
bool covers(const Object& o, double px, double py, double* u, double* v) {
  const double dx = px - o.cx, dy = py - o.cy;
  if (dx * dx + dy * dy > o.reach * o.reach) return false;
  *u = dx * o.ct + dy * o.st;
  *v = -dx * o.st + dy * o.ct;
  return inside_shape(o.cls, *u / (o.r * o.aspect), *v * o.aspect / o.r);
}

Rgb object_colour(const Object& o, double u, double v) {
  switch (o.tex) {
    case Texture::Solid: return o.tone0;
    case Texture::Stripes: return frac(u / o.period + o.ph0) < 0.5 ? o.tone0 : o.tone1;
    case Texture::Checks: {
      const long k = std::lround(std::floor(u / o.period + o.ph0) + std::floor(v / o.period + o.ph1));
      return k % 2 ? o.tone1 : o.tone0;
    }
    case Texture::Dots: {
      const double fu = frac(u / o.period + o.ph0) - 0.5, fv = frac(v / o.period + o.ph1) - 0.5;
      return fu * fu + fv * fv < 0.3 * 0.3 ? o.tone1 : o.tone0;
    }
    case Texture::Gradient: return mix(o.tone0, o.tone1, clamp01(0.5 + 0.5 * u / o.r));
  }
  return o.tone0;
}

}  // namespace

SynthSample synth_sample(const SynthSpec& spec, int64_t index) {
  U2PL_CHECK(spec.classes >= 2 && spec.classes <= 9, "synth: classes must be in [2, 9], got " << spec.classes);
  U2PL_CHECK(spec.size >= 16, "synth: size must be at least 16, got " << spec.size);
  U2PL_CHECK(index >= 0 && index < (int64_t(1) << 31), "synth: image index out of range: " << index);
  Rng rng(spec.seed, uint64_t(index) << 32);
  Draw d{rng};
  const int S = spec.size, C = spec.classes - 1;
  const std::vector<Rgb> bg = draw_background(d, S);

  // 1-4 objects of distinct classes (a partial Fisher-Yates shuffle); later ones occlude.
  const int n = 1 + d.pick(std::min(4, C));
  std::vector<int> cls(C);
  std::iota(cls.begin(), cls.end(), 1);
  std::vector<Object> objs;
  for (int k = 0; k < n; ++k) {
    std::swap(cls[k], cls[k + d.pick(C - k)]);
    objs.push_back(make_object(d, cls[k], C, S));
  }

  SynthSample out;
  out.objects = n;
  out.image = Image{S, S, 3, std::vector<uint8_t>(size_t(S) * S * 3)};
  out.label = Image{S, S, 1, std::vector<uint8_t>(size_t(S) * S)};
  const double sigma = d.u(2, 8);  // image noise σ in 0-255 units
  const uint64_t noise_at = rng.reserve(uint64_t(S) * S * 6);  // two uniforms per channel value
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const size_t p = size_t(y) * S + x;
      Rgb acc{0, 0, 0};
      int label = -1;
      for (int sy = 0; sy < kSub; ++sy)
        for (int sx = 0; sx < kSub; ++sx) {
          const double px = x + (sx + 0.5) / kSub, py = y + (sy + 0.5) / kSub;
          double u = 0, v = 0;
          int top = n - 1;
          while (top >= 0 && !covers(objs[top], px, py, &u, &v)) --top;
          const Rgb c = top < 0 ? bg[p] : object_colour(objs[top], u, v);
          for (int ch = 0; ch < 3; ++ch) acc[ch] += c[ch];
          const int l = top < 0 ? 0 : objs[top].cls;
          label = label == -1 || label == l ? l : 255;
        }
      out.label.pixels[p] = static_cast<uint8_t>(label);
      for (int ch = 0; ch < 3; ++ch) {
        const uint64_t w = 2 * (3 * p + ch);
        const double u1 = philox_uniform(spec.seed, noise_at, w), u2 = philox_uniform(spec.seed, noise_at, w + 1);
        const double z = std::sqrt(-2 * std::log(1 - u1)) * std::cos(2 * kPi * u2);
        const double val = 255 * acc[ch] / (kSub * kSub) + sigma * z;
        out.image.pixels[3 * p + ch] = static_cast<uint8_t>(std::lround(std::min(255.0, std::max(0.0, val))));
      }
    }
  return out;
}

}  // namespace u2pl
