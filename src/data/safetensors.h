// safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON header
//   {"__metadata__": {"k": "v", ...},
//    "name": {"dtype": "F32", "shape": [d0, d1], "data_offsets": [begin, end]}, ...}
// then the raw little-endian tensor data; offsets are relative to the data
// region that follows the header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "data/file_io.h"

namespace cllm::data {

struct SafeTensor {
  std::string dtype;               // "F32", "I32", "F16", ... (validated)
  std::vector<std::size_t> shape;  // empty for a scalar
  std::uint64_t offset = 0;        // absolute file offset of the first byte
  std::uint64_t nbytes = 0;        // product(shape) * dtype size
  std::size_t numel() const;
};

// A validated safetensors file. open() reads only the header and checks it
// all against the file size before anything is allocated from it: header
// length <= file size - 8 and <= 100 MB, JSON object, metadata values are
// strings, every dtype is a safetensors dtype, shape product * dtype size ==
// data_offsets span (no overflow), offsets inside the data region, tensors
// neither overlap nor leave holes. Any violation throws std::runtime_error
// "'PATH': what was wrong". Hugging Face files (metadata {"format":"pt"})
// load as they are; mapping their names is the caller's business.
// Reading is const and thread-safe (pread on a shared descriptor).
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  const std::map<std::string, SafeTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws naming the file and tensor when absent.
  const SafeTensor& tensor(const std::string& name) const;

  // Reads an F32 tensor into `out`; throws when the tensor is missing, not
  // F32, or out.size() != its element count.
  void read_f32(const std::string& name, std::span<float> out) const;
  std::vector<float> f32(const std::string& name) const;
  std::vector<std::int32_t> i32(const std::string& name) const;

 private:
  explicit SafetensorsFile(InputFile file) : file_(std::move(file)) {}
  const SafeTensor& checked(const std::string& name, const char* dtype, std::size_t numel) const;
  InputFile file_;
  std::map<std::string, SafeTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One F32 tensor to write; `data` holds product(shape) floats.
struct TensorToWrite {
  std::string name;
  std::vector<std::size_t> shape;
  const float* data = nullptr;
};

// Writes an F32 safetensors file crash-safely (AtomicFileWriter): tensors in
// the given order, metadata under "__metadata__", header padded with spaces
// to a multiple of 8 bytes. Throws naming the file on an empty or duplicate
// tensor name, or any write failure (disk full, unwritable directory).
void write_safetensors(const std::filesystem::path& path,
                       const std::map<std::string, std::string>& metadata,
                       std::span<const TensorToWrite> tensors);

}  // namespace cllm::data
