// A listening Unix stream socket at a path, for tests that play the server
// end of a local socket (the daemon, for a client under test).
#ifndef SHMHUB_TESTS_TESTING_UNIX_LISTENER_H_
#define SHMHUB_TESTS_TESTING_UNIX_LISTENER_H_

#include <string>

#include "absl/status/statusor.h"

namespace shmhub::testing {

// socket + bind + listen, CLOEXEC. The caller owns (and closes) the fd.
absl::StatusOr<int> ListenOnUnixSocket(const std::string& path, int backlog);

}  // namespace shmhub::testing

#endif  // SHMHUB_TESTS_TESTING_UNIX_LISTENER_H_
