// The shmhubctl commands that are one RPC each: info, reserve, release,
// evict, get, list, health. Each prints the response (text, or JSON lines
// with --json) and returns an exit status (command.h).
#ifndef SHMHUB_CLIENT_CTL_RPC_COMMANDS_H_
#define SHMHUB_CLIENT_CTL_RPC_COMMANDS_H_

#include "client/ctl/command.h"

namespace shmhub::ctl {

// GetSegmentInfo. --json: the GetSegmentInfoResponse.
int RunInfo(const Invocation& invocation);
// ReservePeer with --ttl, --owner, --label=k=v (repeatable), --request_id.
// --json: the ReservePeerResponse.
int RunReserve(const Invocation& invocation);
// ReleasePeer PEER EPOCH. --json: {"peer_id", "epoch", "released": true}.
int RunRelease(const Invocation& invocation);
// EvictPeer PEER EPOCH with --reason. --json: the EvictPeerResponse.
int RunEvict(const Invocation& invocation);
// GetPeer PEER. --json: the Peer.
int RunGet(const Invocation& invocation);
// ListPeers (--all adds Empty slots). --json: one Peer per line.
int RunList(const Invocation& invocation);
// Health/Check. Exit 0 when SERVING, 1 otherwise. --json: the
// HealthCheckResponse.
int RunHealth(const Invocation& invocation);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_RPC_COMMANDS_H_
