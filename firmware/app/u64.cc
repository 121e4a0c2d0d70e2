#include "u64.h"

namespace pkw {

const char* U64(uint64_t v) {
  static char bufs[4][21];
  static unsigned next = 0;
  char* end = bufs[next++ & 3u] + 20;
  *end = 0;
  do {
    *--end = static_cast<char>('0' + v % 10u);
    v /= 10u;
  } while (v != 0);
  return end;
}

}  // namespace pkw
