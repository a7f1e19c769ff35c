// Multi-resolution hash-grid encoding (tiny-cuda-nn's "Grid" encoding, type Hash).
//
// The index and weight formulas live here once, as inline functions that compile for the host (the C++ CPU
// kernel, hash_grid_cpu.cpp) and for the device (hash_grid.cu, where NH_HD expands to __host__ __device__).
//
// Per level l (level metadata is computed in Python by HashGridConfig and passed in a Levels struct):
//   pos   = x * scale[l] + 0.5           cell = floor(pos)        frac = pos - cell
//   w     = frac (linear) or frac^2 (3 - 2 frac) (smoothstep), dw/dfrac = 1 or 6 frac (1 - frac)
//   index = dense row-major (x fastest) when resolution^D <= size, else the CoherentPrime hash
//           XOR_d(coord[d] * prime[d]); both in uint32 arithmetic, then modulo the level's size.
// Table layout: flat [sum(size[l]) * F], entry (offset[l] + index) * F + feature.
// Output layout: [N, n_levels * F], level-major.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>
#include <type_traits>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define NH_HD __host__ __device__ __forceinline__
#define NH_UNROLL _Pragma("unroll")
#define NH_EXEC_CHECK_DISABLE _Pragma("nv_exec_check_disable")
#else
#define NH_HD inline __attribute__((always_inline))
#define NH_UNROLL _Pragma("GCC unroll 16")
#define NH_EXEC_CHECK_DISABLE
#endif

namespace nerfhead {
namespace hash_grid {

constexpr int kMaxLevels = 32;
constexpr int kMaxDims = 4;

// Per-level metadata, small enough to pass by value as a CUDA kernel argument.
struct Levels {
  int n_levels;
  int64_t offset[kMaxLevels];  // first table entry of the level
  uint32_t size[kMaxLevels];   // entries in the level
  uint32_t mask[kMaxLevels];   // size - 1 when size is a power of two (index & mask), else 0 (index % size)
  uint32_t resolution[kMaxLevels];
  uint32_t hashed;           // bit l set: level l uses the hash, else the dense index
  double scale[kMaxLevels];  // base_resolution * per_level_scale^l - 1
};

// ---- value conversions (table storage <-> compute type) -------------------------------------------------------
NH_HD float to_compute(float v) { return v; }
NH_HD double to_compute(double v) { return v; }
template <typename T>
NH_HD T from_compute(float v) {
  return static_cast<T>(v);
}
template <typename T>
NH_HD T from_compute(double v) {
  return static_cast<T>(v);
}
#ifdef __CUDACC__
NH_HD float to_compute(__half v) { return __half2float(v); }
template <>
NH_HD __half from_compute<__half>(float v) {
  return __float2half(v);
}
#endif

// ---- the formulas ---------------------------------------------------------------------------------------------

// Grid cell, interpolation weight and its derivative for one coordinate: pos = x * scale + 0.5.
// The floor is written with an integer conversion (exact for |pos| < 2^31) so host and device agree.
template <typename S>
NH_HD void pos_fract(S x, S scale, bool smoothstep, uint32_t& cell, S& w, S& dw) {
  const S pos = x * scale + S(0.5);
  int i = static_cast<int>(pos);
  if (static_cast<S>(i) > pos) --i;  // floor for negative positions
  cell = static_cast<uint32_t>(i);
  const S f = pos - static_cast<S>(i);
  if (smoothstep) {
    w = f * f * (S(3) - S(2) * f);
    dw = S(6) * f * (S(1) - f);
  } else {
    w = f;
    dw = S(1);
  }
}

// Entry index of a grid vertex inside its level (0 <= index < size).
template <int D>
NH_HD uint32_t grid_index(const uint32_t (&pos)[D], uint32_t resolution, uint32_t size, uint32_t mask, bool hashed) {
  // tiny-cuda-nn's CoherentPrime factors (the first is 1 so that neighbouring x cells stay close in memory).
  // A local constexpr array, as tiny-cuda-nn does, so device code can index it.
  constexpr uint32_t primes[kMaxDims] = {1u, 2654435761u, 805459861u, 3674653429u};
  uint32_t index = 0;
  if (hashed) {
    NH_UNROLL
    for (int d = 0; d < D; ++d) index ^= pos[d] * primes[d];
  } else {
    uint32_t stride = 1;
    NH_UNROLL
    for (int d = 0; d < D; ++d) {
      index += pos[d] * stride;
      stride *= resolution;
    }
  }
  return mask ? (index & mask) : (index % size);
}

// Everything about one (point, level): cells, weights, derivatives and the level's constants.
template <int D, typename S>
struct LevelSample {
  uint32_t cell[D];
  S w[D];
  S dw[D];
  S scale;
  int64_t offset;
  uint32_t size, mask, resolution;
  bool hashed;

  NH_HD LevelSample(const S* x, const Levels& lv, int l, bool smoothstep) {
    scale = static_cast<S>(lv.scale[l]);
    offset = lv.offset[l];
    size = lv.size[l];
    mask = lv.mask[l];
    resolution = lv.resolution[l];
    hashed = (lv.hashed >> l) & 1u;
    NH_UNROLL
    for (int d = 0; d < D; ++d) pos_fract<S>(x[d], scale, smoothstep, cell[d], w[d], dw[d]);
  }

  // Table entry (offset + index) and trilinear weight of corner c (bit d of c: +1 along dimension d).
  NH_HD int64_t corner(uint32_t c, S& weight) const {
    uint32_t pos[D];
    weight = S(1);
    NH_UNROLL
    for (int d = 0; d < D; ++d) {
      const bool up = (c >> d) & 1u;
      pos[d] = cell[d] + (up ? 1u : 0u);
      weight *= up ? w[d] : S(1) - w[d];
    }
    return offset + grid_index<D>(pos, resolution, size, mask, hashed);
  }

  // d weight(c) / d x[d] for every d (chain rule through w and pos = x * scale + 0.5).
  NH_HD void corner_weight_grad(uint32_t c, S (&g)[D]) const {
    NH_UNROLL
    for (int d = 0; d < D; ++d) {
      S p = ((c >> d) & 1u) ? dw[d] : -dw[d];
      NH_UNROLL
      for (int e = 0; e < D; ++e) {
        if (e != d) p *= ((c >> e) & 1u) ? w[e] : S(1) - w[e];
      }
      g[d] = p * scale;
    }
  }
};

// Forward of one (point, level): out[f] = sum_c weight(c) * table[entry(c) * F + f].
template <int D, int F, typename T, typename S>
NH_HD void encode_level(const S* x, const T* __restrict__ table, const Levels& lv, int l, bool smoothstep,
                        S (&out)[F]) {
  const LevelSample<D, S> s(x, lv, l, smoothstep);
  NH_UNROLL
  for (int f = 0; f < F; ++f) out[f] = S(0);
  NH_UNROLL
  for (uint32_t c = 0; c < (1u << D); ++c) {
    S weight;
    const T* v = table + s.corner(c, weight) * F;
    NH_UNROLL
    for (int f = 0; f < F; ++f) out[f] += weight * to_compute(v[f]);
  }
}

// Backward of one (point, level), both gradients from one pass over the 2^D corners:
//   to the table (kTable): add(entry(c) * F + f, weight(c) * g[f]);
//   to the input (kInput): dx[d] += sum_c (g . table[entry(c)]) * d weight(c) / d x[d].
NH_EXEC_CHECK_DISABLE
template <bool kTable, bool kInput, int D, int F, typename T, typename S, typename Add>
NH_HD void backward_level(const S* x, const T* __restrict__ table, const Levels& lv, int l, bool smoothstep,
                          const S (&g)[F], Add add, S (&dx)[D]) {
  const LevelSample<D, S> s(x, lv, l, smoothstep);
  NH_UNROLL
  for (uint32_t c = 0; c < (1u << D); ++c) {
    S weight;
    const int64_t e = s.corner(c, weight) * F;
    if constexpr (kTable) {
      NH_UNROLL
      for (int f = 0; f < F; ++f) add(e + f, weight * g[f]);
    }
    if constexpr (kInput) {
      S gv = S(0);
      NH_UNROLL
      for (int f = 0; f < F; ++f) gv += g[f] * to_compute(table[e + f]);
      S dwx[D];
      s.corner_weight_grad(c, dwx);
      NH_UNROLL
      for (int d = 0; d < D; ++d) dx[d] += gv * dwx[d];
    }
  }
}

// ---- host helpers ---------------------------------------------------------------------------------------------

// Calls fn(std::bool_constant<want_table>{}, std::bool_constant<want_input>{}); at least one must be true.
template <typename Fn>
void dispatch_wanted(bool want_table, bool want_input, Fn&& fn) {
  if (want_table && want_input) return fn(std::true_type{}, std::true_type{});
  if (want_table) return fn(std::true_type{}, std::false_type{});
  TORCH_CHECK(want_input, "hash_grid: backward asked for no gradient");
  return fn(std::false_type{}, std::true_type{});
}

// Calls fn(std::integral_constant<int, D>{}, std::integral_constant<int, F>{}) for the runtime D and F.
template <typename Fn>
void dispatch_dims_features(int64_t dims, int64_t features, Fn&& fn) {
  auto with_f = [&](auto d) {
    switch (features) {
      case 1:
        return fn(d, std::integral_constant<int, 1>{});
      case 2:
        return fn(d, std::integral_constant<int, 2>{});
      case 4:
        return fn(d, std::integral_constant<int, 4>{});
      case 8:
        return fn(d, std::integral_constant<int, 8>{});
      default:
        TORCH_CHECK(false, "hash_grid: n_features must be 1, 2, 4 or 8, got ", features);
    }
  };
  switch (dims) {
    case 2:
      return with_f(std::integral_constant<int, 2>{});
    case 3:
      return with_f(std::integral_constant<int, 3>{});
    case 4:
      return with_f(std::integral_constant<int, 4>{});
    default:
      TORCH_CHECK(false, "hash_grid: input dimension must be 2, 3 or 4, got ", dims);
  }
}

// ---- entry points (inputs are checked by the dispatcher in hash_grid_bind.cpp) -------------------------------

// x: [N, D] float32|float64, table: [n_entries * F] same dtype. Returns [N, n_levels * F].
at::Tensor hash_grid_forward_cpu(const at::Tensor& x, const at::Tensor& table, const Levels& lv, int64_t n_features,
                                 bool smoothstep);
// Returns (grad_table [n_entries * F] or undefined, grad_x [N, D] or undefined).
std::tuple<at::Tensor, at::Tensor> hash_grid_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                          const at::Tensor& table, const Levels& lv, int64_t n_features,
                                                          bool smoothstep, bool need_table_grad, bool need_input_grad);

#ifdef WITH_CUDA
// x: [N, D] float32, table: [n_entries * F] float32|float16. Returns [N, n_levels * F] in the table's dtype.
at::Tensor hash_grid_forward_cuda(const at::Tensor& x, const at::Tensor& table, const Levels& lv, int64_t n_features,
                                  bool smoothstep);
// Table gradients are accumulated in float32 (atomicAdd) whatever the table dtype; grad_x is float32.
std::tuple<at::Tensor, at::Tensor> hash_grid_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                           const at::Tensor& table, const Levels& lv,
                                                           int64_t n_features, bool smoothstep, bool need_table_grad,
                                                           bool need_input_grad);
#endif

}  // namespace hash_grid
}  // namespace nerfhead
