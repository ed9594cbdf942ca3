// The start/finish handshake of a two-process measurement, over a
// ControlChannel:
//
//   child                          parent
//   set up (attach, claim, link)
//   "ready"  ------------------->  set up its side
//                                  t0; "go"
//   <------------------------------
//   run the workload  <== data path ==>  run the workload; t1
//   "done" (or "error: ...") --->  collect it
//   <---------------------------  "bye"
//   tear down its side, exit        reap the child
//
// The child keeps its side up until "bye": a link peer that left while the
// parent was still draining its frames would look like a departed peer.
//
// The parent times [t0, t1] around its own workload only, so process start,
// segment attach and link creation are never part of a result. A child
// that fails says why before it exits, so the parent reports the child's
// error rather than a bare exit code. Every wait is bounded by the
// caller's deadline.
#ifndef SHMHUB_BENCH_HARNESS_TWO_PROCESS_H_
#define SHMHUB_BENCH_HARNESS_TWO_PROCESS_H_

#include "absl/status/status.h"
#include "bench/harness/control_channel.h"
#include "bench/harness/forked_child.h"
#include "shm/poll_fd.h"

namespace shmhub::bench {

// Child: reports a failed setup, or says "ready" and waits for "go".
// CANCELLED when the parent sends anything else (it gave up).
absl::Status ChildReady(const ControlEnd& control, const absl::Status& setup,
                        shm::Deadline deadline);
// Child: reports the outcome and, after a success, waits for "bye".
// Returns the exit code to leave with once its side is torn down.
int ChildFinish(const ControlEnd& control, const absl::Status& outcome,
                shm::Deadline deadline);

// Parent: waits for "ready"; a child's setup error comes back as the error.
absl::Status ParentAwaitReady(const ControlEnd& control, shm::Deadline deadline);
// Parent: starts the child's workload.
absl::Status ParentGo(const ControlEnd& control);
// Parent: waits for the child's outcome, says "bye" and waits for the
// child's exit. OK only for "done" and exit code 0.
absl::Status ParentAwaitDone(const ControlEnd& control, ForkedChild& child,
                             shm::Deadline deadline);

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_TWO_PROCESS_H_
