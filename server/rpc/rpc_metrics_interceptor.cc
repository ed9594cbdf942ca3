#include "server/rpc/rpc_metrics_interceptor.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/interceptor.h"
#include "server/base/monotonic_clock.h"

namespace shmhub::server {
namespace {

using ::grpc::experimental::InterceptionHookPoints;
using ::grpc::experimental::ServerRpcInfo;

// Sub-millisecond unary calls up to long watch streams (which mostly land
// in +Inf: their "handling time" is the stream's life).
const std::vector<double>& HandlingBuckets() {
  static const std::vector<double>* const kBuckets =
      new std::vector<double>{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                              0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  return *kBuckets;
}

const char* TypeLabel(ServerRpcInfo::Type type) {
  switch (type) {
    case ServerRpcInfo::Type::UNARY:
      return "unary";
    case ServerRpcInfo::Type::CLIENT_STREAMING:
      return "client_stream";
    case ServerRpcInfo::Type::SERVER_STREAMING:
      return "server_stream";
    case ServerRpcInfo::Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unknown";
}

ServerRpcInfo::Type TypeOf(const google::protobuf::MethodDescriptor& method) {
  if (method.client_streaming()) {
    return method.server_streaming() ? ServerRpcInfo::Type::BIDI_STREAMING
                                     : ServerRpcInfo::Type::CLIENT_STREAMING;
  }
  return method.server_streaming() ? ServerRpcInfo::Type::SERVER_STREAMING
                                   : ServerRpcInfo::Type::UNARY;
}

// "OK", "INVALID_ARGUMENT", ...: absl's canonical codes are gRPC's.
std::string CodeLabel(grpc::StatusCode code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? std::string("UNKNOWN") : name;
}

// "/shmhub.v1.PeerHub/ReservePeer" -> service and method labels.
prometheus::Labels MethodLabels(absl::string_view full_name, ServerRpcInfo::Type type) {
  absl::string_view name = full_name;
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  const size_t slash = name.rfind('/');
  const absl::string_view service =
      slash == absl::string_view::npos ? absl::string_view() : name.substr(0, slash);
  const absl::string_view method = slash == absl::string_view::npos ? name : name.substr(slash + 1);
  return {{"grpc_service", std::string(service)},
          {"grpc_method", std::string(method)},
          {"grpc_type", TypeLabel(type)}};
}

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit RpcMetricsInterceptor(RpcMetrics::Method* method)
      : method_(method), start_ns_(MonotonicNowNs()) {
    method_->Started();
  }
  ~RpcMetricsInterceptor() override {
    // The call ended without a status (the server shut down before the
    // handler finished): counted, so started - handled stays "in flight".
    if (!handled_) Handle(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Handle(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Handle(grpc::StatusCode code) {
    handled_ = true;
    method_->Handled(code, static_cast<double>(ElapsedNs(start_ns_, MonotonicNowNs())) / 1e9);
  }

  RpcMetrics::Method* const method_;
  const uint64_t start_ns_;
  // gRPC finishes every batch of a call before destroying its interceptors,
  // so the destructor sees the write made when the status went out.
  bool handled_ = false;
};

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(RpcMetrics* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(ServerRpcInfo* info) override {
    // gRPC names every call it routes to a handler; without a name there is
    // nothing to label the series with.
    if (info->method() == nullptr) return nullptr;
    return new RpcMetricsInterceptor(metrics_->MethodFor(info->method(), info->type()));
  }

 private:
  RpcMetrics* const metrics_;
};

}  // namespace

RpcMetrics::RpcMetrics(prometheus::Registry& registry)
    : started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("RPCs started on the server.")
                   .Register(registry)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("RPCs completed on the server, by status code.")
                   .Register(registry)),
      handling_(prometheus::BuildHistogram()
                    .Name("grpc_server_handling_seconds")
                    .Help("Time from an RPC's start to its status being sent (for streams, "
                          "the stream's whole life).")
                    .Register(registry)) {}

void RpcMetrics::AddService(const google::protobuf::ServiceDescriptor& service) {
  for (int i = 0; i < service.method_count(); ++i) {
    const google::protobuf::MethodDescriptor& method = *service.method(i);
    Method* series =
        MethodFor(absl::StrCat("/", service.full_name(), "/", method.name()), TypeOf(method));
    absl::MutexLock lock(&mu_);
    if (series->handled_[0] == nullptr) {
      prometheus::Labels labels = series->labels_;
      labels.emplace("grpc_code", CodeLabel(grpc::StatusCode::OK));
      series->handled_[0] = &handled_.Add(labels);
    }
  }
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
RpcMetrics::InterceptorFactory() {
  return std::make_unique<RpcMetricsInterceptorFactory>(this);
}

RpcMetrics::Method* RpcMetrics::MethodFor(const std::string& full_name, ServerRpcInfo::Type type) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Method>& method = methods_[full_name];
  if (method == nullptr) method.reset(new Method(this, MethodLabels(full_name, type)));
  return method.get();
}

RpcMetrics::Method::Method(RpcMetrics* owner, prometheus::Labels labels)
    : owner_(owner),
      labels_(std::move(labels)),
      started_(&owner->started_.Add(labels_)),
      handling_(&owner->handling_.Add(labels_, HandlingBuckets())) {}

void RpcMetrics::Method::Handled(grpc::StatusCode code, double seconds) {
  // Out-of-range codes are UNKNOWN, as ToGrpcStatus makes them.
  const auto index = static_cast<size_t>(code) < handled_.size()
                         ? static_cast<size_t>(code)
                         : static_cast<size_t>(grpc::StatusCode::UNKNOWN);
  prometheus::Counter* counter = nullptr;
  {
    absl::MutexLock lock(&owner_->mu_);
    if (handled_[index] == nullptr) {
      prometheus::Labels labels = labels_;
      labels.emplace("grpc_code", CodeLabel(static_cast<grpc::StatusCode>(index)));
      handled_[index] = &owner_->handled_.Add(labels);
    }
    counter = handled_[index];
  }
  counter->Increment();
  handling_->Observe(seconds);
}

}  // namespace shmhub::server
