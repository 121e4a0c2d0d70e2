// One chain of stem rows for the step graph (docs/STREAMING.md, "The int8 step graph"): each
// block's last input rows, which the next step takes as its state, and the ring of the last final
// rows, which the head pools. The runtime (polykws.cc) and the step benchmark (app/step_main.cc)
// keep their chains in it; the geometry comes from the generated PKW_SG_* constants.
#ifndef PKW_STEP_CHAIN_H_
#define PKW_STEP_CHAIN_H_

#include <stdint.h>
#include <string.h>

namespace pkw {

template <int Blocks, int StateRows, int Rows, int RowBytes, int HeadRows>
struct StepChain {
  static constexpr int kStateBytes = StateRows * RowBytes;

  int8_t state[Blocks][kStateBytes];  // oldest row first
  int8_t finals[HeadRows * RowBytes];  // ring; finals_next is its oldest row
  uint32_t finals_next;

  void Clear() {
    memset(state, 0, sizeof state);
    finals_next = 0;
  }

  // Block `b`'s state after a step: the newest StateRows rows of (state, the step's Rows new rows).
  void Absorb(int b, const int8_t* rows) {
    int8_t* s = state[b];
    if (Rows >= StateRows) {
      memcpy(s, rows + (Rows - StateRows) * RowBytes, kStateBytes);
    } else {
      memmove(s, s + Rows * RowBytes, (StateRows - Rows) * RowBytes);
      memcpy(s + (StateRows - Rows) * RowBytes, rows, Rows * RowBytes);
    }
  }

  // The step's Rows new final rows enter the ring, oldest first.
  void PushFinals(const int8_t* rows) {
    for (int r = 0; r < Rows; ++r) {
      memcpy(finals + finals_next * RowBytes, rows + r * RowBytes, RowBytes);
      finals_next = (finals_next + 1) % HeadRows;
    }
  }

  // The head's input: the ring's rows, oldest first.
  void CopyFinals(int8_t* dst) const {
    const uint32_t oldest = finals_next;
    memcpy(dst, finals + oldest * RowBytes, (HeadRows - oldest) * RowBytes);
    memcpy(dst + (HeadRows - oldest) * RowBytes, finals, oldest * RowBytes);
  }
};

}  // namespace pkw

#endif  // PKW_STEP_CHAIN_H_
