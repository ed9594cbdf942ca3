// How shmhubctl shows API values to people (the table output; --json uses
// the proto3 JSON mapping instead, see json_line.h): enum values without
// their type prefix ("ATTACHED"), durations rounded to what a person reads
// ("1.25s", "380ms"), timestamps in UTC with milliseconds, label maps as
// "k=v,k=v" in key order. A value this build does not know (an enum number
// from a newer daemon) is shown as its number, never dropped.
#ifndef SHMHUB_CLIENT_CTL_DISPLAY_FORMAT_H_
#define SHMHUB_CLIENT_CTL_DISPLAY_FORMAT_H_

#include <string>

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/map.h"
#include "google/protobuf/timestamp.pb.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::ctl {

std::string PeerStateLabel(int state);        // v1::PeerState
std::string DetectorLabel(int detector);      // v1::Detector
std::string EventKindLabel(int kind);         // v1::EventKind
std::string ResyncReasonLabel(int reason);    // v1::Resync::Reason

// Milliseconds from 1ms up, microseconds below; "inf" for infinity.
std::string HumanDuration(absl::Duration duration);
std::string HumanDuration(const google::protobuf::Duration& duration);
// "2026-11-29T07:13:05.123Z".
std::string HumanTimestamp(const google::protobuf::Timestamp& timestamp);
std::string LabelsText(const google::protobuf::Map<std::string, std::string>& labels);
// The armed detectors, comma-separated; "none (unmonitored)" for an
// attached guest nothing watches, "-" for a slot without a guest.
std::string DetectorsText(const v1::Peer& peer);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_DISPLAY_FORMAT_H_
