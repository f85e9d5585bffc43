// harness/socket.h: deadline-bounded TCP helpers shared by the test harness.
//
// Defines ScopedFd (an owning file descriptor) and blocking-with-deadline
// connect/send/receive helpers over non-blocking sockets. They exist so that
// every probe the harness makes (HTTP GETs, NATS client-port probes) is bounded
// by a deadline: a stopped (SIGSTOP) server still completes the TCP handshake
// in the kernel, so only a bounded read notices that nobody answers.
//
//   absl::StatusOr<ScopedFd> fd = internal::TcpConnect(
//       "127.0.0.1", port, absl::Now() + absl::Seconds(1));
//   if (fd.ok()) { ... internal::RecvSome(fd->get(), buf, n, deadline) ... }
//
// Errors: kUnavailable when the peer refuses or resets the connection,
// kDeadlineExceeded when the deadline passes, kInvalidArgument for a host that
// cannot be resolved.
//
// Thread-safety: free functions without shared state are safe to call
// concurrently; ScopedFd is thread-compatible.
#ifndef NATSGW_TESTS_HARNESS_SOCKET_H_
#define NATSGW_TESTS_HARNESS_SOCKET_H_

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace natsgw::testing::internal {

// Owns one file descriptor and closes it on destruction. Movable.
// Thread-compatible.
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept;
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int release();
  // Closes the owned descriptor, if any.
  void reset();

 private:
  int fd_ = -1;
};

// The strerror() text for `err`, for error messages.
std::string ErrnoText(int err);

// Connects to host:port with a non-blocking socket (SOCK_CLOEXEC, so that
// server processes forked later do not inherit it) and returns it, still
// non-blocking. Tries every resolved address until one connects.
absl::StatusOr<ScopedFd> TcpConnect(absl::string_view host, int port,
                                    absl::Time deadline);

// Waits until `fd` is ready for `events` (POLLIN / POLLOUT); `what` names the
// operation in the timeout message.
absl::Status WaitFd(int fd, short events, absl::Time deadline,
                    absl::string_view what);

// Writes all of `data` to a non-blocking socket before the deadline. Never
// raises SIGPIPE.
absl::Status SendAll(int fd, absl::string_view data, absl::Time deadline);

// Reads at most `size` bytes from a non-blocking socket, waiting until some
// arrive or the deadline passes. Returns 0 at end of stream.
absl::StatusOr<size_t> RecvSome(int fd, char* buf, size_t size,
                                absl::Time deadline);

}  // namespace natsgw::testing::internal

#endif  // NATSGW_TESTS_HARNESS_SOCKET_H_
