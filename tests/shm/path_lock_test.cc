// PathLock: one owner per path, the lock file removed when the owner lets
// go, and a contender that raced that removal never sharing the path.
#include "shm/path_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shm/shm_error.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::shm {
namespace {

using ::shmhub::testing::TempDir;
using ::testing::HasSubstr;

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

TEST(PathLock, ASecondOwnerIsRefusedAsLiveNamingTheLockFile) {
  TempDir dir;
  absl::StatusOr<PathLock> first = PathLock::Acquire(dir.File("seg"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->lock_path(), dir.File("seg.lock"));
  absl::StatusOr<PathLock> second = PathLock::Acquire(dir.File("seg"));
  EXPECT_EQ(ShmErrcOf(second.status()), ShmErrc::kLiveSegment);
  EXPECT_THAT(second.status().message(), HasSubstr(dir.File("seg.lock")));
}

TEST(PathLock, LettingGoRemovesTheLockFileAndFreesThePath) {
  TempDir dir;
  {
    absl::StatusOr<PathLock> first = PathLock::Acquire(dir.File("seg"));
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_TRUE(Exists(dir.File("seg.lock")));
    PathLock moved = *std::move(first);
    EXPECT_TRUE(moved.held());
  }
  EXPECT_FALSE(Exists(dir.File("seg.lock")));
  EXPECT_TRUE(PathLock::Acquire(dir.File("seg")).ok());
}

TEST(PathLock, AStaleLockFileOfADeadOwnerIsTakenOver) {
  TempDir dir;
  const int fd = ::open(dir.File("seg.lock").c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);  // a SIGKILLed owner leaves the file, never the lock
  EXPECT_TRUE(PathLock::Acquire(dir.File("seg")).ok());
}

TEST(PathLock, AContenderThatLockedAnUnlinkedFileStartsOverRatherThanShareThePath) {
  TempDir dir;
  // The contender opened the lock file just before its owner removed it:
  // it holds an unlinked inode. A new file at the path is then another
  // owner's; the contender must not think it owns the path too.
  const int stale = ::open(dir.File("seg.lock").c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(stale, 0);
  ASSERT_EQ(::unlink(dir.File("seg.lock").c_str()), 0);
  ASSERT_EQ(::flock(stale, LOCK_EX | LOCK_NB), 0);
  absl::StatusOr<PathLock> owner = PathLock::Acquire(dir.File("seg"));
  ASSERT_TRUE(owner.ok()) << owner.status() << ": an unlinked inode's lock is nobody's path";
  EXPECT_EQ(ShmErrcOf(PathLock::Acquire(dir.File("seg")).status()), ShmErrc::kLiveSegment);
  ::close(stale);
}

TEST(PathLock, ASymlinkAtTheLockPathIsNotFollowed) {
  TempDir dir;
  ASSERT_EQ(::symlink(dir.File("elsewhere").c_str(), dir.File("seg.lock").c_str()), 0);
  absl::StatusOr<PathLock> lock = PathLock::Acquire(dir.File("seg"));
  EXPECT_EQ(ShmErrcOf(lock.status()), ShmErrc::kIo) << lock.status();
  EXPECT_FALSE(Exists(dir.File("elsewhere")));
}

}  // namespace
}  // namespace shmhub::shm
