// Packing and unpacking descriptors in SCM_RIGHTS control data, shared by
// the mapping-control channel (§9.2) and bootstrap (§11.1).
//
// Unpacking takes ownership of every descriptor the kernel installed, in
// every SCM_RIGHTS message of the control data, so a caller that rejects the
// message closes them all just by dropping the vector (D-11). Stateless and
// thread-safe.
#ifndef SHMHUB_SHM_SCM_RIGHTS_H_
#define SHMHUB_SHM_SCM_RIGHTS_H_

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "shm/unique_fd.h"

namespace shmhub::shm {

// Bytes of control buffer that hold one SCM_RIGHTS message of `count` fds.
constexpr size_t ScmRightsSpace(size_t count) { return CMSG_SPACE(count * sizeof(int)); }

// Points msg->msg_control at `storage` holding one SCM_RIGHTS message with
// `fds`, or sets no control data when `fds` is empty. `storage` must be
// aligned for cmsghdr and hold at least ScmRightsSpace(fds.size()) bytes; it
// must outlive the sendmsg call.
void PackScmRights(absl::Span<const int> fds, absl::Span<uint8_t> storage, struct msghdr* msg);

// Every descriptor in the SCM_RIGHTS messages of a received `msg`, owned.
std::vector<UniqueFd> UnpackScmRights(const struct msghdr& msg);

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_SCM_RIGHTS_H_
