#include "data/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace cllm::data {
namespace fs = std::filesystem;

std::runtime_error file_error(const fs::path& path, std::string_view what) {
  return std::runtime_error(fmt::format("'{}': {}", path.string(), what));
}

namespace {

std::string errno_text() { return std::strerror(errno); }

// What a non-regular file is, for "'PATH': is a FIFO, expected a regular file".
std::string not_regular(mode_t mode) {
  const char* kind = S_ISDIR(mode)    ? "is a directory"
                     : S_ISFIFO(mode) ? "is a FIFO (named pipe)"
                     : S_ISCHR(mode)  ? "is a character device"
                     : S_ISBLK(mode)  ? "is a block device"
                     : S_ISSOCK(mode) ? "is a socket"
                                      : "is not a regular file";
  return std::string(kind) + ", expected a regular file";
}

}  // namespace

InputFile::InputFile(fs::path path, int fd, std::uint64_t size)
    : path_(std::move(path)), fd_(fd), size_(size) {}

InputFile InputFile::open(const fs::path& path) {
  if (path.empty()) throw std::runtime_error("empty file name");
  // stat first: opening a socket fails with a confusing error, and opening a
  // FIFO waits for a writer. O_NONBLOCK covers a FIFO put there in between.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) throw file_error(path, "no such file");
    throw file_error(path, "cannot stat: " + errno_text());
  }
  if (!S_ISREG(st.st_mode)) throw file_error(path, not_regular(st.st_mode));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) throw file_error(path, "no such file");
    throw file_error(path, "cannot open: " + errno_text());
  }
  if (::fstat(fd, &st) != 0) {
    const std::string err = errno_text();
    ::close(fd);
    throw file_error(path, "cannot stat: " + err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw file_error(path, not_regular(st.st_mode));
  }
  return InputFile(path, fd, static_cast<std::uint64_t>(st.st_size));
}

InputFile::InputFile(InputFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

InputFile& InputFile::operator=(InputFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
  }
  return *this;
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::read_at(std::uint64_t offset, void* out, std::size_t size) const {
  if (offset > size_ || size > size_ - offset)
    throw file_error(path_, fmt::format("read of {} bytes at offset {} is past the end of the {}-byte file",
                                        size, offset, size_));
  auto* dst = static_cast<char*>(out);
  while (size > 0) {
    const ssize_t n = ::pread(fd_, dst, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw file_error(path_, "read failed: " + errno_text());
    }
    if (n == 0) throw file_error(path_, "file is shorter than when it was opened (truncated while reading?)");
    dst += n;
    offset += static_cast<std::uint64_t>(n);
    size -= static_cast<std::size_t>(n);
  }
}

std::string InputFile::read_all(std::uint64_t max_bytes) const {
  if (size_ > max_bytes)
    throw file_error(path_, fmt::format("is {} bytes, more than the {} allowed", size_, max_bytes));
  std::string bytes(static_cast<std::size_t>(size_), '\0');
  read_at(0, bytes.data(), bytes.size());
  return bytes;
}

FileMapping::FileMapping(FileMapping&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

FileMapping& FileMapping::operator=(FileMapping&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

FileMapping::~FileMapping() {
  if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
}

FileMapping InputFile::map() const {
  if (size_ == 0) return {};  // mmap refuses a length of 0
  void* addr = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
  if (addr == MAP_FAILED) throw file_error(path_, "cannot map it into memory: " + errno_text());
  FileMapping mapping(static_cast<const unsigned char*>(addr), size_);
  // Advice only: without it, each fault also reads the pages around it.
  ::madvise(addr, size_, MADV_RANDOM);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw file_error(path_, "cannot stat: " + errno_text());
  if (static_cast<std::uint64_t>(st.st_size) < size_)
    throw file_error(path_, fmt::format("file is shorter than when it was opened ({} bytes, was {}; truncated while "
                                        "reading?)", st.st_size, size_));
  return mapping;
}

AtomicFileWriter::AtomicFileWriter(fs::path path) : path_(std::move(path)) {
  if (path_.empty()) throw std::runtime_error("empty output file name");
  tmp_path_ = path_;
  tmp_path_ += ".tmp";
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw file_error(path_, fmt::format("cannot create '{}': {}", tmp_path_.string(), errno_text()));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
  }
}

void AtomicFileWriter::write(const void* data, std::size_t size) {
  pwrite_all(written_, data, size);
  written_ += size;
}

void AtomicFileWriter::write_at(std::uint64_t offset, const void* data, std::size_t size) {
  if (offset > written_ || size > written_ - offset)
    throw std::logic_error(fmt::format("'{}': overwrite of {} bytes at offset {} is past the {} bytes written",
                                       path_.string(), size, offset, written_));
  pwrite_all(offset, data, size);
}

void AtomicFileWriter::pwrite_all(std::uint64_t offset, const void* data, std::size_t size) {
  if (fd_ < 0) throw file_error(path_, "write after commit");
  const auto* src = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::pwrite(fd_, src, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw file_error(path_, "write failed: " + errno_text());
    }
    src += n;
    offset += static_cast<std::uint64_t>(n);
    size -= static_cast<std::size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  if (fd_ < 0) throw file_error(path_, "committed twice");
  if (::fsync(fd_) != 0) throw file_error(path_, "fsync failed: " + errno_text());
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) {
    const std::string err = errno_text();
    ::unlink(tmp_path_.c_str());
    throw file_error(path_, "close failed: " + err);
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const std::string err = errno_text();
    ::unlink(tmp_path_.c_str());
    throw file_error(path_, "rename from '" + tmp_path_.string() + "' failed: " + err);
  }
  // The rename is durable only once the directory entry is on disk.
  const fs::path dir = path_.has_parent_path() ? path_.parent_path() : fs::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) throw file_error(path_, "cannot open its directory to fsync: " + errno_text());
  const int rc = ::fsync(dir_fd);
  const std::string err = rc != 0 ? errno_text() : std::string();
  ::close(dir_fd);
  if (rc != 0) throw file_error(path_, "fsync of its directory failed: " + err);
}

}  // namespace cllm::data
