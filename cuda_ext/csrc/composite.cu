// Volume compositing of packed samples, CUDA kernels (one thread per ray; float32 and float64). Formulas:
// composite.h. Shapes are checked by composite_bind.cpp.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "composite.h"

namespace nerfhead {
namespace composite {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void forward_kernel(int64_t R, int64_t C, const int64_t* __restrict__ packed,
                               const scalar_t* __restrict__ sigmas, const scalar_t* __restrict__ rgbs,
                               const scalar_t* __restrict__ t_starts, const scalar_t* __restrict__ t_ends,
                               scalar_t* __restrict__ rgb, scalar_t* __restrict__ opacity, scalar_t* __restrict__ depth,
                               scalar_t* __restrict__ weights, scalar_t* __restrict__ trans) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= R) return;
  composite_ray_forward<scalar_t>(packed[2 * r], packed[2 * r + 1], C, sigmas, rgbs, t_starts, t_ends, rgb + r * C,
                                  opacity + r, depth + r, weights, trans);
}

template <typename scalar_t>
__global__ void backward_kernel(int64_t R, int64_t C, const int64_t* __restrict__ packed,
                                const scalar_t* __restrict__ g_rgb, const scalar_t* __restrict__ g_opacity,
                                const scalar_t* __restrict__ g_depth, const scalar_t* __restrict__ g_weights,
                                const scalar_t* __restrict__ sigmas, const scalar_t* __restrict__ rgbs,
                                const scalar_t* __restrict__ t_starts, const scalar_t* __restrict__ t_ends,
                                const scalar_t* __restrict__ weights, const scalar_t* __restrict__ trans,
                                scalar_t* __restrict__ grad_sigmas, scalar_t* __restrict__ grad_rgbs) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= R) return;
  composite_ray_backward<scalar_t>(packed[2 * r], packed[2 * r + 1], C, g_rgb + r * C, g_opacity[r], g_depth[r],
                                   g_weights, sigmas, rgbs, t_starts, t_ends, weights, trans, grad_sigmas, grad_rgbs);
}

int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward_cuda(
    const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& packed_info) {
  const c10::cuda::CUDAGuard guard(sigmas.device());
  const int64_t R = packed_info.size(0);
  const int64_t S = sigmas.size(0);
  const int64_t C = rgbs.size(1);
  auto opts = sigmas.options();
  at::Tensor rgb = at::empty({R, C}, opts);
  at::Tensor opacity = at::empty({R, 1}, opts);
  at::Tensor depth = at::empty({R, 1}, opts);
  at::Tensor weights = at::zeros({S}, opts);
  at::Tensor trans = at::zeros({S}, opts);
  if (R == 0) return {rgb, opacity, depth, weights, trans};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(R), kThreads, 0, stream>>>(
        R, C, packed_info.data_ptr<int64_t>(), sigmas.data_ptr<scalar_t>(), rgbs.data_ptr<scalar_t>(),
        t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(), rgb.data_ptr<scalar_t>(),
        opacity.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
        trans.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {rgb, opacity, depth, weights, trans};
}

std::tuple<at::Tensor, at::Tensor> composite_backward_cuda(const at::Tensor& grad_rgb, const at::Tensor& grad_opacity,
                                                           const at::Tensor& grad_depth, const at::Tensor& grad_weights,
                                                           const at::Tensor& sigmas, const at::Tensor& rgbs,
                                                           const at::Tensor& t_starts, const at::Tensor& t_ends,
                                                           const at::Tensor& packed_info, const at::Tensor& weights,
                                                           const at::Tensor& trans) {
  const c10::cuda::CUDAGuard guard(sigmas.device());
  const int64_t R = packed_info.size(0);
  const int64_t C = rgbs.size(1);
  at::Tensor g_sigmas = at::zeros_like(sigmas);
  at::Tensor g_rgbs = at::zeros_like(rgbs);
  if (R == 0) return {g_sigmas, g_rgbs};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_backward_cuda", [&] {
    backward_kernel<scalar_t><<<blocks_for(R), kThreads, 0, stream>>>(
        R, C, packed_info.data_ptr<int64_t>(), grad_rgb.data_ptr<scalar_t>(), grad_opacity.data_ptr<scalar_t>(),
        grad_depth.data_ptr<scalar_t>(), grad_weights.defined() ? grad_weights.data_ptr<scalar_t>() : nullptr,
        sigmas.data_ptr<scalar_t>(), rgbs.data_ptr<scalar_t>(), t_starts.data_ptr<scalar_t>(),
        t_ends.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), trans.data_ptr<scalar_t>(),
        g_sigmas.data_ptr<scalar_t>(), g_rgbs.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {g_sigmas, g_rgbs};
}

}  // namespace composite
}  // namespace nerfhead
