// PathLock: who owns a path, decided by flock(LOCK_EX) on "<path>.lock", a
// file that only the owner ever opens.
//
// The lock lives on the lock file's open file description, and the
// descriptor is close-on-exec and never handed to anyone: the segment and
// socket descriptors the daemon gives guests and the host application are
// other files, so no process but the owner can keep the lock alive. When the
// owner dies, however it dies, the kernel drops the lock, and the next owner
// takes it at once while every guest still maps the segment (a lock on the
// segment's own descriptor would travel with every copy handed out, and one
// wedged guest could then block every restart).
//
// The lock file is removed when the owner lets go. A contender that opened
// it just before then locks an unlinked inode; so after locking, Acquire
// checks that the path still names the inode it locked, and starts over if
// not (bounded), which makes removal safe.
//
// Thread safety: a value type; one owner.
#ifndef SHMHUB_SHM_PATH_LOCK_H_
#define SHMHUB_SHM_PATH_LOCK_H_

#include <string>

#include "absl/status/statusor.h"
#include "shm/unique_fd.h"

namespace shmhub::shm {

class PathLock {
 public:
  // Locks "<path>.lock" (created 0600 if missing, never through a symlink).
  // kLiveSegment when another process holds it; kIo for other failures
  // (the message names the lock file).
  static absl::StatusOr<PathLock> Acquire(const std::string& path);

  PathLock() = default;
  // Removes the lock file while still holding it, then unlocks.
  ~PathLock();
  PathLock(PathLock&& other) noexcept = default;
  PathLock& operator=(PathLock&& other) noexcept;
  PathLock(const PathLock&) = delete;
  PathLock& operator=(const PathLock&) = delete;

  bool held() const { return fd_.valid(); }
  const std::string& lock_path() const { return lock_path_; }

 private:
  PathLock(std::string lock_path, UniqueFd fd)
      : lock_path_(std::move(lock_path)), fd_(std::move(fd)) {}
  void Release();

  std::string lock_path_;
  UniqueFd fd_;
};

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_PATH_LOCK_H_
