// link_bench_driver: the two-process data-plane benchmark.
//
// In one run, side by side on this machine, it measures
//  * frames/s and GB/s for each payload size over the shared-memory link
//    (RingLink pair on a real segment, guest in a forked child -> host),
//    over a Unix-domain SOCK_STREAM socketpair with length-prefixed frames
//    (child -> parent), and as a single-process memcpy of the same bytes;
//  * 64-byte ping-pong round trips over the link and over the socketpair
//    (blocking reads, and again with readers that busy-poll);
// then forms the target ratios and writes everything, with the
// machine's description and the command line, as one JSON document.
//
// Each repetition runs every transport for one size back to back, so slow
// drift in the machine's load hits all of them alike. Every loop is bounded
// by a frame or iteration count and every wait by --timeout; a failed
// measurement is recorded in the document (and makes the exit code 1) and
// the run goes on. The process starts no threads, so forking a child per
// measurement is safe.
#include <signal.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/harness/bench_report.h"
#include "bench/harness/bench_segment.h"
#include "bench/harness/cpu_placement.h"
#include "bench/harness/json_writer.h"
#include "bench/harness/link_transport.h"
#include "bench/harness/machine_info.h"
#include "bench/harness/memcpy_baseline.h"
#include "bench/harness/payload_stamp.h"
#include "bench/harness/socketpair_transport.h"
#include "bench/harness/stream_frames.h"
#include "bench/harness/workload.h"
#include "shm/frame.h"

ABSL_FLAG(std::string, output, "link_bench.json", "Where to write the JSON result ('-': stdout)");
ABSL_FLAG(std::string, sizes, "8,64,256,4096,65536,1048576", "Payload sizes in bytes (>= 8)");
ABSL_FLAG(int, repetitions, 3, "Repetitions of every measurement");
ABSL_FLAG(uint64_t, max_frames, 1'000'000, "Frames per throughput measurement, at most");
ABSL_FLAG(uint64_t, max_bytes, uint64_t{2} << 30,
          "Payload bytes per throughput measurement, at most (caps large sizes)");
ABSL_FLAG(uint64_t, min_frames, 100, "Frames per throughput measurement, at least");
ABSL_FLAG(uint64_t, rtt_iterations, 100'000, "Round trips per latency measurement, at most");
ABSL_FLAG(uint64_t, rtt_warmup, 1'000, "Round trips dropped before recording");
ABSL_FLAG(absl::Duration, rtt_time_budget, absl::Seconds(2),
          "Time per latency measurement, at most");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(60),
          "Bound on every wait of one measurement; past it the measurement fails");
ABSL_FLAG(std::string, pin_cpus, "",
          "'A,B': pin the parent (receiver, timer) to CPU A and each forked child to CPU B; "
          "empty: let the scheduler place them");
ABSL_FLAG(double, min_idle, 0,
          "Before each repetition, wait until this fraction (0..1) of the machine's CPU time "
          "is idle, measured over 1 s windows; 0: do not wait");
ABSL_FLAG(absl::Duration, idle_wait, absl::Minutes(5),
          "Longest wait for --min_idle per repetition; past it the repetition runs anyway");
ABSL_FLAG(int, link_batch, 32,
          "Also measure the link with SendBatch/ReceiveBatch of this many frames "
          "('link_batch' rows; informational); 0 or 1: do not");
ABSL_FLAG(bool, read_payload, false,
          "Throughput receivers read every payload byte, not only the 8-byte stamp");
ABSL_FLAG(bool, link_doorbell, true,
          "Give each link a doorbell (as shmhubd's local-socket guests have); false: links "
          "wait with bounded sleeps instead");
ABSL_FLAG(absl::Duration, link_spin, absl::Microseconds(50), "LinkOptions::spin");
ABSL_FLAG(absl::Duration, link_max_backoff, absl::Milliseconds(1), "LinkOptions::max_backoff");

namespace shmhub::bench {
namespace {

constexpr uint32_t kPeerId = 1;
constexpr uint32_t kPingPongBytes = 64;

absl::StatusOr<std::vector<uint32_t>> ParseSizes(const std::string& text) {
  std::vector<uint32_t> sizes;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    uint32_t size = 0;
    if (!absl::SimpleAtoi(item, &size) || size < kMinPayload) {
      return absl::InvalidArgumentError(absl::StrCat("--sizes: bad size '", item, "'"));
    }
    sizes.push_back(size);
  }
  if (sizes.empty()) return absl::InvalidArgumentError("--sizes: no sizes");
  return sizes;
}

uint64_t FramesFor(uint32_t size) {
  const uint64_t by_bytes = absl::GetFlag(FLAGS_max_bytes) / size;
  return std::max(absl::GetFlag(FLAGS_min_frames), std::min(absl::GetFlag(FLAGS_max_frames), by_bytes));
}

struct Placement {
  int parent_cpu = -1;
  int child_cpu = -1;
};

absl::StatusOr<Placement> ParsePlacement(const std::string& text) {
  Placement placement;
  if (text.empty()) return placement;
  const std::vector<std::string> cpus = absl::StrSplit(text, ',');
  if (cpus.size() != 2 || !absl::SimpleAtoi(cpus[0], &placement.parent_cpu) ||
      !absl::SimpleAtoi(cpus[1], &placement.child_cpu) || placement.parent_cpu < 0 ||
      placement.child_cpu < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--pin_cpus: expected 'A,B', got '", text, "'"));
  }
  return placement;
}

// The idle fraction just before a repetition, after waiting (bounded) for
// --min_idle.
double AwaitQuietMachine() {
  const double wanted = absl::GetFlag(FLAGS_min_idle);
  const absl::Time give_up = absl::Now() + absl::GetFlag(FLAGS_idle_wait);
  for (;;) {
    absl::StatusOr<double> idle = MeasureIdleFraction(absl::Seconds(1));
    if (!idle.ok()) return -1;
    if (*idle >= wanted || absl::Now() >= give_up) return *idle;
    std::cerr << "waiting for an idle machine: " << *idle << " idle, want " << wanted << "\n";
  }
}

std::chrono::milliseconds Millis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// The tier the link's sender picks for `size` on this segment (§7.6).
std::string TierName(const shm::Segment& segment, uint32_t size) {
  shm::TierPolicy policy;
  policy.inline_threshold = segment.EffectiveInlineThreshold();
  policy.max_payload_size = segment.max_payload_size();
  policy.ring_capacity = segment.layout().ring_capacity;
  const shm::VarSlotPool pool = segment.pool();
  policy.max_slot_size =
      pool.num_classes() == 0 ? 0 : pool.class_config(pool.num_classes() - 1).slot_size;
  absl::StatusOr<shm::FrameKind> kind = shm::ChooseTier(size, policy);
  if (!kind.ok()) return "refused";
  switch (*kind) {
    case shm::FrameKind::kInline: return "inline";
    case shm::FrameKind::kSlotRef: return "slot_ref";
    case shm::FrameKind::kMmapRef: return "mmap_ref";
  }
  return "unknown";
}

template <typename Sample>
void Record(absl::StatusOr<Sample> result, std::vector<std::optional<Sample>>& samples,
            std::vector<std::string>& errors, int repetition) {
  if (result.ok()) {
    samples.push_back(*std::move(result));
    return;
  }
  samples.push_back(std::nullopt);
  errors.push_back(absl::StrCat("repetition ", repetition, ": ", result.status().ToString()));
  std::cerr << "  FAILED: " << result.status() << "\n";
}

std::string ShellQuoted(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789-_=./,:+") == std::string::npos) {
    return arg;
  }
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

void WriteConfig(JsonWriter& json, const BenchSegment& segment, const LinkSetup& link,
                 int socket_sndbuf) {
  const client::LinkOptions& options = link.options;
  const shm::Segment& host = segment.host();
  json.BeginObject();
  json.FieldInt("repetitions", absl::GetFlag(FLAGS_repetitions));
  json.FieldUint("max_frames", absl::GetFlag(FLAGS_max_frames));
  json.FieldUint("max_bytes", absl::GetFlag(FLAGS_max_bytes));
  json.FieldUint("min_frames", absl::GetFlag(FLAGS_min_frames));
  json.Field("pin_cpus", absl::GetFlag(FLAGS_pin_cpus));
  json.FieldBool("read_payload", absl::GetFlag(FLAGS_read_payload));
  json.FieldDouble("min_idle", absl::GetFlag(FLAGS_min_idle));
  json.FieldUint("rtt_iterations", absl::GetFlag(FLAGS_rtt_iterations));
  json.FieldUint("rtt_warmup", absl::GetFlag(FLAGS_rtt_warmup));
  json.Field("rtt_time_budget", absl::FormatDuration(absl::GetFlag(FLAGS_rtt_time_budget)));
  json.Field("timeout", absl::FormatDuration(absl::GetFlag(FLAGS_timeout)));
  json.Key("segment");
  json.BeginObject();
  json.FieldUint("ring_capacity", host.layout().ring_capacity);
  json.FieldUint("inline_threshold", host.EffectiveInlineThreshold());
  json.FieldUint("max_payload_size", host.max_payload_size());
  json.Key("slot_classes");
  json.BeginArray();
  const shm::VarSlotPool pool = host.pool();
  for (uint32_t k = 0; k < pool.num_classes(); ++k) {
    json.String(absl::StrCat(pool.class_config(k).slot_size, ":", pool.class_config(k).slot_count));
  }
  json.EndArray();
  json.Field("directory", "private directory under /dev/shm");
  json.EndObject();
  json.Key("link");
  json.BeginObject();
  json.Field("spin", absl::FormatDuration(options.spin));
  json.Field("max_backoff", absl::FormatDuration(options.max_backoff));
  json.Field("direction", "guest (forked child) -> host (parent, timed)");
  json.FieldBool("doorbell", link.doorbell);
  json.FieldInt("batch", absl::GetFlag(FLAGS_link_batch));
  json.FieldBool("mapping_control", true);
  json.EndObject();
  json.Key("socketpair");
  json.BeginObject();
  json.Field("kind", "AF_UNIX SOCK_STREAM, blocking, u32 length prefix, one writev per frame, "
                     "reader buffers 256 KiB reads");
  json.FieldInt("so_sndbuf", socket_sndbuf);
  json.Field("direction", "forked child -> parent (timed)");
  json.Field("busy_poll", "socketpair_busy_poll round trips: both readers spin on "
                          "recv(MSG_DONTWAIT) until data arrives");
  json.EndObject();
  json.Key("memcpy");
  json.BeginObject();
  json.Field("kind", "single process, one payload-sized source and destination buffer, reused");
  json.EndObject();
  json.EndObject();
}

int Run(const std::vector<std::string>& command) {
  absl::StatusOr<std::vector<uint32_t>> sizes = ParseSizes(absl::GetFlag(FLAGS_sizes));
  if (!sizes.ok()) {
    std::cerr << sizes.status() << "\n";
    return 2;
  }
  absl::StatusOr<Placement> placement = ParsePlacement(absl::GetFlag(FLAGS_pin_cpus));
  if (!placement.ok()) {
    std::cerr << placement.status() << "\n";
    return 2;
  }
  if (placement->parent_cpu >= 0) {
    if (absl::Status s = PinToCpu(placement->parent_cpu); !s.ok()) {
      std::cerr << s << "\n";
      return 2;
    }
  }
  const int repetitions = std::max(1, absl::GetFlag(FLAGS_repetitions));
  const std::chrono::milliseconds timeout = Millis(absl::GetFlag(FLAGS_timeout));

  absl::StatusOr<std::unique_ptr<BenchSegment>> segment =
      BenchSegment::Create(DefaultDaemonGeometry());
  if (!segment.ok()) {
    std::cerr << "segment: " << segment.status() << "\n";
    return 1;
  }
  LinkSetup link;
  link.segment = segment->get();
  link.peer_id = kPeerId;
  link.options.spin = absl::GetFlag(FLAGS_link_spin);
  link.options.max_backoff = absl::GetFlag(FLAGS_link_max_backoff);
  link.doorbell = absl::GetFlag(FLAGS_link_doorbell);

  RoundTripWorkload rtt;
  rtt.payload_bytes = kPingPongBytes;
  rtt.warmup = absl::GetFlag(FLAGS_rtt_warmup);
  rtt.max_iterations = absl::GetFlag(FLAGS_rtt_iterations) + rtt.warmup;
  rtt.time_budget = Millis(absl::GetFlag(FLAGS_rtt_time_budget));
  rtt.timeout = timeout;
  rtt.child_cpu = placement->child_cpu;

  const MachineInfo machine = ReadMachineInfo();
  const std::string load_before = LoadAverage();
  const absl::Time started = absl::Now();
  BenchReport report;
  std::vector<double> idle_before;
  for (int rep = 0; rep < repetitions; ++rep) {
    idle_before.push_back(AwaitQuietMachine());
    std::cerr << "repetition " << rep + 1 << "/" << repetitions << ": machine "
              << idle_before.back() << " idle\n";
    for (uint32_t size : *sizes) {
      const ThroughputWorkload workload{size, FramesFor(size), timeout, placement->child_cpu,
                                        absl::GetFlag(FLAGS_read_payload)};
      std::cerr << "repetition " << rep + 1 << "/" << repetitions << ": " << size << " B x "
                << workload.frames << " frames\n";
      ThroughputSeries& l = report.Throughput("link", size);
      l.detail = TierName((*segment)->host(), size);
      l.frames = workload.frames;
      Record(LinkThroughput(link, workload, 1), l.samples, l.errors, rep);
      if (const int batch = absl::GetFlag(FLAGS_link_batch); batch > 1) {
        ThroughputSeries& b = report.Throughput("link_batch", size);
        b.detail = absl::StrCat(l.detail, ", batches of ", batch);
        b.frames = workload.frames;
        Record(LinkThroughput(link, workload, static_cast<size_t>(batch)), b.samples, b.errors,
               rep);
      }
      ThroughputSeries& s = report.Throughput("socketpair", size);
      s.frames = workload.frames;
      Record(SocketpairThroughput(workload), s.samples, s.errors, rep);
      ThroughputSeries& m = report.Throughput("memcpy", size);
      m.frames = workload.frames;
      Record(MemcpyThroughput(workload), m.samples, m.errors, rep);
    }
    std::cerr << "repetition " << rep + 1 << "/" << repetitions << ": " << kPingPongBytes
              << " B ping-pong\n";
    RoundTripSeries& lr = report.RoundTrip("link", kPingPongBytes);
    Record(LinkRoundTrip(link, rtt), lr.repetitions, lr.errors, rep);
    RoundTripSeries& sr = report.RoundTrip("socketpair", kPingPongBytes);
    Record(SocketpairRoundTrip(rtt, /*busy_poll=*/false), sr.repetitions, sr.errors, rep);
    RoundTripSeries& sb = report.RoundTrip("socketpair_busy_poll", kPingPongBytes);
    Record(SocketpairRoundTrip(rtt, /*busy_poll=*/true), sb.repetitions, sb.errors, rep);
  }
  const absl::Time finished = absl::Now();

  int sndbuf = 0;
  if (absl::StatusOr<std::pair<shm::UniqueFd, shm::UniqueFd>> probe = CreateStreamPair(timeout);
      probe.ok()) {
    sndbuf = SendBufferBytes(probe->first.get());
  }

  JsonWriter json;
  json.BeginObject();
  json.Field("schema", "shmhub.link_bench.v1");
  json.Field("command", absl::StrJoin(command, " ", [](std::string* out, const std::string& a) {
               out->append(ShellQuoted(a));
             }));
  json.Field("started_utc", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", started, absl::UTCTimeZone()));
  json.FieldDouble("wall_seconds", absl::ToDoubleSeconds(finished - started));
  json.Key("machine");
  WriteMachineInfo(machine, json);
  json.Field("load_average_before", load_before);
  json.Field("load_average_after", LoadAverage());
  json.Key("cpu_idle_before_repetition");
  json.BeginArray();
  for (double idle : idle_before) json.Double(idle);
  json.EndArray();
  json.Key("config");
  WriteConfig(json, **segment, link, sndbuf);
  report.WriteJson(json);
  json.EndObject();

  const std::string output = absl::GetFlag(FLAGS_output);
  if (output == "-") {
    std::cout << json.str();
  } else {
    std::ofstream out(output);
    out << json.str();
    out.close();
    if (!out) {
      std::cerr << "cannot write " << output << "\n";
      return 1;
    }
  }
  report.PrintTable(std::cerr);
  return report.HasErrors() ? 1 : 0;
}

}  // namespace
}  // namespace shmhub::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Two-process data-plane benchmark: link vs socketpair vs memcpy; writes one JSON document.");
  const std::vector<std::string> command(argv, argv + argc);
  absl::ParseCommandLine(argc, argv);
  // A reader that died must be an EPIPE error on the writer, not a kill.
  ::signal(SIGPIPE, SIG_IGN);
  return shmhub::bench::Run(command);
}
