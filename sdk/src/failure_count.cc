#include "failure_count.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <exception>
#include <memory>
#include <string>
#include <utility>

namespace natsgw::internal {

absl::Status CountFailure(const Connection& connection,
                          absl::string_view operation, absl::Status status) {
  const std::shared_ptr<prometheus::Registry>& registry = connection.registry();
  if (status.ok() || registry == nullptr) return status;
  // With the same name (and no constant labels) the registry hands back the
  // gateway's family. prometheus-cpp reports conflicts by throwing; the
  // failure is returned all the same.
  try {
    prometheus::BuildCounter()
        .Name("natsgw_errors_total")
        .Help("Failed operations by operation and status code.")
        .Register(*registry)
        .Add({{"operation", std::string(operation)},
              {"code", absl::StatusCodeToString(status.code())}})
        .Increment();
  } catch (const std::exception&) {
  }
  return status;
}

}  // namespace natsgw::internal
