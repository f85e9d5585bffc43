// flags.h: the flags several natsgw commands share (defined in flags.cc).
// A command's own flags live in its own file; which command takes which
// flag is the command table's business (cli.h, Command::flags).
//
// Thread-safety: read with absl::GetFlag (thread-safe) after parsing.
#ifndef NATSGW_SDK_TOOLS_NATSGW_FLAGS_H_
#define NATSGW_SDK_TOOLS_NATSGW_FLAGS_H_

#include <string>

#include "absl/flags/declare.h"
#include "absl/time/time.h"

ABSL_DECLARE_FLAG(std::string, schema);
ABSL_DECLARE_FLAG(std::string, schema_include);
ABSL_DECLARE_FLAG(absl::Duration, wait);
ABSL_DECLARE_FLAG(absl::Duration, timeout);
ABSL_DECLARE_FLAG(std::string, header);
ABSL_DECLARE_FLAG(std::string, type);
ABSL_DECLARE_FLAG(int, count);
ABSL_DECLARE_FLAG(int, concurrency);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(bool, raw);
ABSL_DECLARE_FLAG(bool, progress);
ABSL_DECLARE_FLAG(bool, verbose);

#endif  // NATSGW_SDK_TOOLS_NATSGW_FLAGS_H_
