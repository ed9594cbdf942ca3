#include "server/hub/peer_events.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/base/proto_time.h"

namespace shmhub::server {
namespace {

// "EVENT_KIND_CRASHED" -> "CRASHED": the names watchers see in shmhubctl.
std::string ShortName(const std::string& enum_name, absl::string_view prefix) {
  return absl::StartsWith(enum_name, prefix) ? enum_name.substr(prefix.size()) : enum_name;
}

}  // namespace

v1::PeerEvent MakePeerEvent(v1::EventKind kind, const shm::Occupancy& occupancy,
                            std::string reason) {
  v1::PeerEvent event;
  event.set_kind(kind);
  event.set_peer_id(occupancy.peer_id);
  event.set_epoch(occupancy.epoch);
  event.set_reason(std::move(reason));
  return event;
}

v1::PeerEvent MakeHubEvent(v1::EventKind kind, std::string reason) {
  return MakePeerEvent(kind, shm::Occupancy{}, std::move(reason));
}

v1::PeerEvent MakeCrashedEvent(const shm::Occupancy& occupancy, v1::Detector detector,
                               std::optional<uint64_t> heartbeat_age_ns, std::string reason) {
  v1::PeerEvent event = MakePeerEvent(v1::EVENT_KIND_CRASHED, occupancy, std::move(reason));
  event.set_detector(detector);
  if (heartbeat_age_ns.has_value()) {
    *event.mutable_heartbeat_age() = ToProtoDuration(absl::Nanoseconds(*heartbeat_age_ns));
  }
  return event;
}

v1::RecoveryReport RecoveryReportToProto(const shm::RecoveryReport& report,
                                         absl::Duration duration) {
  v1::RecoveryReport out;
  out.set_ring_entries_scanned(report.entries_scanned);
  out.set_slots_freed_from_ring(report.slots_freed_from_ring);
  out.set_slots_reclaimed_by_owner(report.slots_reclaimed_by_owner);
  out.set_mapping_leases_dropped(report.mapping_leases_dropped);
  out.set_problems(report.ProblemCount());
  *out.mutable_duration() = ToProtoDuration(duration);
  return out;
}

std::string DescribePeerEvent(const v1::PeerEvent& event) {
  std::string line = event.peer_id() == 0
                         ? std::string("hub")
                         : absl::StrCat("peer ", event.peer_id(), " epoch ", event.epoch());
  absl::StrAppend(&line, ": ", ShortName(v1::EventKind_Name(event.kind()), "EVENT_KIND_"));
  if (event.kind() == v1::EVENT_KIND_CRASHED) {
    absl::StrAppend(&line, " by ", ShortName(v1::Detector_Name(event.detector()), "DETECTOR_"));
  }
  if (event.has_heartbeat_age()) {
    const std::optional<absl::Duration> age = FromProtoDuration(event.heartbeat_age());
    if (age.has_value()) {
      absl::StrAppend(&line, ", heartbeat age ",
                      absl::FormatDuration(absl::Trunc(*age, absl::Microseconds(1))));
    }
  }
  // Owners and eviction reasons come from clients: escaped, so one event
  // stays one log line.
  if (!event.owner().empty()) {
    absl::StrAppend(&line, ", owner \"", absl::CHexEscape(event.owner()), "\"");
  }
  if (event.has_recovery()) {
    const v1::RecoveryReport& r = event.recovery();
    absl::StrAppend(&line, ", reclaimed ", r.slots_freed_from_ring(), " in-flight and ",
                    r.slots_reclaimed_by_owner(), " owned slots from ", r.ring_entries_scanned(),
                    " ring entries, ", r.problems(), " problems");
  }
  if (!event.reason().empty()) absl::StrAppend(&line, " (", absl::CHexEscape(event.reason()), ")");
  return line;
}

}  // namespace shmhub::server
