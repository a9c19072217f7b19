#include "train/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "train/memory_plan.h"

namespace cllm::train {

void SamplingOptions::validate() const {
  if (tokens < 0) throw std::invalid_argument("--tokens must be >= 0, got " + std::to_string(tokens));
  if (!(temperature >= 0.0f)) throw std::invalid_argument("--temperature must be >= 0, got " + std::to_string(temperature));
  if (top_k < 0) throw std::invalid_argument("--top-k must be >= 0, got " + std::to_string(top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f)) throw std::invalid_argument("--top-p must be in (0, 1], got " + std::to_string(top_p));
}

namespace {

// Index of the next token from logits (V), per the options.
std::int32_t sample(const float* logits, int vocab, const SamplingOptions& opt, std::mt19937_64& rng,
                    std::vector<std::pair<float, std::int32_t>>& scratch) {
  if (opt.temperature == 0.0f) return static_cast<std::int32_t>(std::max_element(logits, logits + vocab) - logits);
  scratch.resize(static_cast<std::size_t>(vocab));
  for (int i = 0; i < vocab; ++i) scratch[static_cast<std::size_t>(i)] = {logits[i] / opt.temperature, i};
  std::sort(scratch.begin(), scratch.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::size_t keep = scratch.size();
  if (opt.top_k > 0) keep = std::min(keep, static_cast<std::size_t>(opt.top_k));
  // Softmax over the kept candidates, then the top-p cut.
  const float max_logit = scratch[0].first;
  double total = 0.0;
  for (std::size_t i = 0; i < keep; ++i) {
    scratch[i].first = std::exp(scratch[i].first - max_logit);
    total += static_cast<double>(scratch[i].first);
  }
  if (opt.top_p < 1.0f) {
    double mass = 0.0;
    std::size_t i = 0;
    while (i < keep) {
      mass += static_cast<double>(scratch[i].first) / total;
      ++i;
      if (mass >= static_cast<double>(opt.top_p)) break;
    }
    keep = i;
    total = 0.0;
    for (std::size_t j = 0; j < keep; ++j) total += static_cast<double>(scratch[j].first);
  }
  double r = std::uniform_real_distribution<double>(0.0, total)(rng);
  for (std::size_t i = 0; i < keep; ++i) {
    r -= static_cast<double>(scratch[i].first);
    if (r <= 0.0) return scratch[i].second;
  }
  return scratch[keep - 1].second;
}

}  // namespace

std::string generate_text(const model::ParamLayout& layout, model::Weights weights, const data::Tokenizer& tokenizer,
                          std::string_view prompt, const SamplingOptions& options,
                          const std::function<void(std::string_view)>& on_text) {
  options.validate();
  const model::Config& config = layout.config();
  std::vector<std::int32_t> context = tokenizer.encode(prompt);
  if (context.empty()) context = tokenizer.document_separator();
  if (context.size() >= static_cast<std::size_t>(config.context))  // keep the prompt's end
    context.erase(context.begin(), context.end() - (config.context - 1));

  const std::size_t kv_bytes = 2 * sizeof(float) * static_cast<std::size_t>(config.layers) * config.context * config.dim;
  model::KvCache cache = allocate_named("the KV cache", kv_bytes, [&] { return model::KvCache(config); });
  const float* logits = nullptr;
  for (std::int32_t t : context) logits = cache.step(layout, weights, t);

  // A model vocabulary padded past the tokenizer's never samples the padding.
  const int vocab = std::min(config.vocab, tokenizer.vocab_size());
  std::mt19937_64 rng(options.seed);
  std::vector<std::pair<float, std::int32_t>> scratch;
  std::vector<std::int32_t> generated;
  std::size_t emitted = 0;  // bytes of decoded text already passed to on_text
  std::string text;
  for (int i = 0; i < options.tokens; ++i) {
    const std::int32_t next = sample(logits, vocab, options, rng, scratch);
    generated.push_back(next);
    text = tokenizer.decode(generated);
    if (on_text && text.size() > emitted) {
      on_text(std::string_view(text).substr(emitted));
      emitted = text.size();
    }
    if (cache.position() >= config.context) break;
    logits = cache.step(layout, weights, next);
  }
  return text;
}

void print_generation(const model::ParamLayout& layout, model::Weights weights, const data::Tokenizer& tokenizer,
                      std::string_view prompt, const SamplingOptions& options, bool raw) {
  const auto write = [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  data::Utf8Sanitizer sanitizer;
  const auto print = [&](std::string_view bytes) {
    if (raw) write(bytes);
    else write(sanitizer.feed(bytes));
  };
  print(prompt);
  generate_text(layout, weights, tokenizer, prompt, options, print);
  if (!raw) write(sanitizer.finish());
}

}  // namespace cllm::train
