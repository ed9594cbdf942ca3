// Conversions between Abseil time types and the well-known protobuf types
// the API uses (google.protobuf.Timestamp, google.protobuf.Duration).
//
// Thread safety: pure functions.
#ifndef SHMHUB_SERVER_BASE_PROTO_TIME_H_
#define SHMHUB_SERVER_BASE_PROTO_TIME_H_

#include <optional>

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace shmhub::server {

google::protobuf::Timestamp ToProtoTimestamp(absl::Time time);
google::protobuf::Duration ToProtoDuration(absl::Duration duration);

// Nothing when `duration` breaks the type's rules (seconds within
// +-315576000000, nanos within +-999999999 with the same sign as seconds):
// such a value comes from a broken or hostile client.
std::optional<absl::Duration> FromProtoDuration(const google::protobuf::Duration& duration);
// Nothing outside the type's range (0001-01-01 to 9999-12-31, nanos within
// 0..999999999).
std::optional<absl::Time> FromProtoTimestamp(const google::protobuf::Timestamp& timestamp);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_BASE_PROTO_TIME_H_
