// Shared checks and helpers for nerfhead's kernels.
#pragma once
#include <torch/extension.h>

#define NH_CHECK_CONTIGUOUS(x) TORCH_CHECK((x).is_contiguous(), #x " must be contiguous")
#define NH_CHECK_CPU(x) TORCH_CHECK(!(x).is_cuda(), #x " must be a CPU tensor")
#define NH_CHECK_CUDA(x) TORCH_CHECK((x).is_cuda(), #x " must be a CUDA tensor")
#define NH_CHECK_FLOAT(x) TORCH_CHECK((x).scalar_type() == at::kFloat, #x " must be float32")

#ifdef WITH_CUDA
#define NH_DISPATCH_DEVICE(x, cpu_call, cuda_call) ((x).is_cuda() ? (cuda_call) : (cpu_call))
#else
// TORCH_CHECK is a statement, so it sits in an immediately invoked lambda to keep this an expression.
#define NH_DISPATCH_DEVICE(x, cpu_call, cuda_call)                             \
  ([&]() {                                                                     \
    TORCH_CHECK(!(x).is_cuda(), "nerfhead._C was built without CUDA kernels"); \
    return (cpu_call);                                                         \
  }())
#endif
