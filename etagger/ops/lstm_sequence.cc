// EtaggerLstmSequence: one LSTM direction over right-padded sentences in a single op.
//
// The exported BiLSTM otherwise runs ~20 TensorFlow ops per time step, and for one sentence
// their dispatch costs more than the arithmetic. This kernel does the same computation as a
// Keras LSTMCell (tanh/sigmoid, gates i f c o, zero initial state) in one call: one
// [B*T, D] x [D, 4U] product for every token's input projection, then per step one
// [B, U] x [U, 4U] product and the gates. Built by `python -m etagger.ops`.
#include <algorithm>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrix = Eigen::Map<const RowMatrix>;

class LstmSequenceOp : public OpKernel {
 public:
  explicit LstmSequenceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("reverse", &reverse_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& lengths = ctx->input(1);
    const Tensor& kernel = ctx->input(2);
    const Tensor& recurrent = ctx->input(3);
    const Tensor& bias = ctx->input(4);
    OP_REQUIRES(ctx, x.dims() == 3 && lengths.dims() == 1 && kernel.dims() == 2 &&
                         recurrent.dims() == 2 && bias.dims() == 1,
                absl::InvalidArgumentError("x [B,T,D], lengths [B], kernel [D,4U], "
                                           "recurrent [U,4U], bias [4U]"));
    const int64_t B = x.dim_size(0), T = x.dim_size(1), D = x.dim_size(2);
    const int64_t U = recurrent.dim_size(0);
    OP_REQUIRES(ctx, lengths.dim_size(0) == B && kernel.dim_size(0) == D &&
                         kernel.dim_size(1) == 4 * U && recurrent.dim_size(1) == 4 * U &&
                         bias.dim_size(0) == 4 * U,
                absl::InvalidArgumentError("LSTM weight shapes do not match the inputs"));
    auto len = lengths.flat<int32_t>();
    int64_t steps = 0;
    for (int64_t b = 0; b < B; ++b) {
      OP_REQUIRES(ctx, len(b) >= 0 && len(b) <= T,
                  absl::InvalidArgumentError("lengths must lie in [0, T]"));
      steps = std::max<int64_t>(steps, len(b));
    }
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, U}), &out));
    Eigen::Map<RowMatrix> h_out(out->flat<float>().data(), B * T, U);
    h_out.setZero();  // padding stays zero, as the Keras path's outputs are zeroed there
    if (steps == 0) return;

    RowMatrix projected = ConstMatrix(x.flat<float>().data(), B * T, D) *
                          ConstMatrix(kernel.flat<float>().data(), D, 4 * U);
    projected.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias.flat<float>().data(), 4 * U);
    ConstMatrix R(recurrent.flat<float>().data(), U, 4 * U);
    RowMatrix h = RowMatrix::Zero(B, U), c = RowMatrix::Zero(B, U), z(B, 4 * U);
    for (int64_t s = 0; s < steps; ++s) {
      z.noalias() = h * R;
      for (int64_t b = 0; b < B; ++b) {
        if (s >= len(b)) continue;  // this sentence has ended; its state is never read again
        const int64_t t = reverse_ ? len(b) - 1 - s : s;
        auto zb = z.row(b).array();
        zb += projected.row(b * T + t).array();
        auto c_b = c.row(b).array();
        c_b = zb.segment(U, U).logistic() * c_b +
              zb.segment(0, U).logistic() * zb.segment(2 * U, U).tanh();
        h.row(b).array() = zb.segment(3 * U, U).logistic() * c_b.tanh();
        h_out.row(b * T + t) = h.row(b);
      }
    }
  }

 private:
  bool reverse_;
};

}  // namespace

REGISTER_OP("EtaggerLstmSequence")
    .Input("x: float")
    .Input("lengths: int32")
    .Input("kernel: float")
    .Input("recurrent: float")
    .Input("bias: float")
    .Attr("reverse: bool = false")
    .Output("h: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      auto x = c->input(0);
      c->set_output(0, c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), c->Dim(c->input(3), 0)}));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("EtaggerLstmSequence").Device(tensorflow::DEVICE_CPU),
                        LstmSequenceOp);
