// Text generation from a model: prompt -> tokens through a KV cache, sampled
// with temperature, top-k and top-p (nucleus), reproducible from the seed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "data/tokenizer.h"
#include "model/gpt.h"

namespace cllm::train {

struct SamplingOptions {
  int tokens = 200;           // tokens to generate
  float temperature = 0.8f;   // 0: greedy (argmax)
  int top_k = 0;              // 0: off
  float top_p = 1.0f;         // 1: off
  std::uint64_t seed = 1;
  // Throws std::invalid_argument naming the option: tokens < 0,
  // temperature < 0, top_k < 0, top_p not in (0, 1].
  void validate() const;
};

// Generates up to options.tokens tokens after `prompt` (stops early when the
// context is full) and returns the decoded continuation (without the prompt).
// on_text, when set, receives each piece of text as it is generated.
std::string generate_text(const model::ParamLayout& layout, model::Weights weights, const data::Tokenizer& tokenizer,
                          std::string_view prompt, const SamplingOptions& options,
                          const std::function<void(std::string_view)>& on_text = {});

// Writes `prompt` and then the text generate_text makes to stdout as it
// comes (flushed piece by piece): the exact bytes when raw, else valid UTF-8
// through a data::Utf8Sanitizer, so a character split across tokens prints
// whole and bytes that are no character print as U+FFFD.
void print_generation(const model::ParamLayout& layout, model::Weights weights, const data::Tokenizer& tokenizer,
                      std::string_view prompt, const SamplingOptions& options, bool raw);

}  // namespace cllm::train
