// The one place an absl::Status becomes a grpc::Status: at the RPC edge.
//
// Thread safety: pure function.
#ifndef SHMHUB_SERVER_RPC_GRPC_STATUS_H_
#define SHMHUB_SERVER_RPC_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace shmhub::server {

// Same code (absl's canonical codes are gRPC's), same message. A code
// outside the canonical set becomes UNKNOWN.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_RPC_GRPC_STATUS_H_
