// File helpers shared by every cllm reader and writer: errors that name the
// file, a read-only file handle with bounds-checked positional reads and
// read-only mappings, and a crash-safe writer.
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

// A read-only mapping of a whole file (InputFile::map). Its pages are read
// in on first touch and are the kernel's page cache, which it may drop and
// read again under memory pressure: touching all of a mapping does not grow
// the process's anonymous memory, however large the file. The file must keep
// its size while mapped: touching a page past the end of a file truncated
// since raises SIGBUS, which kills the process (map() checks the size once,
// when it maps; files cllm writes are replaced by rename, never truncated,
// so a mapping keeps the old file whole). Movable, not copyable; unmaps on
// destruction. A default-constructed mapping is empty.
class FileMapping {
 public:
  FileMapping() = default;
  FileMapping(FileMapping&& other) noexcept;
  FileMapping& operator=(FileMapping&& other) noexcept;
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping();

  const unsigned char* data() const { return data_; }
  std::uint64_t size() const { return size_; }

 private:
  friend class InputFile;
  FileMapping(const unsigned char* data, std::uint64_t size) : data_(data), size_(size) {}
  const unsigned char* data_ = nullptr;
  std::uint64_t size_ = 0;
};

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
  // The whole file (size() bytes) mapped read-only, advised for random
  // access (MADV_RANDOM: no readahead around each page touched, as the batch
  // sampler reads windows in shuffled order). Throws naming the file when it
  // cannot be mapped or has shrunk since it was opened.
  FileMapping map() const;

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
  // Overwrites bytes written before (e.g. a header's count, known only at
  // the end); the range must lie within what was written.
  void write_at(std::uint64_t offset, const void* data, std::size_t size);
  void commit();

 private:
  void pwrite_all(std::uint64_t offset, const void* data, std::size_t size);
  std::filesystem::path path_;
  std::filesystem::path tmp_path_;
  int fd_ = -1;
  std::uint64_t written_ = 0;  // bytes written so far
};

}  // namespace cllm::data
