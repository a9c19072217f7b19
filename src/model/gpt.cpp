#include "model/gpt.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/kernels.h"
#include "kernels/sgemm.h"
#include "model/layers.h"
#include "model/model_kernels.h"

namespace cllm::model {
namespace {


// Sizes beyond these are mistakes, not models (GPT-2 XL: 48 layers, d 1600).
constexpr long long kMaxVocab = 1 << 24;
constexpr long long kMaxLayers = 4096;
constexpr long long kMaxDim = 1 << 16;
constexpr long long kMaxContext = 1 << 20;
constexpr std::size_t kMaxParams = std::size_t{1} << 34;  // 64 GiB of floats

void check_range(const char* field, long long value, long long max) {
  if (value < 1 || value > max)
    throw std::invalid_argument("model config: " + std::string(field) + " = " +
                                std::to_string(value) + ", expected 1.." + std::to_string(max));
}

std::size_t count_params(const Config& c) {
  const std::size_t V = static_cast<std::size_t>(c.vocab), T = static_cast<std::size_t>(c.context),
                    d = static_cast<std::size_t>(c.dim), L = static_cast<std::size_t>(c.layers);
  const std::size_t block = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * 4 * d + 4 * d) +
                            (4 * d * d + d);
  return V * d + T * d + L * block + 2 * d;
}

std::size_t sz(long long v) { return static_cast<std::size_t>(v); }

}  // namespace

void Config::validate() const {
  check_range("vocab", vocab, kMaxVocab);
  check_range("layers", layers, kMaxLayers);
  check_range("dim", dim, kMaxDim);
  check_range("heads", heads, dim > 0 ? dim : 1);
  check_range("context", context, kMaxContext);
  if (dim % heads != 0)
    throw std::invalid_argument("model config: dim = " + std::to_string(dim) +
                                " is not divisible by heads = " + std::to_string(heads));
  if (count_params(*this) > kMaxParams)
    throw std::invalid_argument("model config: " + std::to_string(count_params(*this)) +
                                " parameters, expected at most " + std::to_string(kMaxParams));
}

std::size_t Config::num_params() const {
  validate();
  return count_params(*this);
}

ParamLayout::ParamLayout(const Config& config) : config_(config) {
  config_.validate();
  const std::size_t V = sz(config.vocab), T = sz(config.context), d = sz(config.dim);
  auto add = [&](std::string name, std::vector<std::size_t> shape) {
    std::size_t size = 1;
    for (std::size_t s : shape) size *= s;
    const bool decay = shape.size() >= 2;
    tensors_.push_back(TensorInfo{std::move(name), std::move(shape), total_, size, decay});
    total_ += size;
    return tensors_.back().offset;
  };
  wte_ = add("wte.weight", {V, d});
  wpe_ = add("wpe.weight", {T, d});
  for (int i = 0; i < config.layers; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    Block b{};
    b.ln1_w = add(p + "ln_1.weight", {d});
    b.ln1_b = add(p + "ln_1.bias", {d});
    b.attn_w = add(p + "attn.c_attn.weight", {d, 3 * d});
    b.attn_b = add(p + "attn.c_attn.bias", {3 * d});
    b.attn_proj_w = add(p + "attn.c_proj.weight", {d, d});
    b.attn_proj_b = add(p + "attn.c_proj.bias", {d});
    b.ln2_w = add(p + "ln_2.weight", {d});
    b.ln2_b = add(p + "ln_2.bias", {d});
    b.fc_w = add(p + "mlp.c_fc.weight", {d, 4 * d});
    b.fc_b = add(p + "mlp.c_fc.bias", {4 * d});
    b.fc_proj_w = add(p + "mlp.c_proj.weight", {4 * d, d});
    b.fc_proj_b = add(p + "mlp.c_proj.bias", {d});
    blocks_.push_back(b);
  }
  lnf_w_ = add("ln_f.weight", {d});
  lnf_b_ = add("ln_f.bias", {d});
}

const TensorInfo& ParamLayout::find(std::string_view name) const {
  for (const TensorInfo& t : tensors_)
    if (t.name == name) return t;
  throw std::out_of_range("model: no parameter tensor named '" + std::string(name) + "'");
}

void init_params(const ParamLayout& layout, float* params, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  // Box-Muller on our own uniform draws: the same numbers with every
  // standard library (std::normal_distribution is implementation-defined).
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  auto fill_normal = [&](float* p, std::size_t n, double std) {
    for (std::size_t i = 0; i < n; i += 2) {
      const double r = std::sqrt(-2.0 * std::log(uniform())), a = 2.0 * M_PI * uniform();
      p[i] = static_cast<float>(std * r * std::cos(a));
      if (i + 1 < n) p[i + 1] = static_cast<float>(std * r * std::sin(a));
    }
  };
  const double proj_std = 0.02 / std::sqrt(2.0 * layout.config().layers);
  for (const TensorInfo& t : layout.tensors()) {
    float* p = params + t.offset;
    const bool is_ln_weight = t.name.find("ln_") != std::string::npos && t.name.ends_with(".weight");
    if (t.name.ends_with(".bias")) {
      std::fill(p, p + t.size, 0.0f);
    } else if (is_ln_weight) {
      std::fill(p, p + t.size, 1.0f);
    } else {
      fill_normal(p, t.size, t.name.ends_with("c_proj.weight") ? proj_std : 0.02);
    }
  }
}

// ---------------------------------------------------------------- Workspace

// A pass goes through phases that never overlap: a layer's forward, the LM
// head, a layer's backward. What one phase needs only while it runs lives in
// one phase array per type, sized for the largest phase, that every phase
// reuses from its start (GPT-2 124M bf16, 4 x 1024 tokens: the head's 192 MiB
// of logits and their bf16 copy are the layers' 114 MiB of scratch too).
// Offsets into the phase arrays, in elements of their type.
struct PhaseLayout {
  // f32: dbig in a layer's backward, then (bf16) res2; or the head's logits.
  std::size_t res2, f32_size;
  // Operand type: ln_1 or ln_2, then GELU's output, then (bf16) an f32
  // gradient converted for the products; or the head's lnf, then (bf16) its
  // chunk's dlogits.
  std::size_t fch_gelu, dout, dlogits, op_size;

  PhaseLayout(const Config& c, std::size_t BT, std::size_t head_chunk, bool bf16) {
    const std::size_t C = sz(c.dim), head_logits = head_chunk * sz(c.vocab);
    res2 = BT * 4 * C;
    f32_size = std::max(res2 + (bf16 ? BT * C : 0), head_logits);
    fch_gelu = BT * C;
    dout = fch_gelu + BT * 4 * C;
    dlogits = BT * C;
    op_size = std::max(dout + (bf16 ? BT * 4 * C : 0), dlogits + (bf16 ? head_logits : 0));
  }
};

// The activations that only feed matrix products (and GELU), in the
// products' operand type Op (see layers.h); per-layer arrays are
// [layers][max size of one layer]: the qkv and c_fc products' outputs
// (attention's and GELU's inputs; a bf16 product rounds them once as it
// writes them, as autocast keeps a linear layer's output) and attention's.
// The LayerNorm and GELU outputs are one layer's only: the backward
// recomputes them from the layer's inputs, which it keeps anyway (cheap,
// elementwise, and 6 of the 16 floats a layer would keep per token and d).
template <class Op>
struct Operands {
  std::vector<Op> qkv, atty, fch;
  std::vector<Op> attention;  // attention's per-head operand scratch, reused by every layer
  std::vector<Op> phase;      // see PhaseLayout

  // size(vector, n) sizes each array (or only counts it: Workspace::planned_bytes).
  template <class Size>
  void lay_out(const Config& c, int seq, std::size_t BT, const PhaseLayout& phases, const Size& size) {
    const std::size_t LBT = sz(c.layers) * BT, C = sz(c.dim);
    size(qkv, LBT * 3 * C);
    size(atty, LBT * C);
    size(fch, LBT * 4 * C);
    size(attention, layers::attention_operand_scratch_size(seq, c.dim, c.heads));
    size(phase, phases.op_size);
  }

  std::size_t bytes() const {
    std::size_t n = 0;
    for (const auto* v : {&qkv, &atty, &fch, &attention, &phase}) n += v->size();
    return n * sizeof(Op);
  }
};

struct Workspace::Buffers {
  Config cfg;
  int max_batch, max_seq;
  std::size_t max_bt;
  int head_chunk;  // rows of the LM head's chunk (layers::lm_head_chunk_rows)
  Precision precision;
  PhaseLayout phases;
  // f32 activations; per-layer arrays are [layers][max size of one layer].
  // att_lse: attention's per-row log-sum-exp, (B,NH,T) per layer. res2, the
  // residual after attention, is kept by fp32 workspaces only: bf16 ones
  // recompute it in the backward from the layer's input and atty (one C x C
  // product, 1/36 of a layer's work) into the phase array. That saves 144
  // MiB per lane of GPT-2 124M at 4 x 1024 tokens, which bf16's memory
  // target needs, and costs bf16 nothing measurable on small or medium; fp32
  // ran 2-5% slower with it (docs/BENCHMARKS.md, section 8).
  std::vector<float> encoded, ln1_mean, ln1_rstd, att_lse, res2, ln2_mean, ln2_rstd, res3, lnf_mean, lnf_rstd;
  // gradients of activations, reused by every layer
  std::vector<float> dres, dsmall;
  std::vector<float> attention_scratch;  // forward and backward, reused by every layer
  std::vector<float> phase;              // see PhaseLayout
  Operands<float> f32;                   // sized in fp32 workspaces only
  Operands<kernels::bf16> bf16;          // sized in bf16 workspaces only
  std::vector<std::int32_t> tokens, targets;
  int B = 0, T = 0;
  std::size_t planned = 0;  // bytes of all the arrays

  // allocate false: nothing is allocated, planned counts what would be.
  Buffers(const Config& c, int batch, int seq, Precision p, bool allocate = true)
      : cfg(c),
        max_batch(batch),
        max_seq(seq),
        max_bt(sz(batch) * sz(seq)),
        head_chunk(layers::lm_head_chunk_rows(batch * seq, c.vocab)),
        precision(p),
        phases(c, max_bt, sz(head_chunk), p == Precision::bf16) {
    const auto size = [&](auto& v, std::size_t n) {
      planned += n * sizeof(v[0]);
      if (allocate) v.resize(n);
    };
    const std::size_t L = sz(c.layers), C = sz(c.dim);
    const std::size_t BT = max_bt, LBT = L * BT;
    size(encoded, BT * C);
    size(ln1_mean, LBT);
    size(ln1_rstd, LBT);
    size(att_lse, L * layers::attention_kept_size(batch, seq, c.heads));
    size(res2, recomputes_res2() ? 0 : LBT * C);
    size(ln2_mean, LBT);
    size(ln2_rstd, LBT);
    size(res3, LBT * C);
    size(lnf_mean, BT);
    size(lnf_rstd, BT);
    size(dres, BT * C);
    size(dsmall, BT * C);
    size(attention_scratch, layers::attention_scratch_size(seq, c.dim, c.heads));
    size(phase, phases.f32_size);
    if (p == Precision::bf16) {
      bf16.lay_out(c, seq, BT, phases, size);
    } else {
      f32.lay_out(c, seq, BT, phases, size);
    }
    size(tokens, BT);
    size(targets, BT);
  }

  // The phase array's parts (PhaseLayout).
  float* dbig() { return phase.data(); }
  bool recomputes_res2() const { return precision == Precision::bf16; }
  float* res2_of(std::size_t layer) {
    return recomputes_res2() ? phase.data() + phases.res2 : res2.data() + layer * max_bt * sz(cfg.dim);
  }
  float* logits() { return phase.data(); }
  template <class Op>
  Op* ln() { return operands<Op>().phase.data(); }
  template <class Op>
  Op* lnf() { return operands<Op>().phase.data(); }
  template <class Op>
  Op* fch_gelu() { return operands<Op>().phase.data() + phases.fch_gelu; }
  template <class Op>
  Op* dout() { return operands<Op>().phase.data() + phases.dout; }
  template <class Op>
  Op* dlogits() { return operands<Op>().phase.data() + phases.dlogits; }

  template <class Op>
  Operands<Op>& operands() {
    if constexpr (std::is_same_v<Op, float>) {
      return f32;
    } else {
      return bf16;
    }
  }

  std::size_t bytes() const {
    std::size_t n = 0;
    for (const auto* v : {&encoded, &ln1_mean, &ln1_rstd, &att_lse, &res2, &ln2_mean, &ln2_rstd, &res3, &lnf_mean,
                          &lnf_rstd, &dres, &dsmall, &attention_scratch, &phase})
      n += v->size() * sizeof(float);
    return n + f32.bytes() + bf16.bytes() + (tokens.size() + targets.size()) * sizeof(std::int32_t);
  }
};

namespace {

void check_workspace_shape(const Config& config, int batch, int seq) {
  config.validate();
  if (batch < 1) throw std::invalid_argument("workspace: batch = " + std::to_string(batch) + ", expected >= 1");
  if (seq < 1 || seq > config.context)
    throw std::invalid_argument("workspace: seq = " + std::to_string(seq) + ", expected 1.." +
                                std::to_string(config.context) + " (the context length)");
  if (static_cast<long long>(batch) * seq > std::numeric_limits<int>::max())
    throw std::invalid_argument("workspace: batch * seq = " + std::to_string(static_cast<long long>(batch) * seq) +
                                " tokens, expected at most 2^31 - 1");
}

}  // namespace

std::string_view precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

std::vector<kernels::bf16> bf16_copy(const std::vector<float>& params, Precision precision) {
  std::vector<kernels::bf16> copy(precision == Precision::bf16 ? params.size() : 0);
  kernels::active().to_bf16(copy.data(), params.data(), copy.size());
  return copy;
}

PrecisionChoice choose_precision(std::string_view value, std::string_view flag) {
  const kernels::Bf16Support bf16 = kernels::bf16_support();
  if (value == "fp32") return {Precision::fp32, "as asked"};
  if (value == "bf16") {
    if (!bf16.native)
      throw std::invalid_argument(std::string(flag) + " bf16: this CPU has no native bf16 matrix products (" +
                                  bf16.detail + "); use " + std::string(flag) + " fp32 or auto");
    return {Precision::bf16, "as asked, on " + bf16.detail};
  }
  if (value == "auto")
    return bf16.native ? PrecisionChoice{Precision::bf16, "auto: the CPU has " + bf16.detail}
                       : PrecisionChoice{Precision::fp32, "auto: the CPU has " + bf16.detail};
  throw std::invalid_argument(std::string(flag) + " '" + std::string(value) + "': expected auto, fp32 or bf16");
}

Workspace::Workspace(const Config& config, int batch, int seq, Precision precision) {
  check_workspace_shape(config, batch, seq);
  buf_ = std::make_unique<Buffers>(config, batch, seq, precision);
}

Workspace::Workspace(Workspace&&) noexcept = default;
Workspace& Workspace::operator=(Workspace&&) noexcept = default;
Workspace::~Workspace() = default;

int Workspace::max_batch() const { return buf_->max_batch; }
int Workspace::max_seq() const { return buf_->max_seq; }
std::size_t Workspace::bytes() const { return buf_->bytes(); }

std::size_t Workspace::planned_bytes(const Config& config, int batch, int seq, Precision precision) {
  check_workspace_shape(config, batch, seq);
  return Buffers(config, batch, seq, precision, /*allocate=*/false).planned;
}
Precision Workspace::precision() const { return buf_->precision; }

namespace {

void check_ids(const char* what, const std::int32_t* ids, std::size_t n, int vocab) {
  // One pass with no early exit (vectorizes); the error path finds the culprit.
  std::uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad |= static_cast<std::uint32_t>(ids[i] < 0 || ids[i] >= vocab);
  if (!bad) return;
  for (std::size_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw std::invalid_argument(std::string(what) + "[" + std::to_string(i) + "] = " +
                                  std::to_string(ids[i]) + ", expected a token id in 0.." +
                                  std::to_string(vocab - 1));
}

void check_weights(const Weights& weights, Precision precision, const char* what) {
  if (precision == Precision::bf16 && weights.bf16 == nullptr)
    throw std::invalid_argument(std::string(what) + ": a bf16 workspace needs the bf16 copy of the weights");
}

}  // namespace

namespace {

// One forward pass with matrix operands of type Op: params are the f32
// weights (biases, LayerNorm, embeddings), mats the same layout in Op (the
// f32 weights themselves, or their bf16 copy) for the products.
// Returns the loss (targets in w), or with logits_out, writes the logits
// (B*T*V) there instead. With grad, the LM head's backward runs with it (see
// HeadGradient): dlnf into w.dsmall, wte's part into grad.
struct HeadGradient {
  float* grad;
  float scale;
  bool overwrite;
};
template <class Op>
float forward_pass(const ParamLayout& layout, const float* params, const Op* mats, float* logits_out,
                   const HeadGradient* head, Workspace::Buffers& w) {
  const Config& cfg = layout.config();
  const int B = w.B, T = w.T, N = B * T, C = cfg.dim, V = cfg.vocab, NH = cfg.heads;
  Operands<Op>& op = w.operands<Op>();
  const std::size_t act = w.max_bt * sz(C), stats = w.max_bt;
  const std::size_t lse_stride = layers::attention_kept_size(w.max_batch, w.max_seq, NH);
  layers::encoder_forward(w.encoded.data(), w.tokens.data(), params + layout.wte(), params + layout.wpe(), B, T, C);
  const float* residual = w.encoded.data();
  for (int l = 0; l < cfg.layers; ++l) {
    const ParamLayout::Block& p = layout.block(l);
    const std::size_t L = sz(l);
    Op* ln = w.ln<Op>();  // ln_1's output, then ln_2's
    Op* qkv = op.qkv.data() + L * act * 3;
    Op* atty = op.atty.data() + L * act;
    float* res2 = w.res2_of(L);
    Op* fch = op.fch.data() + L * act * 4;
    Op* fch_gelu = w.fch_gelu<Op>();
    float* res3 = w.res3.data() + L * act;
    layers::layernorm_forward(ln, w.ln1_mean.data() + L * stats, w.ln1_rstd.data() + L * stats, residual,
                              params + p.ln1_w, params + p.ln1_b, N, C);
    layers::matmul_forward_operand(qkv, ln, mats + p.attn_w, params + p.attn_b, N, C, 3 * C);
    layers::attention_forward(atty, w.att_lse.data() + L * lse_stride, w.attention_scratch.data(),
                              op.attention.data(), qkv, B, T, C, NH);
    layers::matmul_forward(res2, atty, mats + p.attn_proj_w, params + p.attn_proj_b, residual, N, C, C);
    layers::layernorm_forward(ln, w.ln2_mean.data() + L * stats, w.ln2_rstd.data() + L * stats, res2,
                              params + p.ln2_w, params + p.ln2_b, N, C);
    layers::matmul_forward_operand(fch, ln, mats + p.fc_w, params + p.fc_b, N, C, 4 * C);
    layers::gelu_forward(fch_gelu, fch, sz(N) * 4 * sz(C));
    layers::matmul_forward(res3, fch_gelu, mats + p.fc_proj_w, params + p.fc_proj_b, res2, N, 4 * C, C);
    residual = res3;
  }
  Op* lnf = w.lnf<Op>();
  layers::layernorm_forward(lnf, w.lnf_mean.data(), w.lnf_rstd.data(), residual, params + layout.lnf_w(),
                            params + layout.lnf_b(), N, C);
  if (logits_out) {
    layers::lm_head_forward(logits_out, lnf, mats + layout.wte(), N, C, V);
    return 0.0f;
  }
  // Training runs the head's backward while each chunk's logits are at hand: computed once, not again later.
  return layers::lm_head_loss(w.logits(), w.dlogits<Op>(), lnf, mats + layout.wte(), w.targets.data(),
                              N, C, V, w.head_chunk, head ? head->scale / static_cast<float>(N) : 0.0f,
                              w.dsmall.data(), head ? head->grad + layout.wte() : nullptr, head && !head->overwrite);
}

// Checks the call and copies the inputs into w; targets may be null (forward_logits).
void start_pass(const char* what, const ParamLayout& layout, const Weights& weights, const std::int32_t* tokens,
                const std::int32_t* targets, int B, int T, Workspace::Buffers& w) {
  const Config& cfg = layout.config();
  if (cfg.vocab != w.cfg.vocab || cfg.layers != w.cfg.layers || cfg.dim != w.cfg.dim ||
      cfg.heads != w.cfg.heads)
    throw std::invalid_argument(std::string(what) + ": the workspace was made for a different model config");
  if (B < 1 || B > w.max_batch)
    throw std::invalid_argument(std::string(what) + ": B = " + std::to_string(B) + ", expected 1.." +
                                std::to_string(w.max_batch));
  if (T < 1 || T > w.max_seq)
    throw std::invalid_argument(std::string(what) + ": T = " + std::to_string(T) + ", expected 1.." +
                                std::to_string(w.max_seq));
  check_weights(weights, w.precision, what);
  const int N = B * T;
  check_ids("tokens", tokens, sz(N), cfg.vocab);
  if (targets) check_ids("targets", targets, sz(N), cfg.vocab);
  w.B = B;
  w.T = T;
  std::copy(tokens, tokens + N, w.tokens.begin());
  if (targets) std::copy(targets, targets + N, w.targets.begin());
}

}  // namespace

float forward(const ParamLayout& layout, Weights weights, const std::int32_t* tokens,
              const std::int32_t* targets, int B, int T, Workspace& ws) {
  if (targets == nullptr) throw std::invalid_argument("forward: needs targets (forward_logits gives the logits)");
  Workspace::Buffers& w = *ws.buf_;
  start_pass("forward", layout, weights, tokens, targets, B, T, w);
  if (w.precision == Precision::bf16) return forward_pass(layout, weights.f32, weights.bf16, nullptr, nullptr, w);
  return forward_pass(layout, weights.f32, weights.f32, nullptr, nullptr, w);
}

void forward_logits(const ParamLayout& layout, Weights weights, const std::int32_t* tokens, int B, int T,
                    Workspace& ws, float* logits) {
  Workspace::Buffers& w = *ws.buf_;
  start_pass("forward_logits", layout, weights, tokens, nullptr, B, T, w);
  if (w.precision == Precision::bf16) {
    forward_pass(layout, weights.f32, weights.bf16, logits, nullptr, w);
  } else {
    forward_pass(layout, weights.f32, weights.f32, logits, nullptr, w);
  }
}

namespace {

// The backward pass after forward_pass with a HeadGradient (same operand
// type Op): from dlnf in w.dsmall (scaled already) down to the embeddings.
template <class Op>
void backward_pass(const ParamLayout& layout, const float* params, const Op* mats, float* grad, bool overwrite,
                   Workspace::Buffers& w) {
  const Config& cfg = layout.config();
  const int B = w.B, T = w.T, N = B * T, C = cfg.dim, NH = cfg.heads;
  Operands<Op>& op = w.operands<Op>();
  const bool acc = !overwrite;
  const std::size_t act = w.max_bt * sz(C), stats = w.max_bt;
  const std::size_t lse_stride = layers::attention_kept_size(w.max_batch, w.max_seq, NH);
  // An f32 gradient in the operand type, for the products (bf16: converted into the phase array).
  const auto operand = [&](const float* g, std::size_t n) { return layers::as_operand(g, w.dout<Op>(), n); };

  float* dres = w.dres.data();
  std::fill(dres, dres + sz(N) * sz(C), 0.0f);
  const float* final_residual = cfg.layers > 0 ? w.res3.data() + sz(cfg.layers - 1) * act : w.encoded.data();
  layers::layernorm_backward(dres, grad + layout.lnf_w(), grad + layout.lnf_b(), w.dsmall.data(), final_residual,
                             params + layout.lnf_w(), w.lnf_mean.data(), w.lnf_rstd.data(), N, C, acc);
  for (int l = cfg.layers - 1; l >= 0; --l) {
    const ParamLayout::Block& p = layout.block(l);
    const std::size_t L = sz(l);
    const float* residual = l == 0 ? w.encoded.data() : w.res3.data() + (L - 1) * act;
    const Op* qkv = op.qkv.data() + L * act * 3;
    const Op* atty = op.atty.data() + L * act;
    float* res2 = w.res2_of(L);
    const Op* gelu_input = op.fch.data() + L * act * 4;
    float* ln1_mean = w.ln1_mean.data() + L * stats, *ln1_rstd = w.ln1_rstd.data() + L * stats;
    float* ln2_mean = w.ln2_mean.data() + L * stats, *ln2_rstd = w.ln2_rstd.data() + L * stats;
    Op* ln = w.ln<Op>();
    Op* fch_gelu = w.fch_gelu<Op>();
    float* dbig = w.dbig();
    float* dsmall = w.dsmall.data();
    const std::size_t small = sz(N) * sz(C), big = 4 * small;
    // res2 (bf16), ln_2's and GELU's outputs again (the same products and values: stats rewritten as they were)
    if (w.recomputes_res2())
      layers::matmul_forward(res2, atty, mats + p.attn_proj_w, params + p.attn_proj_b, residual, N, C, C);
    layers::layernorm_forward(ln, ln2_mean, ln2_rstd, res2, params + p.ln2_w, params + p.ln2_b, N, C);
    layers::gelu_forward(fch_gelu, gelu_input, big);
    // dres holds d(res3); the MLP branch and ln_2 add d(res2) into it.
    layers::matmul_backward(dbig, grad + p.fc_proj_w, grad + p.fc_proj_b, dres, operand(dres, small), fch_gelu,
                            mats + p.fc_proj_w, N, 4 * C, C, acc);
    layers::gelu_backward(dbig, gelu_input, dbig, big);
    layers::matmul_backward(dsmall, grad + p.fc_w, grad + p.fc_b, dbig, operand(dbig, big), ln, mats + p.fc_w, N,
                            C, 4 * C, acc);
    layers::layernorm_backward(dres, grad + p.ln2_w, grad + p.ln2_b, dsmall, res2, params + p.ln2_w, ln2_mean,
                               ln2_rstd, N, C, acc);
    // dres holds d(res2); the attention branch and ln_1 add d(residual).
    layers::matmul_backward(dsmall, grad + p.attn_proj_w, grad + p.attn_proj_b, dres, operand(dres, small), atty,
                            mats + p.attn_proj_w, N, C, C, acc);
    layers::attention_backward(dbig, w.attention_scratch.data(), op.attention.data(), operand(dsmall, small),
                               qkv, w.att_lse.data() + L * lse_stride, B, T, C, NH);
    layers::layernorm_forward(ln, ln1_mean, ln1_rstd, residual, params + p.ln1_w, params + p.ln1_b, N, C);
    layers::matmul_backward(dsmall, grad + p.attn_w, grad + p.attn_b, dbig, operand(dbig, 3 * small), ln,
                            mats + p.attn_w, N, C, 3 * C, acc);
    layers::layernorm_backward(dres, grad + p.ln1_w, grad + p.ln1_b, dsmall, residual, params + p.ln1_w, ln1_mean,
                               ln1_rstd, N, C, acc);
  }
  float* dwpe = grad + layout.wpe();
  if (overwrite) std::fill(dwpe, dwpe + sz(cfg.context) * sz(C), 0.0f);
  layers::encoder_backward(grad + layout.wte(), dwpe, dres, w.tokens.data(), B, T, C);
}

}  // namespace

float forward_backward(const ParamLayout& layout, Weights weights, const std::int32_t* tokens,
                       const std::int32_t* targets, int B, int T, float* grad, float scale, bool overwrite,
                       Workspace& ws) {
  if (targets == nullptr) throw std::invalid_argument("forward_backward: needs targets");
  Workspace::Buffers& w = *ws.buf_;
  start_pass("forward_backward", layout, weights, tokens, targets, B, T, w);
  const HeadGradient head{grad, scale, overwrite};
  const auto train = [&](const auto* mats) {
    const float loss = forward_pass(layout, weights.f32, mats, nullptr, &head, w);
    backward_pass(layout, weights.f32, mats, grad, overwrite, w);
    return loss;
  };
  if (w.precision == Precision::bf16) return train(weights.bf16);
  return train(weights.f32);
}

// ------------------------------------------------------------------ KvCache

KvCache::KvCache(const Config& config) : config_(config) {
  config.validate();
  const std::size_t C = sz(config.dim);
  k_.resize(sz(config.layers) * sz(config.context) * C);
  v_.resize(k_.size());
  x_.resize(C);
  next_x_.resize(C);
  ln_.resize(C);
  qkv_.resize(3 * C);
  atty_.resize(C);
  att_.resize(sz(config.context));
  fc_.resize(4 * C);
  fc_gelu_.resize(4 * C);
  logits_.resize(sz(config.vocab));
  operand_.resize(4 * C);
}

void KvCache::reset() { pos_ = 0; }

const float* KvCache::step(const ParamLayout& layout, Weights weights, std::int32_t token) {
  if (weights.bf16) return step_with(layout, weights.f32, weights.bf16, token);
  return step_with(layout, weights.f32, weights.f32, token);
}

template <class Op>
const float* KvCache::step_with(const ParamLayout& layout, const float* params, const Op* mats, std::int32_t token) {
  const Config& cfg = config_;
  if (layout.config().dim != cfg.dim || layout.config().layers != cfg.layers ||
      layout.config().vocab != cfg.vocab || layout.config().heads != cfg.heads)
    throw std::invalid_argument("kv cache: the parameter layout is for a different model config");
  if (pos_ >= cfg.context)
    throw std::length_error("kv cache: full at the context length " + std::to_string(cfg.context));
  check_ids("token", &token, 1, cfg.vocab);
  const int C = cfg.dim, hs = cfg.head_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const auto& mk = detail::model_kernels();
  const auto& kt = kernels::active();
  // x in the operand type (f32: x itself; bf16: converted into operand_)
  Op* scratch = nullptr;
  if constexpr (!std::is_same_v<Op, float>) scratch = operand_.data();
  const auto operand = [&](const std::vector<float>& x) { return layers::as_operand(x.data(), scratch, x.size()); };
  float mean = 0.0f, rstd = 0.0f;
  layers::encoder_forward(x_.data(), &token, params + layout.wte(), params + layout.wpe() + sz(pos_) * sz(C), 1, 1, C);
  for (int l = 0; l < cfg.layers; ++l) {
    const ParamLayout::Block& p = layout.block(l);
    float* kc = k_.data() + sz(l) * sz(cfg.context) * sz(C);
    float* vc = v_.data() + sz(l) * sz(cfg.context) * sz(C);
    layers::layernorm_forward(ln_.data(), &mean, &rstd, x_.data(), params + p.ln1_w, params + p.ln1_b, 1, C);
    layers::matmul_forward(qkv_.data(), operand(ln_), mats + p.attn_w, params + p.attn_b, nullptr, 1, C, 3 * C);
    std::copy(qkv_.begin() + C, qkv_.begin() + 2 * C, kc + sz(pos_) * sz(C));
    std::copy(qkv_.begin() + 2 * C, qkv_.end(), vc + sz(pos_) * sz(C));
    const std::size_t n = sz(pos_) + 1;
    for (int h = 0; h < cfg.heads; ++h) {  // one query row against keys 0..pos
      const float* q = qkv_.data() + h * hs;
      for (std::size_t s = 0; s < n; ++s)
        att_[s] = static_cast<float>(kt.dot(q, kc + s * sz(C) + sz(h * hs), sz(hs))) * scale;
      const float inv = 1.0f / mk.exp_shift_sum(att_.data(), mk.max(att_.data(), n), n);
      float* o = atty_.data() + h * hs;
      std::fill(o, o + hs, 0.0f);
      for (std::size_t s = 0; s < n; ++s) kt.axpy(o, att_[s] * inv, vc + s * sz(C) + sz(h * hs), sz(hs));
    }
    layers::matmul_forward(next_x_.data(), operand(atty_), mats + p.attn_proj_w, params + p.attn_proj_b, x_.data(),
                           1, C, C);
    std::swap(x_, next_x_);
    layers::layernorm_forward(ln_.data(), &mean, &rstd, x_.data(), params + p.ln2_w, params + p.ln2_b, 1, C);
    layers::matmul_forward(fc_.data(), operand(ln_), mats + p.fc_w, params + p.fc_b, nullptr, 1, C, 4 * C);
    layers::gelu_forward(fc_gelu_.data(), fc_.data(), fc_.size());
    layers::matmul_forward(next_x_.data(), operand(fc_gelu_), mats + p.fc_proj_w, params + p.fc_proj_b, x_.data(), 1,
                           4 * C, C);
    std::swap(x_, next_x_);
  }
  layers::layernorm_forward(ln_.data(), &mean, &rstd, x_.data(), params + layout.lnf_w(), params + layout.lnf_b(), 1,
                            C);
  layers::lm_head_forward(logits_.data(), operand(ln_), mats + layout.wte(), 1, C, cfg.vocab);
  ++pos_;
  return logits_.data();
}

}  // namespace cllm::model
