#pragma once
// `watch: true`: reload when the config file (or the Lua script it names) changes. inotify
// watches each file's directory, not the file, so an editor that writes a new file and renames it
// over the old one (vim, sed -i, Kubernetes' ConfigMap symlink swap) is seen as well as an in-place
// write. Events are debounced (kDebounce after the last one) and a reload is asked for only when
// the bytes of one of the files differ from the last ones seen: a touch or a save without change is
// not one.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proxy/net/handles.h"

namespace wsgate::proxy {

class ConfigWatch {
public:
  static constexpr std::chrono::milliseconds kDebounce{200};

  // nullptr with `error` set when inotify cannot watch a directory.
  static std::unique_ptr<ConfigWatch> start(event_base* base, std::vector<std::string> paths,
                                            std::function<void()> onChange, std::string& error);
  const std::vector<std::string>& paths() const { return paths_; }
  ~ConfigWatch();
  ConfigWatch(const ConfigWatch&) = delete;
  ConfigWatch& operator=(const ConfigWatch&) = delete;

private:
  ConfigWatch() = default;
  static void onReadableCb(evutil_socket_t, short, void* self) noexcept;
  static void onSettledCb(evutil_socket_t, short, void* self) noexcept;
  void onSettled();
  static std::string contents(const std::string& path);

  std::vector<std::string> paths_;
  std::function<void()> onChange_;
  int fd_ = -1;
  net::EventPtr readable_;
  net::EventPtr settled_;
  std::vector<std::string> seen_;  // each file's bytes when last looked at
};

}  // namespace wsgate::proxy
