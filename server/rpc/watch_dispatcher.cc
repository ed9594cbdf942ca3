#include "server/rpc/watch_dispatcher.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/base/shutting_down.h"

namespace shmhub::server {

WatchDispatcher::WatchDispatcher(EventJournal* journal, uint32_t max_streams, absl::Duration tick)
    : journal_(journal), max_streams_(max_streams), tick_(tick), thread_([this] { Run(); }) {}

WatchDispatcher::~WatchDispatcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

absl::StatusOr<uint64_t> WatchDispatcher::Register(std::function<void()> pump) {
  absl::MutexLock lock(&mu_);
  if (closed_) return ShuttingDownError("no new watch streams");
  if (streams_.size() >= max_streams_) {
    return absl::ResourceExhaustedError(absl::StrCat("too many watch streams: ", streams_.size(),
                                                     " are open and the hub's --max_watchers is ",
                                                     max_streams_, "; close one or retry later"));
  }
  const uint64_t id = next_id_++;
  streams_.emplace(id, Stream{std::move(pump)});
  return id;
}

void WatchDispatcher::Unregister(uint64_t id) {
  absl::MutexLock lock(&mu_);
  if (std::this_thread::get_id() != thread_.get_id()) {
    auto not_running = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ != id; };
    mu_.Await(absl::Condition(&not_running));
  }
  streams_.erase(id);
}

void WatchDispatcher::MarkReady(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second.queued) return;
  it->second.queued = true;
  ready_.push_back(id);
}

void WatchDispatcher::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

bool WatchDispatcher::WaitUntilEmpty(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return streams_.empty(); };
  return mu_.AwaitWithDeadline(absl::Condition(&empty), deadline);
}

size_t WatchDispatcher::size() const {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

void WatchDispatcher::Run() {
  absl::MutexLock lock(&mu_);
  absl::Time next_tick = absl::Now() + tick_;
  auto has_work = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !ready_.empty(); };
  while (!stopping_) {
    mu_.AwaitWithDeadline(absl::Condition(&has_work), next_tick);
    if (stopping_) break;
    // Ticks are due even while streams keep the queue busy.
    if (absl::Now() >= next_tick) {
      mu_.Unlock();
      journal_->WakeAll();
      mu_.Lock();
      next_tick = absl::Now() + tick_;
      continue;
    }
    if (ready_.empty()) continue;
    const uint64_t id = ready_.front();
    ready_.pop_front();
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    it->second.queued = false;
    // A copy: the pump may end its stream, which erases the entry.
    std::function<void()> pump = it->second.pump;
    running_ = id;
    mu_.Unlock();
    pump();
    mu_.Lock();
    running_ = 0;
  }
}

}  // namespace shmhub::server
