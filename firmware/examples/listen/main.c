/* Listen in the pack's default language and print each detection: the whole of what a product
 * firmware needs from polykws (polykws.h). The board support (console, SysTick) is the project's
 * own, from the package's polykws::board; pcm_read is where a microphone driver plugs in, as the
 * nRF52840-DK's PDM driver does with LISTEN_PCM=pdm (then it listens until power-off, and reports
 * "MIC overruns=<n>" whenever audio was lost because the loop fell behind the microphone).
 *
 * Output: "LISTEN lang=<lang> labels=<n>", one "DET label=<index> frame=<model frame> name=<label>"
 * per detection, then "LISTEN_END status=ok samples=<n> inferences=<n> arena_used=<bytes>
 * state=<bytes>" (or status=<error>).
 */
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "pkw_model.h"         /* the pack's flash image: pkw_flash_image, pkw_flash_image_len */
#include "pkw_stream_config.h" /* the pack's default language and its fallback thresholds */
#include "polykws.h"

#define CHUNK_SAMPLES 320 /* 20 ms, a typical DMA half-buffer */

#if LISTEN_PCM_FILE
static FILE *g_file;
static int pcm_open(void) { return (g_file = fopen("stream.pcm", "rb")) != NULL; }
static size_t pcm_read(int16_t *out, size_t n) { return fread(out, sizeof *out, n, g_file); }
#elif LISTEN_PCM_PDM
#include "pdm_mic.h"
static int pcm_open(void) { return pdm_mic_start() == 0; }
static size_t pcm_read(int16_t *out, size_t n) {
  static uint32_t reported;
  if (pdm_mic_overruns() != reported) {
    reported = pdm_mic_overruns();
    printf("MIC overruns=%lu\n", (unsigned long)reported);
  }
  return pdm_mic_read(out, n);
}
#else
extern const uint8_t listen_clip[];
extern const uint32_t listen_clip_bytes;
static uint32_t g_offset;
static int pcm_open(void) { return 1; }
static size_t pcm_read(int16_t *out, size_t n) {
  size_t i;
  for (i = 0; i < n && g_offset + 1u < listen_clip_bytes; ++i, g_offset += 2u) {
    out[i] = (int16_t)(uint16_t)(listen_clip[g_offset] | (listen_clip[g_offset + 1u] << 8));
  }
  return i;
}
#endif

static int fail(const char *stage, polykws_status st) {
  printf("LISTEN_END status=%s stage=%s detail=%s\n", polykws_status_name(st), stage, polykws_blob_error());
  return 1;
}

int main(void) {
  static int16_t pcm[CHUNK_SAMPLES];
  polykws_event events[4];
  polykws_stats stats;
  polykws_memory_report mem;
  size_t n, got, i;
  polykws_status st;

  systick_start();
  if ((st = polykws_init(pkw_flash_image, pkw_flash_image_len, systick_ticks)) != POLYKWS_OK) return fail("init", st);
  /* The blob's own thresholds; the pack's generated ones when the language carries none. */
  st = polykws_select_language(PKW_STREAM_LANG, NULL);
  if (st == POLYKWS_ERR_NO_THRESHOLDS) st = polykws_select_language(PKW_STREAM_LANG, pkw_stream_thresholds);
  if (st != POLYKWS_OK) return fail("select", st);
  printf("LISTEN lang=%s labels=%lu\n", polykws_language(), (unsigned long)polykws_num_labels());
  if (!pcm_open()) return fail("pcm", POLYKWS_ERR_BAD_ARGUMENT);
  while ((n = pcm_read(pcm, CHUNK_SAMPLES)) > 0) {
    if ((st = polykws_push_pcm(pcm, n, events, sizeof events / sizeof events[0], &got)) != POLYKWS_OK) {
      return fail("push", st);
    }
    for (i = 0; i < got; ++i) {
      char name[64];
      polykws_label(events[i].label, name, sizeof name);
      printf("DET label=%lu frame=%lu name=%s\n", (unsigned long)events[i].label, (unsigned long)events[i].model_frame,
             name);
    }
  }
  polykws_get_stats(&stats);
  polykws_memory(&mem);
  printf("LISTEN_END status=ok samples=%lu inferences=%lu dropped=%lu arena_used=%lu state=%lu\n",
         (unsigned long)stats.samples, (unsigned long)stats.inferences, (unsigned long)stats.events_dropped,
         (unsigned long)mem.arena_used_bytes, (unsigned long)mem.state_bytes);
  return 0;
}
