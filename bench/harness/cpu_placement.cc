#include "bench/harness/cpu_placement.h"

#include <sched.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace shmhub::bench {
namespace {

struct CpuTimes {
  uint64_t idle = 0;
  uint64_t total = 0;
};

// The aggregate "cpu" line of /proc/stat: user nice system idle iowait irq
// softirq steal ... in clock ticks.
absl::StatusOr<CpuTimes> ReadCpuTimes() {
  std::ifstream in("/proc/stat");
  std::string line;
  if (!std::getline(in, line)) return absl::UnavailableError("cannot read /proc/stat");
  const std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
  if (fields.size() < 6 || fields[0] != "cpu") {
    return absl::UnavailableError(absl::StrCat("unexpected /proc/stat line: ", line));
  }
  CpuTimes times;
  // Columns 1..8 (user .. steal); guest time is already inside user.
  for (size_t i = 1; i < fields.size() && i <= 8; ++i) {
    uint64_t value = 0;
    if (!absl::SimpleAtoi(fields[i], &value)) {
      return absl::UnavailableError(absl::StrCat("bad /proc/stat field: ", fields[i]));
    }
    times.total += value;
    if (i == 4 || i == 5) times.idle += value;  // idle, iowait
  }
  return times;
}

}  // namespace

absl::Status PinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof(set), &set) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("sched_setaffinity(cpu ", cpu,
                                                   "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> MeasureIdleFraction(absl::Duration window) {
  absl::StatusOr<CpuTimes> before = ReadCpuTimes();
  if (!before.ok()) return before.status();
  absl::SleepFor(window);
  absl::StatusOr<CpuTimes> after = ReadCpuTimes();
  if (!after.ok()) return after.status();
  const uint64_t total = after->total - before->total;
  if (total == 0) return 1.0;
  return static_cast<double>(after->idle - before->idle) / static_cast<double>(total);
}

}  // namespace shmhub::bench
