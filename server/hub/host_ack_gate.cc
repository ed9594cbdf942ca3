#include "server/hub/host_ack_gate.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "server/base/monotonic_clock.h"

namespace shmhub::server {

HostAckGate::HostAckGate(uint32_t max_guests, absl::Duration ack_timeout)
    : ack_timeout_ns_(ToNs(ack_timeout)), slots_(max_guests) {}

HostAckGate::Slot* HostAckGate::SlotOf(uint32_t peer_id) {
  if (peer_id == 0 || peer_id > slots_.size()) return nullptr;
  return &slots_[peer_id - 1];
}

void HostAckGate::Queue(const shm::HostRecord& record) {
  notices_.push_back(record);
  if (on_notice_) on_notice_();
}

void HostAckGate::Register() {
  registered_ = true;
  expect_host_until_ns_ = 0;
  notices_.clear();
}

std::vector<shm::Occupancy> HostAckGate::Unregister() {
  std::vector<shm::Occupancy> owed;
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (slot.phase == Phase::kAwaitingAck) {
      owed.push_back(shm::Occupancy{static_cast<uint32_t>(i + 1), slot.epoch});
    }
    // Orphans stay orphans: the next host must not be sent them either.
    if (slot.phase != Phase::kOrphaned) slot = Slot{};
  }
  registered_ = false;
  notices_.clear();
  return owed;
}

void HostAckGate::Announce(const shm::Occupancy& occupancy) {
  Slot* slot = SlotOf(occupancy.peer_id);
  if (slot == nullptr || !registered_) return;
  if (slot->epoch == occupancy.epoch && slot->phase != Phase::kUnknown) return;
  if (slot->phase == Phase::kAnnounced) {
    Queue(shm::PeerRecoveringRecord({occupancy.peer_id, slot->epoch},
                                    shm::PeerDeparture::kVanished));
  }
  *slot = Slot{.phase = Phase::kAnnounced, .epoch = occupancy.epoch, .deadline_ns = 0};
  Queue(shm::PeerAttachedRecord(occupancy, 0));
}

void HostAckGate::Orphan(const shm::Occupancy& occupancy) {
  Slot* slot = SlotOf(occupancy.peer_id);
  if (slot == nullptr) return;
  *slot = Slot{.phase = Phase::kOrphaned, .epoch = occupancy.epoch, .deadline_ns = 0};
}

void HostAckGate::ExpectHostUntil(uint64_t deadline_ns) { expect_host_until_ns_ = deadline_ns; }

bool HostAckGate::Known(const shm::Occupancy& occupancy) {
  Slot* slot = SlotOf(occupancy.peer_id);
  if (slot == nullptr || !registered_) return false;
  if (slot->epoch != occupancy.epoch || slot->phase == Phase::kUnknown) {
    // Announced already in effect: the host serves it.
    *slot = Slot{.phase = Phase::kAnnounced, .epoch = occupancy.epoch, .deadline_ns = 0};
  }
  return true;
}

void HostAckGate::Disown(const shm::Occupancy& occupancy) {
  if (SlotOf(occupancy.peer_id) == nullptr || !registered_) return;
  Queue(shm::PeerRecoveringRecord(occupancy, shm::PeerDeparture::kVanished));
}

HostAckGate::Verdict HostAckGate::BeginRecovery(const shm::Occupancy& occupancy,
                                               shm::PeerDeparture departure, uint64_t now_ns) {
  // A host application that served the adopted guests may come back: no
  // recovery frees what it may still hold before it had the time to.
  if (!registered_ && now_ns < expect_host_until_ns_) return Verdict::kWait;
  Slot* slot = SlotOf(occupancy.peer_id);
  if (slot == nullptr || slot->epoch != occupancy.epoch) return Verdict::kRecoverNow;
  switch (slot->phase) {
    case Phase::kAnnounced:
      slot->phase = Phase::kAwaitingAck;
      // Saturating: a huge --host_ack_timeout must not wrap into the past.
      slot->deadline_ns = now_ns + std::min(ack_timeout_ns_, UINT64_MAX - now_ns);
      Queue(shm::PeerRecoveringRecord(occupancy, departure));
      return Verdict::kWait;
    case Phase::kAwaitingAck:
      if (now_ns < slot->deadline_ns) return Verdict::kWait;
      *slot = Slot{};
      return Verdict::kTimedOut;
    case Phase::kUnknown:
    case Phase::kOrphaned:
      return Verdict::kRecoverNow;
  }
  return Verdict::kRecoverNow;
}

bool HostAckGate::Acknowledge(const shm::Occupancy& occupancy) {
  Slot* slot = SlotOf(occupancy.peer_id);
  if (slot == nullptr || slot->phase != Phase::kAwaitingAck || slot->epoch != occupancy.epoch) {
    return false;
  }
  *slot = Slot{};
  return true;
}

void HostAckGate::Reconcile(uint32_t peer_id, std::optional<uint32_t> live_epoch) {
  Slot* slot = SlotOf(peer_id);
  if (slot == nullptr || slot->phase == Phase::kUnknown) return;
  if (live_epoch.has_value() && *live_epoch == slot->epoch) return;
  if (slot->phase == Phase::kAnnounced) {
    Queue(shm::PeerRecoveringRecord({peer_id, slot->epoch}, shm::PeerDeparture::kVanished));
  }
  *slot = Slot{};
}

std::vector<shm::HostRecord> HostAckGate::TakeNotices() { return std::exchange(notices_, {}); }

}  // namespace shmhub::server
