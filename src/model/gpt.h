// GPT-2 on one CPU core: config, the flat parameter layout with Hugging Face
// GPT-2 names, the per-worker Workspace, forward/backward for training and a
// KV cache for generation. Definition: docs/ARCHITECTURE.md, "The model".
//
// Every function here runs on the calling thread only and touches no shared
// mutable state: worker threads each call forward/backward concurrently on
// their own Workspace and gradient buffer (params are read-only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/bf16.h"

namespace cllm::model {

struct Config {
  int vocab = 256;
  int layers = 0;
  int dim = 0;      // d, the residual width (C)
  int heads = 0;    // dim % heads == 0; head_dim = dim / heads
  int context = 0;  // maximum sequence length (rows of wpe)

  int head_dim() const { return dim / heads; }
  // Throws std::invalid_argument naming the field and what was expected:
  // non-positive sizes, dim not divisible by heads, sizes too large to fit
  // in memory (parameter count overflows or exceeds 2^34 floats).
  void validate() const;
  // Number of parameters, same as ParamLayout(*this).total().
  std::size_t num_params() const;
};

// One named tensor inside the flat parameter buffer (offset/size in floats).
struct TensorInfo {
  std::string name;                // e.g. "h.0.attn.c_attn.weight"
  std::vector<std::size_t> shape;  // Hugging Face GPT-2 layout, row-major
  std::size_t offset = 0;
  std::size_t size = 0;
  bool decay = false;  // AdamW weight decay: tensors with 2+ dimensions
};

// The flat layout, in this order (d = dim, V = vocab, T = context):
//   wte.weight [V,d], wpe.weight [T,d], then for each block i:
//   h.{i}.ln_1.weight [d], h.{i}.ln_1.bias [d],
//   h.{i}.attn.c_attn.weight [d,3d], h.{i}.attn.c_attn.bias [3d],
//   h.{i}.attn.c_proj.weight [d,d], h.{i}.attn.c_proj.bias [d],
//   h.{i}.ln_2.weight [d], h.{i}.ln_2.bias [d],
//   h.{i}.mlp.c_fc.weight [d,4d], h.{i}.mlp.c_fc.bias [4d],
//   h.{i}.mlp.c_proj.weight [4d,d], h.{i}.mlp.c_proj.bias [d],
//   then ln_f.weight [d], ln_f.bias [d].
// Linear weights are Conv1D style, input-major: out = inp @ W + b.
// c_attn's output columns are [q | k | v], each split into heads in order.
class ParamLayout {
 public:
  explicit ParamLayout(const Config& config);  // validates config

  const Config& config() const { return config_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  std::size_t total() const { return total_; }
  // Throws std::out_of_range naming the tensor when there is none.
  const TensorInfo& find(std::string_view name) const;

  // Offsets of the tensors of block i (for the forward/backward code).
  struct Block {
    std::size_t ln1_w, ln1_b, attn_w, attn_b, attn_proj_w, attn_proj_b;
    std::size_t ln2_w, ln2_b, fc_w, fc_b, fc_proj_w, fc_proj_b;
  };
  std::size_t wte() const { return wte_; }
  std::size_t wpe() const { return wpe_; }
  const Block& block(int i) const { return blocks_[static_cast<std::size_t>(i)]; }
  std::size_t lnf_w() const { return lnf_w_; }
  std::size_t lnf_b() const { return lnf_b_; }

 private:
  Config config_;
  std::vector<TensorInfo> tensors_;
  std::vector<Block> blocks_;
  std::size_t wte_ = 0, wpe_ = 0, lnf_w_ = 0, lnf_b_ = 0, total_ = 0;
};

// GPT-2 initialization, deterministic in seed: weights N(0, 0.02), both
// c_proj weights N(0, 0.02/sqrt(2*layers)), biases 0, LayerNorm weights 1.
void init_params(const ParamLayout& layout, float* params, std::uint64_t seed);

// The type of the matrix products' operands. fp32: everything in f32. bf16
// (mixed precision, as PyTorch's autocast): weights and the activations that
// only feed products in bf16, f32 accumulation, f32 for everything else.
enum class Precision { fp32, bf16 };
std::string_view precision_name(Precision p);

// A --precision value (auto|fp32|bf16) resolved for this CPU: auto is bf16
// where it multiplies bf16 natively (AMX-BF16 or AVX512_BF16, as oneDNN sees
// it: kernels::bf16_support()) and fp32 elsewhere. Throws
// std::invalid_argument naming `flag` for an unknown value, or bf16 on a CPU
// without native bf16.
struct PrecisionChoice {
  Precision precision;
  std::string why;  // e.g. "auto: the CPU has AVX512_BF16 (...)"
};
PrecisionChoice choose_precision(std::string_view value, std::string_view flag = "--precision");

// The weights a pass reads: the f32 parameters, and for a bf16 workspace
// their bf16 copy (same layout and offsets), which the products use.
struct Weights {
  const float* f32;
  const kernels::bf16* bf16 = nullptr;
  Weights(const float* params) : f32(params) {}  // NOLINT: implicit, fp32 callers pass params
  Weights(const float* params, const kernels::bf16* params_bf16) : f32(params), bf16(params_bf16) {}
  // params and the bf16_copy() made for them (none when it is empty: fp32)
  Weights(const float* params, const std::vector<kernels::bf16>& copy)
      : f32(params), bf16(copy.empty() ? nullptr : copy.data()) {}
};

// What a run in `precision` needs besides params: their bf16 copy for bf16,
// nothing (an empty vector) for fp32.
std::vector<kernels::bf16> bf16_copy(const std::vector<float>& params, Precision precision);

// All activations of one forward/backward pass for up to batch x seq tokens,
// allocated once in the constructor (forward/backward allocate nothing).
class Workspace {
 public:
  // Throws std::invalid_argument if batch < 1 or seq is not in [1, context].
  // The precision is the workspace's for good: every pass through it runs so.
  Workspace(const Config& config, int batch, int seq, Precision precision = Precision::fp32);
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&&) noexcept;
  Workspace& operator=(Workspace&&) noexcept;
  ~Workspace();

  int max_batch() const;
  int max_seq() const;
  std::size_t bytes() const;  // memory held
  // What bytes() would be for a workspace of that shape, without allocating
  // it (the trainer's memory plan). Throws as the constructor does.
  static std::size_t planned_bytes(const Config& config, int batch, int seq, Precision precision);
  Precision precision() const;
  struct Buffers;             // defined in gpt.cpp

 private:
  friend float forward(const ParamLayout&, Weights, const std::int32_t*, const std::int32_t*, int, int, Workspace&);
  friend float forward_backward(const ParamLayout&, Weights, const std::int32_t*, const std::int32_t*, int, int, float*,
                                float, bool, Workspace&);
  friend void forward_logits(const ParamLayout&, Weights, const std::int32_t*, int, int, Workspace&, float*);
  std::unique_ptr<Buffers> buf_;
};

// tokens, targets: B*T int32 ids in [0, vocab), row-major (B,T).
// B <= max_batch, T <= max_seq. Returns the mean cross-entropy over the B*T
// tokens. The LM head and the loss go a chunk of rows at a time: the
// workspace never holds the (B,T,V) logits.
// Throws std::invalid_argument for out-of-range ids or sizes, null targets,
// or a bf16 workspace without bf16 weights.
float forward(const ParamLayout& layout, Weights weights, const std::int32_t* tokens,
              const std::int32_t* targets, int B, int T, Workspace& ws);

// The logits (B,T,V) of tokens into `logits` (B*T*V floats, the caller's:
// the workspace has room for one chunk of them only). Throws as forward.
void forward_logits(const ParamLayout& layout, Weights weights, const std::int32_t* tokens, int B, int T,
                    Workspace& ws, float* logits);

// One training pass: forward as above, then grad += scale * d(mean
// loss)/d(params), or grad = ... when overwrite (then grad's old contents,
// even NaN, are ignored). Returns the loss. The LM head's backward runs in
// the forward, chunk by chunk, so its logits are computed once.
float forward_backward(const ParamLayout& layout, Weights weights, const std::int32_t* tokens,
                       const std::int32_t* targets, int B, int T, float* grad, float scale, bool overwrite,
                       Workspace& ws);

// Incremental inference for generation: step() appends one token at the next
// position and returns the logits (V) for the token after it. With bf16
// weights (Weights::bf16 set) the products read them, as a bf16 workspace
// does; the cached keys and values and attention stay f32.
class KvCache {
 public:
  explicit KvCache(const Config& config);
  void reset();  // back to position 0
  // Throws std::invalid_argument for an out-of-range token and
  // std::length_error when position() == context.
  const float* step(const ParamLayout& layout, Weights weights, std::int32_t token);
  int position() const { return pos_; }

 private:
  template <class Op>
  const float* step_with(const ParamLayout& layout, const float* params, const Op* mats, std::int32_t token);

  Config config_;
  int pos_ = 0;
  std::vector<float> k_, v_;  // (layers, context, dim)
  std::vector<float> x_, next_x_, ln_, qkv_, atty_, att_, fc_, fc_gelu_, logits_;
  std::vector<kernels::bf16> operand_;  // ln_, atty_ or fc_gelu_ converted for bf16 products
};

}  // namespace cllm::model
