/* Multilingual KWS runtime: one int8 base model and N language blobs in flash (a PKWF image),
 * one language active at a time.
 *
 * select_language() rebuilds the active model: for a blob language it patches a RAM copy of the
 * base (firmware/blob.c verifies CRC, base SHA-256 and target SHA-256 first), then it (re)creates
 * the TFLM MicroInterpreter on that model and allocates its tensors in the static arena. No heap
 * is used: the interpreter lives in static storage and is destroyed before the model it points at
 * is overwritten.
 */
#ifndef PKW_KWS_RUNTIME_H_
#define PKW_KWS_RUNTIME_H_

#include <stddef.h>
#include <stdint.h>

#include "blob.h"

#ifndef PKW_PROFILE
#define PKW_PROFILE 0
#endif
// 1: MEAN uses the bit-exact global-pooling fast path (fast_mean.h); 0: TFLM's reference MEAN.
#ifndef PKW_FAST_MEAN
#define PKW_FAST_MEAN 0
#endif

// A pack generated with the base's streaming graphs (polykws.firmware.stepbench.write_runtime_step_graphs)
// runs them in place of the windowed graph: the step graph once per step, the head at the detector's
// stride (docs/STREAMING.md, "The int8 step graph").
#if defined(__has_include)
#if __has_include("pkw_step_graphs.h")
#include "pkw_step_graphs.h"
#define PKW_STEP_GRAPHS 1
#endif
#endif
#ifndef PKW_STEP_GRAPHS
#define PKW_STEP_GRAPHS 0
#endif

namespace pkw {

enum class Status {
  kOk = 0,
  kImageInvalid,      // PKWF table or CRC refused (see image_error())
  kBaseInvalid,       // base SHA-256 does not match the image header
  kUnknownLanguage,   // neither the base language nor a blob in the image
  kBlobInvalid,       // blob refused while parsing/applying (see blob_error())
  kModelInvalid,      // flatbuffer schema version or tensor shapes not what the header says
  kInterpreterError,  // AllocateTensors / Invoke failed (TFLM logged why)
};

const char* StatusName(Status s);

// A monotonic counter the runtime reads to time its steps (SysTick ticks on the project's boards);
// none means every *_ticks() figure stays 0.
using ClockFn = uint64_t (*)(void);

class KwsRuntime {
 public:
  // Validates the flash image's table and CRC and verifies the base's SHA-256 once.
  Status Init(const uint8_t* image, size_t image_size, ClockFn clock = nullptr);

  // Makes `lang` the active language. Cheap if it already is.
  Status SelectLanguage(const char* lang);

  // Runs one inference on int8 features (PKW_INPUT_BYTES) and copies all int8 output slots
  // (PKW_NUM_CLASSES) to `scores`. Returns the arg-max over the active language's labels
  // (the first num_labels() slots), or -1 on error.
  int Classify(const int8_t* features, int8_t* scores);
  // The interpreter's input tensor (PKW_INPUT_BYTES), so a caller can fill it without a copy, and
  // Classify on what it holds; nullptr / -1 when no language is selected. With streaming graphs
  // these are the head graph's (its input: the last PKW_SG_HEAD_ROWS final rows).
  int8_t* input_data();
  int ClassifyInPlace(int8_t* scores);
#if PKW_STEP_GRAPHS
  // The step graph: input 0 takes PKW_SG_STEP_FRAMES model frames, inputs 1.. each block's state;
  // output b is block b's PKW_SG_ROWS new input rows, the last output the new final rows.
  int8_t* step_input(int index);
  const int8_t* step_output(int index);
  bool InvokeStep();
  uint64_t last_step_ticks() const { return last_step_ticks_; }
#endif

  const char* active_language() const { return active_lang_; }
  // Label `index` of the active language (NUL-terminated copy, truncated to cap-1 bytes); ""
  // when no language is selected, which is the state a refused SelectLanguage leaves.
  void Label(uint32_t index, char* out, size_t cap) const;
  uint32_t num_labels() const { return num_labels_; }
  // The active blob's detection threshold for label `index` (0..255), or -1 when it carries none.
  int Threshold(uint32_t index) const { return pkw_active_threshold(&active_, index); }
  uint32_t num_languages() const;       // base + blobs
  const char* language_at(uint32_t i);  // 0 = the base language
  size_t arena_used_bytes() const;
  // Static RAM outside the arena and the patched-model buffer: the interpreter and the op resolver.
  static size_t static_bytes();
  // SysTick ticks spent in the last SelectLanguage that actually switched (patch + verify + allocate).
  uint64_t last_select_ticks() const { return last_select_ticks_; }
  // SysTick ticks spent in the last Invoke().
  uint64_t last_invoke_ticks() const { return last_invoke_ticks_; }
  // Per-op timing of the last Invoke(); empty unless built with PKW_PROFILE=1.
  uint32_t profile_events() const;
  const char* profile_tag(uint32_t i) const;
  uint64_t profile_ticks(uint32_t i) const;
  pkwb_status image_error() const { return image_error_; }
  pkwb_status blob_error() const { return blob_error_; }
  bool active_is_patched() const { return active_.is_blob != 0; }

 private:
  Status CreateInterpreter(const uint8_t* model);
  void DestroyInterpreter();
  void ClearActive();

  uint64_t Now() const { return clock_ != nullptr ? clock_() : 0u; }

  pkwf_image image_{};
  ClockFn clock_ = nullptr;
  bool initialised_ = false;
  bool have_interpreter_ = false;
  char active_lang_[PKWB_LANG_BYTES + 1] = {0};
  pkw_active active_{};
  uint32_t num_labels_ = 0;
  uint64_t last_select_ticks_ = 0;
  uint64_t last_invoke_ticks_ = 0;
  uint64_t last_step_ticks_ = 0;
  pkwb_status image_error_ = PKWB_OK;
  pkwb_status blob_error_ = PKWB_OK;
  char lang_buf_[PKWB_LANG_BYTES + 1] = {0};
};

}  // namespace pkw

#endif  // PKW_KWS_RUNTIME_H_
