#include "shm/scm_rights.h"

#include <cstring>

namespace shmhub::shm {

void PackScmRights(absl::Span<const int> fds, absl::Span<uint8_t> storage, struct msghdr* msg) {
  if (fds.empty()) {
    msg->msg_control = nullptr;
    msg->msg_controllen = 0;
    return;
  }
  const size_t space = ScmRightsSpace(fds.size());
  std::memset(storage.data(), 0, space);
  msg->msg_control = storage.data();
  msg->msg_controllen = space;
  // Built by copying, not by casting storage to cmsghdr*: the layout is the
  // header, padding to CMSG_LEN(0), then the descriptors.
  struct cmsghdr header = {};
  header.cmsg_level = SOL_SOCKET;
  header.cmsg_type = SCM_RIGHTS;
  header.cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
  std::memcpy(storage.data(), &header, sizeof(header));
  std::memcpy(storage.data() + CMSG_LEN(0), fds.data(), fds.size() * sizeof(int));
}

std::vector<UniqueFd> UnpackScmRights(const struct msghdr& msg) {
  std::vector<UniqueFd> fds;
  // CMSG_NXTHDR takes a non-const msghdr but only reads it.
  struct msghdr* m = const_cast<struct msghdr*>(&msg);
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(m); cmsg != nullptr; cmsg = CMSG_NXTHDR(m, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    if (cmsg->cmsg_len < CMSG_LEN(0)) continue;
    const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const uint8_t* data = CMSG_DATA(cmsg);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      // memcpy: the data need not be int-aligned for the compiler's purposes.
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      fds.emplace_back(fd);
    }
  }
  return fds;
}

}  // namespace shmhub::shm
