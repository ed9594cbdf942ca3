#include "server/local/unix_listener.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::server {
namespace {

using ::shmhub::testing::TempDir;

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// A socket bound at `path` and then closed: the file a crashed daemon leaves.
void LeaveStaleSocketFile(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  struct sockaddr_un address {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<const struct sockaddr*>(&address), sizeof(address)), 0);
  ::close(fd);
}

int ConnectTo(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un address {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<const struct sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(UnixListenerTest, ListensWithMode0660AndRemovesTheSocketWhenDestroyed) {
  TempDir dir;
  const std::string path = dir.File("hub.sock");
  {
    absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path);
    ASSERT_TRUE(listener.ok()) << listener.status();
    struct stat st;
    ASSERT_EQ(::lstat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_EQ((*listener)->path(), path);
  }
  EXPECT_FALSE(Exists(path));
}

TEST(UnixListenerTest, SecondListenerOnALivePathIsRefusedWithAlreadyExists) {
  TempDir dir;
  const std::string path = dir.File("hub.sock");
  absl::StatusOr<std::unique_ptr<UnixListener>> first = UnixListener::Listen(path);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<UnixListener>> second = UnixListener::Listen(path);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(second.status().message().find("--socket"), absl::string_view::npos)
      << second.status();
  // The refused attempt left the first listener's socket alone.
  const int client = ConnectTo(path);
  EXPECT_GE(client, 0);
  if (client >= 0) ::close(client);
}

TEST(UnixListenerTest, SocketFileLeftByADeadDaemonIsReplaced) {
  TempDir dir;
  const std::string path = dir.File("hub.sock");
  LeaveStaleSocketFile(path);
  ASSERT_TRUE(Exists(path));
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  const int client = ConnectTo(path);
  ASSERT_GE(client, 0) << "the replaced socket does not accept connections";
  ::close(client);
}

TEST(UnixListenerTest, PathHoldingSomethingOtherThanASocketIsRefused) {
  TempDir dir;
  const std::string path = dir.File("hub.sock");
  std::ofstream(path) << "not a socket";
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path);
  ASSERT_FALSE(listener.ok());
  EXPECT_EQ(listener.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Exists(path)) << "a file that is not ours must not be removed";
}

TEST(UnixListenerTest, RelativeOrOverlongPathIsInvalidArgument) {
  EXPECT_EQ(UnixListener::Listen("hub.sock").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnixListener::Listen("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnixListener::Listen("/tmp/" + std::string(200, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(UnixListenerTest, SymlinkedDirectoryIsRefused) {
  TempDir dir;
  const std::string real = dir.File("real");
  ASSERT_EQ(::mkdir(real.c_str(), 0755), 0);
  const std::string link = dir.File("link");
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(link + "/hub.sock");
  ASSERT_FALSE(listener.ok());
  EXPECT_EQ(listener.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(Exists(real + "/hub.sock"));
}

TEST(UnixListenerTest, MissingDirectoryIsCreated) {
  TempDir dir;
  const std::string path = dir.File("run") + "/hub.sock";
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_TRUE(Exists(path));
}

TEST(UnixListenerTest, AcceptReturnsNothingWhenNoClientWaitsAndANonBlockingFdWhenOneDoes) {
  TempDir dir;
  const std::string path = dir.File("hub.sock");
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  absl::StatusOr<std::optional<shm::UniqueFd>> none = (*listener)->Accept();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  const int client = ConnectTo(path);
  ASSERT_GE(client, 0);
  absl::StatusOr<std::optional<shm::UniqueFd>> accepted = (*listener)->Accept();
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  ASSERT_TRUE(accepted->has_value());
  const int fd = (*accepted)->get();
  EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  ::close(client);
}

TEST(UnixListenerTest, DestructionLeavesASocketThatReplacedItsOwnAlone) {
  TempDir dir;
  const std::string path = dir.File("hub.sock");
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  ASSERT_EQ(::unlink(path.c_str()), 0);
  LeaveStaleSocketFile(path);
  listener->reset();
  EXPECT_TRUE(Exists(path));
}

}  // namespace
}  // namespace shmhub::server
