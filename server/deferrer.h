// Deferrer: "run this on my thread once the work that is ready now is done".
//
// kvd's I/O threads each install one that posts to their event loop: a
// function deferred from a request handler runs after the handlers of every
// other request that the same wake-up delivered. Code that wants to group the
// work of one wake-up (server/write_batcher.h) asks Current() for it; off the
// I/O threads there is none, and such code does its work at once.
//
// This header holds no asio, so that the node and its tests need none.
#pragma once

#include <functional>

namespace ringkv {

class Deferrer {
 public:
  virtual ~Deferrer() = default;

  // Runs `fn` on this thread later, after the work ready now. `fn` may never
  // run if the thread's loop is stopped first; it is then destroyed.
  virtual void Defer(std::function<void()> fn) = 0;

  // The calling thread's deferrer, or nullptr.
  static Deferrer* Current();
  // Installs `d` (nullptr removes it) for the calling thread.
  // REQUIRES: `d` outlives its installation.
  static void SetCurrent(Deferrer* d);
};

}  // namespace ringkv
