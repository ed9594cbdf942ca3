// Range checks for every field an RPC request carries, done before PeerHub
// sees the request. Requests come from the network and are hostile: each
// check names the field, the value (quoted, escaped and shortened) and what
// is allowed, so the caller can act on the message.
//
// Codes: INVALID_ARGUMENT for a value no hub accepts (peer_id 0 or above
// 255, a TTL out of range, oversized or malformed strings); NOT_FOUND for a
// well-formed peer_id above this hub's --max_guests.
//
// Thread safety: pure functions.
#ifndef SHMHUB_SERVER_RPC_REQUEST_VALIDATION_H_
#define SHMHUB_SERVER_RPC_REQUEST_VALIDATION_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/config/hub_config.h"
#include "server/hub/peer_hub.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

// The limits hub.proto documents.
inline constexpr size_t kMaxOwnerBytes = 256;
inline constexpr size_t kMaxLabels = 32;
inline constexpr size_t kMaxLabelKeyBytes = 63;
inline constexpr size_t kMaxLabelValueBytes = 256;
inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr size_t kMaxReasonBytes = 256;
inline constexpr absl::Duration kMinLeaseTtl = absl::Milliseconds(1);

absl::Status ValidatePeerId(uint32_t peer_id, uint32_t max_guests);

// Checks every field and fills in the defaults (an unset lease_ttl becomes
// config.default_lease_ttl).
absl::StatusOr<ReserveRequest> ValidateReserveRequest(const v1::ReservePeerRequest& request,
                                                      const HubConfig& config);

absl::Status ValidateEvictReason(const std::string& reason);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_RPC_REQUEST_VALIDATION_H_
