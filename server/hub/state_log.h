// StateLog: what shmhubd keeps beside its segment ("<segment>.state") so the
// next daemon on the same path continues where this one stopped, crashed or
// was killed: the hub instance id, the event journal's tail and next
// sequence, and every slot as last published (reservations with their
// lease deadlines, request ids, owners and labels; a local guest's pid and
// process start time; the epoch floor).
//
// The file is a log of records (hub_state.proto's StateRecord), appended as
// things change, and rewritten compacted once it has grown:
//
//   record := u32 length (LE) | u64 FNV-1a-64 of the payload (LE) | payload
//
// Appending one record per change keeps a change O(record) where rewriting
// the whole state would be O(journal) per event. Each record is one write(),
// made before the change is visible to anyone (an event is logged before
// watchers can receive it), so a daemon killed at any instant leaves a log
// that is exact up to its last whole record; a torn last record fails its
// length or checksum and is dropped. Compaction writes a temporary file,
// fsyncs it and renames it over the log, so the log is always either the
// old one or the new one.
//
// The file is input like any other: a successor reads at most kMaxFileBytes,
// stops at the first record that does not verify or parse, bounds every
// count, and reports what it could not restore. A missing or damaged log is
// never fatal: the segment alone still keeps attached guests.
//
// Thread safety: all methods are thread-safe (one internal mutex, taken
// last: callers may hold the hub's and the journal's locks).
#ifndef SHMHUB_SERVER_HUB_STATE_LOG_H_
#define SHMHUB_SERVER_HUB_STATE_LOG_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "shm/unique_fd.h"
#include "shmhub/state/v1/hub_state.pb.h"
#include "shmhub/v1/hub.pb.h"

namespace shmhub::server {

// What a log held when it was opened.
struct RestoredState {
  std::string hub_instance_id;  // empty: nothing restored
  uint64_t last_sequence = 0;   // of the newest event, or the header's
  std::vector<v1::PeerEvent> events;           // the tail, ascending sequence
  std::map<uint32_t, state::v1::Slot> slots;  // by peer id
  // What could not be restored, one sentence each, for the log.
  std::vector<std::string> problems;
};

class StateLog {
 public:
  static constexpr uint64_t kMaxFileBytes = 64u << 20;
  static constexpr uint32_t kMaxRecordBytes = 1u << 20;

  // Reads the log at `path` (a missing file is an empty state), keeps the
  // newest `journal_capacity` events and slots 1..max_guests, and rewrites
  // it compacted with a header naming `fallback_instance_id` when none was
  // restored. The file is 0600. Fails only when the file cannot be written.
  static absl::StatusOr<std::unique_ptr<StateLog>> Open(const std::string& path,
                                                        uint32_t journal_capacity,
                                                        uint32_t max_guests,
                                                        const std::string& fallback_instance_id,
                                                        RestoredState* restored);
  ~StateLog();

  StateLog(const StateLog&) = delete;
  StateLog& operator=(const StateLog&) = delete;

  // Appends `event` (stamped with its sequence). Returns the write's error;
  // the daemon carries on either way and says so once (LogFailure).
  absl::Status AppendEvent(const v1::PeerEvent& event);
  // Appends `slot` unless it equals the slot last appended for its peer.
  absl::Status AppendSlot(const state::v1::Slot& slot);

  const std::string& hub_instance_id() const { return instance_id_; }
  const std::string& path() const { return path_; }

 private:
  StateLog(std::string path, std::string instance_id, uint32_t journal_capacity);

  // Rewrites the file as header + current slots + event tail.
  absl::Status CompactLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AppendLocked(const state::v1::StateRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs the first failure of a run of failures, and the recovery.
  void NoteResult(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const std::string instance_id_;
  const uint32_t journal_capacity_;

  absl::Mutex mu_;
  shm::UniqueFd fd_ ABSL_GUARDED_BY(mu_);
  uint64_t last_sequence_before_tail_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::PeerEvent> tail_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, std::string> slots_ ABSL_GUARDED_BY(mu_);  // serialized Slot by peer id
  uint64_t records_since_compaction_ ABSL_GUARDED_BY(mu_) = 0;
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
};

// FNV-1a, 64 bits: the log's record checksum (it detects torn writes, not
// forgery; the file is the daemon's own, mode 0600).
uint64_t Fnv1a64(const std::string& bytes);

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_HUB_STATE_LOG_H_
