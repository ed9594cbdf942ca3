// Helpers for link tests with real processes: the doorbell and mapping-
// control pairs of one peer split between a forked child and its parent,
// a pipe on which a child reports its verdict (so the parent's wait is
// bounded), and a bounded wait for a peer to attach.
//
// Forking: the parent must not run threads of its own when it forks (only
// the forking thread survives in the child); these tests fork first and
// start threads afterwards, in each process.
#ifndef SHMHUB_TESTS_CLIENT_LINK_PROCESS_UTIL_H_
#define SHMHUB_TESTS_CLIENT_LINK_PROCESS_UTIL_H_

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "shm/doorbell.h"
#include "shm/mapping_control.h"
#include "shm/peer_table.h"
#include "shm/segment.h"
#include "shm/unique_fd.h"

namespace shmhub::client::link_test {

// Both ends of one peer's doorbell and mapping-control socket. After the
// fork each process keeps its own ends and closes the other side's, so a
// process's death hangs up the doorbell the survivor holds.
struct PeerChannels {
  std::optional<shm::Doorbell> host_doorbell;
  std::optional<shm::Doorbell> guest_doorbell;
  shm::UniqueFd host_mapping;
  shm::UniqueFd guest_mapping;

  static PeerChannels Make() {
    PeerChannels channels;
    absl::StatusOr<std::pair<shm::Doorbell, shm::Doorbell>> doorbells =
        shm::Doorbell::CreatePair();
    EXPECT_TRUE(doorbells.ok()) << doorbells.status();
    absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> mapping =
        shm::CreateMappingControlPair();
    EXPECT_TRUE(mapping.ok()) << mapping.status();
    if (doorbells.ok() && mapping.ok()) {
      channels.host_doorbell.emplace(std::move(doorbells->first));
      channels.guest_doorbell.emplace(std::move(doorbells->second));
      channels.host_mapping = std::move(mapping->first);
      channels.guest_mapping = std::move(mapping->second);
    }
    return channels;
  }
  void KeepHostEnds() {
    guest_doorbell.reset();
    guest_mapping.Reset();
  }
  void KeepGuestEnds() {
    host_doorbell.reset();
    host_mapping.Reset();
  }
};

// One-byte verdicts from a child, read by the parent with a deadline.
class ResultPipe {
 public:
  ResultPipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_.Reset(fds[0]);
    write_.Reset(fds[1]);
  }
  // Child side.
  void Report(uint8_t code) const {
    while (::write(write_.get(), &code, 1) < 0 && errno == EINTR) {
    }
  }
  // Parent side, right after the fork: without our copy of the write end,
  // a child that dies without reporting reads as end of file.
  void CloseWriteEnd() { write_.Reset(); }
  // Parent side: the next verdict; nullopt when none came in time or the
  // child closed the pipe without one.
  std::optional<uint8_t> Await(absl::Duration timeout) const {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (left <= 0) return std::nullopt;
      pollfd pfd{read_.get(), POLLIN, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(left));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return std::nullopt;
      uint8_t code = 0;
      if (::read(read_.get(), &code, 1) == 1) return code;
      return std::nullopt;
    }
  }

 private:
  shm::UniqueFd read_;
  shm::UniqueFd write_;
};

// Polls the entry until it holds (Attached, epoch) or `timeout` passes.
inline bool AwaitAttached(const shm::Segment& segment, uint32_t peer_id, uint32_t epoch,
                          absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<shm::PeerEntryView> entry = segment.peers().Entry(peer_id);
  if (!entry.ok()) return false;
  while (!entry->CheckPair(shm::PeerState::kAttached, epoch).ok()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

}  // namespace shmhub::client::link_test

#endif  // SHMHUB_TESTS_CLIENT_LINK_PROCESS_UTIL_H_
