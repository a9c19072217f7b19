// File helpers shared by every cllm reader and writer: errors that name the
// file, a read-only file handle with bounds-checked positional reads, and a
// crash-safe writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cllm::data {

// std::runtime_error whose message is "'PATH': WHAT".
std::runtime_error file_error(const std::filesystem::path& path, std::string_view what);

// A regular file opened for reading: every cllm reader of data, vocabulary,
// weights and checkpoints opens its files here. open() throws (naming the
// file and what it is) when it is missing, a directory, a FIFO, a device, a
// socket or otherwise not a regular file, or unreadable; it never blocks.
// Movable, not copyable; closes the descriptor on destruction.
class InputFile {
 public:
  static InputFile open(const std::filesystem::path& path);
  InputFile(InputFile&& other) noexcept;
  InputFile& operator=(InputFile&& other) noexcept;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile();

  const std::filesystem::path& path() const { return path_; }
  // Size when opened.
  std::uint64_t size() const { return size_; }
  // Reads exactly `size` bytes at `offset`; throws naming the file when the
  // range lies past the end or the read comes up short (file truncated since).
  void read_at(std::uint64_t offset, void* out, std::size_t size) const;
  // The whole file; throws when it is larger than `max_bytes`.
  std::string read_all(std::uint64_t max_bytes) const;

 private:
  InputFile(std::filesystem::path path, int fd, std::uint64_t size);
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// Writes PATH so that a crash at any moment leaves either the previous PATH
// whole or the complete new one: bytes go to PATH.tmp; commit() fsyncs and
// closes it, renames it over PATH and fsyncs the directory. Every failing
// write, fsync, close or rename (disk full, unwritable directory) throws
// std::runtime_error naming the file. Destroying an uncommitted writer
// removes PATH.tmp and leaves PATH untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  void write(const void* data, std::size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  void commit();

 private:
  std::filesystem::path path_;
  std::filesystem::path tmp_path_;
  int fd_ = -1;
};

}  // namespace cllm::data
