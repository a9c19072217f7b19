// bfloat16: the top 16 bits of an IEEE float (8 exponent bits, 7 mantissa
// bits). A distinct type, not a bare uint16_t, so that overloads on the
// matrix operand type (float or bf16) cannot mix them up.
#pragma once

#include <bit>
#include <cstdint>

namespace cllm::kernels {

struct bf16 {
  std::uint16_t bits;
};

// Round to nearest even, as PyTorch's and oneDNN's conversions do; a NaN
// stays a (quiet) NaN.
constexpr bf16 to_bf16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<std::uint16_t>((u >> 16) | 0x40u)};
  return bf16{static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

constexpr float to_float(bf16 h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h.bits) << 16); }

}  // namespace cllm::kernels
