// PrometheusServer: a real Prometheus server (Debian's prometheus package)
// run as a child process for an end-to-end test, on a free 127.0.0.1 port
// with its TSDB in the test's own directory, and queried through its HTTP
// API (/api/v1/query). Killed (SIGKILL) and reaped on destruction unless
// Stop() ended it first. Header-only so that only the tests that use it
// depend on it. Not thread-safe: one test thread owns each instance.
#ifndef SHMHUB_TESTS_TESTING_PROMETHEUS_SERVER_H_
#define SHMHUB_TESTS_TESTING_PROMETHEUS_SERVER_H_

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "tests/testing/loopback_http.h"
#include "tests/testing/spawned_process.h"

namespace shmhub::testing {

inline constexpr char kPrometheusBinary[] = "/usr/bin/prometheus";

// One element of an instant vector: the series' labels (with __name__ when
// the query keeps it) and its value.
struct PrometheusSample {
  std::map<std::string, std::string> labels;
  double value = 0;
};

// `samples` as text for failure messages: one "{k="v", ...} value" a line.
inline std::string DescribeSamples(const std::vector<PrometheusSample>& samples) {
  if (samples.empty()) return "(empty vector)";
  std::string out;
  for (const PrometheusSample& sample : samples) {
    absl::StrAppend(&out, "\n  {");
    const char* separator = "";
    for (const auto& [name, value] : sample.labels) {
      absl::StrAppend(&out, separator, name, "=\"", value, "\"");
      separator = ", ";
    }
    absl::StrAppend(&out, "} ", sample.value);
  }
  return out;
}

class PrometheusServer {
 public:
  // Starts Prometheus on `config_path` with its TSDB and log under
  // `work_dir`, and returns once /-/ready answers 200 (within `timeout`).
  // A port picked free can be taken by someone else before Prometheus binds
  // it, so a server that exits before it is ready (UNAVAILABLE) is retried
  // on a new port, twice at most.
  static absl::StatusOr<std::unique_ptr<PrometheusServer>> Start(
      const std::string& config_path, const std::string& work_dir,
      absl::Duration timeout = absl::Seconds(30)) {
    if (access(kPrometheusBinary, X_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(kPrometheusBinary, " is missing: install Debian's prometheus package "
                       "(scripts/install-deps.sh)"));
    }
    absl::Status last = absl::UnknownError("not started");
    for (int attempt = 1; attempt <= 3; ++attempt) {
      absl::StatusOr<int> port = PickFreeLoopbackPort();
      if (!port.ok()) return port.status();
      std::unique_ptr<PrometheusServer> server(
          new PrometheusServer(config_path, work_dir, *port, attempt));
      last = server->AwaitReady(timeout);
      if (last.ok()) return server;
      if (!absl::IsUnavailable(last)) break;
    }
    return last;
  }

  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  int port() const { return port_; }
  std::string Stderr() const { return process_->Stderr(); }

  // The instant vector `promql` evaluates to now. Errors: the API's own
  // (bad query: INVALID_ARGUMENT), or the transport's.
  absl::StatusOr<std::vector<PrometheusSample>> Query(absl::string_view promql) {
    absl::StatusOr<HttpResponse> response =
        LoopbackHttpGet(port_, absl::StrCat("/api/v1/query?query=", UrlQueryEscape(promql)));
    if (!response.ok()) return response.status();
    google::protobuf::Value root;
    const auto parsed = google::protobuf::util::JsonStringToMessage(response->body, &root);
    if (!parsed.ok()) {
      return absl::InternalError(absl::StrCat("query ", promql, ": reply is not JSON (",
                                              parsed.ToString(), "): ", response->body));
    }
    const auto& fields = root.struct_value().fields();
    if (StringField(fields, "status") != "success") {
      return absl::InvalidArgumentError(absl::StrCat("query ", promql, ": HTTP ", response->status,
                                                     " ", StringField(fields, "errorType"), ": ",
                                                     StringField(fields, "error")));
    }
    const auto data = fields.find("data");
    if (data == fields.end() ||
        StringField(data->second.struct_value().fields(), "resultType") != "vector") {
      return absl::InvalidArgumentError(
          absl::StrCat("query ", promql, ": not an instant vector: ", response->body));
    }
    std::vector<PrometheusSample> samples;
    const auto result = data->second.struct_value().fields().find("result");
    if (result == data->second.struct_value().fields().end()) return samples;
    for (const google::protobuf::Value& element : result->second.list_value().values()) {
      const auto& element_fields = element.struct_value().fields();
      PrometheusSample sample;
      if (const auto metric = element_fields.find("metric"); metric != element_fields.end()) {
        for (const auto& [name, value] : metric->second.struct_value().fields()) {
          sample.labels[name] = value.string_value();
        }
      }
      // "value": [<unix time>, "<value as text>"]; the text may be NaN or +Inf.
      const auto value = element_fields.find("value");
      if (value == element_fields.end() || value->second.list_value().values_size() != 2 ||
          !absl::SimpleAtod(value->second.list_value().values(1).string_value(),
                            &sample.value)) {
        return absl::InternalError(
            absl::StrCat("query ", promql, ": sample without a value: ", response->body));
      }
      samples.push_back(std::move(sample));
    }
    return samples;
  }

  // Runs `promql` every 200ms until `done` accepts its result, and returns
  // that result; DEADLINE_EXCEEDED naming the last result or error when
  // `timeout` passes first.
  absl::StatusOr<std::vector<PrometheusSample>> AwaitQuery(
      absl::string_view promql,
      absl::FunctionRef<bool(const std::vector<PrometheusSample>&)> done,
      absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    std::string last = "no query ran";
    while (true) {
      absl::StatusOr<std::vector<PrometheusSample>> samples = Query(promql);
      if (samples.ok() && done(*samples)) return samples;
      last = samples.ok() ? DescribeSamples(*samples) : samples.status().ToString();
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat("query ", promql, " not as awaited after ",
                                                        absl::FormatDuration(timeout),
                                                        "; last result: ", last));
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
  }

  // SIGTERM, then waits up to `timeout` for a clean exit (status 0).
  absl::Status Stop(absl::Duration timeout = absl::Seconds(20)) {
    process_->Signal(SIGTERM);
    const std::optional<int> code = process_->Wait(timeout);
    if (!code.has_value()) {
      return absl::DeadlineExceededError(
          absl::StrCat("prometheus still running ", absl::FormatDuration(timeout),
                       " after SIGTERM (it is SIGKILLed on destruction)"));
    }
    if (*code != 0) {
      return absl::InternalError(absl::StrCat("prometheus exited with ", *code, ": ", Stderr()));
    }
    return absl::OkStatus();
  }

 private:
  PrometheusServer(const std::string& config_path, const std::string& work_dir, int port,
                   int attempt)
      : port_(port),
        process_(std::make_unique<SpawnedProcess>(
            std::vector<std::string>{
                kPrometheusBinary, "--config.file=" + config_path,
                absl::StrCat("--storage.tsdb.path=", work_dir, "/prometheus-data-", attempt),
                absl::StrCat("--web.listen-address=127.0.0.1:", port)},
            absl::StrCat(work_dir, "/prometheus-", attempt, ".err"))) {}

  // A port nothing listens on right now, from the kernel's ephemeral range.
  static absl::StatusOr<int> PickFreeLoopbackPort() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
    const absl::Cleanup close_fd = [fd] { close(fd); };
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return absl::InternalError(absl::StrCat("bind 127.0.0.1:0: ", std::strerror(errno)));
    }
    return ntohs(address.sin_port);
  }

  absl::Status AwaitReady(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      if (process_->Wait(absl::ZeroDuration()).has_value()) {
        return absl::UnavailableError(
            absl::StrCat("prometheus on port ", port_, " exited before it was ready: ", Stderr()));
      }
      absl::StatusOr<HttpResponse> ready = LoopbackHttpGet(port_, "/-/ready", absl::Seconds(2));
      if (ready.ok() && ready->status == 200) return absl::OkStatus();
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat("prometheus on port ", port_,
                                                        " not ready after ",
                                                        absl::FormatDuration(timeout), ": ",
                                                        Stderr()));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  static std::string StringField(
      const google::protobuf::Map<std::string, google::protobuf::Value>& fields,
      const std::string& name) {
    const auto it = fields.find(name);
    return it == fields.end() ? std::string() : it->second.string_value();
  }

  int port_;
  std::unique_ptr<SpawnedProcess> process_;
};

}  // namespace shmhub::testing

#endif  // SHMHUB_TESTS_TESTING_PROMETHEUS_SERVER_H_
