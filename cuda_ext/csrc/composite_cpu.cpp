// Volume compositing of packed samples, C++ CPU kernel (OpenMP over rays; float32 and float64). Formulas:
// composite.h. Shapes are checked by composite_bind.cpp.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <omp.h>

#include "composite.h"

namespace nerfhead {
namespace composite {
namespace {

// (OpenMP pragmas cannot sit inside the AT_DISPATCH macro's lambda, so the loops live here.)
template <typename scalar_t>
void forward_rays(int64_t R, int64_t C, const int64_t* pk, const scalar_t* sg, const scalar_t* cl, const scalar_t* ts,
                  const scalar_t* te, scalar_t* o_rgb, scalar_t* o_op, scalar_t* o_dp, scalar_t* o_w, scalar_t* o_t) {
#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t r = 0; r < R; ++r) {
    composite_ray_forward<scalar_t>(pk[2 * r], pk[2 * r + 1], C, sg, cl, ts, te, o_rgb + r * C, o_op + r, o_dp + r, o_w,
                                    o_t);
  }
}

template <typename scalar_t>
void backward_rays(int64_t R, int64_t C, const int64_t* pk, const scalar_t* g_rgb, const scalar_t* g_op,
                   const scalar_t* g_dp, const scalar_t* g_w, const scalar_t* sg, const scalar_t* cl,
                   const scalar_t* ts, const scalar_t* te, const scalar_t* w, const scalar_t* tr, scalar_t* o_s,
                   scalar_t* o_c) {
#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t r = 0; r < R; ++r) {
    composite_ray_backward<scalar_t>(pk[2 * r], pk[2 * r + 1], C, g_rgb + r * C, g_op[r], g_dp[r], g_w, sg, cl, ts, te,
                                     w, tr, o_s, o_c);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward_cpu(
    const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& packed_info) {
  const int64_t R = packed_info.size(0);
  const int64_t S = sigmas.size(0);
  const int64_t C = rgbs.size(1);
  auto opts = sigmas.options();
  at::Tensor rgb = at::empty({R, C}, opts);
  at::Tensor opacity = at::empty({R, 1}, opts);
  at::Tensor depth = at::empty({R, 1}, opts);
  at::Tensor weights = at::zeros({S}, opts);  // zeros: samples outside every ray stay 0
  at::Tensor trans = at::zeros({S}, opts);
  const int64_t* pk = packed_info.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_forward_cpu", [&] {
    forward_rays<scalar_t>(R, C, pk, sigmas.data_ptr<scalar_t>(), rgbs.data_ptr<scalar_t>(),
                           t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(),
                           opacity.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
                           trans.data_ptr<scalar_t>());
  });
  return {rgb, opacity, depth, weights, trans};
}

std::tuple<at::Tensor, at::Tensor> composite_backward_cpu(const at::Tensor& grad_rgb, const at::Tensor& grad_opacity,
                                                          const at::Tensor& grad_depth, const at::Tensor& grad_weights,
                                                          const at::Tensor& sigmas, const at::Tensor& rgbs,
                                                          const at::Tensor& t_starts, const at::Tensor& t_ends,
                                                          const at::Tensor& packed_info, const at::Tensor& weights,
                                                          const at::Tensor& trans) {
  const int64_t R = packed_info.size(0);
  const int64_t C = rgbs.size(1);
  at::Tensor g_sigmas = at::zeros_like(sigmas);
  at::Tensor g_rgbs = at::zeros_like(rgbs);
  const int64_t* pk = packed_info.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_backward_cpu", [&] {
    backward_rays<scalar_t>(R, C, pk, grad_rgb.data_ptr<scalar_t>(), grad_opacity.data_ptr<scalar_t>(),
                            grad_depth.data_ptr<scalar_t>(),
                            grad_weights.defined() ? grad_weights.data_ptr<scalar_t>() : nullptr,
                            sigmas.data_ptr<scalar_t>(), rgbs.data_ptr<scalar_t>(), t_starts.data_ptr<scalar_t>(),
                            t_ends.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), trans.data_ptr<scalar_t>(),
                            g_sigmas.data_ptr<scalar_t>(), g_rgbs.data_ptr<scalar_t>());
  });
  return {g_sigmas, g_rgbs};
}

}  // namespace composite
}  // namespace nerfhead
