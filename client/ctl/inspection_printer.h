// Renders a SegmentInspection (segment_inspector.h) the two ways shmhubctl
// prints things: text for people, and one JSON object per line for scripts.
//
// JSON: one {"segment": {...}} line, then one {"peer": {...}} line per
// listed peer, then one {"slot_class": {...}} line per class. Inner field
// names are those of the API where the API has the field (GetSegmentInfo-
// Response, Peer, SlotClass), so the same jq filter reads `inspect` and
// `info`/`list` output; state is a PeerState name, with PEER_STATE_CORRUPT
// and raw_state for a state word outside 0..3; heartbeat_age is left out
// when there is no heartbeat; a class whose free list cannot be walked
// carries "free_slots_error" instead of "free_slots".
#ifndef SHMHUB_CLIENT_CTL_INSPECTION_PRINTER_H_
#define SHMHUB_CLIENT_CTL_INSPECTION_PRINTER_H_

#include <string>
#include <vector>

#include "client/ctl/segment_inspector.h"

namespace shmhub::ctl {

// Only occupied slots (any state but Empty) unless `include_empty`.
std::string InspectionText(const SegmentInspection& inspection, bool include_empty);
std::vector<std::string> InspectionJsonLines(const SegmentInspection& inspection,
                                             bool include_empty);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_INSPECTION_PRINTER_H_
