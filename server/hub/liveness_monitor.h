// LivenessMonitor: the thread that drives PeerHub::Scan(), the daemon's
// periodic pass over the peer table (expiring leases, noticing attaches,
// departures, stale and crashed guests, and recovering their slots).
//
// The thread starts in the constructor and calls hub.Scan() once every
// `interval` (HubConfig::ScanInterval()) until Stop(). Stop() wakes the
// thread at once instead of waiting out the interval, so shutdown never
// waits longer than one Scan().
//
// Ownership: `hub` must outlive the monitor, or at least the return of
// Stop(). Thread safety: Stop() may be called from any thread, any number
// of times, concurrently; the destructor calls it.
#ifndef SHMHUB_SERVER_HUB_LIVENESS_MONITOR_H_
#define SHMHUB_SERVER_HUB_LIVENESS_MONITOR_H_

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/hub/peer_hub.h"

namespace shmhub::server {

class LivenessMonitor {
 public:
  LivenessMonitor(PeerHub& hub, absl::Duration interval);
  ~LivenessMonitor();

  LivenessMonitor(const LivenessMonitor&) = delete;
  LivenessMonitor& operator=(const LivenessMonitor&) = delete;

  // Returns once the thread has finished its current Scan() and exited.
  void Stop();

 private:
  void Run();

  PeerHub& hub_;
  const absl::Duration interval_;

  absl::Mutex mu_;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;

  // Serializes joins: two threads must not join the same std::thread.
  absl::Mutex join_mu_;
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_LIVENESS_MONITOR_H_
