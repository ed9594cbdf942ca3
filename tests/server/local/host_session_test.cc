// HostSession driven on the test's thread against a real PeerHub and
// segment: the host application is the other end of a real socketpair,
// reading and writing SHH1 records (shm/host_control.h), and each turn of
// the loop is AddTo, poll(), HandleEvents, as LocalSocketServer::Run does.
#include "server/local/host_session.h"

#include <sys/eventfd.h>
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/local/handshake_table.h"
#include "server/local/poll_set.h"
#include "shm/doorbell.h"
#include "shm/host_control.h"
#include "shm/mapping_control.h"
#include "shm/occupancy.h"
#include "shm/poll_fd.h"
#include "tests/server/local/watched_guests_fixture.h"

namespace shmhub::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using hubtest::Kinds;

constexpr std::chrono::milliseconds kWait{5000};

// The host application's end of its connection.
class HostEnd {
 public:
  explicit HostEnd(shm::UniqueFd socket) : socket_(std::move(socket)) {}
  // The next record within kWait; nullopt (and a failure) when none comes.
  std::optional<shm::ReceivedHostRecord> Next() {
    absl::StatusOr<shm::ReceivedHostRecord> next =
        reader_.ReadOneBefore(socket_.get(), shm::DeadlineAfter(kWait));
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok()) return std::nullopt;
    return *std::move(next);
  }
  void Ack(const shm::Occupancy& occupancy) {
    EXPECT_TRUE(shm::SendHostRecord(socket_.get(), shm::RecoveryReadyRecord(occupancy), {},
                                    shm::DeadlineAfter(kWait))
                    .ok());
  }
  void HangUp() { socket_.Reset(); }
  int fd() const { return socket_.get(); }

 private:
  shm::UniqueFd socket_;
  shm::HostRecordReader reader_{shm::HostControlSender::kDaemon};
};

class HostSessionTest : public localtest::WatchedGuestsFixture {
 protected:
  void SetUp() override {
    WatchedGuestsFixture::SetUp();
    session_ = std::make_unique<HostSession>(
        hub_.get(), guests_.get(), shm::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)));
    hub_->SetHostNoticeCallback([session = session_.get()] { session->WakeForNotices(); });
  }
  void TearDown() override {
    hub_->SetHostNoticeCallback({});
    session_.reset();
    WatchedGuestsFixture::TearDown();
  }

  // A connection that sent `bytes` as its first request.
  HostEnd Register(std::vector<uint8_t> bytes) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    session_->Register(Handshake{.connection = shm::UniqueFd(fds[0]),
                                 .who = PeerCredentials{},
                                 .bytes = std::move(bytes),
                                 .deadline = absl::Now()});
    return HostEnd(shm::UniqueFd(fds[1]));
  }
  HostEnd RegisterHost() {
    const auto request = shm::EncodeHostRequest();
    return Register(std::vector<uint8_t>(request.begin(), request.end()));
  }

  // One turn of the loop for the session.
  void Turn() {
    PollSet polled;
    session_->AddTo(polled);
    ASSERT_TRUE(polled.Wait(absl::Now() + absl::Milliseconds(200), absl::Seconds(1)).ok());
    session_->HandleEvents(polled);
  }

  std::unique_ptr<HostSession> session_;
};

TEST_F(HostSessionTest, ARegisteredHostGetsRegisteredWithTheSegmentAndIsAnnounced) {
  HostEnd host = RegisterHost();
  EXPECT_TRUE(session_->registered());
  std::optional<shm::ReceivedHostRecord> registered = host.Next();
  ASSERT_TRUE(registered.has_value());
  EXPECT_EQ(registered->record.type, shm::HostRecordType::kRegistered);
  EXPECT_THAT(registered->fds, SizeIs(1));
  EXPECT_THAT(Kinds(NewEvents()), ElementsAre(v1::EVENT_KIND_HOST_ATTACHED));
}

TEST_F(HostSessionTest, ASecondHostIsRefusedAsAlreadyRegistered) {
  HostEnd first = RegisterHost();
  HostEnd second = RegisterHost();
  std::optional<shm::ReceivedHostRecord> refused = second.Next();
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->record.type, shm::HostRecordType::kRefused);
  EXPECT_EQ(refused->record.arg, static_cast<uint32_t>(shm::HostRefusal::kAlreadyRegistered));
  EXPECT_TRUE(session_->registered()) << "the first stays registered";
}

TEST_F(HostSessionTest, BytesAfterShh1BeforeRegisteredAreRefusedWithoutRegistering) {
  const auto request = shm::EncodeHostRequest();
  std::vector<uint8_t> bytes(request.begin(), request.end());
  bytes.push_back(0);
  Register(std::move(bytes));
  EXPECT_FALSE(session_->registered());
  EXPECT_THAT(NewEvents(), ::testing::IsEmpty());
}

TEST_F(HostSessionTest, AnAttachedLocalGuestIsAnnouncedWithCopiesOfItsTwoHostEnds) {
  HostEnd host = RegisterHost();
  ASSERT_TRUE(host.Next().has_value());  // REGISTERED
  shm::Occupancy occupancy;
  const shm::Doorbell guest_end = AttachedLocalGuest(&occupancy);
  Turn();  // the notice callback woke the session
  std::optional<shm::ReceivedHostRecord> attached = host.Next();
  ASSERT_TRUE(attached.has_value());
  EXPECT_EQ(attached->record.type, shm::HostRecordType::kPeerAttached);
  EXPECT_EQ(attached->record.peer_id, occupancy.peer_id);
  EXPECT_EQ(attached->record.epoch, occupancy.epoch);
  EXPECT_THAT(attached->fds, SizeIs(2));
}

TEST_F(HostSessionTest, TheRecoveryOfAnAnnouncedGuestWaitsForTheHostsRecoveryReady) {
  HostEnd host = RegisterHost();
  ASSERT_TRUE(host.Next().has_value());  // REGISTERED
  shm::Occupancy occupancy;
  const shm::Doorbell guest_end = AttachedLocalGuest(&occupancy);
  Turn();
  ASSERT_TRUE(host.Next().has_value());  // PEER_ATTACHED
  NewEvents();
  ASSERT_TRUE(hub_->Evict(occupancy, "test").ok());
  Turn();
  std::optional<shm::ReceivedHostRecord> recovering = host.Next();
  ASSERT_TRUE(recovering.has_value());
  EXPECT_EQ(recovering->record.type, shm::HostRecordType::kPeerRecovering);
  EXPECT_THAT(Kinds(NewEvents()), ElementsAre(v1::EVENT_KIND_EVICTED)) << "no RECOVERED yet";
  host.Ack(occupancy);
  Turn();
  EXPECT_THAT(Kinds(NewEvents()), ElementsAre(v1::EVENT_KIND_RECOVERED));
}

TEST_F(HostSessionTest, AHostThatHangsUpIsDetachedAndTheDoorbellsItSharedAreShut) {
  HostEnd host = RegisterHost();
  ASSERT_TRUE(host.Next().has_value());  // REGISTERED
  shm::Occupancy occupancy;
  const shm::Doorbell guest_end = AttachedLocalGuest(&occupancy);
  Turn();
  std::optional<shm::ReceivedHostRecord> attached = host.Next();
  ASSERT_TRUE(attached.has_value());
  NewEvents();
  host.HangUp();
  attached.reset();  // the host's copies of the guest's ends go with it
  Turn();
  EXPECT_FALSE(session_->registered());
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ElementsAre(v1::EVENT_KIND_HOST_DETACHED));
  EXPECT_THAT(events[0].reason(), HasSubstr("1 local guests lost their doorbell"));
  EXPECT_FALSE(guest_end.Wait(kWait).ok()) << "the guest's doorbell hangs up";
  RegisterHost();
  EXPECT_TRUE(session_->registered()) << "a new host application may register";
}

TEST_F(HostSessionTest, CloseAtShutdownUnregistersTheHostAndItSeesTheConnectionEnd) {
  HostEnd host = RegisterHost();
  ASSERT_TRUE(host.Next().has_value());  // REGISTERED
  session_->Close("shmhubd is shutting down");
  EXPECT_FALSE(session_->registered());
  uint8_t byte = 0;
  EXPECT_EQ(::recv(host.fd(), &byte, 1, 0), 0);
  EXPECT_THAT(Kinds(NewEvents()),
              ElementsAre(v1::EVENT_KIND_HOST_ATTACHED, v1::EVENT_KIND_HOST_DETACHED));
}

TEST_F(HostSessionTest, AHandedBackDoorbellIsWatchedAgainAndItsHangUpIsACrash) {
  HostEnd host = RegisterHost();
  ASSERT_TRUE(host.Next().has_value());  // REGISTERED
  shm::Occupancy occupancy;
  AttachedLocalGuest(&occupancy);
  Turn();
  ASSERT_TRUE(host.Next().has_value());  // PEER_ATTACHED
  // As after a restart: this daemon watches nothing of the guest, and the
  // host application hands back the host ends it kept.
  guests_->ForgetAll();
  auto doorbells = shm::Doorbell::CreatePair();
  auto mapping = shm::CreateMappingControlPair();
  ASSERT_TRUE(doorbells.ok() && mapping.ok());
  const int fds[2] = {doorbells->first.fd(), mapping->first.get()};
  ASSERT_TRUE(shm::SendHostRecord(host.fd(), shm::PeerHandbackRecord(occupancy, 2), fds,
                                  shm::DeadlineAfter(kWait))
                  .ok());
  Turn();
  EXPECT_EQ(guests_->size(), 1u);
  NewEvents();
  doorbells->second = shm::Doorbell(shm::DoorbellEnd::kGuest, shm::UniqueFd());  // the guest dies
  doorbells->first = shm::Doorbell(shm::DoorbellEnd::kHost, shm::UniqueFd());   // our copy sent
  absl::SleepFor(absl::Milliseconds(10));
  PollSet polled;
  guests_->AddTo(polled);
  ASSERT_TRUE(polled.Wait(absl::Now() + absl::Milliseconds(200), absl::Seconds(1)).ok());
  guests_->HandleEvents(polled, absl::Now());
  const std::vector<v1::PeerEvent> events = NewEvents();
  ASSERT_THAT(Kinds(events), ::testing::Contains(v1::EVENT_KIND_CRASHED));
  EXPECT_EQ(events.front().detector(), v1::DETECTOR_DOORBELL);
}

TEST_F(HostSessionTest, AHandbackOfAnEndedOccupancyTellsTheHostToDropIt) {
  HostEnd host = RegisterHost();
  ASSERT_TRUE(host.Next().has_value());  // REGISTERED
  ASSERT_TRUE(shm::SendHostRecord(host.fd(), shm::PeerHandbackRecord({2, 9}, 0), {},
                                  shm::DeadlineAfter(kWait))
                  .ok());
  Turn();
  Turn();  // the notice it queued
  std::optional<shm::ReceivedHostRecord> vanished = host.Next();
  ASSERT_TRUE(vanished.has_value());
  EXPECT_EQ(vanished->record, shm::PeerRecoveringRecord({2, 9}, shm::PeerDeparture::kVanished));
}

}  // namespace
}  // namespace shmhub::server
