#include "server/hub/event_journal.h"

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/base/proto_time.h"

namespace shmhub::server {

v1::Resync MakeResync(v1::Resync::Reason reason, uint64_t oldest_available_sequence,
                      std::string message) {
  v1::Resync resync;
  resync.set_reason(reason);
  resync.set_oldest_available_sequence(oldest_available_sequence);
  resync.set_message(std::move(message));
  return resync;
}

EventJournal::EventJournal(std::string hub_instance_id, uint32_t capacity)
    : hub_instance_id_(std::move(hub_instance_id)), capacity_(capacity) {}

EventJournal::EventJournal(std::string hub_instance_id, uint32_t capacity,
                           std::vector<v1::PeerEvent> history, uint64_t last_sequence)
    : hub_instance_id_(std::move(hub_instance_id)), capacity_(capacity) {
  absl::MutexLock lock(&mu_);
  last_sequence_ = last_sequence;
  for (v1::PeerEvent& event : history) {
    history_.push_back(std::make_shared<const v1::PeerEvent>(std::move(event)));
  }
  while (history_.size() > capacity_) history_.pop_front();
}

void EventJournal::SetPersistHook(std::function<void(const v1::PeerEvent&)> hook) {
  absl::MutexLock lock(&mu_);
  persist_ = std::move(hook);
}

EventJournal::~EventJournal() = default;

uint64_t EventJournal::Append(v1::PeerEvent event) {
  absl::MutexLock lock(&mu_);
  const uint64_t sequence = ++last_sequence_;
  event.set_sequence(sequence);
  event.set_hub_instance_id(hub_instance_id_);
  // Stamped under the lock so time never runs backwards along the sequence
  // (unless the wall clock itself is stepped back).
  *event.mutable_time() = ToProtoTimestamp(absl::Now());
  if (persist_) persist_(event);
  const EventPtr stored = std::make_shared<const v1::PeerEvent>(std::move(event));
  history_.push_back(stored);
  while (history_.size() > capacity_) history_.pop_front();
  for (Subscription* subscription : subscriptions_) subscription->Deliver(stored);
  return sequence;
}

uint64_t EventJournal::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return last_sequence_;
}

uint64_t EventJournal::oldest_sequence() const {
  absl::MutexLock lock(&mu_);
  return OldestSequenceLocked();
}

uint64_t EventJournal::OldestSequenceLocked() const {
  return history_.empty() ? last_sequence_ + 1 : history_.front()->sequence();
}

size_t EventJournal::subscription_count() const {
  absl::MutexLock lock(&mu_);
  return subscriptions_.size();
}

EventJournal::SubscribeResult EventJournal::Subscribe(uint64_t after, uint32_t queue_limit,
                                                      std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  const uint64_t oldest = OldestSequenceLocked();
  if (after > last_sequence_) {
    return {nullptr, MakeResync(v1::Resync::REASON_SEQUENCE_AHEAD, oldest,
                                absl::StrCat("resume sequence ", after,
                                             " is ahead of this hub instance's latest sequence ",
                                             last_sequence_))};
  }
  // after <= last_sequence_ here, so this also means "something after
  // `after` was issued and is gone".
  if (after + 1 < oldest) {
    return {nullptr,
            MakeResync(v1::Resync::REASON_HISTORY_PRUNED, oldest,
                       absl::StrCat("events after sequence ", after,
                                    " were pruned: the journal keeps the last ", capacity_,
                                    " events and the oldest it holds is ", oldest))};
  }
  const uint64_t backlog = last_sequence_ - after;
  if (backlog > queue_limit) {
    return {nullptr,
            MakeResync(v1::Resync::REASON_SLOW_WATCHER, oldest,
                       absl::StrCat("resuming after sequence ", after, " leaves ", backlog,
                                    " events to deliver, more than the watcher queue limit of ",
                                    queue_limit))};
  }
  // history_ is contiguous and ends at last_sequence_, so the backlog is
  // its tail.
  std::deque<EventPtr> pending(history_.end() - static_cast<std::ptrdiff_t>(backlog),
                               history_.end());
  std::unique_ptr<Subscription> subscription(
      new Subscription(this, after, queue_limit, std::move(wake), std::move(pending)));
  subscriptions_.push_back(subscription.get());
  return {std::move(subscription), std::nullopt};
}

void EventJournal::WakeAll() {
  absl::MutexLock lock(&mu_);
  for (Subscription* subscription : subscriptions_) subscription->wake_();
}

void EventJournal::Unsubscribe(const Subscription* subscription) {
  absl::MutexLock lock(&mu_);
  // Linear in the number of watchers, which --max_watchers bounds; only
  // disconnects pay it.
  const auto it = std::find(subscriptions_.begin(), subscriptions_.end(), subscription);
  if (it == subscriptions_.end()) return;
  *it = subscriptions_.back();
  subscriptions_.pop_back();
}

EventJournal::Subscription::Subscription(EventJournal* journal, uint64_t after,
                                         uint32_t queue_limit, std::function<void()> wake,
                                         std::deque<EventPtr> backlog)
    : journal_(journal),
      queue_limit_(queue_limit),
      wake_(std::move(wake)),
      pending_(std::move(backlog)),
      delivered_through_(after) {}

EventJournal::Subscription::~Subscription() { journal_->Unsubscribe(this); }

void EventJournal::Subscription::Deliver(const EventPtr& event) {
  // Dropped events are freed after mu_ is released, keeping Next() waits
  // short; the overflowed watcher resyncs from a snapshot instead.
  std::deque<EventPtr> dropped;
  {
    absl::MutexLock lock(&mu_);
    if (overflowed_) return;
    if (pending_.size() < queue_limit_) {
      pending_.push_back(event);
    } else {
      overflowed_ = true;
      dropped.swap(pending_);
    }
  }
  wake_();
}

EventJournal::Subscription::Pull EventJournal::Subscription::Next(v1::PeerEvent* out) {
  EventPtr event;
  {
    absl::MutexLock lock(&mu_);
    if (overflowed_) return Pull::kOverflowed;
    if (pending_.empty()) return Pull::kEmpty;
    event = std::move(pending_.front());
    pending_.pop_front();
    delivered_through_ = event->sequence();
  }
  *out = *event;
  return Pull::kEvent;
}

uint64_t EventJournal::Subscription::delivered_through() const {
  absl::MutexLock lock(&mu_);
  return delivered_through_;
}

}  // namespace shmhub::server
