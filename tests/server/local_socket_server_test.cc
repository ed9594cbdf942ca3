// The local socket against a real in-process HubServer: guests bootstrap
// with raw shm/ calls (the bytes and fds of format §11), claim their slot in
// the segment the daemon sent, and hang up; the daemon's published events
// and peer views are read over real gRPC. Process exits (SIGKILL) are
// covered end to end in tests/e2e with real shmhub-guest processes.
#include "server/local_socket_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "shm/bootstrap.h"
#include "shm/doorbell.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "tests/server/in_process_hub.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::InProcessHub;
using ::shmhub::server::testing::TestWatcher;

constexpr std::chrono::milliseconds kReplyWait{10'000};

void UseLocalSocket(HubConfig& config, const std::string& path) {
  config.socket_path = path;
  // Nothing here may be decided by heartbeats: only the socket's detectors.
  config.crash_timeout = absl::Minutes(10);
}

shm::UniqueFd Connect(const std::string& path) {
  shm::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un address {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const struct sockaddr*>(&address),
                      sizeof(address)),
            0)
      << std::strerror(errno);
  return fd;
}

void SendBytes(int fd, const void* bytes, size_t size) {
  ASSERT_EQ(::send(fd, bytes, size, MSG_NOSIGNAL), static_cast<ssize_t>(size));
}

// One guest's bootstrap: the reply and everything it brought.
struct Bootstrap {
  shm::UniqueFd connection;
  shm::ReceivedBootstrapResponse reply;
};

std::optional<Bootstrap> RequestVox(const std::string& socket_path) {
  Bootstrap bootstrap{Connect(socket_path), {}};
  const auto request = shm::EncodeVoxRequest();
  SendBytes(bootstrap.connection.get(), request.data(), request.size());
  absl::StatusOr<shm::ReceivedBootstrapResponse> reply = shm::ReceiveBootstrapResponse(
      bootstrap.connection.get(), shm::BootstrapDialect::kVox, kReplyWait);
  EXPECT_TRUE(reply.ok()) << reply.status();
  if (!reply.ok()) return std::nullopt;
  bootstrap.reply = *std::move(reply);
  return bootstrap;
}

// Maps the segment the daemon sent and claims the Reserved slot, as a
// guest does after bootstrap (§11.1).
std::unique_ptr<shm::Segment> Claim(const Bootstrap& bootstrap, uint32_t* epoch) {
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
      shm::Segment::AttachFd(bootstrap.reply.fds.at(1).get());
  EXPECT_TRUE(segment.ok()) << segment.status();
  if (!segment.ok()) return nullptr;
  absl::StatusOr<shm::PeerEntryView> entry = (*segment)->peers().Entry(bootstrap.reply.response.peer_id);
  EXPECT_TRUE(entry.ok()) << entry.status();
  const shm::PeerPair pair = entry->LoadPair();
  EXPECT_TRUE(pair.first.Is(shm::PeerState::kReserved));
  *epoch = pair.second;
  EXPECT_TRUE(entry->ClaimFenced(pair.second).ok());
  return *std::move(segment);
}

v1::WatchEventsRequest FromTheStart() {
  v1::WatchEventsRequest request;
  request.set_resume_after_sequence(0);
  return request;
}

// The next event of `kind` on the stream, skipping others; nothing within
// the timeout.
std::optional<v1::PeerEvent> NextOfKind(TestWatcher& watcher, v1::EventKind kind,
                                        std::vector<v1::EventKind>* seen = nullptr) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    std::optional<v1::WatchEventsResponse> message = watcher.NextNonProgress(deadline - absl::Now());
    if (!message.has_value()) return std::nullopt;
    if (!message->has_event()) continue;
    if (seen != nullptr) seen->push_back(message->event().kind());
    if (message->event().kind() == kind) return message->event();
  }
  return std::nullopt;
}

// Waits (bounded) until GetPeer shows `state`.
v1::Peer AwaitState(InProcessHub& hub, uint32_t peer_id, v1::PeerState state) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  v1::Peer peer = hub.GetPeer(peer_id);
  while (peer.state() != state && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
    peer = hub.GetPeer(peer_id);
  }
  EXPECT_EQ(peer.state(), state) << peer.DebugString();
  return peer;
}

class LocalSocketServerTest : public ::testing::Test {
 protected:
  LocalSocketServerTest()
      : socket_path_(dir_.File("hub.sock")),
        hub_([this](HubConfig& config) { UseLocalSocket(config, socket_path_); }) {}

  shmhub::testing::TempDir dir_;
  const std::string socket_path_;
  InProcessHub hub_;
};

TEST_F(LocalSocketServerTest, BootstrapReservesASlotAndSendsSegmentDoorbellAndMappingControl) {
  ASSERT_TRUE(hub_.ok());
  std::optional<Bootstrap> bootstrap = RequestVox(socket_path_);
  ASSERT_TRUE(bootstrap.has_value());
  const shm::BootstrapResponse& response = bootstrap->reply.response;
  EXPECT_EQ(response.status, shm::BootstrapStatus::kSuccess);
  EXPECT_EQ(response.peer_id, 1u);
  EXPECT_EQ(response.payload, hub_.config().segment_path);
  ASSERT_EQ(bootstrap->reply.fds.size(), 4u);

  const v1::Peer peer = hub_.GetPeer(response.peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_RESERVED);
  EXPECT_EQ(peer.owner(), "local-socket");
  EXPECT_EQ(peer.labels().at("pid"), std::to_string(::getpid()));
  EXPECT_EQ(peer.pid(), static_cast<uint32_t>(::getpid()));

  uint32_t epoch = 0;
  std::unique_ptr<shm::Segment> segment = Claim(*bootstrap, &epoch);
  ASSERT_NE(segment, nullptr);
  EXPECT_EQ(epoch, peer.epoch());
}

TEST_F(LocalSocketServerTest, ClaimedGuestHasDoorbellAndProcessDetectorsArmedAndIsMonitored) {
  ASSERT_TRUE(hub_.ok());
  std::optional<Bootstrap> bootstrap = RequestVox(socket_path_);
  ASSERT_TRUE(bootstrap.has_value());
  uint32_t epoch = 0;
  std::unique_ptr<shm::Segment> segment = Claim(*bootstrap, &epoch);
  ASSERT_NE(segment, nullptr);
  const v1::Peer peer = AwaitState(hub_, bootstrap->reply.response.peer_id, v1::PEER_STATE_ATTACHED);
  const auto& armed = peer.armed_detectors();
  EXPECT_NE(std::find(armed.begin(), armed.end(), v1::DETECTOR_DOORBELL), armed.end());
  EXPECT_NE(std::find(armed.begin(), armed.end(), v1::DETECTOR_PROCESS_EXIT), armed.end());
  EXPECT_FALSE(peer.unmonitored());
}

TEST_F(LocalSocketServerTest, ClosingTheDoorbellOfAnAttachedGuestIsACrashByDoorbell) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  std::optional<Bootstrap> bootstrap = RequestVox(socket_path_);
  ASSERT_TRUE(bootstrap.has_value());
  const uint32_t peer_id = bootstrap->reply.response.peer_id;
  uint32_t epoch = 0;
  std::unique_ptr<shm::Segment> segment = Claim(*bootstrap, &epoch);
  ASSERT_NE(segment, nullptr);
  AwaitState(hub_, peer_id, v1::PEER_STATE_ATTACHED);

  bootstrap->reply.fds[0].Reset();  // our only copy of the guest's doorbell end
  const std::optional<v1::PeerEvent> crashed = NextOfKind(watcher, v1::EVENT_KIND_CRASHED);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_EQ(crashed->peer_id(), peer_id);
  EXPECT_EQ(crashed->epoch(), epoch);
  EXPECT_EQ(crashed->detector(), v1::DETECTOR_DOORBELL);
  EXPECT_TRUE(NextOfKind(watcher, v1::EVENT_KIND_RECOVERED).has_value());
  EXPECT_EQ(hub_.GetPeer(peer_id).last_detector(), v1::DETECTOR_DOORBELL);
}

TEST_F(LocalSocketServerTest, GuestThatHangsUpBeforeClaimingReleasesItsSlot) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  std::optional<Bootstrap> bootstrap = RequestVox(socket_path_);
  ASSERT_TRUE(bootstrap.has_value());
  const uint32_t peer_id = bootstrap->reply.response.peer_id;
  bootstrap->reply.fds.clear();

  std::vector<v1::EventKind> seen;
  const std::optional<v1::PeerEvent> released =
      NextOfKind(watcher, v1::EVENT_KIND_RELEASED, &seen);
  ASSERT_TRUE(released.has_value());
  EXPECT_EQ(released->peer_id(), peer_id);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), v1::EVENT_KIND_CRASHED), 0);
  EXPECT_EQ(hub_.GetPeer(peer_id).state(), v1::PEER_STATE_EMPTY);
}

TEST_F(LocalSocketServerTest, GoodbyeStoredBeforeTheHangUpIsAnOrderlyLeaveNotACrash) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  std::optional<Bootstrap> bootstrap = RequestVox(socket_path_);
  ASSERT_TRUE(bootstrap.has_value());
  const uint32_t peer_id = bootstrap->reply.response.peer_id;
  uint32_t epoch = 0;
  std::unique_ptr<shm::Segment> segment = Claim(*bootstrap, &epoch);
  ASSERT_NE(segment, nullptr);
  ASSERT_TRUE((*segment->peers().Entry(peer_id)).GoodbyeFenced(epoch).ok());
  bootstrap->reply.fds.clear();

  std::vector<v1::EventKind> seen;
  ASSERT_TRUE(NextOfKind(watcher, v1::EVENT_KIND_RECOVERED, &seen).has_value());
  EXPECT_EQ(std::count(seen.begin(), seen.end(), v1::EVENT_KIND_GOODBYE), 1);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), v1::EVENT_KIND_CRASHED), 0);
}

TEST_F(LocalSocketServerTest, SpecRequestNamingAReservationRequestIdHandsOverThatSlot) {
  ASSERT_TRUE(hub_.ok());
  v1::ReservePeerRequest reserve;
  reserve.set_request_id("job-7");
  reserve.set_owner("orchestrator");
  const v1::ReservePeerResponse reservation = hub_.Reserve(reserve);

  shm::UniqueFd connection = Connect(socket_path_);
  absl::StatusOr<std::vector<uint8_t>> request = shm::EncodeSpecRequest("job-7");
  ASSERT_TRUE(request.ok());
  SendBytes(connection.get(), request->data(), request->size());
  absl::StatusOr<shm::ReceivedBootstrapResponse> reply =
      shm::ReceiveBootstrapResponse(connection.get(), shm::BootstrapDialect::kSpec, kReplyWait);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->response.status, shm::BootstrapStatus::kSuccess);
  EXPECT_EQ(reply->response.peer_id, reservation.peer_id());
  EXPECT_EQ(reply->fds.size(), 3u);
  const v1::Peer peer = hub_.GetPeer(reservation.peer_id());
  EXPECT_EQ(peer.owner(), "orchestrator");
  EXPECT_EQ(peer.epoch(), reservation.epoch());
  EXPECT_EQ(peer.pid(), static_cast<uint32_t>(::getpid()));
}

TEST_F(LocalSocketServerTest, SpecRequestWithAnUnknownSessionIdGetsAnErrorReplyWithoutFds) {
  ASSERT_TRUE(hub_.ok());
  shm::UniqueFd connection = Connect(socket_path_);
  absl::StatusOr<std::vector<uint8_t>> request = shm::EncodeSpecRequest("no-such-job");
  ASSERT_TRUE(request.ok());
  SendBytes(connection.get(), request->data(), request->size());
  absl::StatusOr<shm::ReceivedBootstrapResponse> reply =
      shm::ReceiveBootstrapResponse(connection.get(), shm::BootstrapDialect::kSpec, kReplyWait);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->response.status, shm::BootstrapStatus::kError);
  EXPECT_TRUE(reply->fds.empty());
  EXPECT_TRUE(absl::StrContains(reply->response.payload, "no-such-job"))
      << reply->response.payload;
}

TEST_F(LocalSocketServerTest, UnknownRequestMagicIsClosedWithoutAReply) {
  ASSERT_TRUE(hub_.ok());
  shm::UniqueFd connection = Connect(socket_path_);
  SendBytes(connection.get(), "HELO", 4);
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ASSERT_EQ(::setsockopt(connection.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
  char byte = 0;
  EXPECT_EQ(::recv(connection.get(), &byte, 1, 0), 0) << "expected the daemon to close";
}

TEST_F(LocalSocketServerTest, ASilentClientDoesNotHoldUpOtherGuestsAndIsDroppedLater) {
  ASSERT_TRUE(hub_.ok());
  shm::UniqueFd silent = Connect(socket_path_);
  std::optional<Bootstrap> bootstrap = RequestVox(socket_path_);
  ASSERT_TRUE(bootstrap.has_value());
  EXPECT_EQ(bootstrap->reply.response.status, shm::BootstrapStatus::kSuccess);

  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ASSERT_EQ(::setsockopt(silent.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
  char byte = 0;
  EXPECT_EQ(::recv(silent.get(), &byte, 1, 0), 0) << "the silent client was never dropped";
}

TEST_F(LocalSocketServerTest, FullHubAnswersWithAnErrorReplyNamingTheCause) {
  ASSERT_TRUE(hub_.ok());
  std::vector<Bootstrap> guests;
  for (uint32_t i = 0; i < hub_.config().max_guests; ++i) {
    std::optional<Bootstrap> bootstrap = RequestVox(socket_path_);
    ASSERT_TRUE(bootstrap.has_value());
    ASSERT_EQ(bootstrap->reply.response.status, shm::BootstrapStatus::kSuccess);
    guests.push_back(*std::move(bootstrap));
  }
  std::optional<Bootstrap> refused = RequestVox(socket_path_);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->reply.response.status, shm::BootstrapStatus::kError);
  EXPECT_TRUE(absl::StrContains(refused->reply.response.payload, "occupied"))
      << refused->reply.response.payload;
  EXPECT_TRUE(refused->reply.fds.empty());
}

TEST_F(LocalSocketServerTest, ShutdownRingsEveryGuestDoorbellAndRemovesTheSocket) {
  ASSERT_TRUE(hub_.ok());
  std::optional<Bootstrap> bootstrap = RequestVox(socket_path_);
  ASSERT_TRUE(bootstrap.has_value());
  uint32_t epoch = 0;
  std::unique_ptr<shm::Segment> segment = Claim(*bootstrap, &epoch);
  ASSERT_NE(segment, nullptr);
  AwaitState(hub_, bootstrap->reply.response.peer_id, v1::PEER_STATE_ATTACHED);

  hub_.server().Shutdown();
  EXPECT_TRUE(segment->HostGoodbye());
  shm::Doorbell doorbell(shm::DoorbellEnd::kGuest, std::move(bootstrap->reply.fds[0]));
  absl::StatusOr<shm::WaitResult> woken = doorbell.Wait(std::chrono::milliseconds(0));
  // Rung and then closed: the ring, or the hang-up right behind it.
  EXPECT_TRUE(woken.ok() ? *woken == shm::WaitResult::kWoken
                         : shm::ShmErrcOf(woken.status()) == shm::ShmErrc::kPeerClosed)
      << woken.status();
  struct stat st;
  EXPECT_NE(::lstat(socket_path_.c_str(), &st), 0) << "the socket file is still there";
}

TEST(LocalSocketServerStartTest, SecondDaemonOnTheSameSocketIsRefusedAndNamesTheFlag) {
  shmhub::testing::TempDir dir;
  const std::string socket_path = dir.File("hub.sock");
  InProcessHub first([&](HubConfig& config) { UseLocalSocket(config, socket_path); });
  ASSERT_TRUE(first.ok());
  HubConfig config = first.config();
  config.segment_path = dir.File("other-segment");
  absl::StatusOr<std::unique_ptr<HubServer>> second = HubServer::Start(config);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(absl::StrContains(second.status().message(), "--socket")) << second.status();
  struct stat st;
  EXPECT_NE(::lstat(config.segment_path.c_str(), &st), 0)
      << "the refused daemon left its segment behind";
}

}  // namespace
}  // namespace shmhub::server
