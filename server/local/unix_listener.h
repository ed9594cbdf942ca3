// UnixListener: the daemon's listening Unix stream socket at a file system
// path, the local socket guests bootstrap over (format §11).
//
// Ownership of a path is decided by a lock, not by probing the socket: the
// listener holds "<path>.lock" (shm::PathLock) for its whole life. Whoever
// holds the lock owns the path, so a socket file found there is a leftover
// of a daemon that died and is replaced; a lock held by a live daemon is
// refused. Both files are removed at destruction.
//
// The socket is created close-on-exec and non-blocking, mode 0660 like the
// segment, so guests in the daemon's group can connect. A missing parent
// directory is created (0755); an existing one must be a real directory,
// not a symlink, owned by this user or root, so /tmp cannot be used to
// redirect the socket.
//
// Thread safety: Accept() from one thread at a time; the rest is immutable.
#ifndef SHMHUB_SERVER_LOCAL_UNIX_LISTENER_H_
#define SHMHUB_SERVER_LOCAL_UNIX_LISTENER_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "shm/path_lock.h"
#include "shm/unique_fd.h"

namespace shmhub::server {

class UnixListener {
 public:
  // Errors name the path and what to do: INVALID_ARGUMENT for a path that
  // is not absolute or too long for sun_path; ALREADY_EXISTS when another
  // daemon holds the lock; FAILED_PRECONDITION for a directory that is a
  // symlink, not a directory or another user's, or a path that holds something other than
  // a socket; PERMISSION_DENIED / INTERNAL for system call failures.
  static absl::StatusOr<std::unique_ptr<UnixListener>> Listen(const std::string& path);
  ~UnixListener();

  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // One pending connection, non-blocking and close-on-exec; nullopt when
  // none is pending. Errors other than "nothing pending" are INTERNAL.
  absl::StatusOr<std::optional<shm::UniqueFd>> Accept() const;

  int fd() const { return socket_.get(); }
  const std::string& path() const { return path_; }

 private:
  UnixListener(std::string path, shm::PathLock lock, shm::UniqueFd socket, dev_t dev, ino_t ino);

  const std::string path_;
  // Released after the destructor has removed the socket file.
  shm::PathLock lock_;
  const shm::UniqueFd socket_;
  // The socket file we created: removed at destruction only if the path
  // still names it.
  const dev_t dev_;
  const ino_t ino_;
};

}  // namespace shmhub::server

#endif  // SHMHUB_SERVER_LOCAL_UNIX_LISTENER_H_
