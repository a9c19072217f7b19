// Fuzzes the safetensors reader and the GPT-2 weights loader on top of it:
// any input must either load or throw std::exception; never crash, hang,
// read out of bounds or allocate more than the file can justify.
#include <cstddef>
#include <cstdint>
#include <exception>

#include "data/safetensors.h"
#include "fuzz_input_file.h"
#include "train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = cllm::fuzz::input_file("input.safetensors", data, size);
  try {
    const auto file = cllm::data::SafetensorsFile::open(path);
    for (const auto& [name, tensor] : file.tensors()) {
      if (tensor.dtype == "F32") (void)file.f32(name);
      if (tensor.dtype == "I32") (void)file.i32(name);
    }
  } catch (const std::exception&) {
  }
  try {
    (void)cllm::train::load_weights(path);
  } catch (const std::exception&) {
  }
  return 0;
}
