// EtaggerCrfMarginals: a linear-chain CRF's posterior tag marginals in a single op.
//
// The same forward-backward as etagger.crf.crf_marginals, which the serving graph otherwise
// runs as a TensorFlow loop of about ten ops per time step: probability space in double,
// every score exponentiated after subtracting its maximum, forward and backward vectors
// rescaled to sum 1 at each step (a marginal is a ratio, so the scales cancel).
// Built with lstm_sequence.cc by `python -m etagger.ops`.
#include <algorithm>
#include <cmath>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;

// exp(x - max(x)) of n values, in double.
std::vector<double> ScaledExp(const float* x, int64_t n) {
  const double top = *std::max_element(x, x + n);
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = std::exp(static_cast<double>(x[i]) - top);
  return out;
}

void Normalize(double* x, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  for (int64_t i = 0; i < n; ++i) x[i] /= sum;
}

class CrfMarginalsOp : public OpKernel {
 public:
  explicit CrfMarginalsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& potentials = ctx->input(0);
    const Tensor& lengths = ctx->input(1);
    const Tensor& transitions = ctx->input(2);
    const Tensor& start_t = ctx->input(3);
    const Tensor& end_t = ctx->input(4);
    OP_REQUIRES(ctx, potentials.dims() == 3 && lengths.dims() == 1 && transitions.dims() == 2 &&
                         start_t.dims() == 1 && end_t.dims() == 1,
                absl::InvalidArgumentError("potentials [B,T,K], lengths [B], transitions [K,K], "
                                           "start [K], end [K]"));
    const int64_t B = potentials.dim_size(0), T = potentials.dim_size(1);
    const int64_t K = potentials.dim_size(2);
    OP_REQUIRES(ctx, lengths.dim_size(0) == B && transitions.dim_size(0) == K &&
                         transitions.dim_size(1) == K && start_t.dim_size(0) == K &&
                         end_t.dim_size(0) == K && K > 0,
                absl::InvalidArgumentError("CRF parameter shapes do not match the potentials"));
    auto len = lengths.flat<int32_t>();
    for (int64_t b = 0; b < B; ++b) {
      OP_REQUIRES(ctx, len(b) >= 0 && len(b) <= T,
                  absl::InvalidArgumentError("lengths must lie in [0, T]"));
    }
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, potentials.shape(), &out));
    float* marginals = out->flat<float>().data();
    std::fill(marginals, marginals + B * T * K, 0.0f);  // padding stays 0

    const std::vector<double> trans = ScaledExp(transitions.flat<float>().data(), K * K);
    const std::vector<double> start = ScaledExp(start_t.flat<float>().data(), K);
    const std::vector<double> end = ScaledExp(end_t.flat<float>().data(), K);
    const float* scores = potentials.flat<float>().data();
    std::vector<double> emit(T * K), alpha(T * K), beta(T * K), weighted(K);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = len(b);
      if (n == 0) continue;
      for (int64_t t = 0; t < n; ++t) {
        const std::vector<double> e = ScaledExp(scores + (b * T + t) * K, K);
        std::copy(e.begin(), e.end(), emit.begin() + t * K);
      }
      // Forward: alpha_0 = start * emit_0, alpha_t = (alpha_{t-1} x trans) * emit_t.
      for (int64_t k = 0; k < K; ++k) alpha[k] = start[k] * emit[k];
      Normalize(&alpha[0], K);
      for (int64_t t = 1; t < n; ++t) {
        for (int64_t k = 0; k < K; ++k) {
          double sum = 0;
          for (int64_t j = 0; j < K; ++j) sum += alpha[(t - 1) * K + j] * trans[j * K + k];
          alpha[t * K + k] = sum * emit[t * K + k];
        }
        Normalize(&alpha[t * K], K);
      }
      // Backward: beta_{n-1} = end, beta_t = trans x (emit_{t+1} * beta_{t+1}).
      std::copy(end.begin(), end.end(), beta.begin() + (n - 1) * K);
      for (int64_t t = n - 2; t >= 0; --t) {
        for (int64_t k = 0; k < K; ++k) weighted[k] = emit[(t + 1) * K + k] * beta[(t + 1) * K + k];
        for (int64_t j = 0; j < K; ++j) {
          double sum = 0;
          for (int64_t k = 0; k < K; ++k) sum += trans[j * K + k] * weighted[k];
          beta[t * K + j] = sum;
        }
        Normalize(&beta[t * K], K);
      }
      for (int64_t t = 0; t < n; ++t) {
        double total = 0;
        for (int64_t k = 0; k < K; ++k) total += alpha[t * K + k] * beta[t * K + k];
        float* row = marginals + (b * T + t) * K;
        for (int64_t k = 0; k < K; ++k) {
          row[k] = static_cast<float>(alpha[t * K + k] * beta[t * K + k] / total);
        }
      }
    }
  }
};

}  // namespace

REGISTER_OP("EtaggerCrfMarginals")
    .Input("potentials: float")
    .Input("lengths: int32")
    .Input("transitions: float")
    .Input("start_transitions: float")
    .Input("end_transitions: float")
    .Output("marginals: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("EtaggerCrfMarginals").Device(tensorflow::DEVICE_CPU),
                        CrfMarginalsOp);
