/* polykws streaming firmware: PCM in, detections out (APP_MAIN=stream_main).
 *
 * Audio comes through the PCM source: under QEMU a host file (stream.pcm, little-endian int16,
 * 16 kHz mono) read over semihosting. Each 10 ms step goes through the on-device micro frontend
 * (frontend.cc, never reset); every model frame enters the ring; the model runs every
 * PKW_DET_STRIDE_FRAMES model frames and the detector (detector.c) smooths and decides, as in
 * docs/STREAMING.md. The language is PKW_STREAM_LANG, with the thresholds its blob carries (the
 * generated ones when it carries none).
 *
 * Output lines (key=value, parsed by polykws.firmware.streamcheck):
 *   PKW_LANG ...                       the selected language
 *   PKW_DET class=<k> frame=<n> label=<label>   one per detection
 *   PKW_STREAM steps=<n> model_frames=<n> inferences=<n> frontend_ticks=<n> invoke_ticks=<n>
 *              detector_ticks=<n> units_per_tick_milli=<n> unit=<...>
 *   PKW_END status=ok|error
 */
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "detector.h"
#include "frontend.h"
#include "kws_runtime.h"
#include "u64.h"
#include "pkw_model.h"
#include "pkw_stream_config.h"

static_assert(PKW_INPUT_BYTES == PKW_DET_WINDOW_FRAMES * PKW_FE_NUM_CHANNELS,
              "the model's input must be the ring: window frames x frontend channels");

using pkw::U64;

namespace {

pkw::KwsRuntime g_runtime;
int16_t g_pcm[PKW_FE_STEP_SAMPLES];
int8_t g_ring_data[PKW_INPUT_BYTES];
int8_t g_input[PKW_INPUT_BYTES];
int8_t g_scores[PKW_NUM_CLASSES];
uint16_t g_thresholds[PKW_STREAM_NUM_LABELS];

// A PCM source: where a board's microphone driver plugs in. Here: a host file over semihosting.
struct PcmSource {
  FILE* f = nullptr;
  bool Open() { return (f = fopen("stream.pcm", "rb")) != nullptr; }
  bool Read(int16_t* out, size_t n) { return fread(out, sizeof *out, n, f) == n; }
  void Close() { fclose(f); }
};


int Fail(const char* what) {
  printf("PKW_ERROR stage=%s\nPKW_END status=error\n", what);
  return 1;
}

}  // namespace

int main(void) {
  systick_start();
  if (g_runtime.Init(pkw_flash_image, pkw_flash_image_len) != pkw::Status::kOk) return Fail("init");
  if (g_runtime.SelectLanguage(PKW_STREAM_LANG) != pkw::Status::kOk) return Fail("select");
  if (g_runtime.num_labels() != PKW_STREAM_NUM_LABELS) return Fail("labels");
  // Thresholds travel with the language: the blob's own (covered by its integrity digest) when it
  // has them, else the generated ones. _silence_ and _unknown_ never fire.
  bool from_blob = true;
  for (uint32_t k = 0; k < PKW_STREAM_NUM_LABELS; ++k) {
    char label[64];
    g_runtime.Label(k, label, sizeof label);
    const int t = g_runtime.Threshold(k);
    if (t < 0) from_blob = false;
    g_thresholds[k] = (strcmp(label, "_silence_") == 0 || strcmp(label, "_unknown_") == 0) ? PKW_DET_NEVER
                      : t >= 0 ? static_cast<uint16_t>(t) : pkw_stream_thresholds[k];
  }
  printf("PKW_LANG lang=%s labels=%lu thresholds=%s\n", PKW_STREAM_LANG, (unsigned long)g_runtime.num_labels(),
         from_blob ? "blob" : "generated");
  if (pkw_frontend_init() != PKW_FE_OK) return Fail("frontend");
  pkw_det_config cfg;
  cfg.window_frames = PKW_DET_WINDOW_FRAMES;
  cfg.stride_frames = PKW_DET_STRIDE_FRAMES;
  cfg.average_inferences = PKW_DET_AVERAGE_INFERENCES;
  cfg.refractory_frames = PKW_DET_REFRACTORY_FRAMES;
  cfg.num_labels = PKW_STREAM_NUM_LABELS;
  cfg.thresholds = g_thresholds;
  pkw_detector det;
  if (pkw_det_init(&det, &cfg) != PKW_DET_OK) return Fail("detector");
  pkw_ring ring;
  pkw_ring_init(&ring, g_ring_data, PKW_DET_WINDOW_FRAMES, PKW_FE_NUM_CHANNELS);

  PcmSource source;
  if (!source.Open()) return Fail("pcm_source");
  uint64_t fe_ticks = 0, invoke_ticks = 0, det_ticks = 0;
  uint32_t steps = 0, model_frames = 0, inferences = 0;
  pkw_fe_frame frame;
  while (source.Read(g_pcm, PKW_FE_STEP_SAMPLES)) {
    ++steps;
    uint64_t t0 = systick_ticks();
    const int got = pkw_frontend_push(g_pcm, &frame);
    fe_ticks += systick_ticks() - t0;
    if (!got || !frame.is_model_frame) continue;
    const uint32_t n = model_frames++;
    pkw_ring_push(&ring, frame.model);
    if (!pkw_det_due(&det, n)) continue;
    pkw_ring_copy(&ring, g_input);
    if (g_runtime.Classify(g_input, g_scores) < 0) return Fail("invoke");
    invoke_ticks += g_runtime.last_invoke_ticks();
    ++inferences;
    t0 = systick_ticks();
    const int hit = pkw_det_push(&det, n, g_scores);
    det_ticks += systick_ticks() - t0;
    if (hit >= 0) {
      char label[64];
      g_runtime.Label(static_cast<uint32_t>(hit), label, sizeof label);
      printf("PKW_DET class=%d frame=%lu label=%s\n", hit, (unsigned long)n, label);
    }
  }
  source.Close();
  printf("PKW_STREAM steps=%lu model_frames=%lu inferences=%lu frontend_ticks=%s invoke_ticks=%s detector_ticks=%s "
         "units_per_tick_milli=%lu unit=%s\n",
         (unsigned long)steps, (unsigned long)model_frames, (unsigned long)inferences, U64(fe_ticks), U64(invoke_ticks),
         U64(det_ticks), (unsigned long)board_units_per_tick_milli, board_count_unit);
  printf("PKW_END status=ok\n");
  return 0;
}
