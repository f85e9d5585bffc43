#include "natsgw/headers.h"

#include <algorithm>

#include "absl/strings/match.h"

namespace natsgw {

void Headers::Add(absl::string_view key, absl::string_view value) {
  fields_.push_back(HeaderField{std::string(key), std::string(value)});
}

void Headers::Set(absl::string_view key, absl::string_view value) {
  Remove(key);
  Add(key, value);
}

size_t Headers::Remove(absl::string_view key) {
  const size_t before = fields_.size();
  fields_.erase(std::remove_if(fields_.begin(), fields_.end(),
                               [key](const HeaderField& f) {
                                 return absl::EqualsIgnoreCase(f.key, key);
                               }),
                fields_.end());
  return before - fields_.size();
}

std::optional<absl::string_view> Headers::Get(absl::string_view key) const {
  for (const HeaderField& f : fields_) {
    if (absl::EqualsIgnoreCase(f.key, key)) return absl::string_view(f.value);
  }
  return std::nullopt;
}

std::vector<absl::string_view> Headers::GetAll(absl::string_view key) const {
  std::vector<absl::string_view> values;
  for (const HeaderField& f : fields_) {
    if (absl::EqualsIgnoreCase(f.key, key)) values.push_back(f.value);
  }
  return values;
}

}  // namespace natsgw
