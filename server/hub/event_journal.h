// EventJournal: the hub's ordered event history and its fan-out to watchers.
//
// Append() stamps each event with the next sequence number (1, 2, ... per
// hub instance, no gaps), the wall-clock time and the instance id, keeps the
// last `capacity` events for resuming watchers, and queues the event on every
// subscription. A subscription's queue is bounded: a watcher that falls more
// than `queue_limit` events behind is marked overflowed and must resync
// (Resync + fresh Snapshot); it is never silently skipped past an event.
//
// Memory: the journal holds at most `capacity` events and each subscription
// at most `queue_limit` undelivered ones. Events are immutable once appended
// and shared between the history and the queues, so a queued event costs a
// pointer, not a copy.
//
// Thread safety: all methods are thread-safe. The `wake` callbacks are
// invoked with the journal's lock held; they must be quick, must not block
// and must not call back into the journal or into any Subscription.
#ifndef SHMHUB_SERVER_HUB_EVENT_JOURNAL_H_
#define SHMHUB_SERVER_HUB_EVENT_JOURNAL_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

// A RESYNC telling a watcher why its history is gone and where what is
// kept begins.
v1::Resync MakeResync(v1::Resync::Reason reason, uint64_t oldest_available_sequence,
                      std::string message);

class EventJournal {
 public:
  class Subscription;

  // Every Subscription must be destroyed before the journal.
  EventJournal(std::string hub_instance_id, uint32_t capacity);
  // A journal that continues an earlier daemon's: `history` (ascending,
  // contiguous sequences, the newest `capacity` kept) ends at
  // `last_sequence`, and the next event gets last_sequence + 1.
  EventJournal(std::string hub_instance_id, uint32_t capacity, std::vector<v1::PeerEvent> history,
               uint64_t last_sequence);

  // Called with every stamped event before any subscription can see it,
  // under the journal's lock (so the state log holds every event a watcher
  // was ever sent). Set before the first Append; may not call the journal.
  void SetPersistHook(std::function<void(const v1::PeerEvent&)> hook);
  ~EventJournal();

  EventJournal(const EventJournal&) = delete;
  EventJournal& operator=(const EventJournal&) = delete;

  // Stamps sequence, time and hub_instance_id on `event`, stores it and
  // queues it for every subscription. Returns the sequence number.
  uint64_t Append(v1::PeerEvent event);

  // The latest sequence assigned (0 before the first event).
  uint64_t last_sequence() const;
  // The oldest sequence still held (last_sequence() + 1 when none is).
  uint64_t oldest_sequence() const;
  const std::string& hub_instance_id() const { return hub_instance_id_; }
  // Live subscriptions (for the watcher limit and the watchers gauge).
  size_t subscription_count() const;

  // Subscribes to every event with sequence > `after`, starting with the
  // held history. Returns a Resync instead when that is impossible:
  // REASON_HISTORY_PRUNED when events after `after` were already dropped,
  // REASON_SEQUENCE_AHEAD when `after` > last_sequence(), and
  // REASON_SLOW_WATCHER when more than `queue_limit` held events follow
  // `after` (the watcher starts too far behind to fit its queue).
  //
  // `wake` is called, with the journal's lock held, whenever the
  // subscription gains an event or overflows, and by WakeAll(); it is a hint
  // to call Next(), which may then find nothing. It is not called for the
  // history queued here, so the caller drains with Next() right after
  // subscribing.
  struct SubscribeResult {
    std::unique_ptr<Subscription> subscription;  // null when resync is set
    std::optional<v1::Resync> resync;
  };
  SubscribeResult Subscribe(uint64_t after, uint32_t queue_limit, std::function<void()> wake);

  // Calls every subscription's wake (progress ticks, shutdown).
  void WakeAll();

 private:
  friend class Subscription;

  using EventPtr = std::shared_ptr<const v1::PeerEvent>;

  uint64_t OldestSequenceLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unsubscribe(const Subscription* subscription) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string hub_instance_id_;
  const uint32_t capacity_;

  // Lock order: mu_ before any Subscription::mu_.
  mutable absl::Mutex mu_;
  uint64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<EventPtr> history_ ABSL_GUARDED_BY(mu_);  // ascending, contiguous
  std::vector<Subscription*> subscriptions_ ABSL_GUARDED_BY(mu_);
  std::function<void(const v1::PeerEvent&)> persist_ ABSL_GUARDED_BY(mu_);
};

// One watcher's view of the journal: the events after its resume point, in
// sequence order, pulled one at a time by a writer that sends one message at
// a time.
//
// Owned by the watcher through the unique_ptr Subscribe returns; neither
// copyable nor movable, because the journal holds its address. Destroying it
// unsubscribes, and is safe while other threads append: once the destructor
// returns, `wake` is never called again.
//
// Thread safety: Next() and delivered_through() may be called from any
// thread, but by one consumer at a time (two consumers would split the
// stream between them).
class EventJournal::Subscription {
 public:
  enum class Pull {
    kEvent,       // *out holds the next event
    kEmpty,       // nothing pending; `wake` will be called when there is
    kOverflowed,  // the queue overflowed: resync (Resync + Snapshot) and resubscribe
  };

  ~Subscription();

  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // Copies the next pending event into *out. Events come in sequence order
  // with no gap, starting at the resume point + 1. Once kOverflowed is
  // returned it is returned forever; the events returned before it are
  // still contiguous.
  Pull Next(v1::PeerEvent* out);

  // The sequence of the last event Next() returned (the resume point before
  // the first). When Next() returns kEmpty, every event up to this one has
  // been delivered, so it is the sequence a Progress message must carry.
  // last_sequence() is not: it may name an event that is already assigned
  // but not yet returned here, and a watcher resuming after it would miss
  // that event.
  uint64_t delivered_through() const;

 private:
  friend class EventJournal;

  Subscription(EventJournal* journal, uint64_t after, uint32_t queue_limit,
               std::function<void()> wake, std::deque<EventPtr> backlog);

  // Called by Append with the journal's lock held: queues `event`, or marks
  // the subscription overflowed when its queue is full; then wakes it.
  void Deliver(const EventPtr& event) ABSL_LOCKS_EXCLUDED(mu_);

  EventJournal* const journal_;
  const uint32_t queue_limit_;
  const std::function<void()> wake_;

  mutable absl::Mutex mu_;
  std::deque<EventPtr> pending_ ABSL_GUARDED_BY(mu_);
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t delivered_through_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_EVENT_JOURNAL_H_
