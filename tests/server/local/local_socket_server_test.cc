// The local socket against a real in-process HubServer: guests bootstrap
// with raw shm/ calls (the bytes and fds of format §11), claim their slot in
// the segment the daemon sent, and hang up; the daemon's published events
// and peer views are read over real gRPC. Process exits (SIGKILL) are
// covered end to end in tests/e2e with real shmhub-guest processes.
#include "server/local/local_socket_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "shm/bootstrap.h"
#include "shm/doorbell.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "tests/server/in_process_hub.h"
#include "tests/server/local_socket_clients.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::BootstrapAndClaim;
using ::shmhub::server::testing::Claim;
using ::shmhub::server::testing::ConnectTo;
using ::shmhub::server::testing::InProcessHub;
using ::shmhub::server::testing::LocalBootstrap;
using ::shmhub::server::testing::LocalGuestClient;
using ::shmhub::server::testing::RequestBootstrap;
using ::shmhub::server::testing::RequestSpecBootstrap;
using ::shmhub::server::testing::TestWatcher;

void UseLocalSocket(HubConfig& config, const std::string& path) {
  config.socket_path = path;
  // Nothing here may be decided by heartbeats: only the socket's detectors.
  config.crash_timeout = absl::Minutes(10);
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
  std::optional<LocalBootstrap> bootstrap = RequestBootstrap(socket_path_);
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

  const std::optional<LocalGuestClient> guest = Claim(*std::move(bootstrap));
  ASSERT_TRUE(guest.has_value());
  EXPECT_EQ(guest->epoch, peer.epoch());
}

TEST_F(LocalSocketServerTest, ClaimedGuestHasDoorbellAndProcessDetectorsArmedAndIsMonitored) {
  ASSERT_TRUE(hub_.ok());
  const std::optional<LocalGuestClient> guest = BootstrapAndClaim(socket_path_);
  ASSERT_TRUE(guest.has_value());
  const v1::Peer peer = AwaitState(hub_, guest->peer_id, v1::PEER_STATE_ATTACHED);
  const auto& armed = peer.armed_detectors();
  EXPECT_NE(std::find(armed.begin(), armed.end(), v1::DETECTOR_DOORBELL), armed.end());
  EXPECT_NE(std::find(armed.begin(), armed.end(), v1::DETECTOR_PROCESS_EXIT), armed.end());
  EXPECT_FALSE(peer.unmonitored());
}

TEST_F(LocalSocketServerTest, ClosingTheDoorbellOfAnAttachedGuestIsACrashByDoorbell) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  std::optional<LocalGuestClient> guest = BootstrapAndClaim(socket_path_);
  ASSERT_TRUE(guest.has_value());
  const uint32_t peer_id = guest->peer_id;
  AwaitState(hub_, peer_id, v1::PEER_STATE_ATTACHED);

  guest->HangUp();  // our only copy of the guest's doorbell end
  const std::optional<v1::PeerEvent> crashed = NextOfKind(watcher, v1::EVENT_KIND_CRASHED);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_EQ(crashed->peer_id(), peer_id);
  EXPECT_EQ(crashed->epoch(), guest->epoch);
  EXPECT_EQ(crashed->detector(), v1::DETECTOR_DOORBELL);
  EXPECT_TRUE(NextOfKind(watcher, v1::EVENT_KIND_RECOVERED).has_value());
  EXPECT_EQ(hub_.GetPeer(peer_id).last_detector(), v1::DETECTOR_DOORBELL);
}

TEST_F(LocalSocketServerTest, GuestThatHangsUpBeforeClaimingReleasesItsSlot) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  std::optional<LocalBootstrap> bootstrap = RequestBootstrap(socket_path_);
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
  std::optional<LocalGuestClient> guest = BootstrapAndClaim(socket_path_);
  ASSERT_TRUE(guest.has_value());
  ASSERT_TRUE((*guest->segment->peers().Entry(guest->peer_id)).GoodbyeFenced(guest->epoch).ok());
  guest->reply.fds.clear();

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

  const std::optional<LocalBootstrap> bootstrap = RequestSpecBootstrap(socket_path_, "job-7");
  ASSERT_TRUE(bootstrap.has_value());
  const shm::ReceivedBootstrapResponse& reply = bootstrap->reply;
  EXPECT_EQ(reply.response.status, shm::BootstrapStatus::kSuccess);
  EXPECT_EQ(reply.response.peer_id, reservation.peer_id());
  EXPECT_EQ(reply.fds.size(), 3u);
  const v1::Peer peer = hub_.GetPeer(reservation.peer_id());
  EXPECT_EQ(peer.owner(), "orchestrator");
  EXPECT_EQ(peer.epoch(), reservation.epoch());
  EXPECT_EQ(peer.pid(), static_cast<uint32_t>(::getpid()));
}

TEST_F(LocalSocketServerTest, SpecRequestWithAnUnknownSessionIdGetsAnErrorReplyWithoutFds) {
  ASSERT_TRUE(hub_.ok());
  const std::optional<LocalBootstrap> bootstrap =
      RequestSpecBootstrap(socket_path_, "no-such-job");
  ASSERT_TRUE(bootstrap.has_value());
  const shm::ReceivedBootstrapResponse& reply = bootstrap->reply;
  EXPECT_EQ(reply.response.status, shm::BootstrapStatus::kError);
  EXPECT_TRUE(reply.fds.empty());
  EXPECT_TRUE(absl::StrContains(reply.response.payload, "no-such-job")) << reply.response.payload;
}

TEST_F(LocalSocketServerTest, UnknownRequestMagicIsClosedWithoutAReply) {
  ASSERT_TRUE(hub_.ok());
  shm::UniqueFd connection = ConnectTo(socket_path_);
  ASSERT_EQ(::send(connection.get(), "HELO", 4, MSG_NOSIGNAL), 4);
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ASSERT_EQ(::setsockopt(connection.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
  char byte = 0;
  EXPECT_EQ(::recv(connection.get(), &byte, 1, 0), 0) << "expected the daemon to close";
}

TEST_F(LocalSocketServerTest, ASilentClientDoesNotHoldUpOtherGuestsAndIsDroppedLater) {
  ASSERT_TRUE(hub_.ok());
  shm::UniqueFd silent = ConnectTo(socket_path_);
  std::optional<LocalBootstrap> bootstrap = RequestBootstrap(socket_path_);
  ASSERT_TRUE(bootstrap.has_value());
  EXPECT_EQ(bootstrap->reply.response.status, shm::BootstrapStatus::kSuccess);

  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ASSERT_EQ(::setsockopt(silent.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
  char byte = 0;
  EXPECT_EQ(::recv(silent.get(), &byte, 1, 0), 0) << "the silent client was never dropped";
}

TEST_F(LocalSocketServerTest, FullHubAnswersWithAnErrorReplyNamingTheCause) {
  ASSERT_TRUE(hub_.ok());
  std::vector<LocalBootstrap> guests;
  for (uint32_t i = 0; i < hub_.config().max_guests; ++i) {
    std::optional<LocalBootstrap> bootstrap = RequestBootstrap(socket_path_);
    ASSERT_TRUE(bootstrap.has_value());
    ASSERT_EQ(bootstrap->reply.response.status, shm::BootstrapStatus::kSuccess);
    guests.push_back(*std::move(bootstrap));
  }
  std::optional<LocalBootstrap> refused = RequestBootstrap(socket_path_);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->reply.response.status, shm::BootstrapStatus::kError);
  EXPECT_TRUE(absl::StrContains(refused->reply.response.payload, "occupied"))
      << refused->reply.response.payload;
  EXPECT_TRUE(refused->reply.fds.empty());
}

TEST_F(LocalSocketServerTest, ShutdownRingsEveryGuestDoorbellAndRemovesTheSocket) {
  ASSERT_TRUE(hub_.ok());
  std::optional<LocalGuestClient> guest = BootstrapAndClaim(socket_path_);
  ASSERT_TRUE(guest.has_value());
  AwaitState(hub_, guest->peer_id, v1::PEER_STATE_ATTACHED);

  hub_.server().Shutdown();
  EXPECT_TRUE(guest->segment->HostGoodbye());
  shm::Doorbell doorbell(shm::DoorbellEnd::kGuest, std::move(guest->reply.fds[0]));
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
