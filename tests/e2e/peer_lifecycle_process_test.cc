// A guest's whole life as the daemon reports it on WatchEvents: a real
// shmhubd on an ephemeral 127.0.0.1 port with short liveness intervals, its
// segment in a TempDir, and real shmhub-guest processes that are SIGKILLed,
// SIGSTOPped and SIGTERMed. Every wait has a deadline; every process is
// killed and reaped when its test ends.
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/hub/event_watcher.h"
#include "client/hub/hub_client.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "shmhub/v1/hub.pb.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub {
namespace {

using ::shmhub::testing::kProcessWaitLimit;
using ::shmhub::testing::SpawnedProcess;
using ::shmhub::testing::TempDir;
using v1::EventKind;
using v1::PeerEvent;

// Liveness settings: STALE after 2 x 20ms without a heartbeat, CRASHED after
// 1s. The crash timeout is generous so a briefly stopped guest on a busy
// machine is still only STALE.
constexpr absl::Duration kCrashTimeout = absl::Seconds(1);

// Every PeerEvent the daemon streams, in order, collected by an
// EventWatcher that starts at the instance's first event.
class EventLog {
 public:
  void Add(const PeerEvent& event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }

  // The first event at index >= *from for `peer_id` of `kind`; on success
  // *from moves past it. nullopt when the deadline passes first.
  std::optional<PeerEvent> WaitFor(uint32_t peer_id, EventKind kind, size_t* from,
                                   absl::Duration timeout = kProcessWaitLimit) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    while (true) {
      for (size_t i = *from; i < events_.size(); ++i) {
        if (events_[i].peer_id() == peer_id && events_[i].kind() == kind) {
          *from = i + 1;
          return events_[i];
        }
      }
      const size_t seen = events_.size();
      auto grown = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return events_.size() > seen;
      };
      if (!mu_.AwaitWithDeadline(absl::Condition(&grown), deadline)) return std::nullopt;
    }
  }

  // Whether any event for `peer_id` of `kind` is in the log.
  bool Contains(uint32_t peer_id, EventKind kind) const {
    absl::MutexLock lock(&mu_);
    for (const PeerEvent& event : events_) {
      if (event.peer_id() == peer_id && event.kind() == kind) return true;
    }
    return false;
  }

  std::string Describe() const {
    absl::MutexLock lock(&mu_);
    std::string out;
    for (const PeerEvent& event : events_) {
      absl::StrAppend(&out, "\n  #", event.sequence(), " peer ", event.peer_id(), " epoch ",
                      event.epoch(), " ", v1::EventKind_Name(event.kind()));
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<PeerEvent> events_ ABSL_GUARDED_BY(mu_);
};

class PeerLifecycleProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<SpawnedProcess>(
        std::vector<std::string>{SHMHUBD_PATH, "--listen=127.0.0.1:0", "--segment=" + segment_,
                                 "--socket=" + socket_, "--metrics_listen=",
                                 "--max_guests=1", "--heartbeat_interval=20ms",
                                 absl::StrCat("--crash_timeout=",
                                              absl::FormatDuration(kCrashTimeout)),
                                 "--shutdown_grace=2s"},
        dir_.File("shmhubd.err"));
    const std::optional<std::string> ready = daemon_->WaitForLine("shmhubd listening on ");
    ASSERT_TRUE(ready.has_value()) << "shmhubd did not start: " << daemon_->Stderr();
    absl::string_view rest = *ready;
    absl::ConsumePrefix(&rest, "shmhubd listening on ");
    const std::string target(rest.substr(0, rest.find(' ')));

    channel_ = client::MakeHubChannel(target);
    hub_ = std::make_unique<client::HubClient>(channel_);
    const auto info = hub_->GetSegmentInfo();
    ASSERT_TRUE(info.ok()) << info.status();

    client::EventWatcherOptions options;
    options.resume_after_sequence = 0;  // from the instance's first event: none is missed
    options.hub_instance_id = info->hub_instance_id();
    options.initial_backoff = absl::Milliseconds(10);
    watcher_ = std::make_unique<client::EventWatcher>(
        channel_, options, [this](const v1::WatchEventsResponse& response) {
          if (response.has_event()) log_.Add(response.event());
        });
    watcher_->Start();
  }

  void TearDown() override {
    if (watcher_ != nullptr) watcher_->Stop();
  }

  v1::ReservePeerResponse Reserve(std::optional<absl::Duration> lease_ttl = std::nullopt) {
    v1::ReservePeerRequest request;
    request.set_owner("lifecycle-e2e");
    if (lease_ttl.has_value()) {
      *request.mutable_lease_ttl() = google::protobuf::util::TimeUtil::NanosecondsToDuration(
          absl::ToInt64Nanoseconds(*lease_ttl));
    }
    const auto reply = hub_->ReservePeer(request);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.value_or(v1::ReservePeerResponse());
  }

  // A shmhub-guest claiming `reservation`, once it reports it is attached.
  std::unique_ptr<SpawnedProcess> StartGuest(const v1::ReservePeerResponse& reservation) {
    auto guest = std::make_unique<SpawnedProcess>(
        std::vector<std::string>{SHMHUB_GUEST_PATH, "--segment=" + segment_,
                                 absl::StrCat("--peer_id=", reservation.peer_id()),
                                 absl::StrCat("--epoch=", reservation.epoch()),
                                 "--heartbeat_interval=20ms"},
        dir_.File(absl::StrCat("guest", ++guests_, ".err")));
    EXPECT_TRUE(guest->WaitForLine("attached ").has_value()) << guest->Stderr();
    return guest;
  }

  // A shmhub-guest that bootstraps over the daemon's local socket, once it
  // reports the slot the daemon gave it. Without heartbeats only the
  // kernel detectors (doorbell, process exit) watch it.
  std::unique_ptr<SpawnedProcess> StartLocalGuest(bool heartbeat, v1::ReservePeerResponse* slot) {
    auto guest = std::make_unique<SpawnedProcess>(
        std::vector<std::string>{SHMHUB_GUEST_PATH, "--socket=" + socket_,
                                 heartbeat ? "--heartbeat_interval=20ms" : "--heartbeat=false"},
        dir_.File(absl::StrCat("guest", ++guests_, ".err")));
    const std::optional<std::string> attached = guest->WaitForLine("attached ");
    EXPECT_TRUE(attached.has_value()) << guest->Stderr();
    unsigned peer_id = 0;
    unsigned epoch = 0;
    if (attached.has_value()) {
      EXPECT_EQ(std::sscanf(attached->c_str(), "attached peer_id=%u epoch=%u", &peer_id, &epoch), 2)
          << *attached;
    }
    slot->set_peer_id(peer_id);
    slot->set_epoch(epoch);
    return guest;
  }

  // Expects the next `kind` event for the reservation's occupancy.
  std::optional<PeerEvent> Expect(const v1::ReservePeerResponse& reservation, EventKind kind) {
    std::optional<PeerEvent> event = log_.WaitFor(reservation.peer_id(), kind, &cursor_);
    EXPECT_TRUE(event.has_value()) << "no " << v1::EventKind_Name(kind) << " for peer "
                                   << reservation.peer_id() << "; events:" << log_.Describe()
                                   << "\nshmhubd stderr:\n" << daemon_->Stderr();
    if (event.has_value()) {
      EXPECT_EQ(event->epoch(), reservation.epoch());
    }
    return event;
  }

  TempDir dir_;
  const std::string segment_ = dir_.File("hub.shm");
  const std::string socket_ = dir_.File("hub.sock");
  std::unique_ptr<SpawnedProcess> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<client::HubClient> hub_;
  EventLog log_;
  size_t cursor_ = 0;
  std::unique_ptr<client::EventWatcher> watcher_;
  int guests_ = 0;
};

TEST_F(PeerLifecycleProcessTest, KilledGuestIsDetectedByHeartbeatRecoveredAndSlotReused) {
  const v1::ReservePeerResponse first = Reserve();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(first);
  ASSERT_TRUE(Expect(first, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGKILL);
  ASSERT_EQ(guest->Wait(), 128 + SIGKILL);
  ASSERT_TRUE(Expect(first, v1::EVENT_KIND_STALE).has_value());
  const std::optional<PeerEvent> crashed = Expect(first, v1::EVENT_KIND_CRASHED);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_EQ(crashed->detector(), v1::DETECTOR_HEARTBEAT);
  ASSERT_TRUE(Expect(first, v1::EVENT_KIND_RECOVERED).has_value());

  // --max_guests=1: the only slot must be free again, under a new epoch.
  const v1::ReservePeerResponse second = Reserve();
  EXPECT_EQ(second.peer_id(), first.peer_id());
  EXPECT_NE(second.epoch(), first.epoch());
  std::unique_ptr<SpawnedProcess> next_guest = StartGuest(second);
  EXPECT_TRUE(Expect(second, v1::EVENT_KIND_ATTACHED).has_value());
}

TEST_F(PeerLifecycleProcessTest, BrieflyStoppedGuestGoesStaleThenFreshWithoutCrash) {
  const v1::ReservePeerResponse reservation = Reserve();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(reservation);
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGSTOP);
  // Stopped far longer than 2 x 20ms, far shorter than the 1s crash timeout.
  const std::optional<PeerEvent> stale =
      log_.WaitFor(reservation.peer_id(), v1::EVENT_KIND_STALE, &cursor_, kCrashTimeout / 4);
  guest->Signal(SIGCONT);
  ASSERT_TRUE(stale.has_value()) << "no STALE while stopped; events:" << log_.Describe();
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_FRESH).has_value());
  EXPECT_FALSE(log_.Contains(reservation.peer_id(), v1::EVENT_KIND_CRASHED)) << log_.Describe();

  guest->Signal(SIGTERM);
  EXPECT_EQ(guest->Wait(), 0) << guest->Stderr();
}

TEST_F(PeerLifecycleProcessTest, GuestStoppedPastCrashTimeoutIsCrashed) {
  const v1::ReservePeerResponse reservation = Reserve();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(reservation);
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGSTOP);
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_STALE).has_value());
  const std::optional<PeerEvent> crashed = Expect(reservation, v1::EVENT_KIND_CRASHED);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_EQ(crashed->detector(), v1::DETECTOR_HEARTBEAT);
  guest->Signal(SIGKILL);
  EXPECT_EQ(guest->Wait(), 128 + SIGKILL);
}

TEST_F(PeerLifecycleProcessTest, TerminatedGuestSaysGoodbyeAndSlotIsRecovered) {
  const v1::ReservePeerResponse reservation = Reserve();
  std::unique_ptr<SpawnedProcess> guest = StartGuest(reservation);
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGTERM);
  EXPECT_TRUE(guest->WaitForLine("goodbye ").has_value()) << guest->Stderr();
  EXPECT_EQ(guest->Wait(), 0) << guest->Stderr();
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_GOODBYE).has_value());
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_RECOVERED).has_value());
  EXPECT_FALSE(log_.Contains(reservation.peer_id(), v1::EVENT_KIND_CRASHED)) << log_.Describe();
}

TEST_F(PeerLifecycleProcessTest, UnclaimedReservationExpiresAfterItsLease) {
  const v1::ReservePeerResponse reservation = Reserve(absl::Milliseconds(100));
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_RESERVED).has_value());
  ASSERT_TRUE(Expect(reservation, v1::EVENT_KIND_RESERVATION_EXPIRED).has_value());

  // The slot is free again: the only slot can be reserved anew.
  const v1::ReservePeerResponse next = Reserve();
  EXPECT_EQ(next.peer_id(), reservation.peer_id());
}

TEST_F(PeerLifecycleProcessTest, LocalSocketGuestIsWatchedByDoorbellAndProcessExitAndShowsItsPid) {
  v1::ReservePeerResponse slot;
  std::unique_ptr<SpawnedProcess> guest = StartLocalGuest(/*heartbeat=*/false, &slot);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_RESERVED).has_value());
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_ATTACHED).has_value());

  const auto reply = hub_->GetPeer(slot.peer_id());
  ASSERT_TRUE(reply.ok()) << reply.status();
  const v1::Peer& peer = reply->peer();
  EXPECT_EQ(peer.pid(), static_cast<uint32_t>(guest->pid()));
  EXPECT_EQ(peer.owner(), "local-socket");
  std::vector<v1::Detector> armed;
  for (const int detector : peer.armed_detectors()) {
    armed.push_back(static_cast<v1::Detector>(detector));
  }
  EXPECT_EQ(armed, (std::vector<v1::Detector>{v1::DETECTOR_DOORBELL, v1::DETECTOR_PROCESS_EXIT}));
  EXPECT_FALSE(peer.unmonitored());
}

TEST_F(PeerLifecycleProcessTest, KilledLocalSocketGuestIsCrashedByAKernelDetectorWithoutHeartbeats) {
  v1::ReservePeerResponse slot;
  std::unique_ptr<SpawnedProcess> guest = StartLocalGuest(/*heartbeat=*/false, &slot);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_ATTACHED).has_value());

  // The guest never heartbeats, so the heartbeat detector is not armed and
  // only the doorbell hang-up or the pidfd can notice the kill.
  guest->Signal(SIGKILL);
  ASSERT_EQ(guest->Wait(), 128 + SIGKILL);
  const std::optional<PeerEvent> crashed = Expect(slot, v1::EVENT_KIND_CRASHED);
  ASSERT_TRUE(crashed.has_value());
  EXPECT_TRUE(crashed->detector() == v1::DETECTOR_DOORBELL ||
              crashed->detector() == v1::DETECTOR_PROCESS_EXIT)
      << v1::Detector_Name(crashed->detector());
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_RECOVERED).has_value());
  EXPECT_FALSE(log_.Contains(slot.peer_id(), v1::EVENT_KIND_STALE)) << log_.Describe();

  // The slot serves the next local guest under a new epoch.
  v1::ReservePeerResponse next;
  std::unique_ptr<SpawnedProcess> next_guest = StartLocalGuest(/*heartbeat=*/false, &next);
  EXPECT_EQ(next.peer_id(), slot.peer_id());
  EXPECT_NE(next.epoch(), slot.epoch());
}

TEST_F(PeerLifecycleProcessTest, StoppedLocalSocketGuestStaysStalePastTheCrashTimeoutWhileItLives) {
  v1::ReservePeerResponse slot;
  std::unique_ptr<SpawnedProcess> guest = StartLocalGuest(/*heartbeat=*/true, &slot);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_ATTACHED).has_value());

  guest->Signal(SIGSTOP);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_STALE).has_value());
  // Twice the crash timeout of silence: a guest attached by path would have
  // been crashed by now; this one's pidfd says it is alive.
  EXPECT_FALSE(
      log_.WaitFor(slot.peer_id(), v1::EVENT_KIND_CRASHED, &cursor_, 2 * kCrashTimeout).has_value())
      << log_.Describe();
  guest->Signal(SIGCONT);
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_FRESH).has_value());

  guest->Signal(SIGTERM);
  EXPECT_EQ(guest->Wait(), 0) << guest->Stderr();
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_GOODBYE).has_value());
  ASSERT_TRUE(Expect(slot, v1::EVENT_KIND_RECOVERED).has_value());
  EXPECT_FALSE(log_.Contains(slot.peer_id(), v1::EVENT_KIND_CRASHED)) << log_.Describe();
}

}  // namespace
}  // namespace shmhub
