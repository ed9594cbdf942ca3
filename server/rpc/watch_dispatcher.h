// WatchDispatcher: the set of live WatchEvents streams (bounded by
// --max_watchers) and the one thread that runs their deferred work, so no
// stream needs a thread of its own.
//
// Streams cannot pull from their subscription inside the journal's wake
// callback (the journal's lock is held there), so the callback only marks
// the stream ready here and this thread calls the stream's `pump` soon
// after. The thread also calls EventJournal::WakeAll() every `tick`, which
// marks every stream ready, so idle streams get to send PROGRESS.
//
// Lifetime: Unregister(id) returns only once `pump` for `id` is not running
// and will never run again (unless it is called from inside that very pump,
// on this thread, in which case it returns at once). The journal must
// outlive the dispatcher.
//
// Thread safety: all methods are thread-safe. MarkReady() only takes this
// object's own mutex, so it is safe under the journal's lock.
// Lock order: a stream's lock and the journal's lock before mu_; mu_ is
// never held while calling a pump or the journal.
#ifndef SHMHUB_SERVER_RPC_WATCH_DISPATCHER_H_
#define SHMHUB_SERVER_RPC_WATCH_DISPATCHER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/hub/event_journal.h"

namespace shmhub::server {

class WatchDispatcher {
 public:
  // Starts the thread.
  WatchDispatcher(EventJournal* journal, uint32_t max_streams, absl::Duration tick);
  // Stops the thread. Every stream must have been unregistered.
  ~WatchDispatcher();

  WatchDispatcher(const WatchDispatcher&) = delete;
  WatchDispatcher& operator=(const WatchDispatcher&) = delete;

  // Adds a stream and returns its id (never 0). RESOURCE_EXHAUSTED when
  // max_streams are registered; UNAVAILABLE after Close().
  absl::StatusOr<uint64_t> Register(std::function<void()> pump);
  void Unregister(uint64_t id);
  // Asks for `id`'s pump to run soon. Unknown ids are ignored (a wake may
  // race with Unregister).
  void MarkReady(uint64_t id);

  // Refuses further registrations (shutdown).
  void Close();
  // Waits until no stream is registered or `deadline` passes; true when none is.
  bool WaitUntilEmpty(absl::Time deadline);
  size_t size() const;

 private:
  struct Stream {
    std::function<void()> pump;
    bool queued = false;  // in ready_ already
  };

  void Run();

  EventJournal* const journal_;
  const uint32_t max_streams_;
  const absl::Duration tick_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Stream> streams_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> ready_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t running_ ABSL_GUARDED_BY(mu_) = 0;  // id whose pump runs now, 0 for none
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after everything above is built
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_RPC_WATCH_DISPATCHER_H_
