// Peer slots (v1::Peer) as shmhubctl shows them to people: a table for many
// (`list`, a watch snapshot), key/value lines for one (`get`).
#ifndef SHMHUB_CLIENT_CTL_PEER_PRINTER_H_
#define SHMHUB_CLIENT_CTL_PEER_PRINTER_H_

#include <string>

#include "google/protobuf/repeated_ptr_field.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::ctl {

// One row per peer, in the given order, under a header line.
std::string PeersTable(const google::protobuf::RepeatedPtrField<v1::Peer>& peers);
// Every field of one peer, one per line.
std::string PeerDetails(const v1::Peer& peer);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_PEER_PRINTER_H_
