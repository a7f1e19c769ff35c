// Hash-grid encoding, CUDA kernels. Formulas: hash_grid.h (shared with the CPU kernel).
//
// One thread per (point, level), as tiny-cuda-nn: blockIdx.y is the level. Tables are float32 or float16
// (gathered in their storage type, accumulated in float32). The backward adds to a float32 table gradient and to a
// float32 input gradient with atomicAdd, recomputing indices and weights instead of storing them.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_fp16.h>

#include "hash_grid.h"

namespace nerfhead {
namespace hash_grid {
namespace {

constexpr int kThreads = 256;

template <int D, int F, typename T>
__global__ void forward_kernel(int64_t n, const float* __restrict__ x, const T* __restrict__ table, const Levels lv,
                               bool smooth, T* __restrict__ out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int l = blockIdx.y;
  if (i >= n) return;
  float acc[F];
  encode_level<D, F, T, float>(x + i * D, table, lv, l, smooth, acc);
  T* o = out + i * (int64_t(lv.n_levels) * F) + int64_t(l) * F;
  NH_UNROLL
  for (int f = 0; f < F; ++f) o[f] = from_compute<T>(acc[f]);
}

struct AtomicAddFloat {
  float* dst;
  __device__ void operator()(int64_t e, float v) const { atomicAdd(dst + e, v); }
};

template <bool kTable, bool kInput, int D, int F, typename T>
__global__ void backward_kernel(int64_t n, const T* __restrict__ grad_out, const float* __restrict__ x,
                                const T* __restrict__ table, const Levels lv, bool smooth,
                                float* __restrict__ grad_table, float* __restrict__ grad_x) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int l = blockIdx.y;
  if (i >= n) return;
  const T* go = grad_out + i * (int64_t(lv.n_levels) * F) + int64_t(l) * F;
  float g[F];
  NH_UNROLL
  for (int f = 0; f < F; ++f) g[f] = to_compute(go[f]);
  float dx[D];
  NH_UNROLL
  for (int d = 0; d < D; ++d) dx[d] = 0.f;
  backward_level<kTable, kInput, D, F, T, float>(x + i * D, table, lv, l, smooth, g, AtomicAddFloat{grad_table}, dx);
  if constexpr (kInput) {
    NH_UNROLL
    for (int d = 0; d < D; ++d) atomicAdd(grad_x + i * D + d, dx[d]);
  }
}

// Calls fn(T*) with the table's element type as the kernels see it (float or __half).
template <typename Fn>
void dispatch_table_type(const at::Tensor& table, Fn&& fn) {
  if (table.scalar_type() == at::kFloat) {
    fn(static_cast<float*>(nullptr));
  } else if (table.scalar_type() == at::kHalf) {
    fn(static_cast<__half*>(nullptr));
  } else {
    TORCH_CHECK(false, "hash_grid (CUDA): table must be float32 or float16, got ", table.scalar_type());
  }
}

dim3 grid_for(int64_t n, int n_levels) { return dim3(static_cast<unsigned>((n + kThreads - 1) / kThreads), n_levels); }

}  // namespace

at::Tensor hash_grid_forward_cuda(const at::Tensor& x, const at::Tensor& table, const Levels& lv, int64_t n_features,
                                  bool smoothstep) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.size(0);
  auto out = at::empty({n, int64_t(lv.n_levels) * n_features}, table.options());
  if (n == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch_table_type(table, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_dims_features(x.size(1), n_features, [&](auto d, auto f) {
      forward_kernel<decltype(d)::value, decltype(f)::value, T><<<grid_for(n, lv.n_levels), kThreads, 0, stream>>>(
          n, x.data_ptr<float>(), reinterpret_cast<const T*>(table.data_ptr()), lv, smoothstep,
          reinterpret_cast<T*>(out.data_ptr()));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> hash_grid_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                           const at::Tensor& table, const Levels& lv,
                                                           int64_t n_features, bool smoothstep, bool need_table_grad,
                                                           bool need_input_grad) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.size(0);
  at::Tensor gt, gx;
  if (need_table_grad) gt = at::zeros({table.numel()}, table.options().dtype(at::kFloat));
  if (need_input_grad) gx = at::zeros_like(x);
  if (n == 0 || (!need_table_grad && !need_input_grad)) return {gt, gx};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch_table_type(table, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    float* gt_ptr = need_table_grad ? gt.data_ptr<float>() : nullptr;
    float* gx_ptr = need_input_grad ? gx.data_ptr<float>() : nullptr;
    dispatch_wanted(need_table_grad, need_input_grad, [&](auto kt, auto ki) {
      dispatch_dims_features(x.size(1), n_features, [&](auto d, auto f) {
        backward_kernel<decltype(kt)::value, decltype(ki)::value, decltype(d)::value, decltype(f)::value, T>
            <<<grid_for(n, lv.n_levels), kThreads, 0, stream>>>(
                n, reinterpret_cast<const T*>(grad_out.data_ptr()), x.data_ptr<float>(),
                reinterpret_cast<const T*>(table.data_ptr()), lv, smoothstep, gt_ptr, gx_ptr);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return {gt, gx};
}

}  // namespace hash_grid
}  // namespace nerfhead
