// What the faiss-gmm subcommands (and the demo) share on the command line:
// option values parsed with messages that name the option and the value, the
// way a subcommand was started (as `faiss-gmm <command>` or under its old tool
// name, which stays as an alias for one release), and the errors that mean "bad
// usage" (exit status 2, as common command-line tools do) rather than "failed".
// Header-only, so that the demo uses it without building the CLI's library.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace faiss_gmm {
namespace cli {

/// Bad usage: unknown option, missing or malformed value. Exit status 2.
class UsageError : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

/// The whole of `value` as an integer, else UsageError naming the option.
inline int64_t to_int64(const std::string& option, const std::string& value) {
    size_t used = 0;
    long long v = 0;
    try {
        v = std::stoll(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != value.size()) throw UsageError(option + " expects an integer, got '" + value + "'");
    return v;
}

/// to_int64, and at least `min`.
inline int64_t to_int64_at_least(const std::string& option, const std::string& value, int64_t min) {
    const int64_t v = to_int64(option, value);
    if (v < min) throw UsageError(option + " must be >= " + std::to_string(min) + ", got " + value);
    return v;
}

/// The whole of `value` as a finite number, else UsageError naming the option.
inline double to_double(const std::string& option, const std::string& value) {
    size_t used = 0;
    double v = 0;
    try {
        v = std::stod(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != value.size() || !(v - v == 0)) {
        throw UsageError(option + " expects a number, got '" + value + "'");
    }
    return v;
}

/// The choice whose to_string() is value, else UsageError listing the choices.
template <class E>
E to_choice(const std::string& option, const std::string& value, std::initializer_list<E> choices) {
    std::string names;
    for (E c : choices) {
        if (value == to_string(c)) return c;
        names += std::string(names.empty() ? "" : " | ") + to_string(c);
    }
    throw UsageError(option + " expects " + names + ", got '" + value + "'");
}

/// How a subcommand was started.
struct Invocation {
    std::string command;  ///< "train", "eval", "dataset", "info"
    std::string old_name; ///< the old tool's name when started under it ("faiss-gmm-eval"), else empty

    /// What the messages and the usage call the program: "faiss-gmm eval" or the old name.
    std::string prog() const { return old_name.empty() ? "faiss-gmm " + command : old_name; }
    /// Appended to the usage under the old name.
    std::string alias_note() const {
        return old_name.empty() ? std::string()
                                : "\nnote: " + old_name + " is now `faiss-gmm " + command +
                                          "` (same options); this name stays for one release.\n";
    }
};

} // namespace cli
} // namespace faiss_gmm
