#include "server/deferrer.h"

namespace ringkv {

namespace {
thread_local Deferrer* current = nullptr;
}  // namespace

Deferrer* Deferrer::Current() { return current; }
void Deferrer::SetCurrent(Deferrer* d) { current = d; }

}  // namespace ringkv
