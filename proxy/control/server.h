#pragma once
// The process: loads the config, opens listening sockets, runs one Worker per thread and
// turns signals into actions (SIGTERM/SIGINT: stop; SIGHUP: reload, with the reload issue).

#include <string>

namespace wsgate::proxy {

// Runs wsgate on `configPath` until SIGTERM/SIGINT. Returns the process exit code.
int runServer(const std::string& configPath);

// `wsgate --check`: validates the config (and resolves its addresses). Prints "ok" on
// stdout or one "FILE:LINE:COL: message" line per error on stderr. Returns the exit code.
int checkConfig(const std::string& configPath);

}  // namespace wsgate::proxy
