#include "bench/harness/machine_info.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#ifndef SHMHUB_BENCH_BUILD_TYPE
#define SHMHUB_BENCH_BUILD_TYPE "unknown"
#endif

namespace shmhub::bench {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string Trimmed(const std::string& s) {
  return std::string(absl::StripAsciiWhitespace(s));
}

}  // namespace

std::string LoadAverage() {
  const std::vector<std::string> fields =
      absl::StrSplit(ReadFile("/proc/loadavg"), ' ', absl::SkipEmpty());
  if (fields.size() < 3) return "";
  return absl::StrCat(fields[0], " ", fields[1], " ", fields[2]);
}

MachineInfo ReadMachineInfo() {
  MachineInfo info;
  for (absl::string_view line : absl::StrSplit(ReadFile("/proc/cpuinfo"), '\n')) {
    if (info.cpu_model.empty() && absl::ConsumePrefix(&line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != absl::string_view::npos) {
        info.cpu_model = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
    if (absl::StartsWith(line, "flags") && absl::StrContains(line, " hypervisor")) {
      info.hypervisor = true;
    }
  }
  info.online_cpus = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  for (int index = 0; index < 8; ++index) {
    const std::string dir = absl::StrCat("/sys/devices/system/cpu/cpu0/cache/index", index, "/");
    const std::string level = Trimmed(ReadFile(dir + "level"));
    if (level.empty()) break;
    info.caches.push_back(absl::StrCat("L", level, " ", Trimmed(ReadFile(dir + "type")), " ",
                                       Trimmed(ReadFile(dir + "size"))));
  }
  struct utsname uts;
  if (::uname(&uts) == 0) {
    info.kernel = absl::StrCat(uts.sysname, " ", uts.release);
    info.hostname = uts.nodename;
  }
  info.compiler = __VERSION__;
  info.build_type = SHMHUB_BENCH_BUILD_TYPE;
  return info;
}

void WriteMachineInfo(const MachineInfo& info, JsonWriter& json) {
  json.BeginObject();
  json.Field("cpu_model", info.cpu_model);
  json.FieldInt("online_cpus", info.online_cpus);
  json.FieldBool("hypervisor", info.hypervisor);
  json.Key("caches");
  json.BeginArray();
  for (const std::string& cache : info.caches) json.String(cache);
  json.EndArray();
  json.Field("kernel", info.kernel);
  json.Field("hostname", info.hostname);
  json.Field("compiler", info.compiler);
  json.Field("build_type", info.build_type);
  json.EndObject();
}

}  // namespace shmhub::bench
