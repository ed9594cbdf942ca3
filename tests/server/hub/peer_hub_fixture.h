// The PeerHub test fixture: a PeerHub on a real segment in a private
// directory, a real EventJournal with a subscription that sees every event,
// and a guest's own mapping of the same file, which is what a guest process
// has. Time is driven by calling Scan() with short configured intervals.
#ifndef SHMHUB_TESTS_SERVER_HUB_PEER_HUB_FIXTURE_H_
#define SHMHUB_TESTS_SERVER_HUB_PEER_HUB_FIXTURE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/monotonic_clock.h"
#include "server/config/hub_config.h"
#include "server/hub/event_journal.h"
#include "server/hub/hub_metrics.h"
#include "server/hub/peer_hub.h"
#include "shm/format.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "tests/testing/temp_dir.h"

namespace shmhub::server::hubtest {

inline constexpr uint32_t kMaxGuests = 4;

inline HubConfig TestConfig(const shmhub::testing::TempDir& dir) {
  HubConfig config;
  config.segment_path = dir.File("hub");
  config.max_guests = kMaxGuests;
  config.ring_bytes = 4096;
  config.slot_classes = {{64, 16}, {1024, 4}};
  config.heartbeat_interval = absl::Milliseconds(10);
  config.crash_timeout = absl::Milliseconds(100);
  config.default_lease_ttl = absl::Seconds(30);
  config.max_lease_ttl = absl::Minutes(1);
  config.metrics_listen.clear();
  return config;
}

inline std::vector<v1::EventKind> Kinds(const std::vector<v1::PeerEvent>& events) {
  std::vector<v1::EventKind> kinds;
  for (const v1::PeerEvent& event : events) kinds.push_back(event.kind());
  return kinds;
}

// A guest's own words, written the way a broken or foreign (Rust) peer can.
inline std::atomic_ref<uint32_t> RawStateWord(const shm::Segment& guest, uint32_t peer_id) {
  auto* entry =
      reinterpret_cast<shm::PeerEntry*>(guest.base() + guest.layout().EntryOffset(peer_id - 1));
  return std::atomic_ref<uint32_t>(entry->state);
}
inline std::atomic_ref<uint32_t> RawEpochWord(const shm::Segment& guest, uint32_t peer_id) {
  auto* entry =
      reinterpret_cast<shm::PeerEntry*>(guest.base() + guest.layout().EntryOffset(peer_id - 1));
  return std::atomic_ref<uint32_t>(entry->epoch);
}

class PeerHubTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(TestConfig(dir_)); }

  void Start(const HubConfig& config) {
    subscription_.reset();
    hub_.reset();
    journal_ = std::make_unique<EventJournal>("test-instance", 4096);
    absl::StatusOr<std::unique_ptr<PeerHub>> hub =
        PeerHub::Create(config, journal_.get(), &metrics_);
    ASSERT_TRUE(hub.ok()) << hub.status();
    hub_ = *std::move(hub);
    EventJournal::SubscribeResult subscribed = journal_->Subscribe(0, 1 << 20, [] {});
    ASSERT_NE(subscribed.subscription, nullptr);
    subscription_ = std::move(subscribed.subscription);
    absl::StatusOr<std::unique_ptr<shm::Segment>> guest = shm::Segment::Attach(config.segment_path);
    ASSERT_TRUE(guest.ok()) << guest.status();
    guest_ = *std::move(guest);
  }

  // Every event published since the last call.
  std::vector<v1::PeerEvent> NewEvents() {
    std::vector<v1::PeerEvent> events;
    v1::PeerEvent event;
    while (subscription_->Next(&event) == EventJournal::Subscription::Pull::kEvent) {
      events.push_back(event);
    }
    return events;
  }

  ReserveRequest Request(absl::Duration ttl = absl::Seconds(30), std::string request_id = "") {
    ReserveRequest request;
    request.lease_ttl = ttl;
    request.owner = "orchestrator-a";
    request.labels = {{"job", "render"}, {"team", "video"}};
    request.request_id = std::move(request_id);
    return request;
  }

  Reservation MustReserve(const ReserveRequest& request) {
    absl::StatusOr<Reservation> reservation = hub_->Reserve(request);
    EXPECT_TRUE(reservation.ok()) << reservation.status();
    return reservation.ok() ? *reservation : Reservation{};
  }

  shm::PeerEntryView GuestEntry(uint32_t peer_id) { return *guest_->peers().Entry(peer_id); }

  v1::Peer MustGetPeer(uint32_t peer_id) {
    absl::StatusOr<v1::Peer> peer = hub_->GetPeer(peer_id);
    EXPECT_TRUE(peer.ok()) << peer.status();
    return peer.ok() ? *peer : v1::Peer{};
  }

  // Reserves, claims as the guest, and lets a Scan publish ATTACHED.
  Reservation AttachedGuest() {
    const Reservation reservation = MustReserve(Request());
    EXPECT_TRUE(GuestEntry(reservation.peer_id).ClaimFenced(reservation.epoch).ok());
    hub_->Scan();
    EXPECT_THAT(Kinds(NewEvents()),
                ::testing::ElementsAre(v1::EVENT_KIND_RESERVED, v1::EVENT_KIND_ATTACHED));
    return reservation;
  }

  void Heartbeat(uint32_t peer_id) { GuestEntry(peer_id).UpdateHeartbeat(MonotonicNowNs()); }

  shmhub::testing::TempDir dir_;
  // Teardown order: the subscription before the journal, the guest's
  // mapping before the hub removes the file, the hub before its metrics.
  HubMetrics metrics_{absl::Milliseconds(10), absl::Milliseconds(100)};
  std::unique_ptr<EventJournal> journal_;
  std::unique_ptr<PeerHub> hub_;
  std::unique_ptr<EventJournal::Subscription> subscription_;
  std::unique_ptr<shm::Segment> guest_;
};

}  // namespace shmhub::server::hubtest

#endif  // SHMHUB_TESTS_SERVER_HUB_PEER_HUB_FIXTURE_H_
