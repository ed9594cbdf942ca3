#include "bench/harness/bench_segment.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "shm/format.h"
#include "shm/peer_recovery.h"
#include "shm/peer_table.h"

namespace shmhub::bench {

shm::SegmentConfig DefaultDaemonGeometry() {
  shm::SegmentConfig config;
  config.max_guests = 64;
  config.ring_capacity = 65536;
  config.classes = {{1024, 256}, {16384, 64}, {262144, 8}};
  config.max_payload_size = 1u << 20;
  config.inline_threshold = 0;  // the format's default, 256
  config.heartbeat_interval_ns = 0;
  config.mode = 0600;
  return config;
}

absl::StatusOr<std::unique_ptr<BenchSegment>> BenchSegment::Create(
    const shm::SegmentConfig& config) {
  struct stat st;
  std::string dir_template =
      ::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm/shmhub-bench-XXXXXX"
                                                          : "/tmp/shmhub-bench-XXXXXX";
  if (::mkdtemp(dir_template.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment =
      shm::Segment::Create(dir_template + "/segment", config);
  if (!segment.ok()) {
    ::rmdir(dir_template.c_str());
    return segment.status();
  }
  return std::unique_ptr<BenchSegment>(new BenchSegment(dir_template, *std::move(segment)));
}

BenchSegment::~BenchSegment() {
  segment_.reset();  // removes the segment file (C-G5)
  ::rmdir(dir_.c_str());
}

absl::StatusOr<uint32_t> BenchSegment::Reserve(uint32_t peer_id) const {
  absl::StatusOr<shm::PeerEntryView> entry = segment_->peers().Entry(peer_id);
  if (!entry.ok()) return entry.status();
  return entry->TryReserve();
}

absl::Status BenchSegment::Recover(uint32_t peer_id, uint32_t epoch) const {
  absl::StatusOr<shm::PeerEntryView> entry = segment_->peers().Entry(peer_id);
  if (!entry.ok()) return entry.status();
  if (entry->CheckPair(shm::PeerState::kReserved, epoch).ok()) {
    return entry->ReleaseFenced(epoch);
  }
  absl::StatusOr<shm::RecoveryReport> report = shm::RecoverPeer(*segment_, {peer_id, epoch});
  if (!report.ok()) return report.status();
  if (report->ProblemCount() != 0) {
    return absl::DataLossError(absl::StrCat("recovery of peer ", peer_id, " found ",
                                            report->ProblemCount(), " problems: ",
                                            report->problems.front()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> BenchSegment::FreeCounts() const {
  const shm::VarSlotPool pool = segment_->pool();
  std::vector<uint32_t> counts;
  for (uint32_t k = 0; k < pool.num_classes(); ++k) {
    absl::StatusOr<uint32_t> count = pool.FreeCount(k);
    if (!count.ok()) return count.status();
    counts.push_back(*count);
  }
  return counts;
}

absl::StatusOr<std::unique_ptr<shm::Segment>> AttachAndClaim(const std::string& path,
                                                             uint32_t peer_id, uint32_t epoch) {
  absl::StatusOr<std::unique_ptr<shm::Segment>> segment = shm::Segment::Attach(path);
  if (!segment.ok()) return segment.status();
  absl::StatusOr<shm::PeerEntryView> entry = (*segment)->peers().Entry(peer_id);
  if (!entry.ok()) return entry.status();
  if (absl::Status s = entry->ClaimFenced(epoch); !s.ok()) return s;
  return segment;
}

absl::Status SayGoodbye(const shm::Segment& segment, uint32_t peer_id, uint32_t epoch) {
  absl::StatusOr<shm::PeerEntryView> entry = segment.peers().Entry(peer_id);
  if (!entry.ok()) return entry.status();
  return entry->GoodbyeFenced(epoch);
}

}  // namespace shmhub::bench
