// A small GPT-2 style vocabulary (the 256 byte symbols, a few dozen merges
// of common English pieces, white space runs and multi-byte characters,
// <|endoftext|>) written as encoder.json and vocab.bpe, for fuzzing the BPE
// without the 50k-token files (and for tests/data).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace cllm::fuzz {

// Writes encoder.json and vocab.bpe into `dir`.
void write_small_gpt2_vocab(const std::filesystem::path& dir);

// GPT-2's printable stand-in for byte b (bytes_to_unicode), as UTF-8.
std::string byte_symbol(int b);

}  // namespace cllm::fuzz
