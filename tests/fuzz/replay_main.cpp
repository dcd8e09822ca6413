// Replays fuzz inputs through a target's LLVMFuzzerTestOneInput without libFuzzer, so the
// normal (gcc) and ASan builds re-check every seed and every kept finding under ctest.
//
//   <name>_replay DIR_OR_FILE...
//
// Every regular file below each argument is run once, in name order. A target signals a
// failed check with abort(), so the first failing input ends the run: its path is printed
// first. A file whose name ends in ".known-failure" is a reported product bug kept as a
// regression before its fix: it is run in a child process, with WSGATE_FUZZ_STRICT set (the
// targets then drop their tolerance for known product bugs), and must fail there; once it
// passes, the replay fails and asks for the suffix (and the tolerance) to be removed.

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kKnownFailure = ".known-failure";

std::vector<uint8_t> readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void runOne(const std::vector<uint8_t>& bytes) {
  // A copy sized exactly, so ASan sees reads past the end as libFuzzer would.
  std::vector<uint8_t> copy(bytes);
  LLVMFuzzerTestOneInput(copy.empty() ? nullptr : copy.data(), copy.size());
}

bool endsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// True when the input still fails (the child died or exited non-zero).
bool stillFails(const std::vector<uint8_t>& bytes) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    // The expected abort's report would read as a failure in the log: silence the child.
    if (std::freopen("/dev/null", "w", stderr) == nullptr) _exit(3);
    setenv("WSGATE_FUZZ_STRICT", "1", 1);
    runOne(bytes);
    _exit(0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path root(argv[i]);
    std::error_code ec;
    if (fs::is_regular_file(root, ec)) {
      files.push_back(root);
      continue;
    }
    if (!fs::is_directory(root, ec)) continue;  // an empty regressions/ may not exist yet
    for (const auto& entry : fs::recursive_directory_iterator(root, ec)) {
      if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') {
        files.push_back(entry.path());
      }
    }
  }
  std::sort(files.begin(), files.end());

  std::size_t ran = 0, known = 0;
  for (const fs::path& path : files) {
    const std::vector<uint8_t> bytes = readFile(path);
    if (endsWith(path.filename().string(), kKnownFailure)) {
      if (!stillFails(bytes)) {
        std::printf(
            "replay: %s now passes: the bug is fixed; remove the '%s' suffix and the "
            "target's tolerance for it\n",
            path.c_str(), kKnownFailure.data());
        return 1;
      }
      ++known;
      continue;
    }
    std::printf("replay: %s\n", path.c_str());
    std::fflush(stdout);
    runOne(bytes);
    ++ran;
  }
  std::printf("replay: %zu inputs passed, %zu known failures still fail\n", ran, known);
  return ran + known == 0 ? 1 : 0;
}
