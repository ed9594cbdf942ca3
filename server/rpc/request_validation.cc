#include "server/rpc/request_validation.h"

#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/base/proto_time.h"
#include "shm/format.h"

namespace shmhub::server {
namespace {

// Hostile strings go into error messages quoted, escaped and cut short, so a
// 1 MB label cannot make a 1 MB error message.
std::string Quote(const std::string& text) {
  constexpr size_t kShown = 40;
  if (text.size() <= kShown) return absl::StrCat("'", absl::CHexEscape(text), "'");
  return absl::StrCat("'", absl::CHexEscape(text.substr(0, kShown)), "...' (", text.size(),
                      " bytes)");
}

absl::Status CheckLength(const char* field, const std::string& value, size_t max_bytes) {
  if (value.size() <= max_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " is ", value.size(), " bytes; at most ", max_bytes, " are allowed"));
}

bool IsLabelKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-' || c == '/';
}

absl::Status CheckLabel(const std::string& key, const std::string& value) {
  bool key_ok = !key.empty() && key.size() <= kMaxLabelKeyBytes;
  for (char c : key) key_ok = key_ok && IsLabelKeyChar(c);
  if (!key_ok) {
    return absl::InvalidArgumentError(absl::StrCat("labels: key ", Quote(key), " must be 1..",
                                                   kMaxLabelKeyBytes,
                                                   " bytes of A-Z a-z 0-9 _ . - /"));
  }
  if (value.size() > kMaxLabelValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("labels: value of key ", Quote(key), " is ",
                                                   value.size(), " bytes; at most ",
                                                   kMaxLabelValueBytes, " are allowed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Duration> LeaseTtl(const v1::ReservePeerRequest& request,
                                        const HubConfig& config) {
  if (!request.has_lease_ttl()) return config.default_lease_ttl;
  const std::string allowed = absl::StrCat(absl::FormatDuration(kMinLeaseTtl), "..",
                                           absl::FormatDuration(config.max_lease_ttl));
  std::optional<absl::Duration> ttl = FromProtoDuration(request.lease_ttl());
  if (!ttl.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease_ttl is not a valid google.protobuf.Duration (seconds=",
                     request.lease_ttl().seconds(), ", nanos=", request.lease_ttl().nanos(),
                     "); it must be within ", allowed));
  }
  if (*ttl < kMinLeaseTtl || *ttl > config.max_lease_ttl) {
    return absl::InvalidArgumentError(absl::StrCat("lease_ttl must be within ", allowed,
                                                   " (the hub's --max_lease_ttl), got ",
                                                   absl::FormatDuration(*ttl)));
  }
  return *ttl;
}

}  // namespace

absl::Status ValidatePeerId(uint32_t peer_id, uint32_t max_guests) {
  if (peer_id == 0 || peer_id > shm::kMaxGuests) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer_id must be 1..", max_guests, ", got ", peer_id));
  }
  if (peer_id > max_guests) {
    return absl::NotFoundError(absl::StrCat("peer_id ", peer_id, " does not exist: this hub has ",
                                            max_guests, " peer slots (1..", max_guests, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ReserveRequest> ValidateReserveRequest(const v1::ReservePeerRequest& request,
                                                      const HubConfig& config) {
  ReserveRequest out;
  absl::StatusOr<absl::Duration> ttl = LeaseTtl(request, config);
  if (!ttl.ok()) return ttl.status();
  out.lease_ttl = *ttl;
  if (absl::Status s = CheckLength("owner", request.owner(), kMaxOwnerBytes); !s.ok()) return s;
  if (absl::Status s = CheckLength("request_id", request.request_id(), kMaxRequestIdBytes);
      !s.ok()) {
    return s;
  }
  if (static_cast<size_t>(request.labels_size()) > kMaxLabels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels has ", request.labels_size(), " entries; at most ", kMaxLabels, " are allowed"));
  }
  // Sorted, so that the first bad label reported does not depend on the
  // map's iteration order.
  out.labels = std::map<std::string, std::string>(request.labels().begin(), request.labels().end());
  for (const auto& [key, value] : out.labels) {
    if (absl::Status s = CheckLabel(key, value); !s.ok()) return s;
  }
  out.owner = request.owner();
  out.request_id = request.request_id();
  return out;
}

absl::Status ValidateEvictReason(const std::string& reason) {
  return CheckLength("reason", reason, kMaxReasonBytes);
}

}  // namespace shmhub::server
