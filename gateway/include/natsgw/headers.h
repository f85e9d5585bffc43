// natsgw/headers.h: the NATS header block of one message.
//
// NATS headers look like HTTP headers: an ordered list of key/value pairs in
// which a key may repeat. natsgw writes keys exactly as given and looks them up
// case-insensitively (nats.c itself is case-sensitive, and other clients write
// `Traceparent` or `traceparent`; natsgw accepts both on input).
//
//   natsgw::Headers headers;
//   headers.Add("Tenant", "acme");
//   headers.Add("Accept-Encoding", "identity");
//   std::optional<absl::string_view> tenant = headers.Get("tenant");  // "acme"
//
// On the wire, the values of one key keep their order, but distinct keys may
// arrive in a different order than they were added (nats.c 3.4.1 keeps
// headers in a hash table).
//
// Validation of keys and values happens when a message is sent
// (natsgw/validation.h), not here, so that a Headers object can also hold what
// a peer sent us verbatim.
//
// Thread-safety: a value type. Concurrent const access is safe; mutation needs
// external synchronization.
#ifndef NATSGW_HEADERS_H_
#define NATSGW_HEADERS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace natsgw {
namespace internal {
struct HeadersAccess;
}  // namespace internal

struct HeaderField {
  std::string key;
  std::string value;

  friend bool operator==(const HeaderField&, const HeaderField&) = default;
};

class Headers {
 public:
  using const_iterator = std::vector<HeaderField>::const_iterator;

  Headers() = default;
  Headers(std::initializer_list<HeaderField> fields) : fields_(fields) {}

  // Appends a field, keeping any existing field with the same key.
  void Add(absl::string_view key, absl::string_view value);

  // Removes every field whose key equals `key` ignoring ASCII case, then
  // appends one field.
  void Set(absl::string_view key, absl::string_view value);

  // Removes every field whose key equals `key` ignoring ASCII case. Returns how
  // many were removed.
  size_t Remove(absl::string_view key);

  // The first value of `key` (ASCII case-insensitive), if any. The view is
  // valid until this object is next modified or destroyed.
  std::optional<absl::string_view> Get(absl::string_view key) const;

  // Every value of `key` in order (ASCII case-insensitive).
  std::vector<absl::string_view> GetAll(absl::string_view key) const;

  bool Contains(absl::string_view key) const { return Get(key).has_value(); }

  bool empty() const { return fields_.empty(); }
  size_t size() const { return fields_.size(); }
  const_iterator begin() const { return fields_.begin(); }
  const_iterator end() const { return fields_.end(); }
  void clear() { fields_.clear(); }
  void reserve(size_t n) { fields_.reserve(n); }

  friend bool operator==(const Headers&, const Headers&) = default;

 private:
  // natsgw's receive path refills one Headers per subscription in place,
  // reusing its strings' storage.
  friend struct internal::HeadersAccess;
  std::vector<HeaderField> fields_;
};

}  // namespace natsgw

#endif  // NATSGW_HEADERS_H_
