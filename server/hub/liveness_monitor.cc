#include "server/hub/liveness_monitor.h"

namespace shmhub::server {

LivenessMonitor::LivenessMonitor(PeerHub& hub, absl::Duration interval)
    : hub_(hub), interval_(interval) {
  absl::MutexLock lock(&join_mu_);
  thread_ = std::thread([this] { Run(); });
}

LivenessMonitor::~LivenessMonitor() { Stop(); }

void LivenessMonitor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_requested_ = true;
  }
  absl::MutexLock lock(&join_mu_);
  if (thread_.joinable()) thread_.join();
}

void LivenessMonitor::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // Waking on the condition, not on a timer tick, is what makes Stop()
      // prompt with long intervals.
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_requested_), interval_)) return;
    }
    hub_.Scan();
  }
}

}  // namespace shmhub::server
