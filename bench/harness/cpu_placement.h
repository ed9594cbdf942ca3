// Where the benchmark's processes run and how busy the machine is around
// them. Spin-waiting IPC is only measurable on cores nobody else wants: the
// driver can pin its two processes to distinct CPUs and records (and can
// wait for) the share of CPU time the rest of the machine leaves idle.
#ifndef SHMHUB_BENCH_HARNESS_CPU_PLACEMENT_H_
#define SHMHUB_BENCH_HARNESS_CPU_PLACEMENT_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace shmhub::bench {

// Pins the calling process (and children it forks later) to `cpu`.
absl::Status PinToCpu(int cpu);

// The fraction (0..1) of all CPUs' time spent idle over `window`, from
// /proc/stat (idle + iowait over the total). Sleeps for `window`, so the
// caller's own share is near zero.
absl::StatusOr<double> MeasureIdleFraction(absl::Duration window);

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_CPU_PLACEMENT_H_
