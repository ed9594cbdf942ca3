#include "server/base/proto_time.h"

#include <cstdint>

namespace shmhub::server {
namespace {

// The range google.protobuf.Duration documents: +-10000 years.
constexpr int64_t kMaxDurationSeconds = 315576000000;
constexpr int32_t kMaxNanos = 999999999;
// The range google.protobuf.Timestamp documents: 0001-01-01 to 9999-12-31.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

}  // namespace

google::protobuf::Timestamp ToProtoTimestamp(absl::Time time) {
  const absl::Duration since_epoch = time - absl::UnixEpoch();
  // Floor division keeps nanos in 0..999999999 for times before 1970 too.
  const int64_t seconds = absl::ToInt64Seconds(absl::Floor(since_epoch, absl::Seconds(1)));
  google::protobuf::Timestamp out;
  out.set_seconds(seconds);
  out.set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(since_epoch - absl::Seconds(seconds))));
  return out;
}

google::protobuf::Duration ToProtoDuration(absl::Duration duration) {
  // Truncation toward zero gives seconds and nanos the same sign, as the
  // type requires.
  const int64_t seconds = absl::IDivDuration(duration, absl::Seconds(1), &duration);
  google::protobuf::Duration out;
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(duration)));
  return out;
}

std::optional<absl::Duration> FromProtoDuration(const google::protobuf::Duration& duration) {
  const int64_t seconds = duration.seconds();
  const int32_t nanos = duration.nanos();
  if (seconds < -kMaxDurationSeconds || seconds > kMaxDurationSeconds) return std::nullopt;
  if (nanos < -kMaxNanos || nanos > kMaxNanos) return std::nullopt;
  if ((seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0)) return std::nullopt;
  return absl::Seconds(seconds) + absl::Nanoseconds(nanos);
}

std::optional<absl::Time> FromProtoTimestamp(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() < kMinTimestampSeconds || timestamp.seconds() > kMaxTimestampSeconds) {
    return std::nullopt;
  }
  if (timestamp.nanos() < 0 || timestamp.nanos() > kMaxNanos) return std::nullopt;
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
}

}  // namespace shmhub::server
