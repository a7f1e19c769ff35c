// Python bindings for the composite op: checks shapes once for both devices and routes CPU tensors to
// composite_cpu.cpp and CUDA tensors to composite.cu (when built WITH_CUDA). Formulas: composite.h.
#include <torch/extension.h>

#include "common.h"
#include "composite.h"

namespace {

namespace cp = nerfhead::composite;

void check_samples(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts,
                   const at::Tensor& t_ends, const at::Tensor& packed_info) {
  TORCH_CHECK(sigmas.dim() == 1, "composite: sigmas must be [S], got ", sigmas.sizes());
  const int64_t S = sigmas.size(0);
  TORCH_CHECK(rgbs.dim() == 2 && rgbs.size(0) == S, "composite: rgbs must be [S, C], got ", rgbs.sizes());
  TORCH_CHECK(t_starts.dim() == 1 && t_starts.size(0) == S && t_ends.dim() == 1 && t_ends.size(0) == S,
              "composite: t_starts and t_ends must be [S]");
  TORCH_CHECK(packed_info.dim() == 2 && packed_info.size(1) == 2 && packed_info.scalar_type() == at::kLong,
              "composite: packed_info must be [R, 2] int64");
  TORCH_CHECK(sigmas.scalar_type() == at::kFloat || sigmas.scalar_type() == at::kDouble,
              "composite: sigmas must be float32 or float64");
  for (const at::Tensor* t : {&rgbs, &t_starts, &t_ends}) {
    TORCH_CHECK(t->scalar_type() == sigmas.scalar_type(), "composite: all sample tensors must share one dtype");
  }
  for (const at::Tensor* t : {&sigmas, &rgbs, &t_starts, &t_ends, &packed_info}) {
    NH_CHECK_CONTIGUOUS(*t);
    TORCH_CHECK(t->device() == sigmas.device(), "composite: all tensors must be on one device");
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> composite_forward(
    const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts, const at::Tensor& t_ends,
    const at::Tensor& packed_info) {
  check_samples(sigmas, rgbs, t_starts, t_ends, packed_info);
  return NH_DISPATCH_DEVICE(sigmas, cp::composite_forward_cpu(sigmas, rgbs, t_starts, t_ends, packed_info),
                            cp::composite_forward_cuda(sigmas, rgbs, t_starts, t_ends, packed_info));
}

std::tuple<at::Tensor, at::Tensor> composite_backward(const at::Tensor& grad_rgb, const at::Tensor& grad_opacity,
                                                      const at::Tensor& grad_depth,
                                                      const c10::optional<at::Tensor>& grad_weights,
                                                      const at::Tensor& sigmas, const at::Tensor& rgbs,
                                                      const at::Tensor& t_starts, const at::Tensor& t_ends,
                                                      const at::Tensor& packed_info, const at::Tensor& weights,
                                                      const at::Tensor& trans) {
  check_samples(sigmas, rgbs, t_starts, t_ends, packed_info);
  const int64_t R = packed_info.size(0);
  const int64_t C = rgbs.size(1);
  auto g_rgb = grad_rgb.to(sigmas.scalar_type()).contiguous();
  auto g_op = grad_opacity.to(sigmas.scalar_type()).contiguous();
  auto g_dp = grad_depth.to(sigmas.scalar_type()).contiguous();
  TORCH_CHECK(g_rgb.numel() == R * C && g_op.numel() == R && g_dp.numel() == R,
              "composite_backward: output gradients have the wrong size");
  at::Tensor g_w;
  if (grad_weights.has_value() && grad_weights->defined()) {
    g_w = grad_weights->to(sigmas.scalar_type()).contiguous();
    TORCH_CHECK(g_w.numel() == sigmas.numel(), "composite_backward: grad_weights must be [S]");
  }
  TORCH_CHECK(weights.sizes() == sigmas.sizes() && trans.sizes() == sigmas.sizes(),
              "composite_backward: weights and trans must be [S]");
  return NH_DISPATCH_DEVICE(sigmas,
                            cp::composite_backward_cpu(g_rgb, g_op, g_dp, g_w, sigmas, rgbs, t_starts, t_ends,
                                                       packed_info, weights.contiguous(), trans.contiguous()),
                            cp::composite_backward_cuda(g_rgb, g_op, g_dp, g_w, sigmas, rgbs, t_starts, t_ends,
                                                        packed_info, weights.contiguous(), trans.contiguous()));
}

}  // namespace

void init_composite(pybind11::module_& m) {
  m.def("composite_forward", &composite_forward,
        "Front-to-back compositing of packed samples -> (rgb [R,C], opacity [R,1], depth [R,1], weights [S], "
        "trans [S])",
        pybind11::arg("sigmas"), pybind11::arg("rgbs"), pybind11::arg("t_starts"), pybind11::arg("t_ends"),
        pybind11::arg("packed_info"));
  m.def("composite_backward", &composite_backward,
        "Reverse-scan backward of composite_forward -> (grad_sigmas [S], grad_rgbs [S,C])", pybind11::arg("grad_rgb"),
        pybind11::arg("grad_opacity"), pybind11::arg("grad_depth"), pybind11::arg("grad_weights"),
        pybind11::arg("sigmas"), pybind11::arg("rgbs"), pybind11::arg("t_starts"), pybind11::arg("t_ends"),
        pybind11::arg("packed_info"), pybind11::arg("weights"), pybind11::arg("trans"));
}
