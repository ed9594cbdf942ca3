// Single-line JSON output for `shmhubctl --json`: one object per line, so
// scripts can read the output line by line (jq -c, Python json.loads).
//
// Every object follows the proto3 JSON mapping with the proto's own field
// names: enums by name ("PEER_STATE_ATTACHED"), 64-bit integers as decimal
// strings, durations as "1.500s", timestamps as RFC 3339 strings. Protobuf
// messages are printed by protobuf itself (ProtoJsonLine); objects that are
// not messages (the offline `inspect` dump) are built with JsonLine, which
// follows the same rules.
#ifndef SHMHUB_CLIENT_CTL_JSON_LINE_H_
#define SHMHUB_CLIENT_CTL_JSON_LINE_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"

namespace shmhub::ctl {

// `message` as one line of JSON (no newline), with proto field names and
// every scalar field present, zero values included, so scripts never have
// to guess a default.
std::string ProtoJsonLine(const google::protobuf::Message& message);

// Builds one JSON object field by field. Keys are written as given (callers
// use the proto's snake_case names); strings are escaped.
class JsonLine {
 public:
  JsonLine& AddString(absl::string_view key, absl::string_view value);
  JsonLine& AddBool(absl::string_view key, bool value);
  JsonLine& AddUint32(absl::string_view key, uint32_t value);
  // As a quoted decimal string, like protobuf does for 64-bit integers.
  JsonLine& AddUint64(absl::string_view key, uint64_t value);
  // As protobuf's Duration JSON: seconds with up to 9 decimals and an 's'.
  JsonLine& AddDuration(absl::string_view key, absl::Duration value);
  // An already serialised JSON value (an object from another JsonLine).
  JsonLine& AddRaw(absl::string_view key, absl::string_view json);

  // The object, without a newline.
  std::string str() const { return body_ + "}"; }

 private:
  void Key(absl::string_view key);

  std::string body_ = "{";
};

// `value` as a quoted, escaped JSON string.
std::string JsonQuote(absl::string_view value);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_JSON_LINE_H_
