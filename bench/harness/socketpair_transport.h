// The socketpair baseline between two processes: the throughput and round
// trip workloads of workload.h over length-prefixed frames on a Unix-domain
// SOCK_STREAM socketpair (stream_frames.h). The forked child is the sender
// (throughput) or the echoer (round trip); the parent receives and times.
#ifndef SHMHUB_BENCH_HARNESS_SOCKETPAIR_TRANSPORT_H_
#define SHMHUB_BENCH_HARNESS_SOCKETPAIR_TRANSPORT_H_

#include "absl/status/statusor.h"
#include "bench/harness/workload.h"

namespace shmhub::bench {

absl::StatusOr<ThroughputSample> SocketpairThroughput(const ThroughputWorkload& workload);
// With `busy_poll`, both sides spin on recv(MSG_DONTWAIT) instead of
// blocking (stream_frames.h).
absl::StatusOr<RoundTripSamples> SocketpairRoundTrip(const RoundTripWorkload& workload,
                                                     bool busy_poll);

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_SOCKETPAIR_TRANSPORT_H_
