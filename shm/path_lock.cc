#include "shm/path_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "shm/shm_error.h"

namespace shmhub::shm {
namespace {

// A contender loses the race with a removal at most once per owner that
// lets go meanwhile; this many in a row means something keeps removing it.
constexpr int kMaxAttempts = 16;

}  // namespace

absl::StatusOr<PathLock> PathLock::Acquire(const std::string& path) {
  const std::string lock_path = path + ".lock";
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid()) return ShmIoError(absl::StrCat("open(", lock_path, ")"), errno);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) {
        return ShmError(ShmErrc::kLiveSegment,
                        absl::StrCat(path, " belongs to a running process that holds ", lock_path));
      }
      return ShmIoError(absl::StrCat("flock(", lock_path, ")"), errno);
    }
    struct stat locked {};
    struct stat named {};
    if (::fstat(fd.get(), &locked) != 0) {
      return ShmIoError(absl::StrCat("fstat(", lock_path, ")"), errno);
    }
    if (::lstat(lock_path.c_str(), &named) == 0 && named.st_dev == locked.st_dev &&
        named.st_ino == locked.st_ino) {
      return PathLock(lock_path, std::move(fd));
    }
    // The previous owner removed the file between our open and our flock.
  }
  return ShmError(ShmErrc::kIo, absl::StrCat(lock_path, " was removed under us ", kMaxAttempts,
                                             " times in a row; something else deletes it"));
}

PathLock::~PathLock() { Release(); }

PathLock& PathLock::operator=(PathLock&& other) noexcept {
  if (this != &other) {
    Release();
    lock_path_ = std::move(other.lock_path_);
    fd_ = std::move(other.fd_);
  }
  return *this;
}

void PathLock::Release() {
  if (!fd_.valid()) return;
  // Still locked: a contender that opens the old file now finds it unlinked
  // after its flock and starts over.
  ::unlink(lock_path_.c_str());
  fd_.Reset();
}

}  // namespace shmhub::shm
