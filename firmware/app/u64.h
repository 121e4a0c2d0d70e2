// Decimal text of a 64-bit count: newlib-nano's printf has no %llu.
#ifndef PKW_APP_U64_H
#define PKW_APP_U64_H

#include <stdint.h>

namespace pkw {
// Rotating buffers, so up to four can appear in one printf.
const char* U64(uint64_t v);
}  // namespace pkw

#endif
