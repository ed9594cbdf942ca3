// RpcMetrics: per-RPC Prometheus metrics for every service the daemon's
// gRPC server runs (shmhub.v1.PeerHub, health, reflection), gathered by a
// server interceptor and named as other gRPC exporters name them
// (go-grpc-prometheus), so existing dashboards and rules apply:
//
//   grpc_server_started_total{grpc_service,grpc_method,grpc_type}
//   grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code}
//   grpc_server_handling_seconds{grpc_service,grpc_method,grpc_type}   histogram
//
// grpc_type is unary, client_stream, server_stream or bidi_stream;
// grpc_code is the status code's canonical upper-case name (OK,
// INVALID_ARGUMENT, ...), as in the gRPC status-code spec. (go-grpc-prometheus
// itself writes Go's CamelCase names, e.g. InvalidArgument.)
//
// An RPC is started when gRPC creates its interceptors (the method is
// matched), handled when its status is sent, and its handling time lies
// between the two: a WatchEvents stream's is the stream's whole life. A call
// that ends without a status ever being sent counts as CANCELLED, so
// started - handled is always the number of calls in flight.
//
// Series: AddService() creates a service's started, histogram and
// handled{grpc_code="OK"} series at 0; every other series appears with the
// first call that needs it.
//
// Lifetime: the RpcMetrics must outlive the grpc::Server its factory is
// installed in. Thread safety: all methods are thread-safe; an RPC costs two
// lookups under this object's own mutex, never a hub lock.
#ifndef SHMHUB_SERVER_RPC_RPC_METRICS_INTERCEPTOR_H_
#define SHMHUB_SERVER_RPC_RPC_METRICS_INTERCEPTOR_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/support/server_interceptor.h"
#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace shmhub::server {

class RpcMetrics {
 public:
  // Registers the three families in `registry`, which must outlive this.
  explicit RpcMetrics(prometheus::Registry& registry);

  RpcMetrics(const RpcMetrics&) = delete;
  RpcMetrics& operator=(const RpcMetrics&) = delete;

  void AddService(const google::protobuf::ServiceDescriptor& service);

  // For grpc::ServerBuilder::experimental().SetInterceptorCreators().
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  // One method's series. Its counters and histogram are thread-safe.
  class Method {
   public:
    // Counts the call's end with `code` and how long it took.
    void Handled(grpc::StatusCode code, double seconds);
    void Started() { started_->Increment(); }

   private:
    friend class RpcMetrics;

    Method(RpcMetrics* owner, prometheus::Labels labels);

    RpcMetrics* const owner_;
    const prometheus::Labels labels_;  // grpc_service, grpc_method, grpc_type
    prometheus::Counter* const started_;
    prometheus::Histogram* const handling_;
    // By grpc::StatusCode value (0..16), made on first use under owner_->mu_.
    std::array<prometheus::Counter*, 17> handled_ ABSL_GUARDED_BY(owner_->mu_){};
  };

  // The series of `full_name` ("/package.Service/Method") called as `type`;
  // made on first use. Never null; valid for this object's lifetime.
  Method* MethodFor(const std::string& full_name, grpc::experimental::ServerRpcInfo::Type type);

 private:
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& handling_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Method>> methods_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_RPC_RPC_METRICS_INTERCEPTOR_H_
