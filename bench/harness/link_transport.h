// The shared-memory link between two processes: the throughput and round
// trip workloads of workload.h over a RingLink pair on a real segment.
//
// Per measurement the parent reserves peer `peer_id` of the BenchSegment,
// makes a doorbell pair and a mapping-control pair (what shmhubd hands a
// guest that bootstraps over its local socket), and forks. The child
// attaches the segment file as a guest, claims the reservation and builds
// its GuestLink-side RingLink; the parent builds the host-side one. The
// child sends guest->host (throughput) or echoes (round trip); the parent
// receives and times. Afterwards the child closes its link and stores
// Goodbye, the parent drops its link and recovers the slot (shm::RecoverPeer),
// and checks that every pool class is back at its full free count: a
// leaked slot fails the measurement.
//
// Receivers release each frame as soon as they have checked its stamp, so
// ring space and pool slots cycle as in a streaming application.
#ifndef SHMHUB_BENCH_HARNESS_LINK_TRANSPORT_H_
#define SHMHUB_BENCH_HARNESS_LINK_TRANSPORT_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "bench/harness/bench_segment.h"
#include "bench/harness/workload.h"
#include "client/link/ring_link.h"

namespace shmhub::bench {

struct LinkSetup {
  BenchSegment* segment = nullptr;
  uint32_t peer_id = 1;
  client::LinkOptions options;
  // false: links without a doorbell, which wait with bounded sleeps instead
  // (a configuration the link contract allows; it shows what the ring path
  // costs without doorbell system calls).
  bool doorbell = true;
};

// `batch` 1 sends and receives frame by frame (Send, Receive, Release);
// more uses SendBatch and ReceiveBatch of up to `batch` frames.
absl::StatusOr<ThroughputSample> LinkThroughput(const LinkSetup& setup,
                                                const ThroughputWorkload& workload, size_t batch);
absl::StatusOr<RoundTripSamples> LinkRoundTrip(const LinkSetup& setup,
                                               const RoundTripWorkload& workload);

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_LINK_TRANSPORT_H_
