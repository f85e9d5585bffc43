// natsgw-gen: typed C++ stubs for the rpc_service declarations of FlatBuffers
// schemas. See generator.h for what is generated and README.md "Typed RPC"
// for how to use it; natsgw_generate() (cmake/NatsgwGenerate.cmake) runs it
// at build time next to flatc.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "generator.h"
#include "natsgw/version.h"

namespace {

constexpr char kUsage[] =
    "usage: natsgw-gen [-I DIR]... [--include-prefix PATH] -o OUT_DIR "
    "SCHEMA.fbs...\n"
    "\n"
    "Generates OUT_DIR/<schema>_natsgw.h for each schema: for every\n"
    "rpc_service S declared in it, SMethods (descriptors), SClient (typed\n"
    "client) and SServiceBase (typed service base class). The header\n"
    "includes flatc's <schema>_generated.h, which must be generated into the\n"
    "same directory (flatc --cpp).\n"
    "\n"
    "  -I DIR, --include-dir DIR  search DIR for `include` statements\n"
    "  --include-prefix PATH      directory the headers are included from\n"
    "                             (e.g. natsgw/schemas); makes include guards\n"
    "                             unique\n"
    "  -o DIR, --out DIR          output directory (must exist)\n"
    "  --stdout                   print the header instead (one schema)\n"
    "  --version                  print the version and exit\n"
    "  -h, --help                 print this help and exit\n"
    "\n"
    "Exit status: 0 on success, 1 if a schema has errors (printed as\n"
    "<file>:<line>: ...), 2 for bad usage or an unwritable output.\n";

int Usage(const std::string& problem) {
  std::cerr << "natsgw-gen: " << problem << "\n\n" << kUsage;
  return 2;
}

// Writes `content` to `path` unless it already holds exactly that, so that
// an unchanged schema does not trigger recompilation of its users.
bool WriteIfChanged(const std::string& path, const std::string& content) {
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::ostringstream existing;
      existing << in.rdbuf();
      if (existing.str() == content) return true;
    }
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  natsgw::gen::GenOptions options;
  std::string out_dir;
  bool to_stdout = false;
  std::vector<std::string> schemas;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](std::string* into) {
      if (i + 1 >= argc) return false;
      *into = argv[++i];
      return true;
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--version") {
      std::cout << "natsgw-gen " << natsgw::Version() << "\n";
      return 0;
    } else if (arg == "-I" || arg == "--include-dir") {
      std::string dir;
      if (!value(&dir)) return Usage(arg + " needs a directory");
      options.include_dirs.push_back(dir);
    } else if (arg.rfind("-I", 0) == 0 && arg.size() > 2) {
      options.include_dirs.push_back(arg.substr(2));
    } else if (arg == "--include-prefix") {
      if (!value(&options.include_prefix)) {
        return Usage("--include-prefix needs a path");
      }
    } else if (arg == "-o" || arg == "--out") {
      if (!value(&out_dir)) return Usage(arg + " needs a directory");
    } else if (arg == "--stdout") {
      to_stdout = true;
    } else if (!arg.empty() && arg[0] == '-') {
      return Usage("unknown option " + arg);
    } else {
      schemas.push_back(arg);
    }
  }
  if (schemas.empty()) return Usage("no schema given");
  if (to_stdout && schemas.size() != 1) {
    return Usage("--stdout takes exactly one schema");
  }
  if (!to_stdout && out_dir.empty()) return Usage("-o OUT_DIR is required");

  int status = 0;
  for (const std::string& schema : schemas) {
    natsgw::gen::GenResult result =
        natsgw::gen::GenerateFromFile(schema, options);
    if (!result.errors.empty()) {
      for (const natsgw::gen::GenError& e : result.errors) {
        std::cerr << e.message << "\n";
      }
      status = 1;
      continue;
    }
    if (to_stdout) {
      std::cout << result.header;
      continue;
    }
    const std::string path = absl::StrCat(out_dir, "/", result.file_name);
    if (!WriteIfChanged(path, result.header)) {
      std::cerr << "natsgw-gen: cannot write " << path << ": "
                << std::strerror(errno) << "\n";
      return 2;
    }
  }
  return status;
}
