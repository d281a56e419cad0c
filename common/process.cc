#include "common/process.h"

#include <cstdio>
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/metrics.h"

namespace engram {
namespace {

std::string& MutableProgramName() {
  static std::string* name = new std::string("engram");
  return *name;
}

// absl::ParseCommandLine exits with 1 on an unknown flag or an unparsable value; every
// Engram process promises 2 for a bad flag, so those are checked first.
void CheckFlagSyntax(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) continue;
    absl::string_view name = arg;
    absl::string_view value;
    const size_t eq = arg.find('=');
    const bool has_value = eq != absl::string_view::npos;
    if (has_value) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (name == "undefok") return;  // the user opted into absl's own handling
    // absl's built-in flags (usage, flag files) are handled by ParseCommandLine.
    if (name == "help" || name == "helpfull" || name == "helpshort" || name == "helppackage" ||
        name == "helpon" || name == "helpmatch" || name == "version" || name == "only_check_args" ||
        name == "flagfile" || name == "fromenv" || name == "tryfromenv") {
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      if (flag != nullptr && flag->IsOfType<bool>()) continue;  // --nofoo
      flag = nullptr;
    }
    if (flag == nullptr) Exit(2, absl::StrCat("unknown flag --", name, " (see --help)"));
    if (!has_value) {
      if (flag->IsOfType<bool>()) continue;
      if (i + 1 >= argc) Exit(2, absl::StrCat("--", name, ": missing value"));
      value = argv[++i];
    }
    std::string error;
    // Parsing into the flag here is harmless: ParseCommandLine sets the same value again.
    if (!flag->ParseFrom(value, &error)) {
      Exit(2, absl::StrCat("--", name, ": ", error.empty() ? "bad value" : error, " (got \"", value,
                           "\")"));
    }
  }
}

}  // namespace

const std::string& ProgramName() { return MutableProgramName(); }

std::vector<std::string> InitProcess(int argc, char** argv, const ProcessOptions& options) {
  MutableProgramName() = options.program;
  absl::SetProgramUsageMessage(options.usage);
  // The usage config is read by --help long after this function returns: it keeps its
  // own copy of the file list.
  static std::vector<std::string>* files = new std::vector<std::string>();
  *files = options.flag_files;
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    for (const std::string& suffix : *files) {
      if (absl::EndsWith(file, suffix)) return true;
    }
    return false;
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] { return absl::StrCat(ProgramName(), " ", EngramVersion(), "\n"); };
  absl::SetFlagsUsageConfig(usage);
  CheckFlagSyntax(argc, argv);
  const std::vector<char*> parsed = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> positional(parsed.begin() + 1, parsed.end());
  if (!options.allow_positional && !positional.empty()) {
    Exit(2, absl::StrCat("unexpected argument \"", positional[0], "\" (flags are --name=value)"));
  }
  return positional;
}

void Log(absl::string_view message) {
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ",
                   ProgramName(), ": ", message, "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void Exit(int code, absl::string_view message) {
  Log(absl::StrCat("error: ", message));
  std::fflush(nullptr);
  std::_Exit(code);
}

}  // namespace engram
