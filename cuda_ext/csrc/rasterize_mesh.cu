// rasterize_mesh, CUDA kernel: one thread per (image, triangle) scan-converts the triangle's bounding box and
// keeps the per-pixel minimum of the packed key (float bits of depth) << 32 | triangle id with atomicMin; a
// resolve pass unpacks ids and depths. Same rules as the CPU kernel (rasterize_mesh.h).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "rasterize_mesh.h"

namespace {

constexpr unsigned long long kKeyNone = 0xFFFFFFFFFFFFFFFFull;

__global__ void raster_kernel(const float* __restrict__ verts, const int32_t* __restrict__ faces, int64_t B, int64_t V,
                              int64_t F, int64_t W, int64_t H, float near, unsigned long long* __restrict__ keys) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * F) return;
  const int64_t b = idx / F, f = idx % F;
  const float* vs = verts + b * V * 3;
  RmTri t;
  if (!rm_setup(vs, faces, f, near, t)) return;
  int64_t xa, xb, ya, yb;
  rm_pixel_range(fminf(t.x[0], fminf(t.x[1], t.x[2])), fmaxf(t.x[0], fmaxf(t.x[1], t.x[2])), W, xa, xb);
  rm_pixel_range(fminf(t.y[0], fminf(t.y[1], t.y[2])), fmaxf(t.y[0], fmaxf(t.y[1], t.y[2])), H, ya, yb);
  unsigned long long* kb = keys + b * H * W;
  for (int64_t y = ya; y <= yb; ++y) {
    const float py = (float)y + 0.5f;
    for (int64_t x = xa; x <= xb; ++x) {
      float d;
      if (!rm_cover(t, (float)x + 0.5f, py, d)) continue;
      const unsigned long long key = ((unsigned long long)__float_as_uint(d) << 32) | (unsigned long long)(uint32_t)f;
      atomicMin(kb + y * W + x, key);
    }
  }
}

__global__ void resolve_kernel(const unsigned long long* __restrict__ keys, int64_t n, int32_t* __restrict__ ids,
                               float* __restrict__ depth) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned long long k = keys[i];
  if (k == kKeyNone) {
    ids[i] = -1;
    depth[i] = 0.f;
  } else {
    ids[i] = (int32_t)(k & 0xFFFFFFFFull);
    depth[i] = __uint_as_float((unsigned int)(k >> 32));
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rasterize_mesh_forward_cuda(const at::Tensor& verts_screen, const at::Tensor& faces,
                                                               int64_t width, int64_t height, double near) {
  TORCH_CHECK(verts_screen.is_cuda() && faces.is_cuda(), "rasterize_mesh: CUDA tensors expected");
  const c10::cuda::CUDAGuard guard(verts_screen.device());
  const int64_t B = verts_screen.size(0), V = verts_screen.size(1), F = faces.size(0);
  auto ids = at::empty({B, height, width}, verts_screen.options().dtype(at::kInt));
  auto depth = at::empty({B, height, width}, verts_screen.options().dtype(at::kFloat));
  const int64_t n = B * height * width;
  if (n == 0) return {ids, depth};
  // int64 storage reinterpreted as unsigned 64-bit keys; all-ones bytes = "no triangle".
  auto keys = at::full({B, height, width}, -1, verts_screen.options().dtype(at::kLong));
  auto* kp = reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int threads = 256;
  if (B * F > 0) {
    const int64_t blocks = (B * F + threads - 1) / threads;
    raster_kernel<<<(unsigned int)blocks, threads, 0, stream>>>(
        verts_screen.data_ptr<float>(), faces.data_ptr<int32_t>(), B, V, F, width, height, (float)near, kp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  resolve_kernel<<<(unsigned int)((n + threads - 1) / threads), threads, 0, stream>>>(kp, n, ids.data_ptr<int32_t>(),
                                                                                      depth.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {ids, depth};
}
