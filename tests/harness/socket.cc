#include "harness/socket.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace natsgw::testing::internal {

ScopedFd& ScopedFd::operator=(ScopedFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

int ScopedFd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void ScopedFd::reset() {
  if (fd_ >= 0) {
    // Not retried on EINTR: on Linux the descriptor is released even then,
    // and a retry could close a descriptor another thread just opened.
    close(fd_);
    fd_ = -1;
  }
}

std::string ErrnoText(int err) { return std::strerror(err); }

namespace {

// Milliseconds left until `deadline` for poll(), clamped to [0, INT_MAX].
int PollTimeoutMs(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  // Rounded up so that a sub-millisecond remainder still sleeps instead of
  // spinning on a zero timeout.
  const int64_t ms = absl::ToInt64Milliseconds(left) + 1;
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

absl::StatusOr<ScopedFd> ConnectOne(const addrinfo& ai, absl::Time deadline,
                                    absl::string_view endpoint) {
  ScopedFd fd(socket(ai.ai_family,
                     ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     ai.ai_protocol));
  if (!fd.valid()) {
    return absl::InternalError(absl::StrCat("socket(): ", ErrnoText(errno)));
  }
  if (connect(fd.get(), ai.ai_addr, ai.ai_addrlen) == 0) return fd;
  if (errno != EINPROGRESS) {
    return absl::UnavailableError(
        absl::StrCat("connect to ", endpoint, " failed: ", ErrnoText(errno)));
  }
  absl::Status ready = WaitFd(fd.get(), POLLOUT, deadline,
                              absl::StrCat("connecting to ", endpoint));
  if (!ready.ok()) return ready;
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect to ", endpoint, " failed: ", ErrnoText(err)));
  }
  return fd;
}

}  // namespace

absl::Status WaitFd(int fd, short events, absl::Time deadline,
                    absl::string_view what) {
  for (;;) {
    const int timeout_ms = PollTimeoutMs(deadline);
    if (timeout_ms == 0) {
      return absl::DeadlineExceededError(absl::StrCat("timed out ", what));
    }
    pollfd pfd{fd, events, 0};
    const int n = poll(&pfd, 1, timeout_ms);
    // POLLERR/POLLHUP also count as ready: the following send/recv reports
    // the actual error.
    if (n > 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR) {
      return absl::InternalError(
          absl::StrCat("poll() failed ", what, ": ", ErrnoText(errno)));
    }
  }
}

absl::StatusOr<ScopedFd> TcpConnect(absl::string_view host, int port,
                                    absl::Time deadline) {
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port ", port));
  }
  const std::string host_str(host);
  const std::string endpoint = absl::StrCat(host, ":", port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* result = nullptr;
  const std::string port_text = absl::StrCat(port);
  const int rc =
      getaddrinfo(host_str.c_str(), port_text.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve host '", host, "': ", gai_strerror(rc)));
  }
  absl::Status last =
      absl::UnavailableError(absl::StrCat("no address for ", endpoint));
  for (const addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    absl::StatusOr<ScopedFd> fd = ConnectOne(*ai, deadline, endpoint);
    if (fd.ok()) {
      freeaddrinfo(result);
      return fd;
    }
    last = fd.status();
    // A timeout has consumed the whole budget; trying the remaining
    // addresses would only overrun it.
    if (absl::IsDeadlineExceeded(last)) break;
  }
  freeaddrinfo(result);
  return last;
}

absl::Status SendAll(int fd, absl::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    // MSG_NOSIGNAL: a peer that resets the connection must produce an error,
    // not a SIGPIPE that kills the test binary.
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      absl::Status s = WaitFd(fd, POLLOUT, deadline, "sending");
      if (!s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat("send() failed: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> RecvSome(int fd, char* buf, size_t size,
                                absl::Time deadline) {
  for (;;) {
    const ssize_t n = recv(fd, buf, size, 0);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      absl::Status s = WaitFd(fd, POLLIN, deadline, "waiting for data");
      if (!s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat("recv() failed: ", ErrnoText(errno)));
  }
}

}  // namespace natsgw::testing::internal
