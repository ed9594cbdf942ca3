#include "client/ctl/command_line.h"

#include <optional>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace shmhub::ctl {
namespace {

absl::Status UnknownFlag(absl::string_view name) {
  return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
}

}  // namespace

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const std::set<std::string>& known,
                                             const std::set<std::string>& repeated) {
  CommandLine out;
  bool flags_ended = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      out.positionals.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    absl::string_view body = arg;
    if (!absl::ConsumePrefix(&body, "--")) absl::ConsumePrefix(&body, "-");
    std::string name(body);
    std::optional<std::string> value;
    if (const size_t eq = body.find('='); eq != absl::string_view::npos) {
      name = std::string(body.substr(0, eq));
      value = std::string(body.substr(eq + 1));
    }
    if (name == "help" || name == "h") {
      out.help = true;
      continue;
    }

    if (repeated.count(name) != 0) {
      if (!value.has_value()) {
        if (i + 1 >= argc) {
          return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
        }
        value = argv[++i];
      }
      out.repeated[name].push_back(*value);
      out.flags_given.insert(name);
      continue;
    }

    absl::CommandLineFlag* flag = known.count(name) != 0 ? absl::FindCommandLineFlag(name) : nullptr;
    // --noname turns a boolean off.
    if (flag == nullptr && !value.has_value() && absl::StartsWith(name, "no")) {
      const std::string positive = name.substr(2);
      absl::CommandLineFlag* negated =
          known.count(positive) != 0 ? absl::FindCommandLineFlag(positive) : nullptr;
      if (negated != nullptr && negated->IsOfType<bool>()) {
        flag = negated;
        name = positive;
        value = "false";
      }
    }
    if (flag == nullptr) return UnknownFlag(name);
    if (!value.has_value()) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value '", *value, "' for --", name, ": ", error));
    }
    out.flags_given.insert(name);
  }
  return out;
}

}  // namespace shmhub::ctl
