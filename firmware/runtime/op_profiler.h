// Per-op timing of one TFLM Invoke: what a PROFILE=1 build reports. Off by default in every app,
// so benchmark figures never include the profiler's own cost.
#ifndef PKW_OP_PROFILER_H_
#define PKW_OP_PROFILER_H_

#include <stdint.h>

#include "tensorflow/lite/micro/micro_profiler_interface.h"

namespace pkw {

class OpProfiler : public tflite::MicroProfilerInterface {
 public:
  // `clock`: a monotonic counter (SysTick ticks on the project's boards); none reads 0.
  explicit OpProfiler(uint64_t (*clock)(void) = nullptr) : clock_(clock) {}
  void set_clock(uint64_t (*clock)(void)) { clock_ = clock; }
  uint32_t BeginEvent(const char* tag) override {
    if (count_ >= kMaxEvents) return kMaxEvents;
    tags_[count_] = tag;
    start_[count_] = Now();
    return count_++;
  }
  void EndEvent(uint32_t handle) override {
    if (handle < kMaxEvents) ticks_[handle] = Now() - start_[handle];
  }
  void Reset() { count_ = 0; }
  uint32_t count() const { return count_; }
  const char* tag(uint32_t i) const { return tags_[i]; }
  uint64_t ticks(uint32_t i) const { return ticks_[i]; }

 private:
  uint64_t Now() const { return clock_ != nullptr ? clock_() : 0u; }
  static constexpr uint32_t kMaxEvents = 64;
  uint64_t (*clock_)(void);
  const char* tags_[kMaxEvents] = {};
  uint64_t start_[kMaxEvents] = {};
  uint64_t ticks_[kMaxEvents] = {};
  uint32_t count_ = 0;
};

}  // namespace pkw

#endif  // PKW_OP_PROFILER_H_
