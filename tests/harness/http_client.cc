#include "harness/http_client.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "harness/socket.h"

namespace natsgw::testing {
namespace {

// Responses larger than this are refused: no test endpoint legitimately
// serves more, and a runaway server must not exhaust the test's memory.
constexpr size_t kMaxResponseBytes = 64 << 20;

// Position just past the header block ("\r\n\r\n" or, leniently, "\n\n"), or
// npos if the headers are not complete yet.
size_t HeaderEnd(absl::string_view raw) {
  const size_t crlf = raw.find("\r\n\r\n");
  const size_t lf = raw.find("\n\n");
  if (crlf == absl::string_view::npos && lf == absl::string_view::npos) {
    return absl::string_view::npos;
  }
  if (lf == absl::string_view::npos ||
      (crlf != absl::string_view::npos && crlf < lf)) {
    return crlf + 4;
  }
  return lf + 2;
}

struct ParsedHead {
  int status = 0;
  std::string content_type;
  bool chunked = false;
  // -1 when the server sent no Content-Length (body ends at EOF).
  int64_t content_length = -1;
};

absl::StatusOr<ParsedHead> ParseHead(absl::string_view head) {
  ParsedHead parsed;
  bool first = true;
  for (absl::string_view line : absl::StrSplit(head, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (first) {
      first = false;
      // "HTTP/1.1 200 OK": the reason phrase is optional and ignored.
      std::vector<absl::string_view> parts =
          absl::StrSplit(line, absl::MaxSplits(' ', 2));
      if (parts.size() < 2 || !absl::StartsWith(parts[0], "HTTP/") ||
          !absl::SimpleAtoi(parts[1], &parsed.status) || parsed.status < 100 ||
          parsed.status > 999) {
        return absl::DataLossError(
            absl::StrCat("malformed HTTP status line: '", line, "'"));
      }
      continue;
    }
    if (line.empty()) continue;
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    const absl::string_view name =
        absl::StripAsciiWhitespace(line.substr(0, colon));
    const absl::string_view value =
        absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (absl::EqualsIgnoreCase(name, "Content-Type")) {
      parsed.content_type = std::string(value);
    } else if (absl::EqualsIgnoreCase(name, "Content-Length")) {
      if (!absl::SimpleAtoi(value, &parsed.content_length) ||
          parsed.content_length < 0) {
        return absl::DataLossError(
            absl::StrCat("malformed Content-Length: '", value, "'"));
      }
    } else if (absl::EqualsIgnoreCase(name, "Transfer-Encoding")) {
      parsed.chunked =
          absl::StrContains(absl::AsciiStrToLower(value), "chunked");
    }
  }
  if (first) return absl::DataLossError("empty HTTP response");
  return parsed;
}

// Removes chunked transfer encoding. Servers should not use it for an HTTP/1.0
// request, but tolerating it costs little and avoids a confusing failure if a
// metrics endpoint does so anyway.
absl::StatusOr<std::string> Dechunk(absl::string_view raw) {
  std::string out;
  for (;;) {
    const size_t eol = raw.find("\r\n");
    if (eol == absl::string_view::npos) {
      return absl::DataLossError("truncated chunked body");
    }
    absl::string_view size_text = raw.substr(0, eol);
    // Chunk extensions (";name=value") are allowed and meaningless here.
    size_text = size_text.substr(0, size_text.find(';'));
    size_t size = 0;
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(size_text), &size)) {
      return absl::DataLossError("malformed chunk size");
    }
    raw.remove_prefix(eol + 2);
    if (size == 0) return out;  // Trailers, if any, are ignored.
    if (raw.size() < size + 2) {
      return absl::DataLossError("truncated chunked body");
    }
    out.append(raw.data(), size);
    raw.remove_prefix(size + 2);
  }
}

}  // namespace

absl::StatusOr<HttpResponse> HttpGet(absl::string_view host, int port,
                                     absl::string_view path,
                                     absl::Duration timeout) {
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port ", port));
  }
  if (!absl::StartsWith(path, "/") ||
      path.find_first_of("\r\n ") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad path '", path, "'"));
  }
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<internal::ScopedFd> fd =
      internal::TcpConnect(host, port, deadline);
  if (!fd.ok()) return fd.status();

  // An IPv6 literal must be bracketed in the Host header.
  const std::string host_header = absl::StrContains(host, ':')
                                      ? absl::StrCat("[", host, "]:", port)
                                      : absl::StrCat(host, ":", port);
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host_header,
                   "\r\nUser-Agent: natsgw-test-harness\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n");
  absl::Status sent = internal::SendAll(fd->get(), request, deadline);
  if (!sent.ok()) return sent;

  // Read until EOF, or until Content-Length bytes of body have arrived (some
  // servers linger before closing, and waiting for their EOF would only slow
  // every probe down).
  std::string raw;
  size_t header_end = absl::string_view::npos;
  ParsedHead head;
  char buf[16384];
  for (;;) {
    if (header_end == absl::string_view::npos) {
      header_end = HeaderEnd(raw);
      if (header_end != absl::string_view::npos) {
        absl::StatusOr<ParsedHead> parsed =
            ParseHead(absl::string_view(raw).substr(0, header_end));
        if (!parsed.ok()) return parsed.status();
        head = *std::move(parsed);
      }
    }
    if (header_end != absl::string_view::npos && !head.chunked &&
        head.content_length >= 0 &&
        raw.size() - header_end >= static_cast<size_t>(head.content_length)) {
      break;
    }
    absl::StatusOr<size_t> n =
        internal::RecvSome(fd->get(), buf, sizeof(buf), deadline);
    if (!n.ok()) {
      return absl::Status(n.status().code(),
                          absl::StrCat("HTTP GET ", host_header, path, ": ",
                                       n.status().message()));
    }
    if (*n == 0) break;  // EOF.
    raw.append(buf, *n);
    if (raw.size() > kMaxResponseBytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("HTTP response exceeds ", kMaxResponseBytes, " bytes"));
    }
  }

  if (header_end == absl::string_view::npos) {
    if (raw.empty()) {
      return absl::UnavailableError(absl::StrCat("connection to ", host_header,
                                                 " closed without a response"));
    }
    return absl::DataLossError("HTTP response ended inside the headers");
  }
  HttpResponse response;
  response.status = head.status;
  response.content_type = std::move(head.content_type);
  absl::string_view body = absl::string_view(raw).substr(header_end);
  if (head.chunked) {
    absl::StatusOr<std::string> dechunked = Dechunk(body);
    if (!dechunked.ok()) return dechunked.status();
    response.body = *std::move(dechunked);
  } else if (head.content_length >= 0) {
    if (body.size() < static_cast<size_t>(head.content_length)) {
      return absl::DataLossError(absl::StrCat("HTTP body truncated: got ",
                                              body.size(), " of ",
                                              head.content_length, " bytes"));
    }
    response.body = std::string(body.substr(0, head.content_length));
  } else {
    response.body = std::string(body);
  }
  return response;
}

}  // namespace natsgw::testing
