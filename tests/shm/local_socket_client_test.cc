#include "shm/local_socket_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/unix_listener.h"

namespace shmhub::shm {
namespace {

using ::shmhub::testing::TempDir;

Deadline Soon() { return DeadlineAfter(std::chrono::milliseconds(2000)); }

TEST(LocalSocketClientTest, NothingListeningIsUnavailableAndNamesTheSocketFlag) {
  TempDir dir;
  absl::StatusOr<UniqueFd> fd = ConnectLocalSocket(dir.File("absent.sock"), Soon());
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(fd.status().message(), "--socket=")) << fd.status();
}

TEST(LocalSocketClientTest, PathTooLongForSunPathIsInvalidArgument) {
  absl::StatusOr<UniqueFd> fd = ConnectLocalSocket("/tmp/" + std::string(200, 'x'), Soon());
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LocalSocketClientTest, ConnectsToAListenerAndDeliversEveryByte) {
  TempDir dir;
  const std::string path = dir.File("hub.sock");
  absl::StatusOr<int> listening = ::shmhub::testing::ListenOnUnixSocket(path, 1);
  ASSERT_TRUE(listening.ok()) << listening.status();
  const int listener = *listening;

  absl::StatusOr<UniqueFd> client = ConnectLocalSocket(path, Soon());
  ASSERT_TRUE(client.ok()) << client.status();
  const int accepted = ::accept(listener, nullptr, nullptr);
  ASSERT_GE(accepted, 0);
  const uint8_t bytes[] = {'V', 'S', 'H', '1'};
  ASSERT_TRUE(SendAllBytes(client->get(), bytes).ok());
  char got[4] = {};
  ASSERT_EQ(::recv(accepted, got, sizeof(got), MSG_WAITALL), 4);
  EXPECT_EQ(std::memcmp(got, bytes, sizeof(got)), 0);

  ::close(accepted);
  // The peer is gone: a send must fail instead of raising SIGPIPE.
  absl::Status sent = absl::OkStatus();
  for (int i = 0; i < 4 && sent.ok(); ++i) sent = SendAllBytes(client->get(), bytes);
  EXPECT_EQ(sent.code(), absl::StatusCode::kUnavailable);
  ::close(listener);
}

}  // namespace
}  // namespace shmhub::shm
