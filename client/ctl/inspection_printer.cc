#include "client/ctl/inspection_printer.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "client/ctl/display_format.h"
#include "client/ctl/json_line.h"
#include "client/ctl/table_printer.h"
#include "proto/peer_state_conversion.h"
#include "shm/format.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::ctl {
namespace {

bool Listed(const InspectedPeer& peer, bool include_empty) {
  return include_empty || !peer.state.Is(shm::PeerState::kEmpty);
}

std::string StateText(const InspectedPeer& peer) {
  const std::string label = PeerStateLabel(ApiPeerState(peer.state));
  return peer.state.valid ? label : absl::StrCat(label, " (raw ", peer.state.raw, ")");
}

// The header's interval is a u64 any writer may have set: saturate.
absl::Duration IntervalDuration(uint64_t ns) {
  return ns > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
             ? absl::InfiniteDuration()
             : absl::Nanoseconds(static_cast<int64_t>(ns));
}

std::string HeartbeatIntervalText(uint64_t ns) {
  return ns == 0 ? "off" : HumanDuration(IntervalDuration(ns));
}

}  // namespace

std::string InspectionText(const SegmentInspection& in, bool include_empty) {
  std::string out = RenderKeyValues({
      {"segment", in.path.empty() ? "(descriptor)" : in.path},
      {"format version", absl::StrCat(in.format_version)},
      {"total size", absl::StrCat(in.total_size_bytes, " bytes")},
      {"current size", absl::StrCat(in.current_size_bytes, " bytes")},
      {"max guests", absl::StrCat(in.max_guests)},
      {"ring capacity", absl::StrCat(in.ring_capacity_bytes, " bytes per direction")},
      {"max payload", absl::StrCat(in.max_payload_size_bytes, " bytes")},
      {"inline threshold", absl::StrCat(in.inline_threshold_bytes, " bytes")},
      {"heartbeat interval", HeartbeatIntervalText(in.heartbeat_interval_ns)},
      {"host goodbye", in.host_goodbye ? "yes (the host is shutting down or gone)" : "no"},
  });

  TablePrinter peers({{"PEER", TablePrinter::Align::kRight},
                      {"STATE"},
                      {"EPOCH", TablePrinter::Align::kRight},
                      {"LAST_HEARTBEAT_NS", TablePrinter::Align::kRight},
                      {"HEARTBEAT_AGE", TablePrinter::Align::kRight},
                      {"STALE"},
                      {"G2H_BYTES", TablePrinter::Align::kRight},
                      {"H2G_BYTES", TablePrinter::Align::kRight}});
  for (const InspectedPeer& peer : in.peers) {
    if (!Listed(peer, include_empty)) continue;
    peers.AddRow({absl::StrCat(peer.peer_id), StateText(peer), absl::StrCat(peer.epoch),
                  absl::StrCat(peer.last_heartbeat_ns),
                  peer.heartbeat_age.has_value() ? HumanDuration(*peer.heartbeat_age) : "-",
                  peer.stale ? "yes" : "no", absl::StrCat(peer.guest_to_host_used_bytes),
                  absl::StrCat(peer.host_to_guest_used_bytes)});
  }
  out += '\n';
  if (peers.row_count() == 0) {
    out += "no occupied peer slots (--all lists every slot)\n";
  } else {
    out += peers.Render();
  }

  TablePrinter classes({{"CLASS", TablePrinter::Align::kRight},
                        {"SLOT_SIZE", TablePrinter::Align::kRight},
                        {"SLOTS", TablePrinter::Align::kRight},
                        {"FREE", TablePrinter::Align::kRight}});
  for (const InspectedSlotClass& slot_class : in.slot_classes) {
    classes.AddRow({absl::StrCat(slot_class.class_index), absl::StrCat(slot_class.slot_size_bytes),
                    absl::StrCat(slot_class.slot_count),
                    slot_class.free_slots.ok()
                        ? absl::StrCat(*slot_class.free_slots)
                        : absl::StrCat("error: ", slot_class.free_slots.status().message())});
  }
  out += '\n';
  out += classes.Render();
  return out;
}

std::vector<std::string> InspectionJsonLines(const SegmentInspection& in, bool include_empty) {
  std::vector<std::string> lines;
  JsonLine segment;
  segment.AddString("segment_path", in.path)
      .AddUint32("format_version", in.format_version)
      .AddUint64("total_size_bytes", in.total_size_bytes)
      .AddUint64("current_size_bytes", in.current_size_bytes)
      .AddUint32("max_guests", in.max_guests)
      .AddUint32("ring_capacity_bytes", in.ring_capacity_bytes)
      .AddUint32("max_payload_size_bytes", in.max_payload_size_bytes)
      .AddUint32("inline_threshold_bytes", in.inline_threshold_bytes)
      .AddDuration("heartbeat_interval", IntervalDuration(in.heartbeat_interval_ns))
      .AddBool("host_goodbye", in.host_goodbye);
  lines.push_back(JsonLine().AddRaw("segment", segment.str()).str());

  for (const InspectedPeer& peer : in.peers) {
    if (!Listed(peer, include_empty)) continue;
    JsonLine json;
    json.AddUint32("peer_id", peer.peer_id)
        .AddUint32("epoch", peer.epoch)
        .AddString("state", v1::PeerState_Name(ApiPeerState(peer.state)))
        .AddUint32("raw_state", peer.state.valid ? 0 : peer.state.raw)
        .AddUint64("last_heartbeat_ns", peer.last_heartbeat_ns);
    if (peer.heartbeat_age.has_value()) json.AddDuration("heartbeat_age", *peer.heartbeat_age);
    json.AddBool("stale", peer.stale)
        .AddUint32("guest_to_host_used_bytes", peer.guest_to_host_used_bytes)
        .AddUint32("host_to_guest_used_bytes", peer.host_to_guest_used_bytes);
    lines.push_back(JsonLine().AddRaw("peer", json.str()).str());
  }

  for (const InspectedSlotClass& slot_class : in.slot_classes) {
    JsonLine json;
    json.AddUint32("class_index", slot_class.class_index)
        .AddUint32("slot_size_bytes", slot_class.slot_size_bytes)
        .AddUint32("slot_count", slot_class.slot_count);
    if (slot_class.free_slots.ok()) {
      json.AddUint32("free_slots", *slot_class.free_slots);
    } else {
      json.AddString("free_slots_error", slot_class.free_slots.status().message());
    }
    lines.push_back(JsonLine().AddRaw("slot_class", json.str()).str());
  }
  return lines;
}

}  // namespace shmhub::ctl
