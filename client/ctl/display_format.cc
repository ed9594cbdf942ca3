#include "client/ctl/display_format.h"

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/time_util.h"

namespace shmhub::ctl {
namespace {

// "PEER_STATE_ATTACHED" -> "ATTACHED"; an unknown value -> its number.
std::string WithoutPrefix(const std::string& name, absl::string_view prefix, int value) {
  if (name.empty()) return absl::StrCat(value);
  absl::string_view short_name = name;
  absl::ConsumePrefix(&short_name, prefix);
  return std::string(short_name);
}

}  // namespace

std::string PeerStateLabel(int state) {
  const std::string name =
      v1::PeerState_IsValid(state) ? v1::PeerState_Name(static_cast<v1::PeerState>(state)) : "";
  return WithoutPrefix(name, "PEER_STATE_", state);
}

std::string DetectorLabel(int detector) {
  const std::string name =
      v1::Detector_IsValid(detector) ? v1::Detector_Name(static_cast<v1::Detector>(detector)) : "";
  return WithoutPrefix(name, "DETECTOR_", detector);
}

std::string EventKindLabel(int kind) {
  const std::string name =
      v1::EventKind_IsValid(kind) ? v1::EventKind_Name(static_cast<v1::EventKind>(kind)) : "";
  return WithoutPrefix(name, "EVENT_KIND_", kind);
}

std::string ResyncReasonLabel(int reason) {
  const std::string name = v1::Resync::Reason_IsValid(reason)
                               ? v1::Resync::Reason_Name(static_cast<v1::Resync::Reason>(reason))
                               : "";
  return WithoutPrefix(name, "REASON_", reason);
}

std::string HumanDuration(absl::Duration duration) {
  if (duration == absl::InfiniteDuration()) return "inf";
  const absl::Duration abs = duration < absl::ZeroDuration() ? -duration : duration;
  const absl::Duration unit = abs >= absl::Milliseconds(1) ? absl::Milliseconds(1)
                                                           : absl::Microseconds(1);
  return absl::FormatDuration(absl::Trunc(duration, unit));
}

std::string HumanDuration(const google::protobuf::Duration& duration) {
  return HumanDuration(
      absl::Nanoseconds(google::protobuf::util::TimeUtil::DurationToNanoseconds(duration)));
}

std::string HumanTimestamp(const google::protobuf::Timestamp& timestamp) {
  const absl::Time time = absl::FromUnixNanos(
      google::protobuf::util::TimeUtil::TimestampToNanoseconds(timestamp));
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

std::string LabelsText(const google::protobuf::Map<std::string, std::string>& labels) {
  const std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

std::string DetectorsText(const v1::Peer& peer) {
  std::vector<std::string> names;
  for (const int detector : peer.armed_detectors()) names.push_back(DetectorLabel(detector));
  if (!names.empty()) return absl::StrJoin(names, ",");
  return peer.unmonitored() ? "none (unmonitored)" : "-";
}

}  // namespace shmhub::ctl
