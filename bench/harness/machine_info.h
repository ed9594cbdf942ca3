// MachineInfo: what a reader needs to judge a benchmark result — the CPU,
// its caches, the kernel, the compiler and how busy the machine was.
//
// Read from /proc and /sys at the moment of the call; a file that cannot be
// read leaves its field empty ("" or 0) rather than failing the benchmark.
#ifndef SHMHUB_BENCH_HARNESS_MACHINE_INFO_H_
#define SHMHUB_BENCH_HARNESS_MACHINE_INFO_H_

#include <string>
#include <vector>

#include "bench/harness/json_writer.h"

namespace shmhub::bench {

struct MachineInfo {
  std::string cpu_model;        // /proc/cpuinfo "model name"
  int online_cpus = 0;          // sysconf(_SC_NPROCESSORS_ONLN)
  bool hypervisor = false;      // the "hypervisor" CPU flag
  std::vector<std::string> caches;  // "L1 Data 48K", ... for cpu0
  std::string kernel;           // uname -sr
  std::string compiler;         // __VERSION__ of the compiler that built us
  std::string build_type;       // CMAKE_BUILD_TYPE, passed in by CMake
  std::string hostname;
};

MachineInfo ReadMachineInfo();

// /proc/loadavg's first three fields, e.g. "1.86 1.37 1.33"; "" if unreadable.
std::string LoadAverage();

void WriteMachineInfo(const MachineInfo& info, JsonWriter& json);

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_MACHINE_INFO_H_
