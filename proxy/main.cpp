// wsgate [-c FILE] | wsgate --check -c FILE | wsgate --version
#include <cstring>
#include <iostream>
#include <string>

#include "proxy/control/server.h"
#include "proxy/log.h"
#include "wsgate/version.h"

namespace {

int usage(int code) {
  (code == 0 ? std::cout : std::cerr)
      << "usage: wsgate [-c FILE]          run (FILE defaults to conf/wsgate.yaml)\n"
         "       wsgate --check -c FILE    validate the config, print ok or FILE:LINE:COL errors\n"
         "       wsgate --version\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = "conf/wsgate.yaml";
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--version" || arg == "-v") {
      std::cout << "wsgate " << WSGATE_VERSION << "\n";
      return 0;
    } else if (arg == "--check" || arg == "-t") {
      check = true;
    } else if ((arg == "-c" || arg == "--config") && i + 1 < argc) {
      config = argv[++i];
    } else if (arg == "-h" || arg == "--help") {
      return usage(0);
    } else {
      std::cerr << "wsgate: unknown argument '" << arg << "'\n";
      return usage(2);
    }
  }
  if (check) return wsgate::proxy::checkConfig(config);
  const int status = wsgate::proxy::runServer(config);
  wsgate::proxy::shutdownLogging();  // the access lines still queued are written out
  return status;
}
