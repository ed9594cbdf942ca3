// The memcpy baseline: the throughput workload of workload.h done in one
// process as a plain memcpy of each payload from a source buffer to a
// destination buffer (each `payload_bytes` long and reused for every frame,
// so they stay cache-resident as a ring's and a slot's hot lines do), with
// the same stamp and check per frame as the two-process transports. It is
// the "copy the bytes once, no second process" upper bound a one-copy link
// is judged against.
#ifndef SHMHUB_BENCH_HARNESS_MEMCPY_BASELINE_H_
#define SHMHUB_BENCH_HARNESS_MEMCPY_BASELINE_H_

#include "absl/status/statusor.h"
#include "bench/harness/workload.h"

namespace shmhub::bench {

absl::StatusOr<ThroughputSample> MemcpyThroughput(const ThroughputWorkload& workload);

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_MEMCPY_BASELINE_H_
