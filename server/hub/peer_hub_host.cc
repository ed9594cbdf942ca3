// PeerHub's side of the data-plane host application (docs/host-protocol.md):
// its registration and departure, and the recoveries that wait for its
// RECOVERY_READY. HostAckGate keeps the books; LocalSocketServer carries the
// records. Every method here runs under mu_ and never waits: a recovery that
// must wait is left for the acknowledgement or a later Scan.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/base/log.h"
#include "server/base/monotonic_clock.h"
#include "server/base/shutting_down.h"
#include "server/hub/peer_events.h"
#include "server/hub/peer_hub.h"

namespace shmhub::server {

absl::Status PeerHub::RegisterHost(const std::string& who) {
  MutationLock lock(this);
  if (shutting_down_) return StoppedError();
  if (host_gate_.registered()) {
    return absl::AlreadyExistsError(
        "a host application is already registered with this shmhubd (one data-plane host per "
        "segment)");
  }
  host_gate_.Register();
  metrics_->SetHostRegistered(true);
  Publish(MakeHubEvent(v1::EVENT_KIND_HOST_ATTACHED,
                        absl::StrCat("host application with ", who, " registered")));
  for (const SlotRecord& record : slots_) {
    if (record.state == v1::PEER_STATE_ATTACHED) {
      host_gate_.Announce(record.occupancy());
    }
  }
  return absl::OkStatus();
}

void PeerHub::UnregisterHost(const std::string& why, const std::vector<shm::Occupancy>& orphaned) {
  MutationLock lock(this);
  if (!host_gate_.registered()) return;
  const std::vector<shm::Occupancy> owed = host_gate_.Unregister();
  metrics_->SetHostRegistered(false);
  for (const shm::Occupancy& occupancy : orphaned) {
    host_gate_.Orphan(occupancy);
    // The socket server shut that doorbell: it no longer tells us anything.
    if (SlotRecord* record = FindHolder(occupancy); record != nullptr) {
      record->doorbell_watched = false;
    }
  }
  // After HOST_SHUTDOWN the stream has ended, and Scan recovers nothing.
  if (shutting_down_) return;
  Publish(MakeHubEvent(v1::EVENT_KIND_HOST_DETACHED,
                        absl::StrCat(why, "; ", owed.size(), " recoveries waited for it, ",
                                     orphaned.size(), " local guests lost their doorbell")),
          LogLevel::kWarning);
  // Its acknowledgements count as given.
  for (const shm::Occupancy& occupancy : owed) {
    if (SlotRecord* record = FindHolder(occupancy); record != nullptr && record->recovering()) {
      RecoverAndPublish(*record).IgnoreError();  // failures are logged inside and retried
    }
  }
}

void PeerHub::OnHostRecoveryReady(const shm::Occupancy& occupancy) {
  MutationLock lock(this);
  if (shutting_down_) return;
  if (!host_gate_.Acknowledge(occupancy)) {
    Log(LogLevel::kInfo, absl::StrCat(occupancy.ToString(),
                                      ": RECOVERY_READY that no recovery waits for (late or "
                                      "unsolicited); ignored"));
    return;
  }
  SlotRecord* record = FindHolder(occupancy);
  if (record == nullptr || !record->recovering()) return;
  RecoverAndPublish(*record).IgnoreError();  // failures are logged inside and retried
}

bool PeerHub::OnHostHandback(const shm::Occupancy& occupancy, bool with_doorbell) {
  MutationLock lock(this);
  if (shutting_down_) return false;
  SlotRecord* record = FindHolder(occupancy);
  if (record == nullptr || record->state == v1::PEER_STATE_RESERVED) {
    host_gate_.Disown(occupancy);
    Log(LogLevel::kInfo, absl::StrCat(occupancy.ToString(), ": the host application handed back "
                                      "a link to an occupancy that has ended; told it to drop it"));
    return false;
  }
  if (!host_gate_.Known(occupancy)) return false;
  if (with_doorbell && record->state == v1::PEER_STATE_ATTACHED) record->doorbell_watched = true;
  return true;
}

std::vector<shm::HostRecord> PeerHub::TakeHostNotices() {
  absl::MutexLock lock(&mu_);
  return host_gate_.TakeNotices();
}

void PeerHub::SetHostNoticeCallback(std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  host_gate_.set_notice_callback(std::move(callback));
}

bool PeerHub::HeldForHost(SlotRecord& record, shm::PeerDeparture departure) {
  switch (host_gate_.BeginRecovery(record.occupancy(), departure, MonotonicNowNs())) {
    case HostAckGate::Verdict::kRecoverNow:
      return false;
    case HostAckGate::Verdict::kWait:
      return true;
    case HostAckGate::Verdict::kTimedOut:
      metrics_->CountHostAckTimeout();
      Publish(MakePeerEvent(v1::EVENT_KIND_HOST_UNRESPONSIVE, record.occupancy(),
                            absl::StrCat("the host application did not release the guest within "
                                         "--host_ack_timeout ",
                                         absl::FormatDuration(config_.host_ack_timeout),
                                         "; recovering anyway")),
              LogLevel::kWarning);
      return false;
  }
  return false;
}

void PeerHub::ReconcileHostGate() {
  for (const SlotRecord& record : slots_) {
    const bool live = record.state == v1::PEER_STATE_ATTACHED || record.recovering();
    host_gate_.Reconcile(record.peer_id, live ? std::optional(record.epoch) : std::nullopt);
  }
}

}  // namespace shmhub::server
