// The daemon's side of the data-plane host application against a real
// in-process HubServer: registration on the local socket, the records the
// host receives (with the fds they carry), recovery gated on RECOVERY_READY
// and --host_ack_timeout, and what the host application's hang-up does to
// the guests it served. Host and guests are played with raw shm/ calls
// (tests/server/local_socket_clients.h); events and peer views are read
// over real gRPC. Real host processes and SIGKILLs are in tests/e2e.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/config/hub_config.h"
#include "shm/doorbell.h"
#include "shm/host_control.h"
#include "shm/mapping_control.h"
#include "shm/peer_table.h"
#include "shm/shm_error.h"
#include "tests/server/in_process_hub.h"
#include "tests/server/local_socket_clients.h"
#include "tests/server/metric_families.h"

namespace shmhub::server {
namespace {

using ::shmhub::server::testing::BootstrapAndClaim;
using ::shmhub::server::testing::InProcessHub;
using ::shmhub::server::testing::LocalGuestClient;
using ::shmhub::server::testing::RawHostClient;
using ::shmhub::server::testing::SetDeadline;
using ::shmhub::server::testing::TestWatcher;
using ::shmhub::server::testing::Value;
using shm::HostRecordType;

v1::WatchEventsRequest FromTheStart() {
  v1::WatchEventsRequest request;
  request.set_resume_after_sequence(0);
  return request;
}

// The next event of `kind` (for `peer_id`, unless 0 is asked for any),
// skipping others and recording every kind passed in `seen`.
std::optional<v1::PeerEvent> NextOfKind(TestWatcher& watcher, v1::EventKind kind,
                                        uint32_t peer_id = 0,
                                        std::vector<v1::EventKind>* seen = nullptr) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    std::optional<v1::WatchEventsResponse> message =
        watcher.NextNonProgress(deadline - absl::Now());
    if (!message.has_value()) return std::nullopt;
    if (!message->has_event()) continue;
    if (seen != nullptr) seen->push_back(message->event().kind());
    const v1::PeerEvent& event = message->event();
    if (event.kind() == kind && (peer_id == 0 || event.peer_id() == peer_id)) {
      return message->event();
    }
  }
  return std::nullopt;
}

ino_t Inode(int fd) {
  struct stat st = {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

class PeerHubHostTest : public ::testing::Test {
 protected:
  explicit PeerHubHostTest(absl::Duration host_ack_timeout = absl::Minutes(1))
      : socket_path_(dir_.File("hub.sock")), hub_([&](HubConfig& config) {
          config.socket_path = socket_path_;
          // Nothing here may be decided by heartbeats.
          config.crash_timeout = absl::Minutes(10);
          config.host_ack_timeout = host_ack_timeout;
        }) {}

  // Waits (bounded) until GetPeer shows `state`.
  v1::Peer AwaitState(uint32_t peer_id, v1::PeerState state) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    v1::Peer peer = hub_.GetPeer(peer_id);
    while (peer.state() != state && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
      peer = hub_.GetPeer(peer_id);
    }
    EXPECT_EQ(peer.state(), state) << peer.DebugString();
    return peer;
  }

  std::optional<LocalGuestClient> AttachedGuest() {
    std::optional<LocalGuestClient> guest = BootstrapAndClaim(socket_path_);
    if (guest.has_value()) AwaitState(guest->peer_id, v1::PEER_STATE_ATTACHED);
    return guest;
  }

  double Metric(const std::string& name, const testing::Labels& labels = {}) {
    return Value(hub_.server().metrics().registry()->Collect(), name, labels).value_or(-1);
  }

  shmhub::testing::TempDir dir_;
  const std::string socket_path_;
  InProcessHub hub_;
};

class PeerHubHostTimeoutTest : public PeerHubHostTest {
 protected:
  PeerHubHostTimeoutTest() : PeerHubHostTest(absl::Milliseconds(100)) {}
};

TEST_F(PeerHubHostTest, HostGetsTheSegmentThenEveryAttachedGuestWithItsDoorbellAndMappingControl) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  std::optional<LocalGuestClient> guest = AttachedGuest();
  ASSERT_TRUE(guest.has_value());
  EXPECT_EQ(Metric("shmhub_host_registered"), 0);

  RawHostClient host(socket_path_);
  std::optional<shm::ReceivedHostRecord> registered = host.Expect(HostRecordType::kRegistered);
  ASSERT_TRUE(registered.has_value());
  ASSERT_EQ(registered->fds.size(), 1u);
  EXPECT_EQ(Inode(registered->fds[0].get()), Inode(guest->reply.fds.at(1).get()));

  std::optional<shm::ReceivedHostRecord> attached = host.Expect(HostRecordType::kPeerAttached);
  ASSERT_TRUE(attached.has_value());
  EXPECT_EQ(attached->record, shm::PeerAttachedRecord({guest->peer_id, guest->epoch}, 2));
  ASSERT_EQ(attached->fds.size(), 2u);
  // The host end of the guest's doorbell: the guest's ring reaches it.
  shm::Doorbell host_doorbell(shm::DoorbellEnd::kHost, std::move(attached->fds[0]));
  shm::Doorbell guest_doorbell(shm::DoorbellEnd::kGuest, std::move(guest->reply.fds.at(0)));
  ASSERT_TRUE(guest_doorbell.Signal().ok());
  absl::StatusOr<shm::WaitResult> woken = host_doorbell.Wait(std::chrono::milliseconds(10'000));
  ASSERT_TRUE(woken.ok()) << woken.status();
  EXPECT_EQ(*woken, shm::WaitResult::kWoken);
  // And the host end of its mapping-control socket.
  shm::UniqueFd region = shm::UniqueFd(::memfd_create("region", MFD_CLOEXEC));
  const shm::MappingControlMessage message{.map_id = 3, .map_generation = 0, .mapping_length = 64};
  ASSERT_TRUE(shm::SendMappingControl(guest->mapping_send(), message, region.get()).ok());
  absl::StatusOr<std::optional<shm::ReceivedMapping>> mapping =
      shm::ReceiveMappingControl(attached->fds[1].get());
  ASSERT_TRUE(mapping.ok()) << mapping.status();
  ASSERT_TRUE(mapping->has_value());
  EXPECT_EQ((*mapping)->message, message);

  const std::optional<v1::PeerEvent> host_attached =
      NextOfKind(watcher, v1::EVENT_KIND_HOST_ATTACHED);
  ASSERT_TRUE(host_attached.has_value());
  EXPECT_EQ(host_attached->peer_id(), 0u);
  EXPECT_TRUE(absl::StrContains(host_attached->reason(), absl::StrCat("pid ", ::getpid())))
      << host_attached->reason();
  EXPECT_EQ(Metric("shmhub_host_registered"), 1);

  // A guest that arrives later is announced as it attaches.
  std::optional<LocalGuestClient> later = AttachedGuest();
  ASSERT_TRUE(later.has_value());
  std::optional<shm::ReceivedHostRecord> announced = host.Expect(HostRecordType::kPeerAttached);
  ASSERT_TRUE(announced.has_value());
  EXPECT_EQ(announced->record, shm::PeerAttachedRecord({later->peer_id, later->epoch}, 2));
}

TEST_F(PeerHubHostTest, GuestAttachedByPathIsAnnouncedWithoutDescriptors) {
  ASSERT_TRUE(hub_.ok());
  RawHostClient host(socket_path_);
  ASSERT_TRUE(host.Expect(HostRecordType::kRegistered).has_value());
  absl::StatusOr<std::unique_ptr<shm::Segment>> guest =
      shm::Segment::Attach(hub_.config().segment_path);
  ASSERT_TRUE(guest.ok()) << guest.status();
  absl::StatusOr<shm::Occupancy> taken = (*guest)->peers().AttachFirstFree();
  ASSERT_TRUE(taken.ok()) << taken.status();

  std::optional<shm::ReceivedHostRecord> attached = host.Expect(HostRecordType::kPeerAttached);
  ASSERT_TRUE(attached.has_value());
  EXPECT_EQ(attached->record, shm::PeerAttachedRecord({taken->peer_id, taken->epoch}, 0));
  EXPECT_TRUE(attached->fds.empty());
}

TEST_F(PeerHubHostTest, SecondHostApplicationIsRefusedAndTheFirstStaysRegistered) {
  ASSERT_TRUE(hub_.ok());
  RawHostClient first(socket_path_);
  ASSERT_TRUE(first.Expect(HostRecordType::kRegistered).has_value());

  RawHostClient second(socket_path_);
  std::optional<shm::ReceivedHostRecord> refused = second.Expect(HostRecordType::kRefused);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->record, shm::RefusedRecord(shm::HostRefusal::kAlreadyRegistered));
  EXPECT_TRUE(refused->fds.empty());
  EXPECT_EQ(shm::ShmErrcOf(second.Next().status()), shm::ShmErrc::kHostControlClosed);

  // The first one is still served.
  std::optional<LocalGuestClient> guest = AttachedGuest();
  ASSERT_TRUE(guest.has_value());
  EXPECT_TRUE(first.Expect(HostRecordType::kPeerAttached).has_value());
  EXPECT_EQ(Metric("shmhub_host_registered"), 1);
}

TEST_F(PeerHubHostTest, RecoveryOfAServedGuestWaitsForRecoveryReady) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  RawHostClient host(socket_path_);
  ASSERT_TRUE(host.Expect(HostRecordType::kRegistered).has_value());
  std::optional<LocalGuestClient> guest = AttachedGuest();
  ASSERT_TRUE(guest.has_value());
  ASSERT_TRUE(host.Expect(HostRecordType::kPeerAttached).has_value());

  guest->HangUp();
  const std::optional<v1::PeerEvent> crashed =
      NextOfKind(watcher, v1::EVENT_KIND_CRASHED, guest->peer_id);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_EQ(crashed->detector(), v1::DETECTOR_DOORBELL);
  std::optional<shm::ReceivedHostRecord> recovering =
      host.Expect(HostRecordType::kPeerRecovering);
  ASSERT_TRUE(recovering.has_value());
  EXPECT_EQ(recovering->record,
            shm::PeerRecoveringRecord({guest->peer_id, guest->epoch},
                                      shm::PeerDeparture::kCrashed));
  // PEER_RECOVERING is queued in the same step that would have recovered
  // the slot: it is still Goodbye, and only the acknowledgement moves it.
  EXPECT_EQ(hub_.GetPeer(guest->peer_id).state(), v1::PEER_STATE_GOODBYE);

  ASSERT_TRUE(host.Ack(guest->peer_id, guest->epoch).ok());
  std::vector<v1::EventKind> seen;
  const std::optional<v1::PeerEvent> recovered =
      NextOfKind(watcher, v1::EVENT_KIND_RECOVERED, guest->peer_id, &seen);
  ASSERT_TRUE(recovered.has_value());
  EXPECT_TRUE(recovered->has_recovery());
  EXPECT_EQ(std::count(seen.begin(), seen.end(), v1::EVENT_KIND_HOST_UNRESPONSIVE), 0);
  AwaitState(guest->peer_id, v1::PEER_STATE_EMPTY);
}

TEST_F(PeerHubHostTest, GuestThatLeavesInOrderIsAnnouncedAsLeft) {
  ASSERT_TRUE(hub_.ok());
  RawHostClient host(socket_path_);
  ASSERT_TRUE(host.Expect(HostRecordType::kRegistered).has_value());
  std::optional<LocalGuestClient> guest = AttachedGuest();
  ASSERT_TRUE(guest.has_value());
  ASSERT_TRUE(host.Expect(HostRecordType::kPeerAttached).has_value());

  ASSERT_TRUE((*guest->segment->peers().Entry(guest->peer_id)).GoodbyeFenced(guest->epoch).ok());
  std::optional<shm::ReceivedHostRecord> recovering =
      host.Expect(HostRecordType::kPeerRecovering);
  ASSERT_TRUE(recovering.has_value());
  EXPECT_EQ(recovering->record,
            shm::PeerRecoveringRecord({guest->peer_id, guest->epoch}, shm::PeerDeparture::kLeft));
  ASSERT_TRUE(host.Ack(guest->peer_id, guest->epoch).ok());
  AwaitState(guest->peer_id, v1::PEER_STATE_EMPTY);
}

TEST_F(PeerHubHostTest, EvictWithAHostRegisteredReturnsWithoutAReportAndRecoveredFollowsTheAck) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  RawHostClient host(socket_path_);
  ASSERT_TRUE(host.Expect(HostRecordType::kRegistered).has_value());
  std::optional<LocalGuestClient> guest = AttachedGuest();
  ASSERT_TRUE(guest.has_value());
  ASSERT_TRUE(host.Expect(HostRecordType::kPeerAttached).has_value());

  grpc::ClientContext context;
  SetDeadline(&context);
  v1::EvictPeerRequest request;
  request.set_peer_id(guest->peer_id);
  request.set_epoch(guest->epoch);
  v1::EvictPeerResponse response;
  const grpc::Status status = hub_.stub().EvictPeer(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(response.has_recovery());
  EXPECT_EQ(hub_.GetPeer(guest->peer_id).state(), v1::PEER_STATE_GOODBYE);

  std::optional<shm::ReceivedHostRecord> recovering =
      host.Expect(HostRecordType::kPeerRecovering);
  ASSERT_TRUE(recovering.has_value());
  EXPECT_EQ(recovering->record.arg, static_cast<uint32_t>(shm::PeerDeparture::kEvicted));
  ASSERT_TRUE(host.Ack(guest->peer_id, guest->epoch).ok());
  const std::optional<v1::PeerEvent> recovered =
      NextOfKind(watcher, v1::EVENT_KIND_RECOVERED, guest->peer_id);
  ASSERT_TRUE(recovered.has_value());
  EXPECT_TRUE(recovered->has_recovery());
}

TEST_F(PeerHubHostTimeoutTest, UnansweredRecoveryGoesAheadAtTheTimeoutWithEventAndMetric) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  RawHostClient host(socket_path_);
  ASSERT_TRUE(host.Expect(HostRecordType::kRegistered).has_value());
  std::optional<LocalGuestClient> guest = AttachedGuest();
  ASSERT_TRUE(guest.has_value());
  ASSERT_TRUE(host.Expect(HostRecordType::kPeerAttached).has_value());
  EXPECT_EQ(Metric("shmhub_host_ack_timeouts_total"), 0);

  guest->HangUp();
  ASSERT_TRUE(host.Expect(HostRecordType::kPeerRecovering).has_value());
  // The host stays silent.
  std::vector<v1::EventKind> seen;
  const std::optional<v1::PeerEvent> unresponsive =
      NextOfKind(watcher, v1::EVENT_KIND_HOST_UNRESPONSIVE, guest->peer_id, &seen);
  ASSERT_TRUE(unresponsive.has_value());
  EXPECT_EQ(unresponsive->epoch(), guest->epoch);
  EXPECT_TRUE(absl::StrContains(unresponsive->reason(), "--host_ack_timeout"))
      << unresponsive->reason();
  EXPECT_EQ(std::count(seen.begin(), seen.end(), v1::EVENT_KIND_RECOVERED), 0)
      << "recovered before the host application's deadline";
  ASSERT_TRUE(NextOfKind(watcher, v1::EVENT_KIND_RECOVERED, guest->peer_id).has_value());
  EXPECT_EQ(Metric("shmhub_host_ack_timeouts_total"), 1);
  EXPECT_EQ(Metric("shmhub_events_total", {{"kind", "host_unresponsive"}}), 1);
  // A late acknowledgement changes nothing.
  ASSERT_TRUE(host.Ack(guest->peer_id, guest->epoch).ok());
  EXPECT_EQ(Metric("shmhub_host_registered"), 1);
}

TEST_F(PeerHubHostTest, HostHangUpShutsTheDoorbellsOfItsGuestsAndANewHostCanRegister) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  std::optional<LocalGuestClient> served = AttachedGuest();
  ASSERT_TRUE(served.has_value());
  {
    RawHostClient host(socket_path_);
    ASSERT_TRUE(host.Expect(HostRecordType::kRegistered).has_value());
    ASSERT_TRUE(host.Expect(HostRecordType::kPeerAttached).has_value());
  }  // the host application's connection and its copies of the host ends close

  shm::Doorbell guest_doorbell(shm::DoorbellEnd::kGuest, std::move(served->reply.fds.at(0)));
  absl::StatusOr<shm::WaitResult> woken = guest_doorbell.Wait(std::chrono::milliseconds(10'000));
  EXPECT_EQ(shm::ShmErrcOf(woken.status()), shm::ShmErrc::kPeerClosed)
      << "the guest's doorbell did not hang up: " << woken.status();
  std::vector<v1::EventKind> seen;
  const std::optional<v1::PeerEvent> detached =
      NextOfKind(watcher, v1::EVENT_KIND_HOST_DETACHED, 0, &seen);
  ASSERT_TRUE(detached.has_value());
  EXPECT_EQ(std::count(seen.begin(), seen.end(), v1::EVENT_KIND_CRASHED), 0);
  EXPECT_EQ(Metric("shmhub_host_registered"), 0);
  // The daemon shut that doorbell itself: the guest is alive, still
  // Attached, and watched by its process (this one) only.
  const v1::Peer peer = hub_.GetPeer(served->peer_id);
  EXPECT_EQ(peer.state(), v1::PEER_STATE_ATTACHED);
  EXPECT_EQ(std::count(peer.armed_detectors().begin(), peer.armed_detectors().end(),
                       v1::DETECTOR_DOORBELL),
            0);
  EXPECT_EQ(std::count(peer.armed_detectors().begin(), peer.armed_detectors().end(),
                       v1::DETECTOR_PROCESS_EXIT),
            1);

  RawHostClient next(socket_path_);
  ASSERT_TRUE(next.Expect(HostRecordType::kRegistered).has_value());
  // The cut-off guest is not announced to it; a new one is, first.
  std::optional<LocalGuestClient> fresh = AttachedGuest();
  ASSERT_TRUE(fresh.has_value());
  std::optional<shm::ReceivedHostRecord> attached = next.Expect(HostRecordType::kPeerAttached);
  ASSERT_TRUE(attached.has_value());
  EXPECT_EQ(attached->record.peer_id, fresh->peer_id);
  EXPECT_EQ(Metric("shmhub_host_registered"), 1);
}

TEST_F(PeerHubHostTest, RecoveryWaitingForAHostThatHangsUpGoesAheadAtOnce) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  std::optional<LocalGuestClient> guest = AttachedGuest();
  ASSERT_TRUE(guest.has_value());
  RawHostClient host(socket_path_);
  ASSERT_TRUE(host.Expect(HostRecordType::kRegistered).has_value());
  ASSERT_TRUE(host.Expect(HostRecordType::kPeerAttached).has_value());
  guest->HangUp();
  ASSERT_TRUE(host.Expect(HostRecordType::kPeerRecovering).has_value());
  EXPECT_EQ(hub_.GetPeer(guest->peer_id).state(), v1::PEER_STATE_GOODBYE);

  host.HangUp();
  std::vector<v1::EventKind> seen;
  ASSERT_TRUE(NextOfKind(watcher, v1::EVENT_KIND_RECOVERED, guest->peer_id, &seen).has_value());
  EXPECT_EQ(std::count(seen.begin(), seen.end(), v1::EVENT_KIND_HOST_DETACHED), 1);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), v1::EVENT_KIND_HOST_UNRESPONSIVE), 0);
}

TEST_F(PeerHubHostTest, HostThatSendsARecordOnlyTheDaemonSendsIsDropped) {
  ASSERT_TRUE(hub_.ok());
  TestWatcher watcher(hub_.stub(), FromTheStart());
  RawHostClient host(socket_path_);
  ASSERT_TRUE(host.Expect(HostRecordType::kRegistered).has_value());
  const auto bogus = shm::EncodeHostRecord(shm::PeerAttachedRecord({1, 1}, 0));
  ASSERT_EQ(::send(host.fd(), bogus.data(), bogus.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bogus.size()));
  EXPECT_EQ(shm::ShmErrcOf(host.Next().status()), shm::ShmErrc::kHostControlClosed);
  const std::optional<v1::PeerEvent> detached = NextOfKind(watcher, v1::EVENT_KIND_HOST_DETACHED);
  ASSERT_TRUE(detached.has_value());
  EXPECT_TRUE(absl::StrContains(detached->reason(), "PEER_ATTACHED")) << detached->reason();
}

TEST_F(PeerHubHostTest, BytesAfterTheRequestBeforeRegisteredAreRefusedByClosing) {
  ASSERT_TRUE(hub_.ok());
  shm::UniqueFd connection = testing::ConnectTo(socket_path_);
  const std::string eager = "SHH1 and then some";
  ASSERT_EQ(::send(connection.get(), eager.data(), eager.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(eager.size()));
  shm::HostRecordReader reader(shm::HostControlSender::kDaemon);
  EXPECT_EQ(
      shm::ShmErrcOf(
          reader.ReadOneBefore(connection.get(), shm::DeadlineAfter(testing::kClientWait))
              .status()),
      shm::ShmErrc::kHostControlClosed);
  EXPECT_EQ(Metric("shmhub_host_registered"), 0);
}

TEST_F(PeerHubHostTest, DaemonShutdownClosesTheHostConnection) {
  ASSERT_TRUE(hub_.ok());
  RawHostClient host(socket_path_);
  ASSERT_TRUE(host.Expect(HostRecordType::kRegistered).has_value());
  hub_.server().Shutdown();
  EXPECT_EQ(shm::ShmErrcOf(host.Next().status()), shm::ShmErrc::kHostControlClosed);
}

}  // namespace
}  // namespace shmhub::server
