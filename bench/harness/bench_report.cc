#include "bench/harness/bench_report.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"

namespace shmhub::bench {
namespace {

constexpr uint32_t kSmallFrame = 64;
constexpr uint32_t kLargeFrame = 64 * 1024;
constexpr uint32_t kPingPongFrame = 64;

std::optional<double> Divide(std::optional<double> numerator, std::optional<double> denominator) {
  if (!numerator || !denominator || *denominator <= 0) return std::nullopt;
  return *numerator / *denominator;
}

std::optional<double> Fps(const std::optional<ThroughputSample>& s) {
  if (!s) return std::nullopt;
  return s->FramesPerSecond();
}

std::optional<double> Gbps(const std::optional<ThroughputSample>& s) {
  if (!s) return std::nullopt;
  return s->GigabytesPerSecond();
}

std::optional<double> P50(const std::optional<RoundTripSamples>& samples) {
  if (!samples || samples->empty()) return std::nullopt;
  RoundTripSamples copy = *samples;
  return static_cast<double>(Summarize(copy).p50_ns);
}

void WriteOptionalDouble(JsonWriter& json, const std::optional<double>& value) {
  if (value) {
    json.Double(*value);
  } else {
    json.Null();
  }
}

void WriteSummary(JsonWriter& json, const LatencySummary& s) {
  json.FieldUint("count", s.count);
  json.FieldInt("min_ns", s.min_ns);
  json.FieldInt("p50_ns", s.p50_ns);
  json.FieldInt("p90_ns", s.p90_ns);
  json.FieldInt("p99_ns", s.p99_ns);
  json.FieldInt("p999_ns", s.p999_ns);
  json.FieldInt("max_ns", s.max_ns);
  json.FieldDouble("mean_ns", s.mean_ns);
}

std::optional<double> MedianFps(const ThroughputSeries* series) {
  if (series == nullptr) return std::nullopt;
  return Fps(series->Median());
}

std::optional<double> MedianGbps(const ThroughputSeries* series) {
  if (series == nullptr) return std::nullopt;
  return Gbps(series->Median());
}

std::string Cell(const std::optional<double>& v, const char* format) {
  return v ? absl::StrFormat(format, *v) : std::string("-");
}

// slow p50 / link p50 with the RTT target of 5.
TargetRatio LatencyRatio(std::string name, std::string definition, bool issue_target,
                         const RoundTripSeries* slow, const RoundTripSeries* link) {
  TargetRatio latency{std::move(name), std::move(definition), 5.0, issue_target,
                      std::nullopt, {}};
  if (slow == nullptr || link == nullptr) return latency;
  const LatencySummary l = link->Pooled();
  const LatencySummary s = slow->Pooled();
  if (l.count > 0 && s.count > 0) {
    latency.value = Divide(static_cast<double>(s.p50_ns), static_cast<double>(l.p50_ns));
  }
  const size_t n = std::min(link->repetitions.size(), slow->repetitions.size());
  for (size_t i = 0; i < n; ++i) {
    latency.per_repetition.push_back(Divide(P50(slow->repetitions[i]), P50(link->repetitions[i])));
  }
  return latency;
}

}  // namespace

std::optional<ThroughputSample> ThroughputSeries::Median() const {
  std::vector<ThroughputSample> ok;
  for (const std::optional<ThroughputSample>& s : samples) {
    if (s) ok.push_back(*s);
  }
  if (ok.empty()) return std::nullopt;
  std::sort(ok.begin(), ok.end(), [](const ThroughputSample& x, const ThroughputSample& y) {
    return x.elapsed_ns < y.elapsed_ns;
  });
  return ok[(ok.size() - 1) / 2];
}

LatencySummary RoundTripSeries::Pooled() const {
  RoundTripSamples all;
  for (const std::optional<RoundTripSamples>& r : repetitions) {
    if (r) all.insert(all.end(), r->begin(), r->end());
  }
  return Summarize(all);
}

ThroughputSeries& BenchReport::Throughput(const std::string& transport, uint32_t payload_bytes) {
  for (ThroughputSeries& s : throughput_) {
    if (s.transport == transport && s.payload_bytes == payload_bytes) return s;
  }
  throughput_.push_back(ThroughputSeries{transport, payload_bytes, "", 0, {}, {}});
  return throughput_.back();
}

RoundTripSeries& BenchReport::RoundTrip(const std::string& transport, uint32_t payload_bytes) {
  for (RoundTripSeries& s : round_trip_) {
    if (s.transport == transport && s.payload_bytes == payload_bytes) return s;
  }
  round_trip_.push_back(RoundTripSeries{transport, payload_bytes, {}, {}});
  return round_trip_.back();
}

const ThroughputSeries* BenchReport::FindThroughput(const std::string& transport,
                                                    uint32_t payload_bytes) const {
  for (const ThroughputSeries& s : throughput_) {
    if (s.transport == transport && s.payload_bytes == payload_bytes) return &s;
  }
  return nullptr;
}

const RoundTripSeries* BenchReport::FindRoundTrip(const std::string& transport,
                                                  uint32_t payload_bytes) const {
  for (const RoundTripSeries& s : round_trip_) {
    if (s.transport == transport && s.payload_bytes == payload_bytes) return &s;
  }
  return nullptr;
}

std::vector<TargetRatio> BenchReport::Targets() const {
  std::vector<TargetRatio> targets;

  const ThroughputSeries* link_small = FindThroughput("link", kSmallFrame);
  const ThroughputSeries* socket_small = FindThroughput("socketpair", kSmallFrame);
  TargetRatio frames{"link_vs_socketpair_frames_per_second_64B",
                     "link frames/s / socketpair frames/s, 64-byte payloads (median of repetitions)",
                     10.0, true, std::nullopt, {}};
  if (link_small != nullptr && socket_small != nullptr) {
    frames.value = Divide(Fps(link_small->Median()), Fps(socket_small->Median()));
    const size_t n = std::min(link_small->samples.size(), socket_small->samples.size());
    for (size_t i = 0; i < n; ++i) {
      frames.per_repetition.push_back(
          Divide(Fps(link_small->samples[i]), Fps(socket_small->samples[i])));
    }
  }
  targets.push_back(frames);

  const ThroughputSeries* link_large = FindThroughput("link", kLargeFrame);
  const ThroughputSeries* memcpy_large = FindThroughput("memcpy", kLargeFrame);
  TargetRatio bandwidth{"link_vs_memcpy_bandwidth_64KiB",
                        "link GB/s / memcpy GB/s, 64-KiB payloads (median of repetitions)", 0.5,
                        true, std::nullopt, {}};
  if (link_large != nullptr && memcpy_large != nullptr) {
    bandwidth.value = Divide(Gbps(link_large->Median()), Gbps(memcpy_large->Median()));
    const size_t n = std::min(link_large->samples.size(), memcpy_large->samples.size());
    for (size_t i = 0; i < n; ++i) {
      bandwidth.per_repetition.push_back(
          Divide(Gbps(link_large->samples[i]), Gbps(memcpy_large->samples[i])));
    }
  }
  targets.push_back(bandwidth);

  const RoundTripSeries* link_rtt = FindRoundTrip("link", kPingPongFrame);
  targets.push_back(LatencyRatio(
      "socketpair_vs_link_rtt_p50_64B",
      "socketpair p50 round trip / link p50 round trip, 64-byte ping-pong (samples of all "
      "repetitions pooled)",
      true, FindRoundTrip("socketpair", kPingPongFrame), link_rtt));
  targets.push_back(LatencyRatio(
      "socketpair_busy_poll_vs_link_rtt_p50_64B",
      "not an issue target: the same ratio against a socketpair whose readers spin on "
      "recv(MSG_DONTWAIT) instead of sleeping, as the link's receivers spin",
      false, FindRoundTrip("socketpair_busy_poll", kPingPongFrame), link_rtt));
  return targets;
}

bool BenchReport::HasErrors() const {
  for (const ThroughputSeries& s : throughput_) {
    if (!s.errors.empty()) return true;
  }
  for (const RoundTripSeries& s : round_trip_) {
    if (!s.errors.empty()) return true;
  }
  return false;
}

void BenchReport::WriteJson(JsonWriter& json) const {
  json.Key("throughput");
  json.BeginArray();
  for (const ThroughputSeries& s : throughput_) {
    json.BeginObject();
    json.Field("transport", s.transport);
    json.FieldUint("payload_bytes", s.payload_bytes);
    if (!s.detail.empty()) json.Field("detail", s.detail);
    json.FieldUint("frames_per_repetition", s.frames);
    const std::optional<ThroughputSample> median = s.Median();
    json.Key("median");
    if (median) {
      json.BeginObject();
      json.FieldDouble("frames_per_second", median->FramesPerSecond());
      json.FieldDouble("gigabytes_per_second", median->GigabytesPerSecond());
      json.FieldDouble("seconds", median->Seconds());
      json.EndObject();
    } else {
      json.Null();
    }
    json.Key("repetitions");
    json.BeginArray();
    for (const std::optional<ThroughputSample>& sample : s.samples) {
      if (!sample) {
        json.Null();
        continue;
      }
      json.BeginObject();
      json.FieldUint("frames", sample->frames);
      json.FieldInt("elapsed_ns", sample->elapsed_ns);
      json.FieldDouble("frames_per_second", sample->FramesPerSecond());
      json.FieldDouble("gigabytes_per_second", sample->GigabytesPerSecond());
      json.EndObject();
    }
    json.EndArray();
    json.Key("errors");
    json.BeginArray();
    for (const std::string& e : s.errors) json.String(e);
    json.EndArray();
    json.EndObject();
  }
  json.EndArray();

  json.Key("round_trip");
  json.BeginArray();
  for (const RoundTripSeries& s : round_trip_) {
    json.BeginObject();
    json.Field("transport", s.transport);
    json.FieldUint("payload_bytes", s.payload_bytes);
    json.Key("pooled");
    json.BeginObject();
    WriteSummary(json, s.Pooled());
    json.EndObject();
    json.Key("repetitions");
    json.BeginArray();
    for (const std::optional<RoundTripSamples>& r : s.repetitions) {
      if (!r) {
        json.Null();
        continue;
      }
      RoundTripSamples copy = *r;
      json.BeginObject();
      WriteSummary(json, Summarize(copy));
      json.EndObject();
    }
    json.EndArray();
    json.Key("errors");
    json.BeginArray();
    for (const std::string& e : s.errors) json.String(e);
    json.EndArray();
    json.EndObject();
  }
  json.EndArray();

  json.Key("ratios");
  json.BeginArray();
  for (const TargetRatio& r : Targets()) {
    json.BeginObject();
    json.Field("name", r.name);
    json.Field("definition", r.definition);
    json.Key("value");
    WriteOptionalDouble(json, r.value);
    json.FieldDouble("target", r.target);
    json.FieldBool("met", r.met());
    json.FieldBool("issue_target", r.issue_target);
    json.Key("per_repetition");
    json.BeginArray();
    for (const std::optional<double>& v : r.per_repetition) WriteOptionalDouble(json, v);
    json.EndArray();
    json.EndObject();
  }
  json.EndArray();
}

void BenchReport::PrintTable(std::ostream& out) const {
  out << absl::StrFormat("%-9s %-10s %14s %10s %14s %14s %10s %10s\n", "payload", "link tier",
                         "link frames/s", "link GB/s", "batch frames/s", "sock frames/s",
                         "sock GB/s", "memcpy GB/s");
  std::vector<uint32_t> sizes;
  for (const ThroughputSeries& s : throughput_) {
    if (std::find(sizes.begin(), sizes.end(), s.payload_bytes) == sizes.end()) {
      sizes.push_back(s.payload_bytes);
    }
  }
  for (uint32_t size : sizes) {
    const ThroughputSeries* link = FindThroughput("link", size);
    const ThroughputSeries* batch = FindThroughput("link_batch", size);
    const ThroughputSeries* sock = FindThroughput("socketpair", size);
    const ThroughputSeries* mem = FindThroughput("memcpy", size);
    out << absl::StrFormat("%-9u %-10s %14s %10s %14s %14s %10s %10s\n", size,
                           link ? link->detail : "-", Cell(MedianFps(link), "%.0f"),
                           Cell(MedianGbps(link), "%.3f"), Cell(MedianFps(batch), "%.0f"),
                           Cell(MedianFps(sock), "%.0f"), Cell(MedianGbps(sock), "%.3f"),
                           Cell(MedianGbps(mem), "%.3f"));
  }
  for (const RoundTripSeries& s : round_trip_) {
    const LatencySummary p = s.Pooled();
    out << absl::StrFormat("rtt %-10s %u B: p50 %d ns, p99 %d ns, p99.9 %d ns (%u samples)\n",
                           s.transport, s.payload_bytes, p.p50_ns, p.p99_ns, p.p999_ns, p.count);
  }
  for (const TargetRatio& r : Targets()) {
    out << absl::StrFormat("%-42s %10s  target >= %g  %s%s\n", r.name, Cell(r.value, "%.3f"),
                           r.target, r.met() ? "MET" : "NOT MET",
                           r.issue_target ? "" : " (informational)");
  }
}

}  // namespace shmhub::bench
