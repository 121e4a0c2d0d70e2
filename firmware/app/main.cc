/* polykws KWS firmware: boots, checks the flash image, switches through every language and runs
 * the embedded benchmark vectors, reporting over semihosting (QEMU) or the board's UART.
 *
 * Output lines start with PKW_ and are key=value pairs, parsed by polykws.firmware.bench:
 *   PKW_BEGIN ...       build and board facts
 *   PKW_LANG ...        one per language switch: source (base/blob), select cost, arena use
 *   PKW_DEMO ...        top label for the first vector of each language
 *   PKW_BENCH ...       per language: n, correct, ticks per inference, CRC of all int8 scores,
 *                       and every prediction (two hex digits per vector)
 *   PKW_END status=...  last line; anything else means the run failed
 * Counts are SysTick ticks; units_per_tick_milli converts them (QEMU: instructions).
 */
#include <stdio.h>
#include <string.h>

#include "blob.h"
#include "board.h"
#include "kws_runtime.h"
#include "u64.h"
#include "pkw_model.h"

#if defined(CMSIS_NN)
#define PKW_KERNELS "cmsis-nn"
#else
#define PKW_KERNELS "reference"
#endif

using pkw::U64;

namespace {

pkw::KwsRuntime g_runtime;


int Fail(const char* what, pkw::Status st) {
  printf("PKW_ERROR stage=%s status=%s image_error=%s blob_error=%s\n", what, pkw::StatusName(st),
         pkwb_error_name(g_runtime.image_error()), pkwb_error_name(g_runtime.blob_error()));
  printf("PKW_END status=error\n");
  return 1;
}

pkw::Status Select(const char* lang) {
  const pkw::Status st = g_runtime.SelectLanguage(lang);
  if (st == pkw::Status::kOk) {
    printf("PKW_LANG lang=%s source=%s labels=%lu select_ticks=%s arena_used=%lu\n", lang,
           g_runtime.active_is_patched() ? "blob" : "base", (unsigned long)g_runtime.num_labels(),
           U64(g_runtime.last_select_ticks()), (unsigned long)g_runtime.arena_used_bytes());
  }
  return st;
}

int RunBenchSet(const pkw_bench_set& set) {
  uint64_t ticks_total = 0, ticks_min = ~0ull, ticks_max = 0;
  uint32_t correct = 0, crc = 0;
  static char preds[2 * PKW_BENCH_MAX_PER_SET + 1];
  for (uint32_t i = 0; i < set.count; ++i) {
    int8_t scores[PKW_NUM_CLASSES];
    const int pred = g_runtime.Classify(set.features + i * PKW_INPUT_BYTES, scores);
    if (pred < 0) return Fail("invoke", pkw::Status::kInterpreterError);
    const uint64_t t = g_runtime.last_invoke_ticks();
    ticks_total += t;
    if (t < ticks_min) ticks_min = t;
    if (t > ticks_max) ticks_max = t;
    if ((uint32_t)pred == set.labels[i]) ++correct;
    // CRC-32 over every int8 output of every vector, in order (the host computes the same).
    crc = pkw_crc32_update(crc, reinterpret_cast<const uint8_t*>(scores), PKW_NUM_CLASSES);
    if (i == 0) {
      for (uint32_t e = 0; e < g_runtime.profile_events(); ++e) {
        printf("PKW_PROFILE lang=%s op=%lu tag=%s ticks=%s\n", set.lang, (unsigned long)e, g_runtime.profile_tag(e),
               U64(g_runtime.profile_ticks(e)));
      }
    }
    static const char kHex[] = "0123456789abcdef";
    preds[2 * i] = kHex[(pred >> 4) & 0xF];  // class indices are < 256 (PKW_NUM_CLASSES)
    preds[2 * i + 1] = kHex[pred & 0xF];
  }
  preds[2 * set.count] = 0;
  printf("PKW_BENCH lang=%s n=%lu correct=%lu ticks_total=%s ticks_min=%s ticks_max=%s scores_crc=%08lx preds=%s\n",
         set.lang, (unsigned long)set.count, (unsigned long)correct, U64(ticks_total),
         U64(ticks_min), U64(ticks_max), (unsigned long)crc, preds);
  return 0;
}

}  // namespace

int main(void) {
  systick_start();
  printf("PKW_BEGIN board=%s kernels=%s mean=%s unit=%s units_per_tick_milli=%lu model_bytes=%lu arena_bytes=%lu "
         "image_bytes=%lu classes=%d input_bytes=%d\n",
         board_name_id, PKW_KERNELS, PKW_FAST_MEAN ? "fast" : "reference", board_count_unit, (unsigned long)board_units_per_tick_milli,
         (unsigned long)PKW_MODEL_BYTES, (unsigned long)PKW_ARENA_BYTES, (unsigned long)pkw_flash_image_len,
         PKW_NUM_CLASSES, PKW_INPUT_BYTES);

  const uint64_t t0 = systick_ticks();
  pkw::Status st = g_runtime.Init(pkw_flash_image, pkw_flash_image_len, systick_ticks);
  if (st != pkw::Status::kOk) return Fail("init", st);
  printf("PKW_IMAGE languages=%lu verify_ticks=%s\n", (unsigned long)g_runtime.num_languages(),
         U64(systick_ticks() - t0));

  // Every language once: switch, classify the first benchmark vector, name the winner.
  for (uint32_t i = 0; i < g_runtime.num_languages(); ++i) {
    const char* lang = g_runtime.language_at(i);
    char code[PKWB_LANG_BYTES + 1] = {0};
    strncpy(code, lang, PKWB_LANG_BYTES);  // language_at() reuses its buffer; keep a copy
    if ((st = Select(code)) != pkw::Status::kOk) return Fail("select", st);
    for (uint32_t s = 0; s < pkw_num_bench_sets; ++s) {
      if (strcmp(pkw_bench_sets[s].lang, code) != 0 || pkw_bench_sets[s].count == 0) continue;
      int8_t scores[PKW_NUM_CLASSES];
      const int pred = g_runtime.Classify(pkw_bench_sets[s].features, scores);
      if (pred < 0) return Fail("invoke", pkw::Status::kInterpreterError);
      char label[64];
      g_runtime.Label((uint32_t)pred, label, sizeof label);
      printf("PKW_DEMO lang=%s label=%s score=%d expected=%u\n", code, label, scores[pred],
             (unsigned)pkw_bench_sets[s].labels[0]);
    }
  }

  // Benchmark: each language's embedded vectors, in the order the generator wrote them.
  for (uint32_t s = 0; s < pkw_num_bench_sets; ++s) {
    if ((st = Select(pkw_bench_sets[s].lang)) != pkw::Status::kOk) return Fail("select", st);
    if (RunBenchSet(pkw_bench_sets[s]) != 0) return 1;
  }
  printf("PKW_END status=ok\n");
  return 0;
}
