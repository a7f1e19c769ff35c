// Volume compositing of packed (ragged) samples, one ray at a time, and its reverse-scan backward.
//
// The per-ray formulas live here once (host: composite_cpu.cpp, device: composite.cu). Samples of ray r are
// [start, start + count) with packed_info[r] = (start, count), in front-to-back order. With dt_i = t_end - t_start,
// tau_i = sigma_i dt_i and c_i = sum_{j<i} tau_j:
//   T_i = exp(-c_i),  alpha_i = 1 - exp(-tau_i) = -expm1(-tau_i),  w_i = T_i alpha_i
//   rgb = sum_i w_i rgb_i,  opacity = sum_i w_i,  depth = sum_i w_i (t_start_i + t_end_i) / 2 (not normalised)
// Backward, with gw_i = dL/dw_i (through rgb, opacity, depth and the weights output itself):
//   dL/drgb_i = w_i dL/drgb,   dL/dtau_i = gw_i T_{i+1} - sum_{j>i} gw_j w_j,   dL/dsigma_i = dL/dtau_i dt_i,
// evaluated back to front with a running suffix sum (O(count) per ray); T_{i+1} = T_i exp(-tau_i).
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <tuple>

#ifndef NH_HD
#ifdef __CUDACC__
#define NH_HD __host__ __device__ __forceinline__
#else
#define NH_HD inline
#endif
#endif

namespace nerfhead {
namespace composite {

NH_HD float cexp(float x) {
#ifdef __CUDA_ARCH__
  return expf(x);
#else
  return std::exp(x);
#endif
}
NH_HD double cexp(double x) {
#ifdef __CUDA_ARCH__
  return ::exp(x);
#else
  return std::exp(x);
#endif
}
NH_HD float cexpm1(float x) {
#ifdef __CUDA_ARCH__
  return expm1f(x);
#else
  return std::expm1(x);
#endif
}
NH_HD double cexpm1(double x) {
#ifdef __CUDA_ARCH__
  return ::expm1(x);
#else
  return std::expm1(x);
#endif
}

// Forward for one ray. out_rgb [C], out_opacity, out_depth are written (not accumulated); weights and trans
// (T_i) are written for the ray's samples.
template <typename scalar_t>
NH_HD void composite_ray_forward(int64_t start, int64_t count, int64_t C, const scalar_t* sigmas, const scalar_t* rgbs,
                                 const scalar_t* t_starts, const scalar_t* t_ends, scalar_t* out_rgb,
                                 scalar_t* out_opacity, scalar_t* out_depth, scalar_t* weights, scalar_t* trans) {
  for (int64_t c = 0; c < C; ++c) out_rgb[c] = scalar_t(0);
  scalar_t cum = 0, opacity = 0, depth = 0;
  for (int64_t i = start; i < start + count; ++i) {
    const scalar_t dt = t_ends[i] - t_starts[i];
    const scalar_t tau = sigmas[i] * dt;
    const scalar_t T = cexp(-cum);
    const scalar_t w = T * (-cexpm1(-tau));
    trans[i] = T;
    weights[i] = w;
    opacity += w;
    depth += w * (t_starts[i] + t_ends[i]) * scalar_t(0.5);
    for (int64_t c = 0; c < C; ++c) out_rgb[c] += w * rgbs[i * C + c];
    cum += tau;
  }
  *out_opacity = opacity;
  *out_depth = depth;
}

// Backward for one ray: writes grad_sigmas and grad_rgbs for the ray's samples. grad_weights may be null.
template <typename scalar_t>
NH_HD void composite_ray_backward(int64_t start, int64_t count, int64_t C, const scalar_t* g_rgb, scalar_t g_opacity,
                                  scalar_t g_depth, const scalar_t* g_weights, const scalar_t* sigmas,
                                  const scalar_t* rgbs, const scalar_t* t_starts, const scalar_t* t_ends,
                                  const scalar_t* weights, const scalar_t* trans, scalar_t* grad_sigmas,
                                  scalar_t* grad_rgbs) {
  scalar_t suffix = 0;  // sum_{j>i} gw_j w_j
  for (int64_t i = start + count - 1; i >= start; --i) {
    const scalar_t w = weights[i];
    const scalar_t dt = t_ends[i] - t_starts[i];
    scalar_t gw = g_opacity + g_depth * (t_starts[i] + t_ends[i]) * scalar_t(0.5);
    if (g_weights != nullptr) gw += g_weights[i];
    for (int64_t c = 0; c < C; ++c) {
      gw += g_rgb[c] * rgbs[i * C + c];
      grad_rgbs[i * C + c] = w * g_rgb[c];
    }
    const scalar_t T_next = trans[i] * cexp(-sigmas[i] * dt);
    grad_sigmas[i] = (gw * T_next - suffix) * dt;
    suffix += gw * w;
  }
}

// ---- entry points (CPU: composite_cpu.cpp, CUDA: composite.cu) ------------------------------------------------
// Returns (rgb [R, C], opacity [R, 1], depth [R, 1], weights [S], trans [S]).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward_cpu(
    const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& packed_info);
// Returns (grad_sigmas [S], grad_rgbs [S, C]). grad_weights may be an undefined tensor.
std::tuple<at::Tensor, at::Tensor> composite_backward_cpu(const at::Tensor& grad_rgb, const at::Tensor& grad_opacity,
                                                          const at::Tensor& grad_depth, const at::Tensor& grad_weights,
                                                          const at::Tensor& sigmas, const at::Tensor& rgbs,
                                                          const at::Tensor& t_starts, const at::Tensor& t_ends,
                                                          const at::Tensor& packed_info, const at::Tensor& weights,
                                                          const at::Tensor& trans);
#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward_cuda(
    const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& packed_info);
std::tuple<at::Tensor, at::Tensor> composite_backward_cuda(const at::Tensor& grad_rgb, const at::Tensor& grad_opacity,
                                                           const at::Tensor& grad_depth, const at::Tensor& grad_weights,
                                                           const at::Tensor& sigmas, const at::Tensor& rgbs,
                                                           const at::Tensor& t_starts, const at::Tensor& t_ends,
                                                           const at::Tensor& packed_info, const at::Tensor& weights,
                                                           const at::Tensor& trans);
#endif

}  // namespace composite
}  // namespace nerfhead
