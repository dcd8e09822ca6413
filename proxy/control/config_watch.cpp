#include "proxy/control/config_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace wsgate::proxy {

std::unique_ptr<ConfigWatch> ConfigWatch::start(event_base* base, std::vector<std::string> paths,
                                                std::function<void()> onChange,
                                                std::string& error) {
  std::unique_ptr<ConfigWatch> w(new ConfigWatch());
  w->paths_ = std::move(paths);
  w->onChange_ = std::move(onChange);
  w->fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd_ < 0) {
    error = std::string("inotify: ") + std::strerror(errno);
    return nullptr;
  }
  constexpr uint32_t kEvents =
      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_MODIFY;
  for (const std::string& path : w->paths_) {
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : path.substr(0, slash);
    // A directory watched twice gets the same watch descriptor back: harmless.
    if (inotify_add_watch(w->fd_, dir.c_str(), kEvents) < 0) {
      error = "cannot watch " + dir + ": " + std::strerror(errno);
      return nullptr;
    }
    w->seen_.push_back(contents(path));
  }
  w->readable_.reset(
      event_new(base, w->fd_, EV_READ | EV_PERSIST, &ConfigWatch::onReadableCb, w.get()));
  w->settled_.reset(evtimer_new(base, &ConfigWatch::onSettledCb, w.get()));
  event_add(w->readable_.get(), nullptr);
  return w;
}

ConfigWatch::~ConfigWatch() {
  readable_.reset();
  settled_.reset();
  if (fd_ >= 0) ::close(fd_);
}

void ConfigWatch::onReadableCb(evutil_socket_t, short, void* self) noexcept {
  auto* w = static_cast<ConfigWatch*>(self);
  // Which file changed does not matter: the directory may hold the config behind a
  // symlink, and onSettled compares the bytes anyway.
  alignas(inotify_event) char buf[4096];
  while (::read(w->fd_, buf, sizeof buf) > 0) {
  }
  const timeval tv = net::toTimeval(kDebounce);
  evtimer_add(w->settled_.get(), &tv);  // re-armed by every event: fires after the last
}

void ConfigWatch::onSettledCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<ConfigWatch*>(self)->onSettled();
}

void ConfigWatch::onSettled() {
  bool changed = false;
  for (std::size_t i = 0; i < paths_.size(); ++i) {
    std::string now = contents(paths_[i]);
    if (now == seen_[i]) continue;
    seen_[i] = std::move(now);
    changed = true;
  }
  if (changed) onChange_();
}

std::string ConfigWatch::contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace wsgate::proxy
