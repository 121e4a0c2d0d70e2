// The embeddable runtime (polykws.h): frontend -> ring -> model every stride -> detector, over the
// KwsRuntime that owns the flash image and the TFLM interpreter. A pack generated with the base's
// streaming graphs (PKW_STEP_GRAPHS, kws_runtime.h) runs the step graph on its schedule and the head
// at the detector's stride instead of the windowed graph on the ring (docs/STREAMING.md).
#include "polykws.h"

#include <string.h>

#include "blob.h"
#include "detector.h"
#include "frontend.h"
#include "kws_runtime.h"
#include "step_chain.h"
#include "pkw_model.h"          // generated: model sizes, arena, base language
#include "pkw_stream_config.h"  // generated: the detector plan (window, stride, smoothing, refractory)

static_assert(PKW_INPUT_BYTES == PKW_DET_WINDOW_FRAMES * PKW_FE_NUM_CHANNELS,
              "the model's input must be the ring: window frames x frontend channels");

namespace {

#if PKW_STEP_GRAPHS
constexpr int kChains = PKW_SG_STRIDE;
using Chain = pkw::StepChain<PKW_SG_BLOCKS, PKW_SG_STATE_ROWS, PKW_SG_ROWS, PKW_SG_ROW_BYTES, PKW_SG_HEAD_ROWS>;
static_assert(PKW_SG_DETECTOR_STRIDE_FRAMES == PKW_DET_STRIDE_FRAMES,
              "the step graphs' rows per step were generated for another detector stride");
// The frames kept: a window's worth plus one step's span of a chain, so that after a switch of
// language every chain finds a step on its grid early enough to rebuild its rows for the next head.
constexpr int kKeptFrames = PKW_DET_WINDOW_FRAMES - 1 + PKW_SG_STRIDE * PKW_SG_ROWS;
static_assert(kKeptFrames >= PKW_SG_STEP_FRAMES, "the kept frames must hold one step's input");

struct Chains {
  int8_t frames[kKeptFrames][PKW_FE_NUM_CHANNELS];  // model frame f at slot f % kKeptFrames
  Chain chain[kChains];
  int64_t first_row[kChains];  // the oldest stem row a chain computed since it restarted; -1: none
  int64_t last_step[kChains];  // the newest frame a chain stepped at; -1: none
};
#endif

struct State {
  bool initialised = false;
  bool listening = false;  // a language is selected and its thresholds are set
  bool thresholds_from_blob = false;
  const uint8_t* image = nullptr;
  size_t image_size = 0;
  polykws_clock_fn clock = nullptr;
  int16_t step[PKW_FE_STEP_SAMPLES];  // the partial frontend step between two pushes
  size_t step_fill = 0;
#if PKW_STEP_GRAPHS
  Chains chains;
#else
  int8_t ring_data[PKW_INPUT_BYTES];
  pkw_ring ring;
#endif
  pkw_fe_frame frame;
  pkw_detector detector;
  pkw_det_config detector_config;
  uint16_t thresholds[PKW_NUM_CLASSES];
  int8_t scores[PKW_NUM_CLASSES];
  polykws_stats stats;
};

pkw::KwsRuntime g_runtime;
State g;

uint64_t Now() { return g.clock != nullptr ? g.clock() : 0u; }

polykws_status FromRuntime(pkw::Status s) {
  switch (s) {
    case pkw::Status::kOk: return POLYKWS_OK;
    case pkw::Status::kImageInvalid: return POLYKWS_ERR_IMAGE;
    case pkw::Status::kBaseInvalid: return POLYKWS_ERR_BASE;
    case pkw::Status::kUnknownLanguage: return POLYKWS_ERR_UNKNOWN_LANGUAGE;
    case pkw::Status::kBlobInvalid: return POLYKWS_ERR_BLOB;
    case pkw::Status::kModelInvalid: return POLYKWS_ERR_MODEL;
    case pkw::Status::kInterpreterError: return POLYKWS_ERR_INTERPRETER;
  }
  return POLYKWS_ERR_INTERPRETER;
}

bool NeverFires(uint32_t index) {
  char label[16];
  g_runtime.Label(index, label, sizeof label);
  return strcmp(label, "_silence_") == 0 || strcmp(label, "_unknown_") == 0;
}

#if PKW_STEP_GRAPHS
void RestartChains() {
  for (int c = 0; c < kChains; ++c) {
    g.chains.chain[c].Clear();
    g.chains.first_row[c] = g.chains.last_step[c] = -1;
  }
}

// The step graph runs at the frames of the detector's grid (the head for the window ending at
// frame n reads the rows of the step at n - PKW_SG_WINDOW_OFFSET), extended back to the first
// step with a row of the stream: each chain steps once per window it serves, and the stream's
// first window finds every row it reads.
bool StepDue(int64_t t) {
  if (t < PKW_SG_STEM_FRAMES - 1) return false;
  int64_t m = (t + PKW_SG_WINDOW_OFFSET - (PKW_DET_WINDOW_FRAMES - 1)) % PKW_DET_STRIDE_FRAMES;
  return (m < 0 ? m + PKW_DET_STRIDE_FRAMES : m) == 0;
}

bool RunStep(int64_t t) {
  Chains& ch = g.chains;
  const int c = static_cast<int>(t % kChains);
  int8_t* in = g_runtime.step_input(0);
  // A step that begins before the stream reads zeros there; only its rows that read none of them
  // count as computed (first_row).
  for (int i = 0; i < PKW_SG_STEP_FRAMES; ++i) {
    const int64_t f = t - PKW_SG_STEP_FRAMES + 1 + i;
    if (f < 0) {
      memset(in + i * PKW_FE_NUM_CHANNELS, 0, PKW_FE_NUM_CHANNELS);
    } else {
      memcpy(in + i * PKW_FE_NUM_CHANNELS, ch.frames[f % kKeptFrames], PKW_FE_NUM_CHANNELS);
    }
  }
  Chain& chain = ch.chain[c];
  for (int b = 0; b < PKW_SG_BLOCKS; ++b) memcpy(g_runtime.step_input(1 + b), chain.state[b], Chain::kStateBytes);
  if (!g_runtime.InvokeStep()) return false;
  g.stats.invoke_ticks += g_runtime.last_step_ticks();
  for (int b = 0; b < PKW_SG_BLOCKS; ++b) chain.Absorb(b, g_runtime.step_output(b));
  chain.PushFinals(g_runtime.step_output(PKW_SG_BLOCKS));
  if (ch.first_row[c] < 0) {
    const int64_t valid = (t - (PKW_SG_STEM_FRAMES - 1)) / PKW_SG_STRIDE;
    ch.first_row[c] = t - PKW_SG_STRIDE * (valid < PKW_SG_ROWS - 1 ? valid : PKW_SG_ROWS - 1);
  }
  ch.last_step[c] = t;
  return true;
}

// The head over the chain's final rows, when every row it depends on was computed by this chain.
// Returns 1 after an inference, 0 when the window cannot be served, -1 on error.
int RunHead(int64_t t) {
  Chains& ch = g.chains;
  const int c = static_cast<int>(t % kChains);
  if (t < 0 || ch.last_step[c] != t || ch.first_row[c] < 0 || t - PKW_SG_REACH < ch.first_row[c]) return 0;
  ch.chain[c].CopyFinals(g_runtime.input_data());
  return g_runtime.ClassifyInPlace(g.scores) < 0 ? -1 : 1;
}

// After a switch of language the rows were computed with the other language's weights: rebuild
// them from the frames kept, on each chain's grid.
bool ReplayChains() {
  RestartChains();
  const int64_t newest = static_cast<int64_t>(g.stats.model_frames) - 1;
  const int64_t oldest = newest - kKeptFrames + 1 < 0 ? 0 : newest - kKeptFrames + 1;
  // From the stream's start a step may read before it, as it did live; later, only kept frames.
  for (int64_t t = oldest > 0 ? oldest + PKW_SG_STEP_FRAMES - 1 : PKW_SG_STEM_FRAMES - 1; t <= newest; ++t) {
    if (StepDue(t) && !RunStep(t)) return false;
  }
  return true;
}
#endif

void RestartStream() {
  pkw_frontend_reset();
#if PKW_STEP_GRAPHS
  RestartChains();
#else
  pkw_ring_init(&g.ring, g.ring_data, PKW_DET_WINDOW_FRAMES, PKW_FE_NUM_CHANNELS);
#endif
  g.step_fill = 0;
  memset(&g.stats, 0, sizeof g.stats);
}

}  // namespace

extern "C" polykws_status polykws_init(const uint8_t* image, size_t image_size, polykws_clock_fn clock) {
  g.initialised = g.listening = false;
  if (image == nullptr) return POLYKWS_ERR_BAD_ARGUMENT;
  g.clock = clock;
  const pkw::Status st = g_runtime.Init(image, image_size, clock);
  if (st != pkw::Status::kOk) return FromRuntime(st);
  if (pkw_frontend_init() != PKW_FE_OK) return POLYKWS_ERR_FRONTEND;
  g.image = image;
  g.image_size = image_size;
  RestartStream();
  g.initialised = true;
  return POLYKWS_OK;
}

extern "C" polykws_status polykws_select_language(const char* lang, const uint16_t* thresholds) {
  if (!g.initialised) return POLYKWS_ERR_NOT_READY;
  if (lang == nullptr) return POLYKWS_ERR_BAD_ARGUMENT;
  g.listening = false;
  const pkw::Status st = g_runtime.SelectLanguage(lang);
  if (st != pkw::Status::kOk) return FromRuntime(st);
  const uint32_t k_labels = g_runtime.num_labels();
  // Every keyword's threshold comes from one source: the caller's, or else the blob's.
  g.thresholds_from_blob = thresholds == nullptr;
  for (uint32_t k = 0; k < k_labels; ++k) {
    int t = thresholds != nullptr ? thresholds[k] : g_runtime.Threshold(k);
    if (t < 0) return POLYKWS_ERR_NO_THRESHOLDS;
    if (t > static_cast<int>(PKW_DET_NEVER)) return POLYKWS_ERR_BAD_ARGUMENT;
    g.thresholds[k] = NeverFires(k) ? PKW_DET_NEVER : static_cast<uint16_t>(t);
  }
  g.detector_config.window_frames = PKW_DET_WINDOW_FRAMES;
  g.detector_config.stride_frames = PKW_DET_STRIDE_FRAMES;
  g.detector_config.average_inferences = PKW_DET_AVERAGE_INFERENCES;
  g.detector_config.refractory_frames = PKW_DET_REFRACTORY_FRAMES;
  g.detector_config.num_labels = k_labels;
  g.detector_config.thresholds = g.thresholds;
  if (pkw_det_init(&g.detector, &g.detector_config) != PKW_DET_OK) return POLYKWS_ERR_MODEL;
#if PKW_STEP_GRAPHS
  if (!ReplayChains()) return POLYKWS_ERR_INTERPRETER;
#endif
  g.listening = true;
  return POLYKWS_OK;
}

extern "C" polykws_status polykws_push_pcm(const int16_t* pcm, size_t n, polykws_event* events, size_t cap,
                                           size_t* num_events) {
  if (num_events == nullptr || (pcm == nullptr && n > 0) || (events == nullptr && cap > 0)) {
    return POLYKWS_ERR_BAD_ARGUMENT;
  }
  *num_events = 0;
  if (!g.listening) return POLYKWS_ERR_NOT_READY;
  polykws_stats& s = g.stats;
  while (n > 0) {
    size_t take = PKW_FE_STEP_SAMPLES - g.step_fill;
    if (take > n) take = n;
    memcpy(g.step + g.step_fill, pcm, take * sizeof *pcm);
    g.step_fill += take;
    pcm += take;
    n -= take;
    s.samples += take;
    if (g.step_fill < PKW_FE_STEP_SAMPLES) break;
    g.step_fill = 0;
    ++s.steps;
    uint64_t t0 = Now();
    const int got = pkw_frontend_push(g.step, &g.frame);
    s.frontend_ticks += Now() - t0;
    if (!got || !g.frame.is_model_frame) continue;
    const uint32_t frame = s.model_frames++;
#if PKW_STEP_GRAPHS
    memcpy(g.chains.frames[frame % kKeptFrames], g.frame.model, PKW_FE_NUM_CHANNELS);
    if (StepDue(frame) && !RunStep(frame)) return POLYKWS_ERR_INTERPRETER;
    if (!pkw_det_due(&g.detector, frame)) continue;
    const int head = RunHead(static_cast<int64_t>(frame) - PKW_SG_WINDOW_OFFSET);
    if (head < 0) return POLYKWS_ERR_INTERPRETER;
    if (head == 0) continue;
#else
    pkw_ring_push(&g.ring, g.frame.model);
    if (!pkw_det_due(&g.detector, frame)) continue;
    // The ring goes straight into the interpreter's input tensor: no second window buffer.
    pkw_ring_copy(&g.ring, g_runtime.input_data());
    if (g_runtime.ClassifyInPlace(g.scores) < 0) return POLYKWS_ERR_INTERPRETER;
#endif
    s.invoke_ticks += g_runtime.last_invoke_ticks();
    ++s.inferences;
    t0 = Now();
    const int hit = pkw_det_push(&g.detector, frame, g.scores);
    s.detector_ticks += Now() - t0;
    if (hit < 0) continue;
    if (*num_events < cap) {
      polykws_event& e = events[(*num_events)++];
      e.label = static_cast<uint32_t>(hit);
      e.model_frame = frame;
      e.sample_end = s.samples;
      ++s.events;
    } else {
      ++s.events_dropped;
    }
  }
  return POLYKWS_OK;
}

extern "C" void polykws_reset(void) {
  if (!g.initialised) return;
  RestartStream();
  if (g.listening) pkw_det_init(&g.detector, &g.detector_config);
}

extern "C" void polykws_memory(polykws_memory_report* out) {
  if (out == nullptr) return;
  out->flash_image_bytes = g.image_size;
#if PKW_STEP_GRAPHS
  out->arena_bytes = PKW_SG_STEP_ARENA_BYTES + PKW_SG_HEAD_ARENA_BYTES;
  out->model_ram_bytes = PKW_SG_PREFIX_BYTES + PKW_MODEL_BYTES;
#else
  out->arena_bytes = PKW_ARENA_BYTES;
  out->model_ram_bytes = PKW_MODEL_BYTES;
#endif
  out->arena_used_bytes = g_runtime.arena_used_bytes();
  out->state_bytes = sizeof g + sizeof g_runtime + pkw::KwsRuntime::static_bytes() + pkw_frontend_state_bytes();
}

extern "C" void polykws_get_stats(polykws_stats* out) {
  if (out != nullptr) *out = g.stats;
}

extern "C" uint32_t polykws_samples_per_inference(void) {
  return PKW_FE_STEP_SAMPLES * PKW_FE_FRAME_DECIMATION * PKW_DET_STRIDE_FRAMES;
}

extern "C" const char* polykws_language(void) { return g.listening ? g_runtime.active_language() : ""; }

extern "C" uint32_t polykws_num_labels(void) { return g.listening ? g_runtime.num_labels() : 0u; }

extern "C" void polykws_label(uint32_t index, char* out, size_t cap) {
  if (out == nullptr || cap == 0) return;
  if (!g.listening) {
    out[0] = 0;
    return;
  }
  g_runtime.Label(index, out, cap);
}

extern "C" int polykws_thresholds_from_blob(void) { return g.listening && g.thresholds_from_blob ? 1 : 0; }

extern "C" uint32_t polykws_num_languages(void) { return g.initialised ? g_runtime.num_languages() : 0u; }

extern "C" const char* polykws_language_at(uint32_t index) {
  if (!g.initialised || index >= g_runtime.num_languages()) return nullptr;
  return g_runtime.language_at(index);
}

extern "C" const char* polykws_blob_error(void) {
  const pkwb_status e = g_runtime.blob_error() != PKWB_OK ? g_runtime.blob_error() : g_runtime.image_error();
  return pkwb_error_name(e);
}

extern "C" const char* polykws_status_name(polykws_status status) {
  switch (status) {
    case POLYKWS_OK: return "ok";
    case POLYKWS_ERR_IMAGE: return "image";
    case POLYKWS_ERR_BASE: return "base";
    case POLYKWS_ERR_UNKNOWN_LANGUAGE: return "unknown_language";
    case POLYKWS_ERR_BLOB: return "blob";
    case POLYKWS_ERR_MODEL: return "model";
    case POLYKWS_ERR_INTERPRETER: return "interpreter";
    case POLYKWS_ERR_FRONTEND: return "frontend";
    case POLYKWS_ERR_NO_THRESHOLDS: return "no_thresholds";
    case POLYKWS_ERR_BAD_ARGUMENT: return "bad_argument";
    case POLYKWS_ERR_NOT_READY: return "not_ready";
  }
  return "unknown";
}
