// shmhubd restarting under a live data plane: real daemons SIGKILLed and
// handed over (--stop_mode=handover, SIGTERM), real echo_host and
// echo_guest processes streaming every tier through them, a real
// shmhub-guest, guests and hosts SIGSTOPped and SIGKILLed while no daemon
// runs, and an orchestrator's view through the gRPC API and a resuming
// watcher. Every daemon of a test shares the segment, the state log and the
// local socket in the test's TempDir, and the first daemon's gRPC address.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/hub/event_watcher.h"
#include "client/hub/hub_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shmhub/v1/hub.pb.h"
#include "tests/e2e/running_hub.h"
#include "tests/testing/spawned_process.h"
#include "tests/testing/temp_dir.h"

namespace shmhub {
namespace {

using ::shmhub::testing::GuestSlot;
using ::shmhub::testing::ParseAttachedLine;
using ::shmhub::testing::RunningHub;
using ::shmhub::testing::ShmhubdOptions;
using ::shmhub::testing::SpawnedProcess;
using ::shmhub::testing::StartShmhubd;
using ::shmhub::testing::StartShmhubGuest;
using ::shmhub::testing::TempDir;

class DaemonRestartProcessTest : public ::testing::Test {
 protected:
  // A daemon on the test's files and, after the first, the first one's
  // address; `flags` are appended to the shared ones.
  void StartDaemon(const std::vector<std::string>& flags = {}) {
    ShmhubdOptions options{.flags = {"--max_guests=4", "--heartbeat_interval=20ms",
                                     "--crash_timeout=1s", "--host_ack_timeout=500ms",
                                     "--stop_mode=handover"}};
    options.flags.insert(options.flags.end(), flags.begin(), flags.end());
    if (!address_.empty()) options.listen = address_;
    options.stderr_name = absl::StrCat("shmhubd-", ++daemons_, ".err");
    // The previous daemon's port can take a moment to be free again.
    absl::StatusOr<RunningHub> daemon;
    for (int attempt = 0; attempt < 50; ++attempt) {
      daemon = StartShmhubd(dir_, options);
      if (daemon.ok()) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(daemon->process);
    instance_ = daemon->endpoints.instance;
    socket_ = daemon->endpoints.socket_path;
    if (address_.empty()) {
      address_ = daemon->endpoints.grpc_address;
      hub_ = std::make_unique<client::HubClient>(address_);
    }
    // The channel's connection to the previous daemon is broken; the first
    // call on it fails UNAVAILABLE and reconnects, as for any client.
    for (int attempt = 0; attempt < 100 && !hub_->GetSegmentInfo().ok(); ++attempt) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  void KillDaemon() {
    daemon_->Signal(SIGKILL);
    EXPECT_EQ(daemon_->Wait(), std::optional<int>(128 + SIGKILL));
  }
  void HandOver() {
    daemon_->Signal(SIGTERM);
    EXPECT_EQ(daemon_->Wait(), std::optional<int>(0)) << daemon_->Stderr();
  }

  std::unique_ptr<SpawnedProcess> Spawn(const std::vector<std::string>& argv,
                                        const std::string& name) {
    return std::make_unique<SpawnedProcess>(argv, dir_.File(name + ".err"));
  }

  // GetPeer through the current daemon, retried while it is starting.
  std::optional<v1::Peer> PeerOf(uint32_t peer_id) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      absl::StatusOr<v1::GetPeerResponse> peer = hub_->GetPeer(peer_id);
      if (peer.ok()) return peer->peer();
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << "GetPeer(" << peer_id << ") never answered";
    return std::nullopt;
  }

  TempDir dir_;
  std::unique_ptr<SpawnedProcess> daemon_;
  std::unique_ptr<client::HubClient> hub_;
  std::string address_;
  std::string instance_;
  std::string socket_;
  int daemons_ = 0;
};

TEST_F(DaemonRestartProcessTest, EveryTierStreamsThroughFiveKillsAndFiveHandoversWithoutALostFrame) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::unique_ptr<SpawnedProcess> host = Spawn({ECHO_HOST_PATH, "--socket=" + socket_}, "host");
  ASSERT_TRUE(host->WaitForLine("echo_host registered").has_value()) << host->Stderr();
  // Inline, pool slot and mapping tier in every round; echo_guest checks
  // each echo byte for byte and in order, so a lost, repeated or corrupt
  // frame fails it.
  std::unique_ptr<SpawnedProcess> guest =
      Spawn({ECHO_GUEST_PATH, "--socket=" + socket_, "--rounds=0", "--sizes=16,900,600000",
             "--timeout=10s"},
            "guest");
  const GuestSlot slot = ParseAttachedLine(guest->WaitForLine("attached "));
  ASSERT_TRUE(guest->WaitForLine("echoing ").has_value()) << guest->Stderr();

  for (int restart = 0; restart < 10; ++restart) {
    if (restart % 2 == 0) {
      KillDaemon();
    } else {
      HandOver();
    }
    absl::SleepFor(absl::Milliseconds(50));  // frames keep flowing with no daemon at all
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    const std::optional<v1::Peer> peer = PeerOf(slot.peer_id);
    ASSERT_TRUE(peer.has_value());
    EXPECT_EQ(peer->state(), v1::PEER_STATE_ATTACHED) << "restart " << restart;
    EXPECT_EQ(peer->epoch(), slot.epoch) << "restart " << restart;
    ASSERT_FALSE(guest->Wait(absl::ZeroDuration()).has_value())
        << "restart " << restart << ": " << guest->Stderr();
  }
  absl::SleepFor(absl::Milliseconds(200));
  guest->Signal(SIGTERM);
  EXPECT_EQ(guest->Wait(), std::optional<int>(0)) << guest->Stderr();
  const std::optional<std::string> ok = guest->WaitForLine("ok rounds=");
  ASSERT_TRUE(ok.has_value()) << guest->Stderr();
  EXPECT_TRUE(guest->Stderr().empty()) << guest->Stderr();
  EXPECT_FALSE(host->Wait(absl::ZeroDuration()).has_value()) << host->Stderr();
}

TEST_F(DaemonRestartProcessTest, StoppedGuestsAndAStoppedHostDoNotBlockARestartAfterAKill) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::unique_ptr<SpawnedProcess> host = Spawn({ECHO_HOST_PATH, "--socket=" + socket_}, "host");
  ASSERT_TRUE(host->WaitForLine("echo_host registered").has_value()) << host->Stderr();
  std::unique_ptr<SpawnedProcess> guest =
      StartShmhubGuest(dir_, {"--socket=" + socket_, "--heartbeat_interval=20ms"}, "guest.err");
  // Both hold the segment's descriptor the daemon handed them, and neither
  // will ever close it on its own.
  guest->Signal(SIGSTOP);
  host->Signal(SIGSTOP);
  KillDaemon();
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  EXPECT_TRUE(hub_->GetSegmentInfo().ok());
  guest->Signal(SIGCONT);
  host->Signal(SIGCONT);
}

TEST_F(DaemonRestartProcessTest, AReservationMadeBeforeARestartIsClaimedAfterItWithItsLeaseAndReplays) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  v1::ReservePeerRequest request;
  request.set_owner("orchestrator");
  request.set_request_id("launch-7");
  request.mutable_lease_ttl()->set_seconds(60);
  absl::StatusOr<v1::ReservePeerResponse> reserved = hub_->ReservePeer(request);
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  KillDaemon();
  ASSERT_NO_FATAL_FAILURE(StartDaemon());

  absl::StatusOr<v1::ReservePeerResponse> replay = hub_->ReservePeer(request);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed());
  EXPECT_EQ(replay->peer_id(), reserved->peer_id());
  EXPECT_EQ(replay->epoch(), reserved->epoch());
  EXPECT_EQ(replay->lease_expires_at().seconds(), reserved->lease_expires_at().seconds())
      << "the remaining lease, not a new one";
  std::unique_ptr<SpawnedProcess> guest = testing::StartClaimingGuest(
      dir_, dir_.File("hub.shm"), *reserved, "guest.err");
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::optional<v1::Peer> peer = PeerOf(reserved->peer_id());
    ASSERT_TRUE(peer.has_value());
    if (peer->state() == v1::PEER_STATE_ATTACHED) {
      EXPECT_EQ(peer->owner(), "orchestrator");
      return;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  ADD_FAILURE() << "the reservation was never claimed";
}

// Every event a watcher hands over, and whether it was ever told to resync.
class Recorder {
 public:
  void On(const v1::WatchEventsResponse& response) {
    absl::MutexLock lock(&mu_);
    if (response.has_resync()) ++resyncs_;
    if (response.has_event()) events_.push_back(response.event());
  }
  std::vector<v1::PeerEvent> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  int resyncs() const {
    absl::MutexLock lock(&mu_);
    return resyncs_;
  }
  // Waits up to 20 s for an event of `kind` for `peer_id`.
  std::optional<v1::PeerEvent> WaitFor(uint32_t peer_id, v1::EventKind kind) const {
    for (int attempt = 0; attempt < 400; ++attempt) {
      for (const v1::PeerEvent& event : events()) {
        if (event.peer_id() == peer_id && event.kind() == kind) return event;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return std::nullopt;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::PeerEvent> events_ ABSL_GUARDED_BY(mu_);
  int resyncs_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(DaemonRestartProcessTest, AResumingWatcherSeesEveryEventOnceAndNoResyncAcrossRestarts) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Recorder recorder;
  client::EventWatcherOptions options;
  options.resume_after_sequence = 0;
  options.hub_instance_id = instance_;
  options.initial_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(200);
  client::EventWatcher watcher(client::MakeHubChannel(address_), options,
                               [&](const v1::WatchEventsResponse& r) { recorder.On(r); });
  watcher.Start();
  GuestSlot slot;
  std::unique_ptr<SpawnedProcess> guest = StartShmhubGuest(
      dir_, {"--segment=" + dir_.File("hub.shm"), "--heartbeat_interval=20ms"}, "guest.err",
      &slot);
  ASSERT_TRUE(recorder.WaitFor(slot.peer_id, v1::EVENT_KIND_ATTACHED).has_value());
  KillDaemon();
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  HandOver();
  // The guest dies while no daemon runs.
  guest->Signal(SIGKILL);
  guest->Wait();
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  const std::optional<v1::PeerEvent> crashed =
      recorder.WaitFor(slot.peer_id, v1::EVENT_KIND_CRASHED);
  ASSERT_TRUE(crashed.has_value()) << daemon_->Stderr();
  EXPECT_TRUE(absl::StrContains(crashed->reason(), "found at adoption")) << crashed->reason();
  EXPECT_EQ(crashed->epoch(), slot.epoch);
  ASSERT_TRUE(recorder.WaitFor(slot.peer_id, v1::EVENT_KIND_RECOVERED).has_value());

  watcher.Stop();
  EXPECT_EQ(recorder.resyncs(), 0);
  const std::vector<v1::PeerEvent> events = recorder.events();
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), i + 1) << "an event missed or repeated at " << i;
    EXPECT_EQ(events[i].hub_instance_id(), instance_) << "the instance changed at " << i;
  }
}

TEST_F(DaemonRestartProcessTest, PreRestartFencesFailOnASlotThatChangedHandsAndResetsNeverReuseAPair) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  v1::ReservePeerRequest request;
  request.mutable_lease_ttl()->set_seconds(60);
  absl::StatusOr<v1::ReservePeerResponse> first = hub_->ReservePeer(request);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(hub_->ReleasePeer(first->peer_id(), first->epoch()).ok());
  KillDaemon();
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  absl::StatusOr<v1::ReservePeerResponse> second = hub_->ReservePeer(request);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->peer_id(), first->peer_id());
  EXPECT_GT(second->epoch(), first->epoch());
  EXPECT_EQ(hub_->ReleasePeer(first->peer_id(), first->epoch()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(hub_->EvictPeer(first->peer_id(), first->epoch(), "stale").status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Another geometry is refused, naming the flag...
  HandOver();
  std::unique_ptr<SpawnedProcess> refused = Spawn(
      {SHMHUBD_PATH, "--listen=" + address_, "--segment=" + dir_.File("hub.shm"),
       "--socket=" + dir_.File("hub.sock"), "--metrics_listen=", "--max_guests=3",
       "--heartbeat_interval=20ms"},
      "refused");
  EXPECT_NE(refused->Wait(), std::optional<int>(0));
  EXPECT_TRUE(absl::StrContains(refused->Stderr(), "--max_guests")) << refused->Stderr();
  EXPECT_TRUE(absl::StrContains(refused->Stderr(), "--reset_segment")) << refused->Stderr();
  // ...and recreated with --reset_segment: no pair comes back.
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--max_guests=3", "--reset_segment"}));
  absl::StatusOr<v1::ReservePeerResponse> third = hub_->ReservePeer(request);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->peer_id(), first->peer_id());
  EXPECT_GT(third->epoch(), second->epoch());
  EXPECT_EQ(hub_->ReleasePeer(second->peer_id(), second->epoch()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(DaemonRestartProcessTest, ALocalGuestsProcessIsWatchedAgainByItsPidAndStartTime) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  // No heartbeats: only the process detector can see these guests die.
  GuestSlot survivor;
  std::unique_ptr<SpawnedProcess> first = StartShmhubGuest(
      dir_, {"--socket=" + socket_, "--heartbeat=false"}, "first.err", &survivor);
  GuestSlot victim;
  std::unique_ptr<SpawnedProcess> second = StartShmhubGuest(
      dir_, {"--socket=" + socket_, "--heartbeat=false"}, "second.err", &victim);
  KillDaemon();
  // One dies while no daemon runs.
  second->Signal(SIGKILL);
  second->Wait();
  ASSERT_NO_FATAL_FAILURE(StartDaemon());

  std::optional<v1::Peer> gone;
  for (int attempt = 0; attempt < 200; ++attempt) {
    gone = PeerOf(victim.peer_id);
    if (gone.has_value() && gone->state() == v1::PEER_STATE_EMPTY) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->state(), v1::PEER_STATE_EMPTY) << "the dead guest was not recovered";
  EXPECT_EQ(gone->last_detector(), v1::DETECTOR_PROCESS_EXIT);

  const std::optional<v1::Peer> alive = PeerOf(survivor.peer_id);
  ASSERT_TRUE(alive.has_value());
  EXPECT_EQ(alive->state(), v1::PEER_STATE_ATTACHED);
  EXPECT_EQ(alive->epoch(), survivor.epoch);
  EXPECT_THAT(alive->armed_detectors(), ::testing::Contains(v1::DETECTOR_PROCESS_EXIT));
  // And the re-armed detector fires.
  first->Signal(SIGKILL);
  first->Wait();
  for (int attempt = 0; attempt < 200; ++attempt) {
    const std::optional<v1::Peer> peer = PeerOf(survivor.peer_id);
    ASSERT_TRUE(peer.has_value());
    if (peer->state() == v1::PEER_STATE_EMPTY) {
      EXPECT_EQ(peer->last_detector(), v1::DETECTOR_PROCESS_EXIT);
      return;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  ADD_FAILURE() << "the re-armed process detector never fired";
}

TEST_F(DaemonRestartProcessTest, TwentyRestartsWithResetsInBetweenNeverIssueAPairTwice) {
  std::set<std::pair<uint32_t, uint32_t>> issued;
  v1::ReservePeerRequest request;
  request.mutable_lease_ttl()->set_seconds(60);
  for (int restart = 0; restart < 20; ++restart) {
    // Every third daemon has another geometry, and so does the one after
    // it: each of those resets the segment; the others adopt it.
    const std::string guests = restart % 3 == 2 ? "--max_guests=3" : "--max_guests=4";
    ASSERT_NO_FATAL_FAILURE(StartDaemon({guests, "--reset_segment"}));
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<v1::ReservePeerResponse> r = hub_->ReservePeer(request);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_TRUE(issued.insert({r->peer_id(), r->epoch()}).second)
          << "(" << r->peer_id() << ", " << r->epoch() << ") issued twice, restart " << restart;
      if (i == 0) {
        ASSERT_TRUE(hub_->ReleasePeer(r->peer_id(), r->epoch()).ok());
      }
    }
    if (restart % 2 == 0) {
      KillDaemon();
    } else {
      HandOver();
    }
  }
}

}  // namespace
}  // namespace shmhub
