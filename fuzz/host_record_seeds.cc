// Writes the seed corpus of host_record_fuzzer into the directory given as
// argv[1]: every valid record of the host-control table (each type from its
// one sender, each refusal, fd count and departure, the peer id bounds), all
// made by the codec's builders and encoder, plus records that break one rule
// each (unknown type, a field out of range, one byte short or long) and the
// SHH1 request, so the fuzzer starts next to every check of the decoder. Run
// by the build (fuzz/CMakeLists.txt); the seeds are build products, never
// committed.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "shm/host_control.h"

namespace shmhub::shm {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes Encoded(const HostRecord& record) {
  const std::array<uint8_t, kHostRecordSize> bytes = EncodeHostRecord(record);
  return Bytes(bytes.begin(), bytes.end());
}

// Through the real encoder even when the fields break the table: it writes
// any values, and the enum's fixed uint32_t base holds any type number.
Bytes Raw(uint32_t type, uint32_t peer_id, uint32_t epoch, uint32_t arg) {
  return Encoded(HostRecord{static_cast<HostRecordType>(type), peer_id, epoch, arg});
}

Bytes Resized(Bytes bytes, size_t size) {
  bytes.resize(size, 0);
  return bytes;
}

std::vector<std::pair<const char*, Bytes>> Seeds() {
  const std::array<uint8_t, kHostRequestSize> request = EncodeHostRequest();
  return {
      // Daemon -> host.
      {"registered", Encoded(RegisteredRecord())},
      {"refused-already-registered", Encoded(RefusedRecord(HostRefusal::kAlreadyRegistered))},
      {"refused-shutting-down", Encoded(RefusedRecord(HostRefusal::kShuttingDown))},
      {"peer-attached-fds", Encoded(PeerAttachedRecord({1, 7}, kPeerAttachedFdCount))},
      {"peer-attached-no-fds", Encoded(PeerAttachedRecord({255, 0xFFFFFFFF}, 0))},
      {"peer-recovering-left", Encoded(PeerRecoveringRecord({1, 3}, PeerDeparture::kLeft))},
      {"peer-recovering-crashed", Encoded(PeerRecoveringRecord({17, 1}, PeerDeparture::kCrashed))},
      {"peer-recovering-evicted", Encoded(PeerRecoveringRecord({128, 9}, PeerDeparture::kEvicted))},
      {"peer-recovering-vanished",
       Encoded(PeerRecoveringRecord({255, 0}, PeerDeparture::kVanished))},
      // Host -> daemon.
      {"recovery-ready", Encoded(RecoveryReadyRecord({17, 1}))},
      {"peer-handback-fds", Encoded(PeerHandbackRecord({17, 1}, 2))},
      // One broken rule each.
      {"type-0", Raw(0, 0, 0, 0)},
      {"type-6", Raw(6, 1, 1, 0)},
      {"type-max", Raw(0xFFFFFFFF, 1, 1, 0)},
      {"registered-arg-0", Raw(1, 0, 0, 0)},
      {"registered-names-peer", Raw(1, 1, 0, 1)},
      {"refused-reason-3", Raw(2, 0, 0, 3)},
      {"refused-epoch", Raw(2, 0, 1, 1)},
      {"peer-attached-peer-0", Raw(3, 0, 1, 2)},
      {"peer-attached-peer-256", Raw(3, 256, 1, 2)},
      {"peer-attached-fds-1", Raw(3, 1, 1, 1)},
      {"peer-recovering-departure-0", Raw(4, 1, 1, 0)},
      {"peer-recovering-departure-5", Raw(4, 1, 1, 5)},
      {"recovery-ready-arg-1", Raw(5, 1, 1, 1)},
      {"recovery-ready-peer-0", Raw(5, 0, 1, 0)},
      {"registered-short", Resized(Encoded(RegisteredRecord()), kHostRecordSize - 1)},
      {"registered-long", Resized(Encoded(RegisteredRecord()), kHostRecordSize + 1)},
      {"request", Bytes(request.begin(), request.end())},
  };
}

bool WriteFile(const std::string& path, const Bytes& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

int Run(const std::string& out) {
  int written = 0;
  for (const auto& [name, bytes] : Seeds()) {
    if (!WriteFile(out + "/" + name, bytes)) {
      std::perror("host_record_seeds: write");
      return 1;
    }
    ++written;
  }
  std::printf("host_record_seeds: %d seeds in %s\n", written, out.c_str());
  return 0;
}

}  // namespace
}  // namespace shmhub::shm

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  return shmhub::shm::Run(argv[1]);
}
