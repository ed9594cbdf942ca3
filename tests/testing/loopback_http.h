// LoopbackHttpGet: one plain HTTP/1.0 GET to 127.0.0.1, for end-to-end tests
// that read a real server's HTTP endpoint (a Prometheus server's API,
// shmhubd's /metrics). HTTP/1.0 without keep-alive makes the server close
// the connection after its response, so the body is everything up to EOF and
// no chunked decoding is needed. Every step is bounded by one deadline.
// Header-only so that only the tests that use it depend on it.
#ifndef SHMHUB_TESTS_TESTING_LOOPBACK_HTTP_H_
#define SHMHUB_TESTS_TESTING_LOOPBACK_HTTP_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace shmhub::testing {

struct HttpResponse {
  int status = 0;    // e.g. 200
  std::string body;  // everything after the header block
};

// `text` percent-encoded for a URL query component (RFC 3986 unreserved
// characters stay as they are).
inline std::string UrlQueryEscape(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(byte) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xF]);
    }
  }
  return out;
}

// GET `target` (path and query, e.g. "/api/v1/query?query=up") from
// 127.0.0.1:`port`. Errors: UNAVAILABLE when nothing listens or the
// connection breaks, DEADLINE_EXCEEDED when `timeout` passes first,
// INTERNAL for a reply that is not HTTP.
inline absl::StatusOr<HttpResponse> LoopbackHttpGet(int port, absl::string_view target,
                                                    absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  const absl::Cleanup close_fd = [fd] { close(fd); };
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // A loopback connect completes or is refused at once: no deadline needed.
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect 127.0.0.1:", port, ": ", std::strerror(errno)));
  }

  const std::string request =
      absl::StrCat("GET ", target, " HTTP/1.0\r\nHost: 127.0.0.1:", port, "\r\n\r\n");
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    sent += static_cast<size_t>(n);
  }

  std::string reply;
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat("GET ", target, " on port ", port,
                                                      ": no complete reply within ",
                                                      absl::FormatDuration(timeout)));
    }
    pollfd pfd{fd, POLLIN, 0};
    const int ready = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    if (ready == 0) continue;  // the deadline check above ends the loop
    char buf[16384];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }

  // "HTTP/1.x NNN reason\r\n" headers "\r\n\r\n" body
  const size_t header_end = reply.find("\r\n\r\n");
  HttpResponse response;
  if (!absl::StartsWith(reply, "HTTP/1.") || header_end == std::string::npos ||
      reply.size() < 12 ||
      !absl::SimpleAtoi(absl::string_view(reply).substr(9, 3), &response.status)) {
    return absl::InternalError(
        absl::StrCat("GET ", target, ": not an HTTP reply: ", reply.substr(0, 200)));
  }
  response.body = reply.substr(header_end + 4);
  return response;
}

}  // namespace shmhub::testing

#endif  // SHMHUB_TESTS_TESTING_LOOPBACK_HTTP_H_
