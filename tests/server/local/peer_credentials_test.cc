#include "server/local/peer_credentials.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/unix_listener.h"

namespace shmhub::server {
namespace {

using ::shmhub::testing::ChildProcess;
using ::shmhub::testing::TempDir;

TEST(PeerCredentialsTest, ReportsThisProcessPidUidAndAPidfdOnASocketpair) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  absl::StatusOr<PeerCredentials> who = ReadPeerCredentials(pair[0]);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(who->pid, static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(who->uid, ::getuid());
  EXPECT_EQ(who->gid, ::getgid());
  EXPECT_TRUE(who->pidfd.valid());
  EXPECT_NE(who->Describe().find(std::to_string(::getpid())), std::string::npos);
  ::close(pair[0]);
  ::close(pair[1]);
}

TEST(PeerCredentialsTest, PidfdOfAConnectedChildBecomesReadableWhenTheChildIsKilled) {
  TempDir dir;
  const std::string path = dir.File("creds.sock");
  absl::StatusOr<int> listening = ::shmhub::testing::ListenOnUnixSocket(path, 1);
  ASSERT_TRUE(listening.ok()) << listening.status();
  const int listener = *listening;
  // Built before fork: the child may make only system calls.
  struct sockaddr_un address {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);

  // The child connects and then waits to be killed: only system calls
  // after fork.
  ChildProcess child([&address] {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<const struct sockaddr*>(&address), sizeof(address)) != 0) {
      return 1;
    }
    while (true) ::pause();
  });
  const int connection = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(connection, 0);
  absl::StatusOr<PeerCredentials> who = ReadPeerCredentials(connection);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(who->pid, static_cast<uint32_t>(child.pid()));
  ASSERT_TRUE(who->pidfd.valid());

  struct pollfd alive = {who->pidfd.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&alive, 1, 0), 0) << "the pidfd is readable while the child runs";
  child.Signal(SIGKILL);
  struct pollfd exited = {who->pidfd.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&exited, 1, 10'000), 1) << "no exit seen on the pidfd within 10s";
  EXPECT_EQ(child.Wait(), 128 + SIGKILL);
  ::close(connection);
  ::close(listener);
}

TEST(PeerCredentialsTest, ARecordedProcessIsFoundAgainOnlyByItsPidAndStartTime) {
  const uint32_t self = static_cast<uint32_t>(::getpid());
  const std::optional<uint64_t> started = ProcessStartTime(self);
  ASSERT_TRUE(started.has_value());
  absl::StatusOr<shm::UniqueFd> again = OpenProcessIfStillIt(self, *started);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->valid());
  // The same pid with another start time is another process: a reused pid.
  absl::StatusOr<shm::UniqueFd> reused = OpenProcessIfStillIt(self, *started + 1);
  EXPECT_EQ(reused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(reused.status().message().find("another process"), absl::string_view::npos)
      << reused.status();
}

TEST(PeerCredentialsTest, AProcessThatExitedIsNotFoundAgain) {
  ChildProcess child([] { return 0; });
  const uint32_t pid = static_cast<uint32_t>(child.pid());
  ASSERT_EQ(child.Wait(), 0);
  EXPECT_EQ(OpenProcessIfStillIt(pid, 1).status().code(), absl::StatusCode::kNotFound);
}

TEST(PeerCredentialsTest, TheStartTimeOfAConnectedPeerIsRecorded) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  absl::StatusOr<PeerCredentials> who = ReadPeerCredentials(pair[0]);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(who->start_time, ProcessStartTime(static_cast<uint32_t>(::getpid())).value_or(0));
  EXPECT_NE(who->start_time, 0u);
  ::close(pair[0]);
  ::close(pair[1]);
}

TEST(PeerCredentialsTest, DescriptorThatIsNotASocketIsAnInternalError) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  absl::StatusOr<PeerCredentials> who = ReadPeerCredentials(pipe_fds[0]);
  ASSERT_FALSE(who.ok());
  EXPECT_EQ(who.status().code(), absl::StatusCode::kInternal);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

}  // namespace
}  // namespace shmhub::server
