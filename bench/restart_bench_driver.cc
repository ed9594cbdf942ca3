// restart_bench_driver: what a shmhubd restart costs, measured on real
// daemons, in one run, next to its baselines. Writes one JSON document.
//
//   adoption   time from spawning shmhubd to its start line (it serves from
//              then on) when it adopts a segment with --max_guests attached,
//              heartbeating guests and their state log, against a daemon
//              starting on nothing in the same run
//   gaps       the longest gap between consecutive frames the host
//              application receives from a guest sending one every
//              --send_interval, over a --window that contains a daemon
//              SIGKILL + restart, or a handover + restart, against the same
//              window with no restart
//
//   restart_bench_driver --repetitions=5 --output=bench/results/restart_bench.json
//
// Every child it starts is killed and reaped; every wait is bounded.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/harness/json_writer.h"
#include "bench/harness/machine_info.h"
#include "client/guest/guest.h"
#include "client/guest/guest_link.h"
#include "client/host/host_app.h"
#include "shm/peer_table.h"
#include "shm/segment.h"

ABSL_FLAG(std::string, shmhubd, SHMHUBD_PATH, "The shmhubd binary to measure.");
ABSL_FLAG(int, repetitions, 5, "Repetitions of each measurement.");
ABSL_FLAG(uint32_t, guests, 255, "Attached guests in the adopted segment (--max_guests).");
ABSL_FLAG(absl::Duration, send_interval, absl::Microseconds(100),
          "How often the guest sends a frame in the gap measurement.");
ABSL_FLAG(absl::Duration, window, absl::Seconds(2), "Length of one gap measurement window.");
ABSL_FLAG(std::string, output, "", "Where the JSON goes; empty: stdout.");

namespace shmhub::bench {
namespace {

constexpr absl::Duration kStartLimit = absl::Seconds(20);

// A shmhubd child: spawned, its stdout read for the start line, killed and
// reaped by the destructor if still running.
class Daemon {
 public:
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const std::vector<std::string>& args) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe2");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    posix_spawn_file_actions_adddup2(&actions, devnull, STDERR_FILENO);
    std::vector<std::string> argv = {absl::GetFlag(FLAGS_shmhubd)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> raw;
    for (std::string& arg : argv) raw.push_back(arg.data());
    raw.push_back(nullptr);
    auto daemon = std::unique_ptr<Daemon>(new Daemon());
    daemon->started_ = absl::Now();
    const int err = ::posix_spawn(&daemon->pid_, raw[0], &actions, nullptr, raw.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    ::close(devnull);
    daemon->stdout_ = out[0];
    if (err != 0) {
      daemon->pid_ = -1;
      return absl::InternalError(absl::StrCat("posix_spawn: ", std::strerror(err)));
    }
    return daemon;
  }
  ~Daemon() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
    if (stdout_ >= 0) ::close(stdout_);
  }

  // Time from the spawn to the start line; the daemon serves from then on.
  absl::StatusOr<absl::Duration> WaitServing() {
    const absl::Time deadline = started_ + kStartLimit;
    std::string seen;
    while (seen.find("shmhubd listening on ") == std::string::npos) {
      struct pollfd p = {stdout_, POLLIN, 0};
      const int ms = static_cast<int>(std::max<int64_t>(
          0, absl::ToInt64Milliseconds(deadline - absl::Now())));
      if (::poll(&p, 1, ms) <= 0) return absl::DeadlineExceededError("no start line");
      char buffer[512];
      const ssize_t n = ::read(stdout_, buffer, sizeof(buffer));
      if (n <= 0) return absl::UnavailableError("shmhubd exited before serving");
      seen.append(buffer, static_cast<size_t>(n));
    }
    return absl::Now() - started_;
  }
  void Signal(int sig) const { ::kill(pid_, sig); }
  int Wait() {
    int status = 0;
    if (!reaped_) {
      ::waitpid(pid_, &status, 0);
      reaped_ = true;
    }
    return status;
  }

 private:
  Daemon() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int stdout_ = -1;
  absl::Time started_;
};

std::vector<std::string> DaemonArgs(const std::string& dir, uint32_t max_guests) {
  return {"--listen=127.0.0.1:0",
          "--metrics_listen=",
          "--segment=" + dir + "/segment",
          "--socket=" + dir + "/hub.sock",
          absl::StrCat("--max_guests=", max_guests),
          "--heartbeat_interval=20ms",
          "--crash_timeout=2s",
          "--stop_mode=handover"};
}

std::string MakeTempDir() {
  char name[] = "/tmp/shmhub-restart-bench-XXXXXX";
  return ::mkdtemp(name) == nullptr ? std::string() : std::string(name);
}

void RemoveTree(const std::string& dir) {
  for (const char* file : {"segment", "segment.state", "segment.lock", "hub.sock",
                           "hub.sock.lock", "segment.state.tmp"}) {
    ::unlink((dir + "/" + file).c_str());
  }
  ::rmdir(dir.c_str());
}

struct Summary {
  double median_ms = 0;
  double max_ms = 0;
};

Summary Summarize(std::vector<double> values) {
  Summary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.median_ms = values[values.size() / 2];
  s.max_ms = values.back();
  return s;
}

// ---- adoption --------------------------------------------------------------

// One repetition: a fresh start, then an adopting one, in milliseconds.
absl::StatusOr<std::pair<double, double>> MeasureAdoption(uint32_t guests) {
  const std::string dir = MakeTempDir();
  if (dir.empty()) return absl::InternalError("mkdtemp");
  absl::StatusOr<std::unique_ptr<Daemon>> fresh = Daemon::Start(DaemonArgs(dir, guests));
  if (!fresh.ok()) return fresh.status();
  absl::StatusOr<absl::Duration> fresh_time = (*fresh)->WaitServing();
  if (!fresh_time.ok()) return fresh_time.status();
  // The guests: one mapping attaches all of them, and a thread heartbeats
  // every entry, as live guests would.
  absl::StatusOr<std::unique_ptr<shm::Segment>> mapping = shm::Segment::Attach(dir + "/segment");
  if (!mapping.ok()) return mapping.status();
  for (uint32_t i = 0; i < guests; ++i) {
    if (absl::StatusOr<shm::Occupancy> taken = (*mapping)->peers().AttachFirstFree();
        !taken.ok()) {
      return taken.status();
    }
  }
  std::atomic<bool> beating{true};
  std::thread heartbeat([&] {
    while (beating.load(std::memory_order_relaxed)) {
      struct timespec ts {};
      ::clock_gettime(CLOCK_MONOTONIC, &ts);
      const uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u +
                           static_cast<uint64_t>(ts.tv_nsec);
      for (uint32_t id = 1; id <= guests; ++id) (*mapping)->peers().Entry(id)->UpdateHeartbeat(now);
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  // Let the daemon publish every guest (and log them) before it hands over.
  absl::SleepFor(absl::Milliseconds(500));
  (*fresh)->Signal(SIGTERM);
  (*fresh)->Wait();
  absl::StatusOr<std::unique_ptr<Daemon>> adopting = Daemon::Start(DaemonArgs(dir, guests));
  absl::StatusOr<absl::Duration> adopt_time =
      adopting.ok() ? (*adopting)->WaitServing() : adopting.status();
  beating.store(false, std::memory_order_relaxed);
  heartbeat.join();
  adopting->reset();
  mapping->reset();
  RemoveTree(dir);
  if (!adopt_time.ok()) return adopt_time.status();
  return std::pair{absl::ToDoubleMilliseconds(*fresh_time),
                   absl::ToDoubleMilliseconds(*adopt_time)};
}

// ---- frame gaps --------------------------------------------------------------

// The host application's side: the longest gap between two frames it
// received since the last Take().
class GapRecorder {
 public:
  void Arrived(absl::Time at) {
    absl::MutexLock lock(&mu_);
    if (last_.has_value()) longest_ = std::max(longest_, at - *last_);
    last_ = at;
    ++frames_;
  }
  std::pair<absl::Duration, uint64_t> Take() {
    absl::MutexLock lock(&mu_);
    const auto result = std::pair{longest_, frames_};
    longest_ = absl::ZeroDuration();
    frames_ = 0;
    last_.reset();
    return result;
  }

 private:
  absl::Mutex mu_;
  std::optional<absl::Time> last_ ABSL_GUARDED_BY(mu_);
  absl::Duration longest_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  uint64_t frames_ ABSL_GUARDED_BY(mu_) = 0;
};

enum class Disruption { kNone, kKill, kHandover };

const char* Name(Disruption d) {
  switch (d) {
    case Disruption::kNone:
      return "none";
    case Disruption::kKill:
      return "sigkill_restart";
    case Disruption::kHandover:
      return "handover_restart";
  }
  return "";
}

struct GapResult {
  Disruption disruption;
  double longest_gap_ms = 0;
  uint64_t frames = 0;
  double restart_ms = 0;  // spawn to serving of the new daemon
};

absl::StatusOr<std::vector<GapResult>> MeasureGaps(int repetitions) {
  const std::string dir = MakeTempDir();
  if (dir.empty()) return absl::InternalError("mkdtemp");
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(DaemonArgs(dir, 4));
  if (!daemon.ok()) return daemon.status();
  if (absl::StatusOr<absl::Duration> up = (*daemon)->WaitServing(); !up.ok()) return up.status();
  absl::StatusOr<std::unique_ptr<client::HostApp>> host =
      client::HostApp::Register(dir + "/hub.sock");
  if (!host.ok()) return host.status();
  client::GuestOptions options;
  options.socket_path = dir + "/hub.sock";
  absl::StatusOr<std::unique_ptr<client::Guest>> guest = client::Guest::Attach(options);
  if (!guest.ok()) return guest.status();
  absl::StatusOr<std::unique_ptr<client::RingLink>> guest_link =
      client::GuestLink::Create(**guest);
  if (!guest_link.ok()) return guest_link.status();
  std::optional<client::HostEvent> attached =
      (*host)->NextEvent(absl::Now() + absl::Seconds(10));
  if (!attached.has_value() || attached->kind != client::HostEventKind::kPeerAttached) {
    return absl::UnavailableError("the host application never got the guest");
  }
  std::shared_ptr<client::RingLink> host_link = attached->link;

  GapRecorder recorder;
  std::atomic<bool> running{true};
  std::atomic<uint64_t> failed_calls{0};
  std::thread receiver([&] {
    while (running.load(std::memory_order_relaxed)) {
      absl::StatusOr<client::ReceivedFrame> frame =
          host_link->Receive(absl::Now() + absl::Milliseconds(100));
      if (frame.ok()) {
        recorder.Arrived(absl::Now());
        frame->Release();
      } else if (frame.status().code() != absl::StatusCode::kDeadlineExceeded) {
        failed_calls.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  std::thread sender([&] {
    const std::vector<uint8_t> payload(64, 0x5A);
    const absl::Duration interval = absl::GetFlag(FLAGS_send_interval);
    while (running.load(std::memory_order_relaxed)) {
      if (!(*guest_link)->Send(payload, absl::Now() + absl::Seconds(1)).ok()) {
        failed_calls.fetch_add(1, std::memory_order_relaxed);
      }
      absl::SleepFor(interval);
    }
  });

  std::vector<GapResult> results;
  const absl::Duration window = absl::GetFlag(FLAGS_window);
  for (int rep = 0; rep < repetitions; ++rep) {
    for (Disruption d : {Disruption::kNone, Disruption::kKill, Disruption::kHandover}) {
      recorder.Take();
      GapResult result{.disruption = d};
      const absl::Time start = absl::Now();
      absl::SleepFor(window / 4);
      if (d != Disruption::kNone) {
        (*daemon)->Signal(d == Disruption::kKill ? SIGKILL : SIGTERM);
        (*daemon)->Wait();
        daemon = Daemon::Start(DaemonArgs(dir, 4));
        if (!daemon.ok()) return daemon.status();
        absl::StatusOr<absl::Duration> up = (*daemon)->WaitServing();
        if (!up.ok()) return up.status();
        result.restart_ms = absl::ToDoubleMilliseconds(*up);
      }
      absl::SleepFor(window - (absl::Now() - start));
      const auto [longest, frames] = recorder.Take();
      result.longest_gap_ms = absl::ToDoubleMilliseconds(longest);
      result.frames = frames;
      results.push_back(result);
    }
  }
  running.store(false, std::memory_order_relaxed);
  sender.join();
  receiver.join();
  if (failed_calls.load() != 0) {
    return absl::DataLossError(absl::StrCat(failed_calls.load(), " link calls failed"));
  }
  host_link.reset();
  guest_link->reset();
  guest->reset();
  host->reset();
  daemon->reset();
  RemoveTree(dir);
  return results;
}

int Run() {
  const int repetitions = std::max(1, absl::GetFlag(FLAGS_repetitions));
  const uint32_t guests = absl::GetFlag(FLAGS_guests);
  JsonWriter json;
  json.BeginObject();
  json.Field("benchmark", "restart_bench_driver");
  json.Key("machine");
  WriteMachineInfo(ReadMachineInfo(), json);
  json.Field("load_average", LoadAverage());
  json.Field("placement", "unpinned (the scheduler's choice)");

  std::vector<double> fresh;
  std::vector<double> adopted;
  for (int rep = 0; rep < repetitions; ++rep) {
    absl::StatusOr<std::pair<double, double>> times = MeasureAdoption(guests);
    if (!times.ok()) {
      std::fprintf(stderr, "restart_bench_driver: adoption: %s\n",
                   std::string(times.status().message()).c_str());
      return 1;
    }
    fresh.push_back(times->first);
    adopted.push_back(times->second);
  }
  const Summary fresh_summary = Summarize(fresh);
  const Summary adopted_summary = Summarize(adopted);
  json.Key("adoption");
  json.BeginObject();
  json.FieldUint("attached_guests", guests);
  json.FieldDouble("fresh_start_median_ms", fresh_summary.median_ms);
  json.FieldDouble("fresh_start_max_ms", fresh_summary.max_ms);
  json.FieldDouble("adopting_start_median_ms", adopted_summary.median_ms);
  json.FieldDouble("adopting_start_max_ms", adopted_summary.max_ms);
  json.FieldDouble("adopting_over_fresh", adopted_summary.median_ms / fresh_summary.median_ms);
  json.FieldDouble("target_ms", 200);
  json.FieldBool("target_met", adopted_summary.max_ms < 200);
  json.EndObject();

  absl::StatusOr<std::vector<GapResult>> gaps = MeasureGaps(repetitions);
  if (!gaps.ok()) {
    std::fprintf(stderr, "restart_bench_driver: gaps: %s\n",
                 std::string(gaps.status().message()).c_str());
    return 1;
  }
  json.Key("frame_gaps");
  json.BeginObject();
  json.FieldDouble("send_interval_us",
                   absl::ToDoubleMicroseconds(absl::GetFlag(FLAGS_send_interval)));
  json.FieldDouble("window_ms", absl::ToDoubleMilliseconds(absl::GetFlag(FLAGS_window)));
  json.Key("windows");
  json.BeginArray();
  double baseline_worst = 0;
  double restart_worst = 0;
  for (const GapResult& r : *gaps) {
    json.BeginObject();
    json.Field("disruption", Name(r.disruption));
    json.FieldDouble("longest_gap_ms", r.longest_gap_ms);
    json.FieldUint("frames", r.frames);
    json.FieldDouble("restart_to_serving_ms", r.restart_ms);
    json.EndObject();
    (r.disruption == Disruption::kNone ? baseline_worst : restart_worst) =
        std::max(r.disruption == Disruption::kNone ? baseline_worst : restart_worst,
                 r.longest_gap_ms);
  }
  json.EndArray();
  json.FieldDouble("longest_gap_without_restart_ms", baseline_worst);
  json.FieldDouble("longest_gap_with_restart_ms", restart_worst);
  json.FieldBool("target_met", restart_worst <= baseline_worst);
  json.EndObject();
  json.EndObject();

  const std::string output = absl::GetFlag(FLAGS_output);
  if (output.empty()) {
    std::fputs(json.str().c_str(), stdout);
    return 0;
  }
  FILE* file = std::fopen(output.c_str(), "w");
  if (file == nullptr) {
    std::fprintf(stderr, "restart_bench_driver: cannot write %s\n", output.c_str());
    return 1;
  }
  std::fputs(json.str().c_str(), file);
  std::fclose(file);
  return 0;
}

}  // namespace
}  // namespace shmhub::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("What a shmhubd restart costs: adoption time and frame gaps.");
  absl::ParseCommandLine(argc, argv);
  return shmhub::bench::Run();
}
