#include "client/ctl/rpc_commands.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/ctl/ctl_flags.h"
#include "client/ctl/display_format.h"
#include "client/ctl/json_line.h"
#include "client/ctl/peer_printer.h"
#include "client/ctl/table_printer.h"
#include "google/protobuf/util/time_util.h"
#include "shm/occupancy.h"

namespace shmhub::ctl {
namespace {

using google::protobuf::util::TimeUtil;

bool Json() { return absl::GetFlag(FLAGS_json); }

using shm::Occupancy;

// PEER and EPOCH, the arguments of release and evict.
absl::StatusOr<Occupancy> ParseOccupancy(const Invocation& invocation) {
  absl::StatusOr<uint32_t> peer_id = ParseUint32Arg("PEER", invocation.args[0]);
  if (!peer_id.ok()) return peer_id.status();
  absl::StatusOr<uint32_t> epoch = ParseUint32Arg("EPOCH", invocation.args[1]);
  if (!epoch.ok()) return epoch.status();
  return Occupancy{*peer_id, *epoch};
}

std::string SlotClassesText(const v1::GetSegmentInfoResponse& info) {
  std::vector<std::string> classes;
  for (const v1::SlotClass& c : info.slot_classes()) {
    classes.push_back(absl::StrCat(c.slot_count(), " x ", c.slot_size_bytes(), " B"));
  }
  return absl::StrJoin(classes, ", ");
}

std::string RecoveryText(const v1::RecoveryReport& r) {
  return absl::StrCat("ring_entries_scanned=", r.ring_entries_scanned(),
                      " slots_freed_from_ring=", r.slots_freed_from_ring(),
                      " slots_reclaimed_by_owner=", r.slots_reclaimed_by_owner(),
                      " mapping_leases_dropped=", r.mapping_leases_dropped(),
                      " problems=", r.problems(), " duration=", HumanDuration(r.duration()));
}

}  // namespace

int RunInfo(const Invocation& invocation) {
  absl::StatusOr<v1::GetSegmentInfoResponse> info = MakeHubClient()->GetSegmentInfo();
  if (!info.ok()) return ReportFailure(invocation, info.status());
  if (Json()) {
    invocation.out << ProtoJsonLine(*info) << "\n";
    return kExitOk;
  }
  invocation.out << RenderKeyValues({
      {"segment", info->segment_path()},
      {"format version", absl::StrCat(info->format_version())},
      {"total size", absl::StrCat(info->total_size_bytes(), " bytes")},
      {"current size", absl::StrCat(info->current_size_bytes(), " bytes")},
      {"max guests", absl::StrCat(info->max_guests())},
      {"ring capacity", absl::StrCat(info->ring_capacity_bytes(), " bytes per direction")},
      {"max payload", absl::StrCat(info->max_payload_size_bytes(), " bytes")},
      {"inline threshold", absl::StrCat(info->inline_threshold_bytes(), " bytes")},
      {"heartbeat interval", HumanDuration(info->heartbeat_interval())},
      {"crash timeout", HumanDuration(info->crash_timeout())},
      {"require heartbeat", info->require_heartbeat() ? "yes" : "no"},
      {"host ack timeout", HumanDuration(info->host_ack_timeout())},
      {"slot classes", SlotClassesText(*info)},
      {"hub instance", info->hub_instance_id()},
      {"started at", HumanTimestamp(info->started_at())},
      {"version", info->version()},
  });
  return kExitOk;
}

int RunReserve(const Invocation& invocation) {
  v1::ReservePeerRequest request;
  if (const std::optional<absl::Duration> ttl = absl::GetFlag(FLAGS_ttl); ttl.has_value()) {
    // The daemon checks the range; only what a Duration cannot hold is ours.
    *request.mutable_lease_ttl() = TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(*ttl));
  }
  request.set_owner(absl::GetFlag(FLAGS_owner));
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  for (const std::string& label : invocation.labels) {
    const size_t eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      return ReportUsage(invocation,
                         absl::StrCat("--label wants KEY=VALUE with a non-empty key, got '", label,
                                      "'"));
    }
    (*request.mutable_labels())[label.substr(0, eq)] = label.substr(eq + 1);
  }

  absl::StatusOr<v1::ReservePeerResponse> reserved = MakeHubClient()->ReservePeer(request);
  if (!reserved.ok()) return ReportFailure(invocation, reserved.status());
  if (Json()) {
    invocation.out << ProtoJsonLine(*reserved) << "\n";
    return kExitOk;
  }
  invocation.out << "reserved peer_id=" << reserved->peer_id() << " epoch=" << reserved->epoch()
                 << " segment=" << reserved->segment_path() << " lease_expires_at="
                 << HumanTimestamp(reserved->lease_expires_at())
                 << (reserved->replayed() ? " (replayed: an earlier request with this id)" : "")
                 << "\n"
                 << "start the guest with: shmhub-guest --segment=" << reserved->segment_path()
                 << " --peer_id=" << reserved->peer_id() << " --epoch=" << reserved->epoch()
                 << "\n";
  return kExitOk;
}

int RunRelease(const Invocation& invocation) {
  absl::StatusOr<Occupancy> occupancy = ParseOccupancy(invocation);
  if (!occupancy.ok()) return ReportUsage(invocation, occupancy.status().message());
  absl::StatusOr<v1::ReleasePeerResponse> released =
      MakeHubClient()->ReleasePeer(occupancy->peer_id, occupancy->epoch);
  if (!released.ok()) return ReportFailure(invocation, released.status());
  if (Json()) {
    invocation.out << JsonLine()
                          .AddUint32("peer_id", occupancy->peer_id)
                          .AddUint32("epoch", occupancy->epoch)
                          .AddBool("released", true)
                          .str()
                   << "\n";
    return kExitOk;
  }
  invocation.out << "released peer_id=" << occupancy->peer_id << " epoch=" << occupancy->epoch
                 << "\n";
  return kExitOk;
}

int RunEvict(const Invocation& invocation) {
  absl::StatusOr<Occupancy> occupancy = ParseOccupancy(invocation);
  if (!occupancy.ok()) return ReportUsage(invocation, occupancy.status().message());
  absl::StatusOr<v1::EvictPeerResponse> evicted = MakeHubClient()->EvictPeer(
      occupancy->peer_id, occupancy->epoch, absl::GetFlag(FLAGS_reason));
  if (!evicted.ok()) return ReportFailure(invocation, evicted.status());
  if (Json()) {
    invocation.out << ProtoJsonLine(*evicted) << "\n";
    return kExitOk;
  }
  // No report: recovery waits for the data-plane host application.
  invocation.out << "evicted peer_id=" << occupancy->peer_id << " epoch=" << occupancy->epoch
                 << "; recovery: "
                 << (evicted->has_recovery()
                         ? RecoveryText(evicted->recovery())
                         : std::string("waiting for the host application (RECOVERED follows "
                                       "on the event stream)"))
                 << "\n";
  return kExitOk;
}

int RunGet(const Invocation& invocation) {
  absl::StatusOr<uint32_t> peer_id = ParseUint32Arg("PEER", invocation.args[0]);
  if (!peer_id.ok()) return ReportUsage(invocation, peer_id.status().message());
  absl::StatusOr<v1::GetPeerResponse> got = MakeHubClient()->GetPeer(*peer_id);
  if (!got.ok()) return ReportFailure(invocation, got.status());
  invocation.out << (Json() ? ProtoJsonLine(got->peer()) + "\n" : PeerDetails(got->peer()));
  return kExitOk;
}

int RunList(const Invocation& invocation) {
  const bool all = absl::GetFlag(FLAGS_all);
  absl::StatusOr<v1::ListPeersResponse> listed = MakeHubClient()->ListPeers(all);
  if (!listed.ok()) return ReportFailure(invocation, listed.status());
  if (Json()) {
    for (const v1::Peer& peer : listed->peers()) invocation.out << ProtoJsonLine(peer) << "\n";
    return kExitOk;
  }
  if (listed->peers().empty()) {
    invocation.out << (all ? "no peer slots\n" : "no occupied peer slots (--all lists every slot)\n");
    return kExitOk;
  }
  invocation.out << PeersTable(listed->peers());
  return kExitOk;
}

int RunHealth(const Invocation& invocation) {
  absl::StatusOr<bool> serving = MakeHubClient()->Health();
  if (!serving.ok()) return ReportFailure(invocation, serving.status());
  if (Json()) {
    grpc::health::v1::HealthCheckResponse response;
    response.set_status(*serving ? grpc::health::v1::HealthCheckResponse::SERVING
                                 : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    invocation.out << ProtoJsonLine(response) << "\n";
  } else {
    invocation.out << (*serving ? "SERVING" : "NOT_SERVING") << "\n";
  }
  return *serving ? kExitOk : kExitFailure;
}

}  // namespace shmhub::ctl
