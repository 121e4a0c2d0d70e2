/* polykws streaming firmware: PCM in, detections out (APP_MAIN=stream_main), a user of the
 * embeddable runtime (runtime/polykws.h) like any product firmware.
 *
 * Audio comes through the PCM source: under QEMU a host file (stream.pcm, little-endian int16,
 * 16 kHz mono) read over semihosting, in chunks of PKW_STREAM_CHUNK_SAMPLES (a size no frontend
 * step divides, so the runtime's partial-step path runs as it does behind a microphone's DMA
 * buffers). The language is PKW_STREAM_LANG, with the thresholds its blob carries, or the
 * generated ones when it carries none.
 *
 * An optional script, stream.cmd, exercises the rest of the API mid-stream: one command per line,
 * in sample order, "<sample> switch <lang>" (polykws_select_language with the blob's thresholds)
 * or "<sample> reset" (polykws_reset), run once exactly <sample> samples have been pushed.
 *
 * Output lines (key=value, parsed by polykws.firmware.streamcheck):
 *   PKW_LANG ...                       the selected language (again after each switch)
 *   PKW_RESET sample=<n>               a reset ran
 *   PKW_DET class=<k> frame=<n> label=<label>   one per detection
 *   PKW_STREAM steps=<n> model_frames=<n> inferences=<n> frontend_ticks=<n> invoke_ticks=<n>
 *              detector_ticks=<n> units_per_tick_milli=<n> unit=<...>
 *   PKW_MEMORY ...                     polykws_memory's report
 *   PKW_END status=ok|error
 */
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "polykws.h"
#include "u64.h"
#include "pkw_model.h"
#include "pkw_stream_config.h"

#ifndef PKW_STREAM_CHUNK_SAMPLES
#define PKW_STREAM_CHUNK_SAMPLES 250
#endif

using pkw::U64;

namespace {

int16_t g_pcm[PKW_STREAM_CHUNK_SAMPLES];
polykws_event g_events[4];

// A PCM source: where a board's microphone driver plugs in. Here: a host file over semihosting.
struct PcmSource {
  FILE* f = nullptr;
  bool Open() { return (f = fopen("stream.pcm", "rb")) != nullptr; }
  size_t Read(int16_t* out, size_t n) { return fread(out, sizeof *out, n, f); }
  void Close() { fclose(f); }
};

// The optional command script (see the top of this file).
struct Script {
  FILE* f = nullptr;
  bool have = false;
  unsigned long at = 0;
  char verb[16] = {0};
  char lang[16] = {0};
  void Open() {
    f = fopen("stream.cmd", "r");
    Next();
  }
  void Next() {
    have = false;
    if (f == nullptr) return;
    char line[64];
    if (fgets(line, sizeof line, f) == nullptr) return;
    lang[0] = 0;
    have = sscanf(line, "%lu %15s %15s", &at, verb, lang) >= 2;
  }
};

int Fail(const char* what, polykws_status st);

void PrintLanguage() {
  printf("PKW_LANG lang=%s labels=%lu thresholds=%s\n", polykws_language(), (unsigned long)polykws_num_labels(),
         polykws_thresholds_from_blob() ? "blob" : "generated");
}

int Run(const Script& cmd, uint64_t samples) {
  if (strcmp(cmd.verb, "reset") == 0) {
    polykws_reset();
    printf("PKW_RESET sample=%s\n", U64(samples));
    return 0;
  }
  if (strcmp(cmd.verb, "switch") == 0) {
    const polykws_status st = polykws_select_language(cmd.lang, nullptr);
    if (st != POLYKWS_OK) return Fail("switch", st);
    PrintLanguage();
    return 0;
  }
  return Fail("script", POLYKWS_ERR_BAD_ARGUMENT);
}

int Fail(const char* what, polykws_status st) {
  printf("PKW_ERROR stage=%s status=%s blob_error=%s\nPKW_END status=error\n", what, polykws_status_name(st),
         polykws_blob_error());
  return 1;
}

}  // namespace

int main(void) {
  systick_start();
  polykws_status st = polykws_init(pkw_flash_image, pkw_flash_image_len, systick_ticks);
  if (st != POLYKWS_OK) return Fail("init", st);
  // Thresholds travel with the language: the blob's own (covered by its integrity digest) when it
  // has them, else the generated ones.
  st = polykws_select_language(PKW_STREAM_LANG, nullptr);
  if (st == POLYKWS_ERR_NO_THRESHOLDS) st = polykws_select_language(PKW_STREAM_LANG, pkw_stream_thresholds);
  if (st != POLYKWS_OK) return Fail("select", st);
  if (polykws_num_labels() != PKW_STREAM_NUM_LABELS) return Fail("labels", POLYKWS_ERR_MODEL);
  PrintLanguage();

  PcmSource source;
  if (!source.Open()) return Fail("pcm_source", POLYKWS_ERR_BAD_ARGUMENT);
  Script script;
  script.Open();
  uint64_t pushed = 0;  // since the start of the file (a reset restarts the runtime's own count)
  size_t n = 0;
  for (;;) {
    // A chunk ends where the next command runs; commands out of sample order are refused.
    if (script.have && script.at < pushed) return Fail("script_order", POLYKWS_ERR_BAD_ARGUMENT);
    size_t want = PKW_STREAM_CHUNK_SAMPLES;
    if (script.have && script.at - pushed < want) want = static_cast<size_t>(script.at - pushed);
    if (want > 0 && (n = source.Read(g_pcm, want)) == 0) break;
    if (want == 0) n = 0;
    size_t got = 0;
    if ((st = polykws_push_pcm(g_pcm, n, g_events, sizeof g_events / sizeof g_events[0], &got)) != POLYKWS_OK) {
      return Fail("push", st);
    }
    for (size_t i = 0; i < got; ++i) {
      char label[64];
      polykws_label(g_events[i].label, label, sizeof label);
      printf("PKW_DET class=%lu frame=%lu label=%s\n", (unsigned long)g_events[i].label,
             (unsigned long)g_events[i].model_frame, label);
    }
    pushed += n;
    while (script.have && script.at == pushed) {
      if (Run(script, pushed) != 0) return 1;
      script.Next();
    }
  }
  source.Close();
  if (script.have) return Fail("script_past_end", POLYKWS_ERR_BAD_ARGUMENT);
  polykws_stats s;
  polykws_get_stats(&s);
  if (s.events_dropped != 0) return Fail("events_dropped", POLYKWS_ERR_BAD_ARGUMENT);
  printf("PKW_STREAM steps=%lu model_frames=%lu inferences=%lu frontend_ticks=%s invoke_ticks=%s detector_ticks=%s "
         "units_per_tick_milli=%lu unit=%s\n",
         (unsigned long)s.steps, (unsigned long)s.model_frames, (unsigned long)s.inferences, U64(s.frontend_ticks),
         U64(s.invoke_ticks), U64(s.detector_ticks), (unsigned long)board_units_per_tick_milli, board_count_unit);
  polykws_memory_report m;
  polykws_memory(&m);
  printf("PKW_MEMORY flash_image=%lu arena=%lu arena_used=%lu model_ram=%lu state=%lu\n",
         (unsigned long)m.flash_image_bytes, (unsigned long)m.arena_bytes, (unsigned long)m.arena_used_bytes,
         (unsigned long)m.model_ram_bytes, (unsigned long)m.state_bytes);
  printf("PKW_END status=ok\n");
  return 0;
}
