// EventJournal: the hub's ordered event history and its fan-out to watchers.
//
// Append() stamps each event with the next sequence number (1, 2, ... per
// hub instance, no gaps), the wall-clock time and the instance id, keeps the
// last `capacity` events for resuming watchers, and queues the event on every
// subscription. A subscription's queue is bounded: a watcher that falls more
// than `queue_limit` events behind is marked overflowed and must resync
// (Resync + fresh Snapshot); it is never silently skipped past an event.
//
// Thread safety: all methods are thread-safe. The `wake` callbacks are
// invoked with the journal's lock held; they must be quick and must not call
// back into the journal.
#ifndef SHMHUB_SERVER_EVENT_JOURNAL_H_
#define SHMHUB_SERVER_EVENT_JOURNAL_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

class EventJournal {
 public:
  class Subscription;

  EventJournal(std::string hub_instance_id, uint32_t capacity);
  ~EventJournal();

  // Stamps sequence, time and hub_instance_id on `event`, stores it and
  // queues it for every subscription. Returns the sequence number.
  uint64_t Append(v1::PeerEvent event);

  // The latest sequence assigned (0 before the first event).
  uint64_t last_sequence() const;
  // The oldest sequence still held (last_sequence() + 1 when none is).
  uint64_t oldest_sequence() const;
  const std::string& hub_instance_id() const { return hub_instance_id_; }

  // Subscribes to every event with sequence > `after`, starting with the
  // held history. Returns a Resync instead when that is impossible:
  // REASON_HISTORY_PRUNED when events after `after` were already dropped,
  // REASON_SEQUENCE_AHEAD when `after` > last_sequence(). `wake` is called
  // whenever the subscription gains events or overflows, and by WakeAll().
  struct SubscribeResult {
    std::unique_ptr<Subscription> subscription;  // null when resync is set
    std::optional<v1::Resync> resync;
  };
  SubscribeResult Subscribe(uint64_t after, uint32_t queue_limit, std::function<void()> wake);

  // Calls every subscription's wake (progress ticks, shutdown).
  void WakeAll();

 private:
  friend class Subscription;
  // ... implementation-defined members
  const std::string hub_instance_id_;
  const uint32_t capacity_;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_EVENT_JOURNAL_H_
