#include "shm/segment_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// Bounds on retries driven by other processes racing us on the directory.
constexpr int kMaxTempNameAttempts = 64;
constexpr int kMaxPublishAttempts = 16;

bool SameInode(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// "<dir>/.<name>.tmp.<pid>.<n>": hidden, and in the target's directory so
// that rename() and link() stay within one filesystem.
std::string TempName(const std::string& path, uint64_t n) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return absl::StrCat(dir, "/.", name, ".tmp.", ::getpid(), ".", n);
}

// A start value for the temp-name counter that differs between runs, so a
// temp file left by a crashed process whose pid was recycled rarely clashes
// (a clash only costs another attempt).
uint64_t TempNameSeed() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_nsec);
}

absl::Status CheckRegular(const struct stat& st, const std::string& what) {
  if (!S_ISREG(st.st_mode)) {
    return ShmError(ShmErrc::kNotRegularFile,
                    absl::StrFormat("%s is not a regular file (file type 0%o)", what,
                                    st.st_mode & S_IFMT));
  }
  return absl::OkStatus();
}

absl::Status CheckFitsOffT(uint64_t size, const std::string& what) {
  if (size > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
    return ShmIoError(absl::StrCat(what, " to ", size, " bytes"), EFBIG);
  }
  return absl::OkStatus();
}

// Open-time errno values that describe the path rather than an I/O failure.
absl::Status OpenError(const std::string& path, int err) {
  if (err == ELOOP) {
    return ShmError(ShmErrc::kSymlink, absl::StrCat(path, " is a symlink; refusing to follow it"));
  }
  if (err == EISDIR || err == ENXIO) {
    return ShmError(ShmErrc::kNotRegularFile, absl::StrCat(path, " is not a regular file"));
  }
  return ShmIoError(absl::StrCat("open(", path, ")"), err);
}

// Replaces the regular file open as `old_fd` (the one at `path`) with
// `temp`. The caller owns the path (PathLock), so no other host replaces it
// at the same time. Returns false when `path` no longer names that file, so
// the caller has to look again.
absl::StatusOr<bool> ReplaceStale(const std::string& temp, const std::string& path, int old_fd) {
  struct stat old_st {};
  if (::fstat(old_fd, &old_st) != 0) return ShmIoError(absl::StrCat("fstat(", path, ")"), errno);
  if (absl::Status s = CheckRegular(old_st, path); !s.ok()) return s;
  struct stat named {};
  if (::lstat(path.c_str(), &named) != 0 || !SameInode(named, old_st)) return false;
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return ShmIoError(absl::StrCat("rename(", temp, ", ", path, ")"), errno);
  }
  return true;
}

}  // namespace

// ---- Mapping ----------------------------------------------------------------

absl::StatusOr<Mapping> Mapping::Map(int fd, uint64_t size) {
  Mapping m;
  if (size == 0) return m;
  static_assert(sizeof(size_t) == sizeof(uint64_t), "64-bit targets only (format §1.1)");
  void* p = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ShmIoError(absl::StrCat("mmap(", size, " bytes)"), errno);
  m.data_ = static_cast<uint8_t*>(p);
  m.size_ = size;
  return m;
}

Mapping::~Mapping() { Reset(); }

Mapping::Mapping(Mapping&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void Mapping::Reset() {
  if (data_ != nullptr) ::munmap(data_, static_cast<size_t>(size_));
  data_ = nullptr;
  size_ = 0;
}

// ---- SegmentFile: host --------------------------------------------------------

absl::StatusOr<SegmentFile> SegmentFile::CreateTemporary(const std::string& path, mode_t mode,
                                                         uint64_t size) {
  if (size == 0) return ShmError(ShmErrc::kBadConfig, "a segment file cannot be empty");
  if (absl::Status s = CheckFitsOffT(size, "ftruncate"); !s.ok()) return s;
  static std::atomic<uint64_t> counter{TempNameSeed()};
  SegmentFile file;
  file.path_ = path;
  for (int attempt = 0; !file.fd_.valid(); ++attempt) {
    // Relaxed: the counter only has to hand out distinct values.
    std::string temp = TempName(path, counter.fetch_add(1, std::memory_order_relaxed));
    // O_EXCL also refuses to follow a symlink planted under the temp name.
    const int fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      file.fd_.Reset(fd);
      file.temp_path_ = std::move(temp);
    } else if (errno != EEXIST || attempt + 1 >= kMaxTempNameAttempts) {
      return ShmIoError(absl::StrCat("open(", temp, ")"), errno);
    }
  }
  // Explicit, because open() applied the umask to 0600.
  if (::fchmod(file.fd(), mode) != 0) {
    return ShmIoError(absl::StrCat("fchmod(", file.temp_path_, ")"), errno);
  }
  if (::ftruncate(file.fd(), static_cast<off_t>(size)) != 0) {
    return ShmIoError(absl::StrCat("ftruncate(", file.temp_path_, ", ", size, ")"), errno);
  }
  absl::StatusOr<Mapping> mapping = Mapping::Map(file.fd(), size);
  if (!mapping.ok()) return mapping.status();
  file.mapping_ = *std::move(mapping);
  return file;
}

absl::Status SegmentFile::Publish() {
  for (int attempt = 0; attempt < kMaxPublishAttempts; ++attempt) {
    struct stat existing {};
    if (::lstat(path_.c_str(), &existing) != 0) {
      if (errno != ENOENT) return ShmIoError(absl::StrCat("lstat(", path_, ")"), errno);
      // Nothing there: link() fails if another host published meanwhile,
      // where rename() would silently replace its live file.
      if (::link(temp_path_.c_str(), path_.c_str()) == 0) {
        ::unlink(temp_path_.c_str());
        temp_path_.clear();
        return absl::OkStatus();
      }
      if (errno != EEXIST) return ShmIoError(absl::StrCat("link(", path_, ")"), errno);
      continue;
    }
    if (S_ISLNK(existing.st_mode)) {
      return ShmError(ShmErrc::kSymlink, absl::StrCat(path_, " is a symlink; refusing to replace it"));
    }
    if (absl::Status s = CheckRegular(existing, path_); !s.ok()) return s;

    // O_NONBLOCK: should the path turn into a FIFO after lstat, open must
    // not wait for a writer.
    UniqueFd old_fd(::open(path_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!old_fd.valid()) {
      if (errno == ENOENT) continue;
      return OpenError(path_, errno);
    }
    absl::StatusOr<bool> replaced = ReplaceStale(temp_path_, path_, old_fd.get());
    old_fd.Reset();
    if (!replaced.ok()) return replaced.status();
    if (*replaced) {
      temp_path_.clear();
      return absl::OkStatus();
    }
  }
  return ShmError(ShmErrc::kIo, absl::StrCat(path_, " kept changing while publishing: something "
                                             "other than its owner is writing there"));
}

absl::Status SegmentFile::Extend(uint64_t new_size) {
  if (absl::Status s = CheckFitsOffT(new_size, "ftruncate"); !s.ok()) return s;
  if (::ftruncate(fd(), static_cast<off_t>(new_size)) != 0) {
    return ShmIoError(absl::StrCat("ftruncate(", path_, ", ", new_size, ")"), errno);
  }
  return Remap(new_size);
}

absl::Status SegmentFile::Unlink() {
  struct stat ours {};
  struct stat named {};
  if (::fstat(fd(), &ours) != 0) return ShmIoError(absl::StrCat("fstat(", path_, ")"), errno);
  if (::lstat(path_.c_str(), &named) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ShmIoError(absl::StrCat("lstat(", path_, ")"), errno);
  }
  if (!SameInode(ours, named)) return absl::OkStatus();
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
    return ShmIoError(absl::StrCat("unlink(", path_, ")"), errno);
  }
  return absl::OkStatus();
}

// ---- SegmentFile: guest -------------------------------------------------------

absl::StatusOr<SegmentFile> SegmentFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return OpenError(path, errno);
  SegmentFile file;
  file.fd_.Reset(fd);
  file.path_ = path;
  absl::StatusOr<uint64_t> size = file.FileSize();
  if (!size.ok()) return size.status();
  if (absl::Status s = file.Remap(*size); !s.ok()) return s;
  return file;
}

absl::StatusOr<SegmentFile> SegmentFile::FromFd(int fd) {
  absl::StatusOr<UniqueFd> dup = DupCloexec(fd);
  if (!dup.ok()) return dup.status();
  SegmentFile file;
  file.fd_ = *std::move(dup);
  absl::StatusOr<uint64_t> size = file.FileSize();
  if (!size.ok()) return size.status();
  if (absl::Status s = file.Remap(*size); !s.ok()) return s;
  return file;
}

absl::StatusOr<uint64_t> SegmentFile::FileSize() const {
  struct stat st {};
  if (::fstat(fd(), &st) != 0) return ShmIoError(absl::StrCat("fstat(", path_, ")"), errno);
  if (absl::Status s = CheckRegular(st, path_.empty() ? "segment fd" : path_); !s.ok()) return s;
  return static_cast<uint64_t>(st.st_size);
}

absl::Status SegmentFile::Remap(uint64_t new_size) {
  absl::StatusOr<Mapping> mapping = Mapping::Map(fd(), new_size);
  if (!mapping.ok()) return mapping.status();
  mapping_ = *std::move(mapping);  // unmaps the old one
  return absl::OkStatus();
}

// ---- SegmentFile: ownership ---------------------------------------------------

SegmentFile::~SegmentFile() { RemoveTemporary(); }

SegmentFile::SegmentFile(SegmentFile&& other) noexcept
    : fd_(std::move(other.fd_)),
      mapping_(std::move(other.mapping_)),
      path_(std::move(other.path_)),
      temp_path_(std::exchange(other.temp_path_, std::string())) {}

SegmentFile& SegmentFile::operator=(SegmentFile&& other) noexcept {
  if (this != &other) {
    RemoveTemporary();
    mapping_ = std::move(other.mapping_);
    fd_ = std::move(other.fd_);
    path_ = std::move(other.path_);
    temp_path_ = std::exchange(other.temp_path_, std::string());
  }
  return *this;
}

void SegmentFile::RemoveTemporary() {
  // A file that never got its final name is nobody's segment.
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  temp_path_.clear();
}

}  // namespace shmhub::shm
