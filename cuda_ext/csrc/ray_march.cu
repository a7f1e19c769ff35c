// Occupancy-grid ray marching, CUDA kernels (one thread per ray). Stepping rule: ray_march.h.
//
// Two passes like nerfacc: count samples per ray, exclusive scan (torch.cumsum), then march again and fill.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "ray_march.h"

namespace nerfhead {
namespace ray_march {
namespace {

constexpr int kThreads = 256;

struct CountSink {
  __device__ void operator()(int64_t, float, float) const {}
};

struct FillSink {
  float* t0;
  float* t1;
  int64_t* ri;
  int64_t ray;
  __device__ void operator()(int64_t i, float a, float b) const {
    t0[i] = a;
    t1[i] = b;
    ri[i] = ray;
  }
};

__global__ void count_kernel(int64_t R, const float* __restrict__ o, const float* __restrict__ d,
                             const float* __restrict__ t_min, const float* __restrict__ t_max, Grid g, Step s,
                             int64_t* __restrict__ counts, float* __restrict__ t_resume) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= R) return;
  const float oo[3] = {o[3 * r], o[3 * r + 1], o[3 * r + 2]};
  const float dd[3] = {d[3 * r], d[3 * r + 1], d[3 * r + 2]};
  CountSink sink;
  counts[r] = march_ray(oo, dd, t_min[r], t_max[r], g, s, sink, t_resume + r);
}

__global__ void fill_kernel(int64_t R, const float* __restrict__ o, const float* __restrict__ d,
                            const float* __restrict__ t_min, const float* __restrict__ t_max, Grid g, Step s,
                            const int64_t* __restrict__ offsets, float* __restrict__ t0, float* __restrict__ t1,
                            int64_t* __restrict__ ri) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= R) return;
  const float oo[3] = {o[3 * r], o[3 * r + 1], o[3 * r + 2]};
  const float dd[3] = {d[3 * r], d[3 * r + 1], d[3 * r + 2]};
  const int64_t off = offsets[r];
  FillSink sink{t0 + off, t1 + off, ri + off, r};
  float unused;
  march_ray(oo, dd, t_min[r], t_max[r], g, s, sink, &unused);
}

__global__ void aabb_kernel(int64_t R, const float* __restrict__ o, const float* __restrict__ d, float lo0, float lo1,
                            float lo2, float hi0, float hi1, float hi2, float* __restrict__ t0, float* __restrict__ t1,
                            bool* __restrict__ hit) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= R) return;
  const float oo[3] = {o[3 * r], o[3 * r + 1], o[3 * r + 2]};
  const float dd[3] = {d[3 * r], d[3 * r + 1], d[3 * r + 2]};
  const float lo[3] = {lo0, lo1, lo2};
  const float hi[3] = {hi0, hi1, hi2};
  float a, b;
  ray_box(oo, dd, lo, hi, &a, &b);
  t0[r] = a;
  t1[r] = b;
  hit[r] = b >= a && b > 0.f;
}

void check_rays_cuda(const at::Tensor& origins, const at::Tensor& dirs) {
  TORCH_CHECK(origins.is_cuda() && dirs.is_cuda(), "ray_march: expected CUDA tensors");
  TORCH_CHECK(origins.dim() == 2 && origins.size(1) == 3 && dirs.sizes() == origins.sizes(),
              "ray_march: origins and dirs must be [R, 3]");
  TORCH_CHECK(origins.scalar_type() == at::kFloat && dirs.scalar_type() == at::kFloat && origins.is_contiguous() &&
                  dirs.is_contiguous(),
              "ray_march: origins and dirs must be contiguous float32");
}

int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ray_march_forward_cuda(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_min, const at::Tensor& t_max,
    const at::Tensor& bits, const at::Tensor& aabb, int64_t res, int64_t n_cascades, double step_size,
    double cone_angle, double dt_max, int64_t max_samples) {
  check_rays_cuda(origins, dirs);
  const int64_t R = origins.size(0);
  TORCH_CHECK(t_min.numel() == R && t_max.numel() == R && t_min.scalar_type() == at::kFloat &&
                  t_max.scalar_type() == at::kFloat && t_min.is_contiguous() && t_max.is_contiguous(),
              "ray_march: t_min and t_max must be contiguous float32 [R]");
  TORCH_CHECK(step_size > 0.0, "ray_march: step_size must be positive");
  const c10::cuda::CUDAGuard guard(origins.device());
  const Grid g = make_grid(bits, aabb, res, n_cascades);
  const Step s{static_cast<float>(step_size), static_cast<float>(cone_angle), static_cast<float>(dt_max),
               static_cast<int>(std::min<int64_t>(max_samples, 1 << 30))};
  auto opts = origins.options();
  at::Tensor counts = at::empty({R}, opts.dtype(at::kLong));
  at::Tensor t_resume = at::empty({R}, opts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (R > 0) {
    count_kernel<<<blocks_for(R), kThreads, 0, stream>>>(R, origins.data_ptr<float>(), dirs.data_ptr<float>(),
                                                         t_min.data_ptr<float>(), t_max.data_ptr<float>(), g, s,
                                                         counts.data_ptr<int64_t>(), t_resume.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor cum = at::cumsum(counts, 0);
  at::Tensor offsets = cum - counts;
  const int64_t total = R > 0 ? cum[R - 1].item<int64_t>() : 0;
  at::Tensor t_starts = at::empty({total}, opts);
  at::Tensor t_ends = at::empty({total}, opts);
  at::Tensor ray_indices = at::empty({total}, opts.dtype(at::kLong));
  if (total > 0) {
    fill_kernel<<<blocks_for(R), kThreads, 0, stream>>>(R, origins.data_ptr<float>(), dirs.data_ptr<float>(),
                                                        t_min.data_ptr<float>(), t_max.data_ptr<float>(), g, s,
                                                        offsets.data_ptr<int64_t>(), t_starts.data_ptr<float>(),
                                                        t_ends.data_ptr<float>(), ray_indices.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor packed = at::stack({offsets, counts}, 1);
  return {packed, ray_indices, t_starts, t_ends, t_resume};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ray_aabb_intersect_cuda(const at::Tensor& origins,
                                                                       const at::Tensor& dirs, const at::Tensor& aabb) {
  check_rays_cuda(origins, dirs);
  const c10::cuda::CUDAGuard guard(origins.device());
  const int64_t R = origins.size(0);
  auto box = aabb.detach().to(at::kCPU, at::kFloat).contiguous();
  TORCH_CHECK(box.numel() == 6, "ray_aabb_intersect: aabb must have 6 values");
  const float* b = box.data_ptr<float>();
  at::Tensor t0 = at::empty({R}, origins.options());
  at::Tensor t1 = at::empty({R}, origins.options());
  at::Tensor hit = at::empty({R}, origins.options().dtype(at::kBool));
  if (R > 0) {
    aabb_kernel<<<blocks_for(R), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        R, origins.data_ptr<float>(), dirs.data_ptr<float>(), b[0], b[1], b[2], b[3], b[4], b[5], t0.data_ptr<float>(),
        t1.data_ptr<float>(), hit.data_ptr<bool>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {t0, t1, hit};
}

}  // namespace ray_march
}  // namespace nerfhead
