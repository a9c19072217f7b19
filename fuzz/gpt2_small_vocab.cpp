#include "gpt2_small_vocab.h"

#include <fstream>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

namespace cllm::fuzz {

std::string byte_symbol(int b) {
  int n = 0, cp = -1;
  for (int x = 0; x < 256; ++x) {
    const bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
    const int c = printable ? x : 256 + n++;
    if (x == b) cp = c;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

void write_small_gpt2_vocab(const std::filesystem::path& dir) {
  nlohmann::json enc = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) enc[byte_symbol(b)] = b;
  // Merges that build these words left to right, each piece in the vocabulary.
  const char* words[] = {" the", " and", "ing", " of", " to", "tion", " in", " is", "er", " cat", " hello", "'s",
                         "   ", "\n\n", " caf\u00e9", "\u65e5\u672c"};
  std::vector<std::pair<std::string, std::string>> merges;
  std::set<std::string> known;
  int id = 256;
  for (const char* w : words) {
    std::string sym;
    for (unsigned char c : std::string(w)) {
      const std::string next = byte_symbol(c);
      if (!sym.empty()) {
        const std::string merged = sym + next;
        if (known.insert(merged).second) {
          merges.emplace_back(sym, next);
          enc[merged] = id++;
        }
        sym = merged;
      } else {
        sym = next;
      }
    }
  }
  enc["<|endoftext|>"] = id;
  std::ofstream(dir / "encoder.json") << enc.dump();
  std::ofstream bpe(dir / "vocab.bpe");
  bpe << "#version: 0.2\n";
  for (const auto& [a, b] : merges) bpe << a << ' ' << b << '\n';
}

}  // namespace cllm::fuzz
