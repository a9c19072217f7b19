// Fuzzes the GPT-2 tokenizer file loader: the input is split at its first
// NUL byte into encoder.json and vocab.bpe. Any input must load or throw
// std::exception; a tokenizer that loads must encode and decode text.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string_view>

#include "data/tokenizer.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* nul = static_cast<const std::uint8_t*>(std::memchr(data, 0, size));
  const std::size_t split = nul ? static_cast<std::size_t>(nul - data) : size;
  const auto encoder = cllm::fuzz::input_file("encoder.json", data, split);
  const auto bpe = cllm::fuzz::input_file("vocab.bpe", data + std::min(size, split + 1), size - std::min(size, split + 1));
  try {
    const auto tokenizer = cllm::data::Gpt2Tokenizer::load(encoder, bpe);
    const auto ids = tokenizer->encode("Hello world, the cat's 123 \xc3\xa9t\xc3\xa9!");
    (void)tokenizer->decode(ids);
  } catch (const std::exception&) {
  }
  return 0;
}
