// Ray marching through a multi-cascade occupancy bitfield (instant-ngp style), packed output (nerfacc style).
//
// The stepping rule lives here once, as inline functions compiled for the host (ray_march_cpu.cpp) and the
// device (ray_march.cu). The pure-PyTorch twin (nerfhead/ops/_torch/ray_march.py) repeats the same float32
// operations in the same order, so all three produce bit-identical samples. Every multiply, add and divide goes
// through fmul/fadd/fsub/fdiv below: on the device these are the round-to-nearest intrinsics, which nvcc never
// fuses into FMAs (even with --use_fast_math); on the host they are plain IEEE operations.
//
// Grid: n_cascades cascades of resolution^3 cells. Cascade c covers the base aabb scaled by 2^c about its centre.
// With u = (x - centre) / half_size (cascade 0 is u in [-1, 1]^3) and m = max_k |u_k|, a point belongs to the
// smallest cascade c with m <= 2^c; it is outside the grid when m > 2^(n_cascades - 1). Cell coordinates:
//   g_k = (u_k * 2^-c + 1) * (resolution / 2),   cell_k = clamp(floor(g_k), 0, resolution - 1).
// Bitfield: cell (c, i, j, k) has flat index n = c * res^3 + (i * res + j) * res + k (i along x); it is occupied
// when bit (n & 7) of byte (n >> 3) is set (little-endian bit order in each byte).
//
// Stepping (one ray): t = t_min, then while t < t_max (and fewer than max_samples samples were emitted):
//   dt = clamp(t * cone_angle, step_size, dt_max);  tm = t + dt / 2;  x = o + tm * d
//   x outside the grid        -> t = tm                                     (half step, no sample)
//   cell of x occupied        -> emit [t, t + dt];  t = t + dt
//   cell of x empty           -> t = max(t_exit, tm), t_exit = where the ray leaves that cell (DDA, per axis)
//   a step that does not advance t (rounding) ends the ray.
// The ray's final t is returned as t_resume, so marching in rounds (max_samples > 0) and restarting each ray at its
// t_resume reproduces one full march exactly.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>

#ifndef NH_HD
#ifdef __CUDACC__
#define NH_HD __host__ __device__ __forceinline__
#else
#define NH_HD inline
#endif
#endif

namespace nerfhead {
namespace ray_march {

// ---- exact float32 arithmetic (no FMA contraction) -------------------------------------------------------------
NH_HD float fmul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
NH_HD float fadd(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
NH_HD float fsub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
NH_HD float fdiv(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
NH_HD float fmin2(float a, float b) { return a < b ? a : b; }
NH_HD float fmax2(float a, float b) { return a > b ? a : b; }
NH_HD float kInf() {
#ifdef __CUDA_ARCH__
  return __int_as_float(0x7f800000);
#else
  return std::numeric_limits<float>::infinity();
#endif
}

// The grid as a kernel argument (pointers + a few numbers).
struct Grid {
  const uint8_t* bits;  // [ceil(n_cascades * res^3 / 8)]
  float center[3];      // (lo + hi) * 0.5 of the base aabb
  float half[3];        // (hi - lo) * 0.5 of the base aabb
  int res;
  int n_cascades;
};

// Step rule parameters.
struct Step {
  float step_size;  // dt_min
  float cone_angle;
  float dt_max;
  int max_samples;  // <= 0: unlimited
};

// One step from t. Returns the next t; sets *emit when [t, t + *dt] is a sample.
NH_HD float march_step(const float o[3], const float d[3], float t, const Grid& g, const Step& s, bool* emit,
                       float* dt_out) {
  const float dt = fmin2(fmax2(fmul(t, s.cone_angle), s.step_size), s.dt_max);
  const float tm = fadd(t, fmul(0.5f, dt));
  *dt_out = dt;
  *emit = false;
  float u[3];
  float m = 0.f;
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const float x = fadd(o[k], fmul(tm, d[k]));
    u[k] = fdiv(fsub(x, g.center[k]), g.half[k]);
    const float a = u[k] < 0.f ? -u[k] : u[k];
    m = fmax2(m, a);
  }
  int c = 0;
  float scale = 1.f, inv_scale = 1.f;
  while (c < g.n_cascades - 1 && m > scale) {
    ++c;
    scale = scale * 2.f;
    inv_scale = inv_scale * 0.5f;
  }
  if (m > scale) return tm;  // outside the grid
  const float hr = 0.5f * static_cast<float>(g.res);
  float gk[3];
  int cell[3];
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    gk[k] = fmul(fadd(fmul(u[k], inv_scale), 1.f), hr);
    int ci = static_cast<int>(floorf(gk[k]));
    ci = ci < 0 ? 0 : (ci > g.res - 1 ? g.res - 1 : ci);
    cell[k] = ci;
  }
  const int64_t r = g.res;
  const int64_t n = static_cast<int64_t>(c) * r * r * r + (cell[0] * r + cell[1]) * r + cell[2];
  if ((g.bits[n >> 3] >> (n & 7)) & 1) {
    *emit = true;
    return fadd(t, dt);
  }
  float t_exit = kInf();
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    if (d[k] == 0.f) continue;
    const float b = static_cast<float>(cell[k] + (d[k] > 0.f ? 1 : 0));
    const float rate = fmul(fmul(fdiv(d[k], g.half[k]), inv_scale), hr);
    const float tk = fadd(tm, fdiv(fsub(b, gk[k]), rate));
    t_exit = fmin2(t_exit, tk);
  }
  return fmax2(t_exit, tm);
}

// March one ray, calling sink(i, t_start, t_end) for its i-th sample. Returns the sample count; *t_resume is the
// final t.
template <typename Sink>
NH_HD int64_t march_ray(const float o[3], const float d[3], float t_min, float t_max, const Grid& g, const Step& s,
                        Sink& sink, float* t_resume) {
  float t = t_min;
  int64_t n = 0;
  while (t < t_max && (s.max_samples <= 0 || n < s.max_samples)) {
    bool emit;
    float dt;
    float tn = march_step(o, d, t, g, s, &emit, &dt);
    if (emit) {
      sink(n, t, tn);
      ++n;
    }
    if (!(tn > t)) tn = t_max;  // no progress (rounding): end the ray
    t = tn;
  }
  *t_resume = t;
  return n;
}

// Slab test against one box. Returns entry/exit distances (may be negative; exit < entry: no intersection).
NH_HD void ray_box(const float o[3], const float d[3], const float lo[3], const float hi[3], float* t0, float* t1) {
  float a0 = -kInf(), a1 = kInf();
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    if (d[k] == 0.f) {
      if (o[k] < lo[k] || o[k] > hi[k]) {
        a0 = kInf();
        a1 = -kInf();
      }
      continue;
    }
    const float p = fdiv(fsub(lo[k], o[k]), d[k]);
    const float q = fdiv(fsub(hi[k], o[k]), d[k]);
    a0 = fmax2(a0, fmin2(p, q));
    a1 = fmin2(a1, fmax2(p, q));
  }
  *t0 = a0;
  *t1 = a1;
}

// Host-side: the Grid struct for a bitfield tensor and a base aabb [6] (lo xyz, hi xyz; read on the host).
inline Grid make_grid(const at::Tensor& bits, const at::Tensor& aabb, int64_t res, int64_t n_cascades) {
  TORCH_CHECK(bits.scalar_type() == at::kByte, "ray_march: bitfield must be uint8");
  TORCH_CHECK(bits.is_contiguous(), "ray_march: bitfield must be contiguous");
  TORCH_CHECK(res > 0 && n_cascades > 0, "ray_march: resolution and n_cascades must be positive");
  TORCH_CHECK(bits.numel() * 8 >= n_cascades * res * res * res, "ray_march: bitfield too small for the grid");
  auto box = aabb.detach().to(at::kCPU, at::kFloat).contiguous();
  TORCH_CHECK(box.numel() == 6, "ray_march: aabb must have 6 values");
  const float* b = box.data_ptr<float>();
  Grid g;
  g.bits = bits.data_ptr<uint8_t>();
  for (int k = 0; k < 3; ++k) {
    g.center[k] = (b[k] + b[k + 3]) * 0.5f;
    g.half[k] = (b[k + 3] - b[k]) * 0.5f;
  }
  g.res = static_cast<int>(res);
  g.n_cascades = static_cast<int>(n_cascades);
  return g;
}

// ---- entry points (CPU: ray_march_cpu.cpp, CUDA: ray_march.cu) ------------------------------------------------
// Returns (packed_info [R, 2] int64 (start, count), ray_indices [S] int64, t_starts [S], t_ends [S],
// t_resume [R]).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_march_forward_cpu(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_min, const at::Tensor& t_max,
    const at::Tensor& bits, const at::Tensor& aabb, int64_t res, int64_t n_cascades, double step_size,
    double cone_angle, double dt_max, int64_t max_samples);
// Returns (t_min [R], t_max [R], hit [R] bool); hit = t_max >= t_min and t_max > 0.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ray_aabb_intersect_cpu(const at::Tensor& origins, const at::Tensor& dirs,
                                                                      const at::Tensor& aabb);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_march_forward_cuda(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_min, const at::Tensor& t_max,
    const at::Tensor& bits, const at::Tensor& aabb, int64_t res, int64_t n_cascades, double step_size,
    double cone_angle, double dt_max, int64_t max_samples);
std::tuple<at::Tensor, at::Tensor, at::Tensor> ray_aabb_intersect_cuda(const at::Tensor& origins,
                                                                       const at::Tensor& dirs, const at::Tensor& aabb);
#endif

}  // namespace ray_march
}  // namespace nerfhead
