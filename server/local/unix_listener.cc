#include "server/local/unix_listener.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "shm/shm_error.h"

namespace shmhub::server {
namespace {

constexpr mode_t kSocketMode = 0660;
constexpr mode_t kDirectoryMode = 0755;
constexpr int kBacklog = 64;

absl::Status SystemError(absl::string_view what, const std::string& path, int err) {
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == EACCES || err == EPERM || err == EROFS) {
    return absl::PermissionDeniedError(
        absl::StrCat(message, " (run as a user that may write there, or pick another --socket)"));
  }
  return absl::InternalError(message);
}

std::string ParentOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

// The parent directory exists (created if missing) and is a real directory.
absl::Status EnsureDirectory(const std::string& dir) {
  if (::mkdir(dir.c_str(), kDirectoryMode) != 0 && errno != EEXIST) {
    return SystemError("cannot create the socket directory", dir, errno);
  }
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return SystemError("cannot stat", dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the socket directory ", dir,
                     " is a symlink or not a directory; remove it or pick another --socket"));
  }
  // Another user's directory (in /tmp, say) would let that user swap our
  // socket for theirs.
  if (st.st_uid != ::getuid() && st.st_uid != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the socket directory ", dir, " belongs to uid ", st.st_uid,
                     ", not to this user or root; pick another --socket"));
  }
  return absl::OkStatus();
}

}  // namespace

UnixListener::UnixListener(std::string path, shm::PathLock lock, shm::UniqueFd socket, dev_t dev,
                           ino_t ino)
    : path_(std::move(path)),
      lock_(std::move(lock)),
      socket_(std::move(socket)),
      dev_(dev),
      ino_(ino) {}

UnixListener::~UnixListener() {
  struct stat st;
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    ::unlink(path_.c_str());
  }
}

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Listen(const std::string& path) {
  struct sockaddr_un address {};
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("--socket must be an absolute path, got \"", path, "\""));
  }
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("--socket path is ", path.size(),
                                                   " bytes; a Unix socket path must be under ",
                                                   sizeof(address.sun_path), " bytes"));
  }
  if (absl::Status status = EnsureDirectory(ParentOf(path)); !status.ok()) return status;

  absl::StatusOr<shm::PathLock> lock = shm::PathLock::Acquire(path);
  if (!lock.ok()) {
    if (shm::ShmErrcOf(lock.status()) == shm::ShmErrc::kLiveSegment) {
      return absl::AlreadyExistsError(
          absl::StrCat("the local socket ", path,
                       " belongs to another running shmhubd; stop it or pick another --socket"));
    }
    return shm::Annotate(lock.status(), absl::StrCat("cannot lock the local socket ", path));
  }

  // We own the path now: whatever socket is there was left by a dead daemon.
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a socket; remove it or pick another --socket"));
    }
    if (::unlink(path.c_str()) != 0) return SystemError("cannot remove the stale socket", path, errno);
  }

  shm::UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!socket.valid()) return SystemError("socket() for", path, errno);
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  if (::bind(socket.get(), reinterpret_cast<const struct sockaddr*>(&address), sizeof(address)) !=
      0) {
    return SystemError("cannot bind", path, errno);
  }
  if (::lstat(path.c_str(), &st) != 0) return SystemError("cannot stat", path, errno);
  std::unique_ptr<UnixListener> listener(
      new UnixListener(path, *std::move(lock), std::move(socket), st.st_dev, st.st_ino));
  // From here the destructor removes the socket file on every error.
  if (::chmod(path.c_str(), kSocketMode) != 0) return SystemError("cannot chmod", path, errno);
  if (::listen(listener->fd(), kBacklog) != 0) return SystemError("cannot listen on", path, errno);
  return listener;
}

absl::StatusOr<std::optional<shm::UniqueFd>> UnixListener::Accept() const {
  while (true) {
    const int fd = ::accept4(socket_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return std::optional<shm::UniqueFd>(shm::UniqueFd(fd));
    if (errno == EINTR) continue;
    // The connection died while queued: nothing to serve.
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) return std::nullopt;
    return SystemError("accept on", path_, errno);
  }
}

}  // namespace shmhub::server
