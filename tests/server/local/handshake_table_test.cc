// HandshakeTable on its own, driven on the test's thread: real connected
// Unix sockets, a real poll() through PollSet, time passed in.
#include "server/local/handshake_table.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/local/poll_set.h"
#include "shm/bootstrap.h"
#include "shm/host_control.h"
#include "shm/unique_fd.h"

namespace shmhub::server {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

// A connected pair: the daemon's end (admitted) and the client's.
struct Connection {
  shm::UniqueFd daemon_end;
  shm::UniqueFd client;
};

Connection Connect() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0);
  return Connection{shm::UniqueFd(fds[0]), shm::UniqueFd(fds[1])};
}

void Send(int fd, const std::vector<uint8_t>& bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

std::vector<uint8_t> Bytes(const std::string& text) { return {text.begin(), text.end()}; }

// One turn of the loop: poll the table's connections (briefly), collect.
std::vector<CompletedHandshake> Turn(HandshakeTable& table, absl::Time now) {
  PollSet polled;
  table.AddTo(polled);
  EXPECT_TRUE(polled.Wait(absl::Now() + absl::Milliseconds(200), absl::Seconds(1)).ok());
  return table.Collect(polled, now);
}

// Whether the client's end sees its connection closed (EOF, no reply).
bool ClosedWithoutReply(int client) {
  PollSet polled;
  polled.Add(client, POLLIN);
  EXPECT_TRUE(polled.Wait(absl::Now() + absl::Seconds(5), absl::Seconds(5)).ok());
  uint8_t byte = 0;
  return ::recv(client, &byte, 1, MSG_DONTWAIT) == 0;
}

class HandshakeTableTest : public ::testing::Test {
 protected:
  Connection Admitted() {
    Connection connection = Connect();
    EXPECT_TRUE(table_.Admit(std::move(connection.daemon_end), PeerCredentials{}, start_));
    return connection;
  }

  const absl::Time start_ = absl::Now();
  HandshakeTable table_;
};

TEST_F(HandshakeTableTest, AVsh1RequestCompletesAsAGuestBootstrapInTheRustDialect) {
  Connection connection = Admitted();
  Send(connection.client.get(), Bytes("VSH1"));
  std::vector<CompletedHandshake> completed = Turn(table_, start_);
  ASSERT_THAT(completed, SizeIs(1));
  EXPECT_EQ(completed[0].kind, CompletedHandshake::Kind::kGuest);
  EXPECT_EQ(completed[0].request.dialect, shm::BootstrapDialect::kVox);
  EXPECT_EQ(table_.size(), 0u);
}

TEST_F(HandshakeTableTest, AnRsh0RequestSentInPiecesCompletesOnceTheWholeSessionIdIsIn) {
  Connection connection = Admitted();
  absl::StatusOr<std::vector<uint8_t>> request = shm::EncodeSpecRequest("job-7");
  ASSERT_TRUE(request.ok()) << request.status();
  const std::vector<uint8_t> first(request->begin(), request->begin() + 7);
  const std::vector<uint8_t> rest(request->begin() + 7, request->end());
  Send(connection.client.get(), first);
  EXPECT_THAT(Turn(table_, start_), IsEmpty());
  EXPECT_EQ(table_.size(), 1u) << "half a request keeps its slot";
  Send(connection.client.get(), rest);
  std::vector<CompletedHandshake> completed = Turn(table_, start_);
  ASSERT_THAT(completed, SizeIs(1));
  EXPECT_EQ(completed[0].request.dialect, shm::BootstrapDialect::kSpec);
  EXPECT_EQ(completed[0].request.session_id, "job-7");
}

TEST_F(HandshakeTableTest, Shh1CompletesAsTheHostApplicationWithItsBytes) {
  Connection connection = Admitted();
  const auto request = shm::EncodeHostRequest();
  Send(connection.client.get(), std::vector<uint8_t>(request.begin(), request.end()));
  std::vector<CompletedHandshake> completed = Turn(table_, start_);
  ASSERT_THAT(completed, SizeIs(1));
  EXPECT_EQ(completed[0].kind, CompletedHandshake::Kind::kHost);
  EXPECT_EQ(completed[0].handshake.bytes.size(), shm::kHostRequestSize);
}

TEST_F(HandshakeTableTest, AnUnknownMagicIsClosedWithoutAReply) {
  Connection connection = Admitted();
  Send(connection.client.get(), Bytes("HELO"));
  EXPECT_THAT(Turn(table_, start_), IsEmpty());
  EXPECT_EQ(table_.size(), 0u);
  EXPECT_TRUE(ClosedWithoutReply(connection.client.get()));
}

TEST_F(HandshakeTableTest, AClientThatHangsUpMidRequestIsDropped) {
  Connection connection = Admitted();
  Send(connection.client.get(), Bytes("VS"));
  connection.client.Reset();
  EXPECT_THAT(Turn(table_, start_), IsEmpty());
  EXPECT_EQ(table_.size(), 0u);
}

TEST_F(HandshakeTableTest, ASilentClientKeepsItsSlotUntilItsDeadlineAndIsThenClosed) {
  Connection connection = Admitted();
  EXPECT_EQ(table_.NextDeadline(), start_ + HandshakeTable::kTimeout);
  EXPECT_THAT(Turn(table_, start_ + HandshakeTable::kTimeout - absl::Milliseconds(1)), IsEmpty());
  EXPECT_EQ(table_.size(), 1u);
  EXPECT_THAT(Turn(table_, start_ + HandshakeTable::kTimeout), IsEmpty());
  EXPECT_EQ(table_.size(), 0u);
  EXPECT_EQ(table_.NextDeadline(), absl::InfiniteFuture());
  EXPECT_TRUE(ClosedWithoutReply(connection.client.get()));
}

TEST_F(HandshakeTableTest, PastItsCapacityTheTableClosesNewConnectionsAndKeepsTheOldOnes) {
  std::vector<Connection> held;
  for (size_t i = 0; i < HandshakeTable::kCapacity; ++i) held.push_back(Admitted());
  Connection extra = Connect();
  EXPECT_FALSE(table_.Admit(std::move(extra.daemon_end), PeerCredentials{}, start_));
  EXPECT_EQ(table_.size(), HandshakeTable::kCapacity);
  EXPECT_TRUE(ClosedWithoutReply(extra.client.get()));
  Send(held.back().client.get(), Bytes("VSH1"));
  EXPECT_THAT(Turn(table_, start_), SizeIs(1)) << "the admitted ones are still served";
}

TEST_F(HandshakeTableTest, AConnectionAdmittedAfterThePollIsNotReadUntilTheNextTurn) {
  Connection first = Admitted();
  PollSet polled;
  table_.AddTo(polled);
  Connection second = Admitted();
  Send(first.client.get(), Bytes("VSH1"));
  Send(second.client.get(), Bytes("VSH1"));
  ASSERT_TRUE(polled.Wait(absl::Now() + absl::Milliseconds(200), absl::Seconds(1)).ok());
  EXPECT_THAT(table_.Collect(polled, start_), SizeIs(1));
  EXPECT_EQ(table_.size(), 1u);
  EXPECT_THAT(Turn(table_, start_), SizeIs(1));
}

}  // namespace
}  // namespace shmhub::server
