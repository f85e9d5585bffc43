#include "fault/loss_checker.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace natsgw::testing {
namespace {

// Debian's Abseil has its own string_view type, which StrCat takes.
absl::string_view Absl(std::string_view s) { return {s.data(), s.size()}; }

// Appends `text` to `list` unless it already holds kMaxListed entries, and
// counts it either way.
void Note(std::vector<std::string>& list, uint64_t& count, std::string text) {
  ++count;
  if (list.size() < LossChecker::kMaxListed) list.push_back(std::move(text));
}

// Parses a canonical unsigned decimal: digits only, no leading zero unless
// it is "0", no overflow.
template <typename T>
std::optional<T> ParseCanonical(std::string_view text) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  T value = 0;
  const auto [end, error] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

std::string SequencesText(const std::set<uint64_t>& sequences) {
  return absl::StrJoin(sequences, ",");
}

void AppendList(std::string& out, std::string_view name, uint64_t count,
                const std::vector<std::string>& list) {
  if (count == 0) return;
  absl::StrAppend(&out, "\n  ", Absl(name), " (", count,
                  "): ", absl::StrJoin(list, " "));
  if (count > list.size()) absl::StrAppend(&out, " ...");
}

}  // namespace

std::string LossChecker::MessageIdFor(int producer, uint64_t counter) {
  return absl::StrCat("p", producer, "-", counter);
}

std::optional<std::pair<int, uint64_t>> LossChecker::ParseMessageId(
    std::string_view id) {
  if (id.size() < 4 || id[0] != 'p') return std::nullopt;
  const size_t dash = id.find('-', 1);
  if (dash == std::string_view::npos) return std::nullopt;
  const std::optional<int> producer =
      ParseCanonical<int>(id.substr(1, dash - 1));
  const std::optional<uint64_t> counter =
      ParseCanonical<uint64_t>(id.substr(dash + 1));
  if (!producer.has_value() || !counter.has_value()) return std::nullopt;
  return std::make_pair(*producer, *counter);
}

void LossChecker::Attempted(int producer, uint64_t counter) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_[{producer, counter}].attempted = true;
}

void LossChecker::Acked(int producer, uint64_t counter,
                        uint64_t stream_sequence, bool duplicate) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& entry = entries_[{producer, counter}];
  entry.acked_at.insert(stream_sequence);
  if (duplicate) entry.acked_duplicate = true;
}

void LossChecker::Failed(int producer, uint64_t counter,
                         const absl::Status& status) {
  // The status is the caller's to report; the checker only needs the fact.
  (void)status;
  std::lock_guard<std::mutex> lock(mu_);
  entries_[{producer, counter}].failed = true;
}

void LossChecker::Read(int producer, uint64_t counter,
                       uint64_t stream_sequence) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_[{producer, counter}].read_at.insert(stream_sequence);
}

void LossChecker::ReadUnknown(std::string_view id, uint64_t stream_sequence) {
  std::lock_guard<std::mutex> lock(mu_);
  ++unknown_read_count_;
  if (unknown_reads_.size() < kMaxListed) {
    unknown_reads_.push_back(
        absl::StrCat("'", Absl(id.substr(0, 64)), "'@", stream_sequence));
  }
}

void LossChecker::Processed(int producer, uint64_t counter) {
  std::lock_guard<std::mutex> lock(mu_);
  ++entries_[{producer, counter}].processed;
}

LossChecker::Report LossChecker::Check() const {
  std::lock_guard<std::mutex> lock(mu_);
  Report r;
  r.unexpected_count = unknown_read_count_;
  r.unexpected = unknown_reads_;
  // Per producer: the newest (highest) stream sequence among acknowledged
  // messages with lower counters, and which message it belongs to.
  std::map<int, std::pair<uint64_t, std::string>> newest_acked;
  for (const auto& [key, e] : entries_) {
    const std::string id = MessageIdFor(key.first, key.second);
    const bool acked = !e.acked_at.empty();
    const bool read = !e.read_at.empty();
    if (e.attempted) ++r.attempted;
    if (acked) ++r.acked;
    if (e.acked_duplicate) ++r.acked_duplicate;
    if (e.failed) ++r.failed;
    if (read) ++r.read_distinct;
    if (e.read_at.size() > 1) r.stored_duplicates += e.read_at.size() - 1;
    if (e.processed > 0) ++r.processed_distinct;
    if (e.processed > 1) r.processed_duplicates += e.processed - 1;

    if (!e.attempted && (read || acked || e.processed > 0)) {
      Note(r.unexpected, r.unexpected_count,
           absl::StrCat(id, read ? "@" + SequencesText(e.read_at) : "",
                        acked ? " (acked)" : "",
                        e.processed > 0 ? " (processed)" : ""));
    }
    if (acked && !read) {
      Note(r.lost, r.lost_count,
           absl::StrCat(id, " (acked@", SequencesText(e.acked_at), ")"));
    }
    if (e.read_at.size() > 1) {
      Note(r.stored_twice, r.stored_twice_count,
           absl::StrCat(id, "@", SequencesText(e.read_at)));
    }
    if (e.processed > 1) {
      Note(r.effect_twice, r.effect_twice_count,
           absl::StrCat(id, " x", e.processed));
    }
    if (acked && (e.acked_at.size() > 1 ||
                  (read && !e.read_at.contains(*e.acked_at.begin())))) {
      Note(r.misacked, r.misacked_count,
           absl::StrCat(id, " acked@", SequencesText(e.acked_at), " stored@",
                        read ? SequencesText(e.read_at) : "none"));
    }
    if (read && !acked) ++r.recovered;
    if (read && e.processed == 0) {
      Note(r.unprocessed, r.unprocessed_count,
           absl::StrCat(id, "@", SequencesText(e.read_at)));
    }
    // entries_ is ordered by (producer, counter), so for each producer the
    // acknowledged messages come in counter order here.
    if (acked && read) {
      const uint64_t sequence = *e.read_at.begin();
      auto [it, first] = newest_acked.try_emplace(key.first, sequence, id);
      if (!first) {
        if (sequence <= it->second.first) {
          Note(r.out_of_order, r.out_of_order_count,
               absl::StrCat(id, "@", sequence, " after ", it->second.second,
                            "@", it->second.first));
        } else {
          it->second = {sequence, id};
        }
      }
    }
  }
  return r;
}

absl::Status LossChecker::Verify() const {
  const Report report = Check();
  if (report.ok()) return absl::OkStatus();
  return absl::DataLossError(report.ToString());
}

bool LossChecker::Report::ok() const {
  return lost_count == 0 && unexpected_count == 0 && stored_twice_count == 0 &&
         effect_twice_count == 0 && out_of_order_count == 0 &&
         misacked_count == 0;
}

std::string LossChecker::Report::ToString() const {
  std::string out = absl::StrCat(
      ok() ? "loss check OK" : "loss check FAILED", ": attempted ", attempted,
      ", acked ", acked, " (", acked_duplicate, " as duplicate), failed ",
      failed, ", read ", read_distinct, " (+", stored_duplicates,
      " stored copies), processed ", processed_distinct, " (+",
      processed_duplicates, " repeated effects), recovered ", recovered,
      ", unprocessed ", unprocessed_count);
  AppendList(out, "lost", lost_count, lost);
  AppendList(out, "unexpected", unexpected_count, unexpected);
  AppendList(out, "stored twice", stored_twice_count, stored_twice);
  AppendList(out, "effect twice", effect_twice_count, effect_twice);
  AppendList(out, "out of order", out_of_order_count, out_of_order);
  AppendList(out, "misacked", misacked_count, misacked);
  AppendList(out, "unprocessed (reported only)", unprocessed_count,
             unprocessed);
  return out;
}

void UnavailabilityMeter::Success(absl::Time at) {
  std::lock_guard<std::mutex> lock(mu_);
  ++successes_;
  first_event_ = std::min(first_event_, at);
  if (at <= last_success_) return;
  if (disrupted_ || at > first_fault_) {
    // An outage before the first success counts from the first event.
    const absl::Time from =
        last_success_ == absl::InfinitePast() ? first_event_ : last_success_;
    longest_ = std::max(longest_, at - from);
    disrupted_ = false;
  }
  last_success_ = at;
}

void UnavailabilityMeter::Failure(absl::Time at) {
  std::lock_guard<std::mutex> lock(mu_);
  ++failures_;
  Disrupted(at);
}

void UnavailabilityMeter::Fault(absl::Time at) {
  std::lock_guard<std::mutex> lock(mu_);
  ++faults_;
  first_fault_ = std::min(first_fault_, at);
  Disrupted(at);
}

void UnavailabilityMeter::Disrupted(absl::Time at) {
  first_event_ = std::min(first_event_, at);
  // A disruption older than the newest success lies in a gap that already
  // closed; it cannot reopen it.
  if (at < last_success_) return;
  disrupted_ = true;
  last_disruption_ = std::max(last_disruption_, at);
}

absl::Duration UnavailabilityMeter::LongestGap() const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::Duration longest = longest_;
  if (disrupted_) {
    const absl::Time from =
        last_success_ == absl::InfinitePast() ? first_event_ : last_success_;
    longest = std::max(longest, last_disruption_ - from);
  }
  return longest;
}

uint64_t UnavailabilityMeter::successes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return successes_;
}

uint64_t UnavailabilityMeter::failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

uint64_t UnavailabilityMeter::faults() const {
  std::lock_guard<std::mutex> lock(mu_);
  return faults_;
}

std::string FaultResultLine(
    std::string_view test, const LossChecker::Report& report,
    const UnavailabilityMeter& meter,
    const std::vector<std::pair<std::string, int64_t>>& extra) {
  std::string line = absl::StrCat(
      "FAULT-RESULT {\"test\":\"", Absl(test),
      "\",\"attempted\":", report.attempted, ",\"acked\":", report.acked,
      ",\"acked_dup\":", report.acked_duplicate, ",\"failed\":", report.failed,
      ",\"read\":", report.read_distinct, ",\"lost\":", report.lost_count,
      ",\"dups\":", report.stored_duplicates,
      ",\"effect_dups\":", report.processed_duplicates,
      ",\"unexpected\":", report.unexpected_count,
      ",\"out_of_order\":", report.out_of_order_count,
      ",\"misacked\":", report.misacked_count,
      ",\"recovered\":", report.recovered,
      ",\"unavailable_ms\":", absl::ToInt64Milliseconds(meter.LongestGap()));
  for (const auto& [key, value] : extra) {
    absl::StrAppend(&line, ",\"", key, "\":", value);
  }
  absl::StrAppend(&line, "}");
  return line;
}

}  // namespace natsgw::testing
