// EtaggerLstmSequence: one LSTM direction over right-padded sentences in a single op.
//
// The exported BiLSTM otherwise runs ~20 TensorFlow ops per time step, and for one sentence
// their dispatch costs more than the arithmetic. This kernel does the same computation as a
// Keras LSTMCell (tanh/sigmoid, gates i f c o, zero initial state) in one call: one
// [B*T, D] x [D, 4U] product for every token's input projection, then per step one
// [B, U] x [U, 4U] product and the gates. Built by `python -m etagger.ops`.
//
// The attr bf16 allows bfloat16 products where the CPU has AVX512-BF16, whose VDPBF16PS does
// twice the multiply-adds per cycle of a float32 FMA: both products then take their operands
// rounded to bfloat16 (to nearest, ties to even) and sum in float32, in a small packed kernel;
// the gates and states stay float32. Elsewhere the products stay float32 (as oneDNN's
// "fpmath mode bf16" allows, and does not oblige, bfloat16 arithmetic).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

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

// ETAGGER_PORTABLE_KERNELS=1 keeps float32 products on any CPU (for tests and comparisons).
bool UseAvx512Bf16() {
  static const bool use = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bf16") &&
                          std::getenv("ETAGGER_PORTABLE_KERNELS") == nullptr;
  return use;
}

// The first n of 16 lanes (none if n <= 0).
__mmask16 Lanes(int64_t n) {
  return n >= 16 ? 0xFFFF : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

// Rounds float32 bit patterns to bfloat16 (to nearest, ties to even), in the high halves.
__attribute__((target("avx512f"))) __m512i RoundHigh(__m512i bits) {
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  return _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
}

// The right-hand side for VDPBF16PS: [ceil(K/2)][n_pad][2] bfloat16, so that one 64-byte load
// holds rows 2p and 2p+1 of 16 columns, interleaved; n_pad rounds N up to 16, zero-filled.
// Packed at every call, so vectorized: a scalar loop cost a single sentence 0.1 ms.
struct PackedBf16 {
  int64_t k2 = 0, n = 0, n_pad = 0;
  std::unique_ptr<uint32_t[]> pairs;  // not zeroed first: Pack writes every element

  PackedBf16(const float* rhs, int64_t k, int64_t n_)
      : k2((k + 1) / 2), n(n_), n_pad((n_ + 15) / 16 * 16), pairs(new uint32_t[k2 * n_pad]) {
    Pack(rhs, k);
  }

  __attribute__((target("avx512f"))) void Pack(const float* rhs, int64_t k) {
    uint32_t* out = pairs.get();
    for (int64_t p = 0; p < k2; ++p) {
      const float* even = rhs + 2 * p * n;
      const float* odd = 2 * p + 1 < k ? even + n : nullptr;  // an odd K's last row pairs with 0
      for (int64_t j = 0; j < n_pad; j += 16) {
        const __mmask16 valid = Lanes(n - j);
        const __m512i lo = RoundHigh(_mm512_maskz_loadu_epi32(valid, even + j));
        const __m512i hi = odd ? RoundHigh(_mm512_maskz_loadu_epi32(valid, odd + j))
                               : _mm512_setzero_si512();
        // Each 32-bit word: row 2p's bfloat16 in its low half, row 2p+1's in its high half.
        const __m512i pair = _mm512_or_si512(_mm512_and_si512(hi, _mm512_set1_epi32(0xFFFF0000)),
                                             _mm512_srli_epi32(lo, 16));
        _mm512_storeu_si512(out + p * n_pad + j, pair);
      }
    }
  }
};

// c[MR rows, NR*16 columns from n0] = a[MR rows] (bfloat16, lda apart) x b.
template <int MR, int NR>
__attribute__((target("avx512f,avx512bf16"))) void Bf16Tile(const uint16_t* a, int64_t lda,
                                                             const PackedBf16& b, int64_t n0,
                                                             float* c, int64_t ldc) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const uint32_t* bp = b.pairs.get() + n0;
  for (int64_t p = 0; p < b.k2; ++p, bp += b.n_pad) {
    __m512bh bv[NR];
    for (int j = 0; j < NR; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(bp + 16 * j);
    for (int i = 0; i < MR; ++i) {
      int32_t pair;
      std::memcpy(&pair, a + i * lda + 2 * p, 4);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      const int64_t col = n0 + 16 * j;
      _mm512_mask_storeu_ps(c + i * ldc + col, Lanes(b.n - col), acc[i][j]);
    }
}

using TileFn = void (*)(const uint16_t*, int64_t, const PackedBf16&, int64_t, float*, int64_t);
constexpr int kRowsPerTile = 4, kVectorsPerTile = 5;  // 20 accumulators of the 32 registers

template <int MR>
TileFn TileFor(int nr) {
  switch (nr) {
    case 1: return Bf16Tile<MR, 1>;
    case 2: return Bf16Tile<MR, 2>;
    case 3: return Bf16Tile<MR, 3>;
    case 4: return Bf16Tile<MR, 4>;
    default: return Bf16Tile<MR, kVectorsPerTile>;
  }
}

TileFn TileFor(int mr, int nr) {
  switch (mr) {
    case 1: return TileFor<1>(nr);
    case 2: return TileFor<2>(nr);
    case 3: return TileFor<3>(nr);
    default: return TileFor<kRowsPerTile>(nr);
  }
}

// Rounds rows of a float matrix to bfloat16, each row padded with zeros to ld (>= cols).
__attribute__((target("avx512f"))) void ToBf16Rows(const float* src, int64_t rows, int64_t cols,
                                                   uint16_t* dst, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < ld; j += 16) {
      const __m512i bits = _mm512_maskz_loadu_epi32(Lanes(cols - j), src + r * cols + j);
      _mm512_mask_cvtepi32_storeu_epi16(dst + r * ld + j, Lanes(ld - j),
                                        _mm512_srli_epi32(RoundHigh(bits), 16));
    }
}

// out[M, N] = lhs[M, K] x rhs[K, N], all row-major float32, for one fixed rhs: in float32,
// or with bfloat16 operands where allowed and supported (see the top of this file).
class Product {
 public:
  Product(const float* rhs, int64_t k, int64_t n, bool allow_bf16)
      : rhs_(rhs), k_(k), n_(n) {
    if (allow_bf16 && UseAvx512Bf16()) packed_.emplace(rhs, k, n);
  }

  void operator()(const float* lhs, int64_t m, float* out) {
    if (!packed_) {
      Eigen::Map<RowMatrix>(out, m, n_).noalias() =
          ConstMatrix(lhs, m, k_) * ConstMatrix(rhs_, k_, n_);
      return;
    }
    const PackedBf16& b = *packed_;
    const int64_t ld = 2 * b.k2;
    lhs_bf16_.resize(m * ld);
    ToBf16Rows(lhs, m, k_, lhs_bf16_.data(), ld);
    for (int64_t v = 0; v < b.n_pad / 16; v += kVectorsPerTile) {
      const int nr = static_cast<int>(std::min<int64_t>(kVectorsPerTile, b.n_pad / 16 - v));
      for (int64_t i = 0; i < m; i += kRowsPerTile) {
        const int mr = static_cast<int>(std::min<int64_t>(kRowsPerTile, m - i));
        TileFor(mr, nr)(lhs_bf16_.data() + i * ld, ld, b, 16 * v, out + i * n_, n_);
      }
    }
  }

 private:
  const float* rhs_;
  int64_t k_, n_;
  std::optional<PackedBf16> packed_;  // the packed rhs, when the products are bfloat16
  std::vector<uint16_t> lhs_bf16_;
};

class LstmSequenceOp : public OpKernel {
 public:
  explicit LstmSequenceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("reverse", &reverse_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("bf16", &bf16_));
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

    RowMatrix projected(B * T, 4 * U);
    Product(kernel.flat<float>().data(), D, 4 * U, bf16_)(x.flat<float>().data(), B * T,
                                                         projected.data());
    projected.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias.flat<float>().data(), 4 * U);
    Product recurrent_product(recurrent.flat<float>().data(), U, 4 * U, bf16_);
    RowMatrix h = RowMatrix::Zero(B, U), c = RowMatrix::Zero(B, U), z(B, 4 * U);
    for (int64_t s = 0; s < steps; ++s) {
      recurrent_product(h.data(), B, z.data());
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
  bool reverse_, bf16_;
};

}  // namespace

REGISTER_OP("EtaggerLstmSequence")
    .Input("x: float")
    .Input("lengths: int32")
    .Input("kernel: float")
    .Input("recurrent: float")
    .Input("bias: float")
    .Attr("reverse: bool = false")
    .Attr("bf16: bool = false")
    .Output("h: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      auto x = c->input(0);
      c->set_output(0, c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), c->Dim(c->input(3), 0)}));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("EtaggerLstmSequence").Device(tensorflow::DEVICE_CPU),
                        LstmSequenceOp);
