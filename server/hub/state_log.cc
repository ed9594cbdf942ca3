#include "server/hub/state_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/base/log.h"
#include "shm/le_bytes.h"

namespace shmhub::server {
namespace {

constexpr uint32_t kFormatVersion = 1;
constexpr size_t kFrameBytes = 4 + 8;  // length, checksum
// Above this many appended records the log is rewritten compacted (plus
// the journal's capacity: the events a compacted log keeps anyway).
constexpr uint64_t kCompactAfterRecords = 4096;

absl::Status IoError(absl::string_view what, const std::string& path, int err) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

std::string Frame(const state::v1::StateRecord& record) {
  const std::string payload = record.SerializeAsString();
  std::string framed(kFrameBytes, '\0');
  shm::PutLe<uint32_t>(reinterpret_cast<uint8_t*>(framed.data()),
                       static_cast<uint32_t>(payload.size()));
  shm::PutLe<uint64_t>(reinterpret_cast<uint8_t*>(framed.data()) + 4, Fnv1a64(payload));
  framed += payload;
  return framed;
}

absl::Status WriteAll(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return IoError("cannot write", path, n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Reads at most StateLog::kMaxFileBytes of `path`; empty when it is missing.
absl::StatusOr<std::string> ReadBounded(const std::string& path,
                                        std::vector<std::string>* problems) {
  shm::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::string();
    problems->push_back(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
    return std::string();
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    problems->push_back(absl::StrCat(path, " is not a regular file"));
    return std::string();
  }
  std::string bytes;
  char buffer[65536];
  while (bytes.size() < StateLog::kMaxFileBytes) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("cannot read", path, errno);
    if (n == 0) return bytes;
    bytes.append(buffer, static_cast<size_t>(n));
  }
  problems->push_back(absl::StrCat(path, " is larger than ", StateLog::kMaxFileBytes,
                                   " bytes; only its start was read"));
  return bytes;
}

}  // namespace

uint64_t Fnv1a64(const std::string& bytes) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char byte : bytes) {
    hash ^= byte;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

StateLog::StateLog(std::string path, std::string instance_id, uint32_t journal_capacity)
    : path_(std::move(path)),
      instance_id_(std::move(instance_id)),
      journal_capacity_(journal_capacity) {}

StateLog::~StateLog() = default;

absl::StatusOr<std::unique_ptr<StateLog>> StateLog::Open(const std::string& path,
                                                         uint32_t journal_capacity,
                                                         uint32_t max_guests,
                                                         const std::string& fallback_instance_id,
                                                         RestoredState* restored) {
  *restored = RestoredState{};
  absl::StatusOr<std::string> bytes = ReadBounded(path, &restored->problems);
  if (!bytes.ok()) return bytes.status();
  std::deque<v1::PeerEvent> events;
  uint64_t header_sequence = 0;
  size_t offset = 0;
  size_t records = 0;
  while (offset < bytes->size()) {
    const auto* at = reinterpret_cast<const uint8_t*>(bytes->data()) + offset;
    const size_t left = bytes->size() - offset;
    std::string why;
    state::v1::StateRecord record;
    if (left < kFrameBytes) {
      why = "a torn record header";
    } else {
      const uint32_t length = shm::GetLe<uint32_t>(at);
      const uint64_t checksum = shm::GetLe<uint64_t>(at + 4);
      if (length > kMaxRecordBytes || length > left - kFrameBytes) {
        why = absl::StrCat("a record of ", length, " bytes where ", left - kFrameBytes,
                           " remain");
      } else {
        const std::string payload(bytes->data() + offset + kFrameBytes, length);
        if (Fnv1a64(payload) != checksum) {
          why = "a record whose checksum does not match";
        } else if (!record.ParseFromString(payload)) {
          why = "a record that does not parse";
        }
        offset += kFrameBytes + length;
      }
    }
    if (!why.empty()) {
      restored->problems.push_back(absl::StrCat(path, ": stopped at byte ", offset, " after ",
                                                records, " records: ", why,
                                                " (a torn last write, or damage)"));
      break;
    }
    ++records;
    switch (record.record_case()) {
      case state::v1::StateRecord::kHeader:
        if (records != 1 || record.header().format_version() != kFormatVersion) {
          restored->problems.push_back(absl::StrCat(
              path, ": a header of format ", record.header().format_version(),
              records == 1 ? "" : " past the first record", "; nothing after it was used"));
          offset = bytes->size();
          break;
        }
        if (record.header().hub_instance_id().empty()) {
          restored->problems.push_back(absl::StrCat(path, ": a header without an instance id"));
          offset = bytes->size();
          break;
        }
        restored->hub_instance_id = record.header().hub_instance_id();
        header_sequence = record.header().last_sequence();
        break;
      case state::v1::StateRecord::kEvent: {
        const uint64_t expected =
            events.empty() ? header_sequence + 1 : events.back().sequence() + 1;
        if (record.event().sequence() != expected) {
          restored->problems.push_back(
              absl::StrCat(path, ": event sequence ", record.event().sequence(), " where ",
                           expected, " was due; the journal tail ends before it"));
          offset = bytes->size();
          break;
        }
        events.push_back(record.event());
        while (events.size() > journal_capacity) {
          header_sequence = events.front().sequence();
          events.pop_front();
        }
        break;
      }
      case state::v1::StateRecord::kSlot:
        if (record.slot().peer_id() >= 1 && record.slot().peer_id() <= max_guests) {
          restored->slots[record.slot().peer_id()] = record.slot();
        }
        break;
      case state::v1::StateRecord::RECORD_NOT_SET:
        break;
    }
    if (records == 1 && record.record_case() != state::v1::StateRecord::kHeader) {
      restored->problems.push_back(
          absl::StrCat(path, ": no header first; nothing in it was used"));
      restored->slots.clear();
      events.clear();
      break;
    }
  }
  if (restored->hub_instance_id.empty()) {
    restored->slots.clear();
    events.clear();
    header_sequence = 0;
  }
  restored->events.assign(events.begin(), events.end());
  restored->last_sequence = events.empty() ? header_sequence : events.back().sequence();

  std::unique_ptr<StateLog> log(new StateLog(
      path,
      restored->hub_instance_id.empty() ? fallback_instance_id : restored->hub_instance_id,
      journal_capacity));
  absl::MutexLock lock(&log->mu_);
  log->last_sequence_before_tail_ = header_sequence;
  log->tail_ = std::move(events);
  for (const auto& [peer_id, slot] : restored->slots) {
    log->slots_[peer_id] = slot.SerializeAsString();
  }
  if (absl::Status compacted = log->CompactLocked(); !compacted.ok()) return compacted;
  return log;
}

absl::Status StateLog::AppendEvent(const v1::PeerEvent& event) {
  absl::MutexLock lock(&mu_);
  tail_.push_back(event);
  while (tail_.size() > journal_capacity_) {
    last_sequence_before_tail_ = tail_.front().sequence();
    tail_.pop_front();
  }
  state::v1::StateRecord record;
  *record.mutable_event() = event;
  return AppendLocked(record);
}

absl::Status StateLog::AppendSlot(const state::v1::Slot& slot) {
  absl::MutexLock lock(&mu_);
  std::string serialized = slot.SerializeAsString();
  std::string& last = slots_[slot.peer_id()];
  if (last == serialized) return absl::OkStatus();
  last = std::move(serialized);
  state::v1::StateRecord record;
  *record.mutable_slot() = slot;
  return AppendLocked(record);
}

absl::Status StateLog::AppendLocked(const state::v1::StateRecord& record) {
  absl::Status status = ++records_since_compaction_ > kCompactAfterRecords + journal_capacity_
                            ? CompactLocked()
                            : WriteAll(fd_.get(), Frame(record), path_);
  NoteResult(status);
  return status;
}

absl::Status StateLog::CompactLocked() {
  const std::string temp = absl::StrCat(path_, ".tmp");
  shm::UniqueFd fd(
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return IoError("cannot create", temp, errno);
  std::string bytes;
  state::v1::StateRecord header;
  header.mutable_header()->set_format_version(kFormatVersion);
  header.mutable_header()->set_hub_instance_id(instance_id_);
  header.mutable_header()->set_last_sequence(last_sequence_before_tail_);
  bytes += Frame(header);
  for (const auto& [peer_id, serialized] : slots_) {
    state::v1::StateRecord record;
    if (!record.mutable_slot()->ParseFromString(serialized)) continue;
    bytes += Frame(record);
  }
  for (const v1::PeerEvent& event : tail_) {
    state::v1::StateRecord record;
    *record.mutable_event() = event;
    bytes += Frame(record);
  }
  if (absl::Status written = WriteAll(fd.get(), bytes, temp); !written.ok()) return written;
  if (::fsync(fd.get()) != 0) return IoError("cannot fsync", temp, errno);
  if (::rename(temp.c_str(), path_.c_str()) != 0) return IoError("cannot rename", temp, errno);
  // Appends go to the new file from here.
  shm::UniqueFd log(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW));
  if (!log.valid()) return IoError("cannot open", path_, errno);
  fd_ = std::move(log);
  records_since_compaction_ = 0;
  return absl::OkStatus();
}

void StateLog::NoteResult(const absl::Status& status) {
  if (!status.ok() && !failing_) {
    Log(LogLevel::kError,
        absl::StrCat("state log: ", status.message(),
                     "; a successor will restore less than this daemon knows (the segment "
                     "itself is unaffected)"));
  } else if (status.ok() && failing_) {
    Log(LogLevel::kInfo, absl::StrCat("state log: writing ", path_, " again"));
  }
  failing_ = !status.ok();
}

}  // namespace shmhub::server
