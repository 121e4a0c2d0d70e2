#include "kws_runtime.h"

#include <new>
#include <string.h>

#include "fast_mean.h"
#include "op_profiler.h"
#include "pkw_model.h"  // generated: sizes, arena, ops, base language and labels
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace pkw {
namespace {

// Exactly the ops the exported model uses (PKW_OPS comes from the model's operator codes).
#define PKW_COUNT_OP(name) +1
constexpr int kNumOps = 0 PKW_OPS(PKW_COUNT_OP) + PKW_STEP_GRAPHS;
#undef PKW_COUNT_OP
using Resolver = tflite::MicroMutableOpResolver<kNumOps>;

#if PKW_STEP_GRAPHS
// The linked step and head graphs, then the active language's model whose weights and scales they
// read (base or patched): every language runs from this RAM copy.
alignas(16) uint8_t g_linked[PKW_SG_PREFIX_BYTES + PKW_MODEL_BYTES];
uint8_t* const g_patched_model = g_linked + PKW_SG_PREFIX_BYTES;
constexpr size_t kPatchedBytes = PKW_MODEL_BYTES;
alignas(16) uint8_t g_arena[PKW_SG_HEAD_ARENA_BYTES];
alignas(16) uint8_t g_step_arena[PKW_SG_STEP_ARENA_BYTES];
alignas(tflite::MicroInterpreter) uint8_t g_step_storage[sizeof(tflite::MicroInterpreter)];
static_assert(PKW_SG_PREFIX_BYTES % 16 == 0 && PKW_SG_HEAD_OFFSET % 16 == 0, "the linked graphs keep 16-byte alignment");
#else
alignas(16) uint8_t g_arena[PKW_ARENA_BYTES];
// The active language's model when it comes from a blob: the base patched in RAM.
alignas(16) uint8_t g_patched_model[PKW_MODEL_BYTES];
constexpr size_t kPatchedBytes = sizeof g_patched_model;
#endif
alignas(Resolver) uint8_t g_resolver_storage[sizeof(Resolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

Resolver* g_resolver = nullptr;

#if PKW_PROFILE
// Per-op ticks of the most recent Invoke (build with `make ... PROFILE=1`), on the clock Init was given.
OpProfiler g_profiler;
tflite::MicroProfilerInterface* profiler() { return &g_profiler; }
#else
tflite::MicroProfilerInterface* profiler() { return nullptr; }
#endif

// With streaming graphs: the head graph's interpreter (its output is the scores).
tflite::MicroInterpreter* interpreter() {
  return reinterpret_cast<tflite::MicroInterpreter*>(g_interpreter_storage);
}
#if PKW_STEP_GRAPHS
tflite::MicroInterpreter* step_interpreter() { return reinterpret_cast<tflite::MicroInterpreter*>(g_step_storage); }
#endif

// One adder per op the generator may list; only those PKW_OPS names are called (and linked).
#define PKW_DEFAULT_ADDER(name) \
  [[maybe_unused]] inline TfLiteStatus Add_##name() { return g_resolver->Add##name(); }
PKW_DEFAULT_ADDER(Add)
PKW_DEFAULT_ADDER(AveragePool2D)
PKW_DEFAULT_ADDER(Conv2D)
PKW_DEFAULT_ADDER(DepthwiseConv2D)
PKW_DEFAULT_ADDER(Dequantize)
PKW_DEFAULT_ADDER(FullyConnected)
PKW_DEFAULT_ADDER(MaxPool2D)
PKW_DEFAULT_ADDER(Pad)
PKW_DEFAULT_ADDER(Quantize)
PKW_DEFAULT_ADDER(Relu)
PKW_DEFAULT_ADDER(Relu6)
PKW_DEFAULT_ADDER(Reshape)
PKW_DEFAULT_ADDER(Softmax)
PKW_DEFAULT_ADDER(Squeeze)
#undef PKW_DEFAULT_ADDER
#if PKW_FAST_MEAN
[[maybe_unused]] inline TfLiteStatus Add_Mean() { return g_resolver->AddMean(RegisterFastMean()); }
#else
[[maybe_unused]] inline TfLiteStatus Add_Mean() { return g_resolver->AddMean(); }
#endif

bool BuildResolver() {
  if (g_resolver != nullptr) return true;
  g_resolver = new (g_resolver_storage) Resolver();
#define PKW_ADD_OP(name) \
  if (Add_##name() != kTfLiteOk) return false;
  PKW_OPS(PKW_ADD_OP)
#undef PKW_ADD_OP
#if PKW_STEP_GRAPHS
  // The step graph appends rows with CONCATENATION, an op the windowed graph does not have.
  if (g_resolver->AddConcatenation() != kTfLiteOk) return false;
#endif
  return true;
}

}  // namespace

const char* StatusName(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kImageInvalid: return "image_invalid";
    case Status::kBaseInvalid: return "base_invalid";
    case Status::kUnknownLanguage: return "unknown_language";
    case Status::kBlobInvalid: return "blob_invalid";
    case Status::kModelInvalid: return "model_invalid";
    case Status::kInterpreterError: return "interpreter_error";
  }
  return "unknown";
}

Status KwsRuntime::Init(const uint8_t* image, size_t image_size, ClockFn clock) {
  clock_ = clock;
#if PKW_PROFILE
  g_profiler.set_clock(clock);
#endif
  image_error_ = pkwf_parse(image, image_size, &image_);
  if (image_error_ != PKWB_OK) return Status::kImageInvalid;
  if (image_.base_size != PKW_MODEL_BYTES) {
    image_error_ = PKWB_ERR_SIZE_MISMATCH;
    return Status::kImageInvalid;
  }
  image_error_ = pkwf_verify_base(&image_);
  if (image_error_ != PKWB_OK) return Status::kBaseInvalid;
  if (!BuildResolver()) return Status::kInterpreterError;
#if PKW_STEP_GRAPHS
  memcpy(g_linked, pkw_sg_prefix, PKW_SG_PREFIX_BYTES);
#endif
  initialised_ = true;
  return Status::kOk;
}

uint32_t KwsRuntime::num_languages() const { return initialised_ ? 1u + image_.num_blobs : 0u; }

const char* KwsRuntime::language_at(uint32_t i) {
  if (i == 0) return PKW_BASE_LANG;
  pkwf_entry e;
  if (pkwf_entry_at(&image_, i - 1, &e) != PKWB_OK) return nullptr;
  memcpy(lang_buf_, e.lang, sizeof lang_buf_);
  return lang_buf_;
}

void KwsRuntime::DestroyInterpreter() {
  if (have_interpreter_) {
    interpreter()->~MicroInterpreter();
#if PKW_STEP_GRAPHS
    step_interpreter()->~MicroInterpreter();
#endif
    have_interpreter_ = false;
  }
}

#if PKW_STEP_GRAPHS
Status KwsRuntime::CreateInterpreter(const uint8_t* model_bytes) {
  // Every language runs from the RAM copy behind the linked graphs, the base too.
  if (model_bytes != g_patched_model) memcpy(g_patched_model, model_bytes, PKW_MODEL_BYTES);
  const tflite::Model* step = tflite::GetModel(g_linked);
  const tflite::Model* head = tflite::GetModel(g_linked + PKW_SG_HEAD_OFFSET);
  if (step->version() != TFLITE_SCHEMA_VERSION || head->version() != TFLITE_SCHEMA_VERSION) return Status::kModelInvalid;
  new (g_step_storage) tflite::MicroInterpreter(step, *g_resolver, g_step_arena, sizeof g_step_arena, nullptr, profiler());
  new (g_interpreter_storage) tflite::MicroInterpreter(head, *g_resolver, g_arena, sizeof g_arena);
  have_interpreter_ = true;
  tflite::MicroInterpreter* s = step_interpreter();
  if (s->AllocateTensors() != kTfLiteOk || interpreter()->AllocateTensors() != kTfLiteOk) return Status::kInterpreterError;
  if (s->inputs_size() != 1 + PKW_SG_BLOCKS || s->outputs_size() != 1 + PKW_SG_BLOCKS ||
      s->input(0)->bytes != PKW_SG_STEP_FRAMES * PKW_INPUT_FEATURES ||
      interpreter()->input(0)->bytes != PKW_SG_HEAD_ROWS * PKW_SG_ROW_BYTES ||
      interpreter()->output(0)->bytes != PKW_NUM_CLASSES) {
    return Status::kModelInvalid;
  }
  for (int b = 0; b <= PKW_SG_BLOCKS; ++b) {
    if (s->output(b)->bytes != PKW_SG_ROWS * PKW_SG_ROW_BYTES) return Status::kModelInvalid;
    if (b < PKW_SG_BLOCKS && s->input(1 + b)->bytes != PKW_SG_STATE_ROWS * PKW_SG_ROW_BYTES) return Status::kModelInvalid;
  }
  return Status::kOk;
}

int8_t* KwsRuntime::step_input(int index) { return have_interpreter_ ? step_interpreter()->input(index)->data.int8 : nullptr; }

const int8_t* KwsRuntime::step_output(int index) {
  return have_interpreter_ ? step_interpreter()->output(index)->data.int8 : nullptr;
}

bool KwsRuntime::InvokeStep() {
  if (!have_interpreter_) return false;
#if PKW_PROFILE
  g_profiler.Reset();
#endif
  const uint64_t t0 = Now();
  const TfLiteStatus st = step_interpreter()->Invoke();
  last_step_ticks_ = Now() - t0;
  return st == kTfLiteOk;
}
#else
Status KwsRuntime::CreateInterpreter(const uint8_t* model_bytes) {
  const tflite::Model* model = tflite::GetModel(model_bytes);
  if (model->version() != TFLITE_SCHEMA_VERSION) return Status::kModelInvalid;
  new (g_interpreter_storage) tflite::MicroInterpreter(model, *g_resolver, g_arena, sizeof g_arena, nullptr, profiler());
  have_interpreter_ = true;
  if (interpreter()->AllocateTensors() != kTfLiteOk) return Status::kInterpreterError;
  TfLiteTensor* in = interpreter()->input(0);
  TfLiteTensor* out = interpreter()->output(0);
  if (in == nullptr || out == nullptr || in->type != kTfLiteInt8 || out->type != kTfLiteInt8 ||
      in->bytes != PKW_INPUT_BYTES || out->bytes != PKW_NUM_CLASSES) {
    return Status::kModelInvalid;
  }
  return Status::kOk;
}
#endif

Status KwsRuntime::SelectLanguage(const char* lang) {
  if (!initialised_) return Status::kImageInvalid;
  if (have_interpreter_ && strcmp(lang, active_lang_) == 0) return Status::kOk;
  const uint64_t t0 = Now();

  // The interpreter points into the model we may be about to overwrite: drop it first.
  DestroyInterpreter();
  ClearActive();
  blob_error_ = PKWB_OK;

  // pkw_switch clears active_ before anything else, so a refused switch leaves no language
  // selected: Classify() has no interpreter and Label() serves no labels, never the previous
  // language's.
  const uint8_t* model = nullptr;
  const bool known = pkwf_find(&image_, lang) >= 0 || strcmp(lang, PKW_BASE_LANG) == 0;
  blob_error_ = pkw_switch(&image_, lang, PKW_BASE_LANG, PKW_BASE_NUM_LABELS, g_patched_model, kPatchedBytes,
                           &active_, &model);
  if (blob_error_ != PKWB_OK) return known ? Status::kBlobInvalid : Status::kUnknownLanguage;
  num_labels_ = active_.num_labels;
  // The exporter pads the head to PKW_NUM_CLASSES slots so every language has the same layout;
  // a language uses the first num_labels_ of them.
  if (num_labels_ == 0 || num_labels_ > PKW_NUM_CLASSES) {
    ClearActive();
    return Status::kModelInvalid;
  }

  const Status st = CreateInterpreter(model);
  if (st != Status::kOk) {
    DestroyInterpreter();
    ClearActive();
    return st;
  }
  strncpy(active_lang_, lang, PKWB_LANG_BYTES);
  active_lang_[PKWB_LANG_BYTES] = 0;
  last_select_ticks_ = Now() - t0;
  return Status::kOk;
}

int8_t* KwsRuntime::input_data() { return have_interpreter_ ? interpreter()->input(0)->data.int8 : nullptr; }

int KwsRuntime::Classify(const int8_t* features, int8_t* scores) {
  if (!have_interpreter_ || PKW_STEP_GRAPHS) return -1;  // the head's input is rows, not features
  memcpy(interpreter()->input(0)->data.int8, features, PKW_INPUT_BYTES);
  return ClassifyInPlace(scores);
}

int KwsRuntime::ClassifyInPlace(int8_t* scores) {
  if (!have_interpreter_) return -1;
#if PKW_PROFILE
  g_profiler.Reset();
#endif
  const uint64_t t0 = Now();
  const TfLiteStatus st = interpreter()->Invoke();
  last_invoke_ticks_ = Now() - t0;
  if (st != kTfLiteOk) return -1;
  const int8_t* out = interpreter()->output(0)->data.int8;
  memcpy(scores, out, PKW_NUM_CLASSES);
  // Arg-max over the language's own labels only (padding slots are never read); the first
  // maximum wins, as numpy's argmax does in polykws.export.evaluate.argmax_first.
  uint32_t best = 0;
  for (uint32_t i = 1; i < num_labels_; ++i) {
    if (out[i] > out[best]) best = i;
  }
  return static_cast<int>(best);
}

void KwsRuntime::Label(uint32_t index, char* out, size_t cap) const {
  if (!have_interpreter_) {  // no language selected (none yet, or the last switch was refused)
    if (cap) out[0] = 0;
    return;
  }
  pkw_active_label(&active_, pkw_base_labels, index, out, cap);
}

void KwsRuntime::ClearActive() {
  memset(&active_, 0, sizeof active_);
  num_labels_ = 0;
  active_lang_[0] = 0;
}

uint32_t KwsRuntime::profile_events() const {
#if PKW_PROFILE
  return g_profiler.count();
#else
  return 0;
#endif
}

const char* KwsRuntime::profile_tag(uint32_t i) const {
#if PKW_PROFILE
  return g_profiler.tag(i);
#else
  (void)i;
  return "";
#endif
}

uint64_t KwsRuntime::profile_ticks(uint32_t i) const {
#if PKW_PROFILE
  return g_profiler.ticks(i);
#else
  (void)i;
  return 0;
#endif
}

size_t KwsRuntime::static_bytes() {
#if PKW_STEP_GRAPHS
  return sizeof g_resolver_storage + sizeof g_interpreter_storage + sizeof g_step_storage;
#else
  return sizeof g_resolver_storage + sizeof g_interpreter_storage;
#endif
}

size_t KwsRuntime::arena_used_bytes() const {
  if (!have_interpreter_) return 0;
#if PKW_STEP_GRAPHS
  return interpreter()->arena_used_bytes() + step_interpreter()->arena_used_bytes();
#else
  return interpreter()->arena_used_bytes();
#endif
}

}  // namespace pkw
