#include "client/ctl/peer_printer.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/ctl/display_format.h"
#include "client/ctl/table_printer.h"

namespace shmhub::ctl {
namespace {

std::string StateText(const v1::Peer& peer) {
  const std::string label = PeerStateLabel(peer.state());
  return peer.state() == v1::PEER_STATE_CORRUPT ? absl::StrCat(label, " (raw ", peer.raw_state(), ")")
                                                 : label;
}

std::string AgeText(const v1::Peer& peer) {
  return peer.has_heartbeat_age() ? HumanDuration(peer.heartbeat_age()) : "-";
}

std::string OrDash(const std::string& text) { return text.empty() ? "-" : text; }

}  // namespace

std::string PeersTable(const google::protobuf::RepeatedPtrField<v1::Peer>& peers) {
  TablePrinter table({{"PEER", TablePrinter::Align::kRight},
                      {"STATE"},
                      {"EPOCH", TablePrinter::Align::kRight},
                      {"HEARTBEAT_AGE", TablePrinter::Align::kRight},
                      {"STALE"},
                      {"DETECTORS"},
                      {"G2H_BYTES", TablePrinter::Align::kRight},
                      {"H2G_BYTES", TablePrinter::Align::kRight},
                      {"PID", TablePrinter::Align::kRight},
                      {"OWNER"},
                      {"LABELS"}});
  for (const v1::Peer& peer : peers) {
    table.AddRow({absl::StrCat(peer.peer_id()), StateText(peer), absl::StrCat(peer.epoch()),
                  AgeText(peer), peer.stale() ? "yes" : "no", DetectorsText(peer),
                  absl::StrCat(peer.guest_to_host_used_bytes()),
                  absl::StrCat(peer.host_to_guest_used_bytes()),
                  peer.pid() == 0 ? "-" : absl::StrCat(peer.pid()), OrDash(peer.owner()),
                  OrDash(LabelsText(peer.labels()))});
  }
  return table.Render();
}

std::string PeerDetails(const v1::Peer& peer) {
  std::vector<std::pair<std::string, std::string>> lines = {
      {"peer id", absl::StrCat(peer.peer_id())},
      {"state", StateText(peer)},
      {"epoch", absl::StrCat(peer.epoch())},
      {"state since", peer.has_state_since() ? HumanTimestamp(peer.state_since()) : "-"},
      {"last heartbeat", peer.last_heartbeat_ns() == 0
                             ? "none"
                             : absl::StrCat(peer.last_heartbeat_ns(), " ns (CLOCK_MONOTONIC)")},
      {"heartbeat age", AgeText(peer)},
      {"stale", peer.stale() ? "yes" : "no"},
      {"armed detectors", DetectorsText(peer)},
      {"last detector", peer.last_detector() == v1::DETECTOR_UNSPECIFIED
                            ? "-"
                            : DetectorLabel(peer.last_detector())},
      {"pid", peer.pid() == 0 ? "unknown" : absl::StrCat(peer.pid())},
      {"guest->host ring", absl::StrCat(peer.guest_to_host_used_bytes(), " bytes used")},
      {"host->guest ring", absl::StrCat(peer.host_to_guest_used_bytes(), " bytes used")},
      {"owner", OrDash(peer.owner())},
      {"labels", OrDash(LabelsText(peer.labels()))},
      {"lease expires", peer.has_lease_expires_at() ? HumanTimestamp(peer.lease_expires_at()) : "-"},
  };
  return RenderKeyValues(lines);
}

}  // namespace shmhub::ctl
