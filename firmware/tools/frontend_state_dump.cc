/* Host tool: the micro frontend's state, computed on the host exactly as pymicro-features computes
 * it, printed as JSON for polykws.firmware.frontendgen to turn into the firmware's constant tables.
 *
 * Every table the library derives in floating point at start-up (window coefficients, filterbank
 * weights, PCAN gain curve, kissfft twiddles) is computed here, on the machine whose values the
 * training features come from, so the device runs no floating-point initialisation and cannot
 * round differently.
 *
 * Usage: frontend_state_dump window_size_ms window_step_ms num_channels lower_band_limit_hz
 *          upper_band_limit_hz smoothing_bits even_smoothing odd_smoothing min_signal_remaining
 *          pcan_enable pcan_strength pcan_offset pcan_gain_bits log_scale_enable log_scale_shift
 *          sample_rate_hz
 */
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "tensorflow/lite/experimental/microfrontend/lib/frontend.h"
#include "tensorflow/lite/experimental/microfrontend/lib/frontend_util.h"
#include "tensorflow/lite/experimental/microfrontend/lib/kiss_fft_common.h"

// The library's own kissfft build (kiss_fft_int16.cc) with the structs visible, so the FFT
// state that FftPopulateState laid out can be read field by field.
#define FIXED_POINT 16
namespace pkw_dump_kiss {
#include "kiss_fft.c"
#include "tools/kiss_fftr.c"
}  // namespace pkw_dump_kiss
#undef FIXED_POINT

namespace {

void PrintInts(const char* name, const int16_t* v, int n, bool last = false) {
  std::printf("  \"%s\": [", name);
  for (int i = 0; i < n; ++i) std::printf(i ? ",%d" : "%d", v[i]);
  std::printf("]%s\n", last ? "" : ",");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 17) {
    std::fprintf(stderr, "%s: expected 16 frontend parameters, got %d\n", argv[0], argc - 1);
    return 2;
  }
  FrontendConfig c;
  FrontendFillConfigWithDefaults(&c);
  c.window.size_ms = std::strtoul(argv[1], nullptr, 10);
  c.window.step_size_ms = std::strtoul(argv[2], nullptr, 10);
  c.filterbank.num_channels = std::atoi(argv[3]);
  c.filterbank.lower_band_limit = std::strtof(argv[4], nullptr);
  c.filterbank.upper_band_limit = std::strtof(argv[5], nullptr);
  c.noise_reduction.smoothing_bits = std::atoi(argv[6]);
  c.noise_reduction.even_smoothing = std::strtof(argv[7], nullptr);
  c.noise_reduction.odd_smoothing = std::strtof(argv[8], nullptr);
  c.noise_reduction.min_signal_remaining = std::strtof(argv[9], nullptr);
  c.pcan_gain_control.enable_pcan = std::atoi(argv[10]);
  c.pcan_gain_control.strength = std::strtof(argv[11], nullptr);
  c.pcan_gain_control.offset = std::strtof(argv[12], nullptr);
  c.pcan_gain_control.gain_bits = std::atoi(argv[13]);
  c.log_scale.enable_log = std::atoi(argv[14]);
  c.log_scale.scale_shift = std::atoi(argv[15]);
  const int sample_rate = std::atoi(argv[16]);

  FrontendState s;
  if (!FrontendPopulateState(&c, &s, sample_rate)) {
    std::fprintf(stderr, "%s: FrontendPopulateState failed\n", argv[0]);
    return 1;
  }
  const FilterbankState& fb = s.filterbank;
  int num_weights = 0;
  for (int ch = 0; ch <= fb.num_channels; ++ch) {
    const int end = fb.channel_weight_starts[ch] + fb.channel_widths[ch];
    if (end > num_weights) num_weights = end;
  }
  auto* fftr = reinterpret_cast<pkw_dump_kiss::kiss_fftr_cfg>(s.fft.scratch);
  const pkw_dump_kiss::kiss_fft_cfg sub = fftr->substate;
  const int half = sub->nfft;  // the complex FFT runs at fft_size / 2

  std::printf("{\n");
  std::printf("  \"window_size\": %zu, \"window_step\": %zu,\n", s.window.size, s.window.step);
  PrintInts("window_coefficients", s.window.coefficients, static_cast<int>(s.window.size));
  std::printf("  \"fft_size\": %zu, \"fft_input_size\": %zu, \"fft_scratch_size\": %zu,\n", s.fft.fft_size,
              s.fft.input_size, s.fft.scratch_size);
  std::printf("  \"kiss_nfft\": %d, \"kiss_inverse\": %d, \"kiss_factors\": [", half, sub->inverse);
  for (int i = 0; i < 2 * MAXFACTORS; ++i) std::printf(i ? ",%d" : "%d", sub->factors[i]);
  std::printf("],\n");
  std::printf("  \"kiss_twiddles\": [");
  for (int i = 0; i < half; ++i) std::printf(i ? ",%d,%d" : "%d,%d", sub->twiddles[i].r, sub->twiddles[i].i);
  std::printf("],\n  \"kiss_super_twiddles\": [");
  for (int i = 0; i < half / 2; ++i)
    std::printf(i ? ",%d,%d" : "%d,%d", fftr->super_twiddles[i].r, fftr->super_twiddles[i].i);
  std::printf("],\n");
  std::printf("  \"fb_num_channels\": %d, \"fb_start_index\": %d, \"fb_end_index\": %d,\n", fb.num_channels,
              fb.start_index, fb.end_index);
  PrintInts("fb_channel_frequency_starts", fb.channel_frequency_starts, fb.num_channels + 1);
  PrintInts("fb_channel_weight_starts", fb.channel_weight_starts, fb.num_channels + 1);
  PrintInts("fb_channel_widths", fb.channel_widths, fb.num_channels + 1);
  PrintInts("fb_weights", fb.weights, num_weights);
  PrintInts("fb_unweights", fb.unweights, num_weights);
  const NoiseReductionState& nr = s.noise_reduction;
  std::printf("  \"nr_smoothing_bits\": %d, \"nr_even_smoothing\": %u, \"nr_odd_smoothing\": %u, "
              "\"nr_min_signal_remaining\": %u, \"nr_num_channels\": %d,\n",
              nr.smoothing_bits, nr.even_smoothing, nr.odd_smoothing, nr.min_signal_remaining, nr.num_channels);
  const PcanGainControlState& pc = s.pcan_gain_control;
  std::printf("  \"pcan_enable\": %d, \"pcan_num_channels\": %d, \"pcan_snr_shift\": %d,\n", pc.enable_pcan,
              pc.num_channels, static_cast<int>(pc.snr_shift));
  if (pc.enable_pcan) {
    PrintInts("pcan_gain_lut", pc.gain_lut, kWideDynamicFunctionLUTSize);
  } else {
    std::printf("  \"pcan_gain_lut\": [],\n");
  }
  std::printf("  \"log_enable\": %d, \"log_scale_shift\": %d\n", s.log_scale.enable_log, s.log_scale.scale_shift);
  std::printf("}\n");
  FrontendFreeStateContents(&s);
  return 0;
}
