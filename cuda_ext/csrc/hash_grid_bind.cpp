// Python bindings for the hash_grid op: checks the inputs, builds the per-level metadata and routes CPU tensors to
// hash_grid_cpu.cpp and CUDA tensors to hash_grid.cu (when built WITH_CUDA).
#include <torch/extension.h>

#include <vector>

#include "common.h"
#include "hash_grid.h"

namespace {

using nerfhead::hash_grid::kMaxLevels;
using nerfhead::hash_grid::Levels;

Levels make_levels(const std::vector<int64_t>& offsets, const std::vector<int64_t>& resolutions,
                   const std::vector<double>& scales, const std::vector<bool>& hashed) {
  const int64_t n_levels = static_cast<int64_t>(resolutions.size());
  TORCH_CHECK(n_levels >= 1 && n_levels <= kMaxLevels, "hash_grid: n_levels must be in [1, ", kMaxLevels, "], got ",
              n_levels);
  TORCH_CHECK(static_cast<int64_t>(offsets.size()) == n_levels + 1 && static_cast<int64_t>(scales.size()) == n_levels &&
                  static_cast<int64_t>(hashed.size()) == n_levels,
              "hash_grid: offsets need n_levels + 1 entries and scales/hashed n_levels");
  Levels lv{};
  lv.n_levels = static_cast<int>(n_levels);
  lv.hashed = 0;
  for (int64_t l = 0; l < n_levels; ++l) {
    const int64_t size = offsets[l + 1] - offsets[l];
    TORCH_CHECK(offsets[l] >= 0 && size > 0 && size <= (int64_t(1) << 31), "hash_grid: level ", l,
                " has an invalid size ", size);
    TORCH_CHECK(resolutions[l] >= 1 && resolutions[l] <= (int64_t(1) << 31), "hash_grid: bad resolution at level ", l);
    lv.offset[l] = offsets[l];
    lv.size[l] = static_cast<uint32_t>(size);
    lv.mask[l] = (size & (size - 1)) == 0 ? static_cast<uint32_t>(size - 1) : 0u;
    if (size == 1) lv.mask[l] = 0;  // index % 1 == 0 either way; keep the mask meaning "power of two > 1"
    lv.resolution[l] = static_cast<uint32_t>(resolutions[l]);
    lv.scale[l] = scales[l];
    if (hashed[l]) lv.hashed |= (1u << l);
  }
  return lv;
}

void check_common(const at::Tensor& x, const at::Tensor& table, const Levels& lv, int64_t n_features) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) >= 2 && x.size(1) <= nerfhead::hash_grid::kMaxDims,
              "hash_grid: x must be [N, D] with D in {2, 3, 4}, got ", x.sizes());
  TORCH_CHECK(n_features == 1 || n_features == 2 || n_features == 4 || n_features == 8,
              "hash_grid: n_features must be 1, 2, 4 or 8, got ", n_features);
  TORCH_CHECK(table.dim() == 1 && table.numel() == lv.offset[lv.n_levels - 1] * n_features +
                                                       int64_t(lv.size[lv.n_levels - 1]) * n_features,
              "hash_grid: table must be flat with n_params * n_features = ",
              (lv.offset[lv.n_levels - 1] + lv.size[lv.n_levels - 1]) * n_features, " values, got ", table.sizes());
  TORCH_CHECK(x.device() == table.device(), "hash_grid: x and table must be on the same device");
  NH_CHECK_CONTIGUOUS(x);
  NH_CHECK_CONTIGUOUS(table);
  if (x.is_cuda()) {
    TORCH_CHECK(x.scalar_type() == at::kFloat, "hash_grid (CUDA): x must be float32, got ", x.scalar_type());
    TORCH_CHECK(table.scalar_type() == at::kFloat || table.scalar_type() == at::kHalf,
                "hash_grid (CUDA): table must be float32 or float16, got ", table.scalar_type());
  } else {
    TORCH_CHECK(table.scalar_type() == at::kFloat || table.scalar_type() == at::kDouble,
                "hash_grid (CPU): table must be float32 or float64 (float16 tables are CUDA-only), got ",
                table.scalar_type());
    TORCH_CHECK(x.scalar_type() == table.scalar_type(), "hash_grid (CPU): x and table must share a dtype, got ",
                x.scalar_type(), " and ", table.scalar_type());
  }
}

at::Tensor hash_grid_forward(const at::Tensor& x, const at::Tensor& table, const std::vector<int64_t>& offsets,
                             const std::vector<int64_t>& resolutions, const std::vector<double>& scales,
                             const std::vector<bool>& hashed, int64_t n_features, bool smoothstep) {
  const Levels lv = make_levels(offsets, resolutions, scales, hashed);
  check_common(x, table, lv, n_features);
  return NH_DISPATCH_DEVICE(x, nerfhead::hash_grid::hash_grid_forward_cpu(x, table, lv, n_features, smoothstep),
                            nerfhead::hash_grid::hash_grid_forward_cuda(x, table, lv, n_features, smoothstep));
}

std::tuple<at::Tensor, at::Tensor> hash_grid_backward(const at::Tensor& grad_out, const at::Tensor& x,
                                                      const at::Tensor& table, const std::vector<int64_t>& offsets,
                                                      const std::vector<int64_t>& resolutions,
                                                      const std::vector<double>& scales,
                                                      const std::vector<bool>& hashed, int64_t n_features,
                                                      bool smoothstep, bool need_table_grad, bool need_input_grad) {
  const Levels lv = make_levels(offsets, resolutions, scales, hashed);
  check_common(x, table, lv, n_features);
  TORCH_CHECK(
      grad_out.dim() == 2 && grad_out.size(0) == x.size(0) && grad_out.size(1) == int64_t(lv.n_levels) * n_features,
      "hash_grid: grad_out must be [N, n_levels * n_features], got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == table.scalar_type() && grad_out.device() == table.device(),
              "hash_grid: grad_out must match the table's dtype and device");
  NH_CHECK_CONTIGUOUS(grad_out);
  return NH_DISPATCH_DEVICE(x,
                            nerfhead::hash_grid::hash_grid_backward_cpu(grad_out, x, table, lv, n_features, smoothstep,
                                                                        need_table_grad, need_input_grad),
                            nerfhead::hash_grid::hash_grid_backward_cuda(grad_out, x, table, lv, n_features, smoothstep,
                                                                         need_table_grad, need_input_grad));
}

}  // namespace

void init_hash_grid(pybind11::module_& m) {
  m.def("hash_grid_forward", &hash_grid_forward,
        "Hash-grid encoding forward: x [N, D], flat table -> [N, n_levels * n_features]", pybind11::arg("x"),
        pybind11::arg("table"), pybind11::arg("offsets"), pybind11::arg("resolutions"), pybind11::arg("scales"),
        pybind11::arg("hashed"), pybind11::arg("n_features"), pybind11::arg("smoothstep"));
  m.def("hash_grid_backward", &hash_grid_backward, "Hash-grid encoding backward: (grad_table or None, grad_x or None)",
        pybind11::arg("grad_out"), pybind11::arg("x"), pybind11::arg("table"), pybind11::arg("offsets"),
        pybind11::arg("resolutions"), pybind11::arg("scales"), pybind11::arg("hashed"), pybind11::arg("n_features"),
        pybind11::arg("smoothstep"), pybind11::arg("need_table_grad"), pybind11::arg("need_input_grad"));
}
