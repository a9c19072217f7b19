// Fuzzes GPT-2 BPE encoding of arbitrary bytes: the pre-tokenizer, the UTF-8
// check and the merges. Uses the real encoder.json / vocab.bpe when
// CLLM_GPT2_DIR names a directory holding them, else a small generated
// vocabulary. Checks decode(encode(text)) == text for valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string_view>

#include "data/tokenizer.h"
#include "gpt2_small_vocab.h"

namespace {

std::unique_ptr<cllm::data::Gpt2Tokenizer> load_tokenizer() {
  if (const char* dir = std::getenv("CLLM_GPT2_DIR"))
    return cllm::data::Gpt2Tokenizer::load(std::filesystem::path(dir) / "encoder.json", std::filesystem::path(dir) / "vocab.bpe");
  const auto dir = std::filesystem::temp_directory_path() / "cllm_fuzz_gpt2_vocab";
  std::filesystem::create_directories(dir);
  cllm::fuzz::write_small_gpt2_vocab(dir);
  return cllm::data::Gpt2Tokenizer::load(dir / "encoder.json", dir / "vocab.bpe");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto tokenizer = load_tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::size_t pieces_bytes = 0;
  for (std::string_view piece : cllm::data::Gpt2Tokenizer::split(text)) pieces_bytes += piece.size();
  if (pieces_bytes != text.size()) std::abort();  // the pieces must tile the text
  const auto ids = tokenizer->encode(text);
  if (!cllm::data::find_invalid_utf8(text) && tokenizer->decode(ids) != text) std::abort();
  return 0;
}
