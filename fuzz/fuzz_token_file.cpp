// Fuzzes the .tok reader: any input must load or throw std::exception.
#include <cstddef>
#include <cstdint>
#include <exception>

#include "data/token_file.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = cllm::fuzz::input_file("input.tok", data, size);
  try {
    (void)cllm::data::is_token_file(path);
    const auto tokens = cllm::data::read_token_file(path);
    std::int32_t sum = 0;
    for (std::uint64_t i = 0; i < tokens.size(); ++i) sum ^= tokens[i];
    (void)sum;
  } catch (const std::exception&) {
  }
  return 0;
}
