// The micro frontend's state, wired to the host-generated tables (see frontend.h).
#include "frontend.h"

#include <string.h>

#include "tensorflow/lite/experimental/microfrontend/lib/frontend.h"
#include "tensorflow/lite/experimental/microfrontend/lib/kiss_fft_int16.h"

namespace {

using Cpx = kissfft_fixed16::kiss_fft_cpx;

// kissfft keeps its configuration structs private (kiss_fft.c, tools/kiss_fftr.c). These mirror
// them so the scratch area can be laid out from the host's tables instead of by
// kiss_fftr_alloc, which computes the twiddles in floating point. pkw_frontend_init checks the
// mirror against kissfft's own size arithmetic before anything runs.
struct KissFftState {
  int nfft;
  int inverse;
  int factors[2 * PKW_FE_KISS_MAXFACTORS];
  Cpx twiddles[1];
};
struct KissFftrState {
  KissFftState* substate;
  Cpx* tmpbuf;
  Cpx* super_twiddles;
};

constexpr int kHalf = PKW_FE_KISS_NFFT;  // the complex FFT's length: fft_size / 2
constexpr size_t kSubBytes = sizeof(KissFftState) + sizeof(Cpx) * (kHalf - 1);
constexpr size_t kScratchBytes = sizeof(KissFftrState) + kSubBytes + sizeof(Cpx) * (kHalf * 3 / 2);
static_assert(PKW_FE_FFT_SIZE == 2 * kHalf, "the real FFT runs a complex FFT of half its length");

FrontendState g_state;
int16_t g_window_input[PKW_FE_WINDOW_SAMPLES];
int16_t g_window_output[PKW_FE_WINDOW_SAMPLES];
int16_t g_fft_input[PKW_FE_FFT_SIZE];
complex_int16_t g_fft_output[PKW_FE_FFT_SIZE / 2 + 1];
alignas(8) unsigned char g_fft_scratch[kScratchBytes];
uint64_t g_fb_work[PKW_FE_NUM_CHANNELS + 1];
uint32_t g_estimate[PKW_FE_NUM_CHANNELS];
uint32_t g_raw_frames = 0;

// The library reads these tables and never writes them; its struct fields are not const.
template <typename T>
T* Table(const T* p) {
  return const_cast<T*>(p);
}

bool LayOutFft() {
  size_t want = 0;
  // A size query only (no memory given): kissfft computes nothing, it reports what it needs.
  kissfft_fixed16::kiss_fftr_alloc(PKW_FE_FFT_SIZE, 0, nullptr, &want);
  if (want != kScratchBytes) return false;
  auto* st = reinterpret_cast<KissFftrState*>(g_fft_scratch);
  st->substate = reinterpret_cast<KissFftState*>(st + 1);
  st->tmpbuf = reinterpret_cast<Cpx*>(reinterpret_cast<unsigned char*>(st->substate) + kSubBytes);
  st->super_twiddles = st->tmpbuf + kHalf;
  st->substate->nfft = kHalf;
  st->substate->inverse = 0;
  memcpy(st->substate->factors, pkw_fe_kiss_factors, sizeof st->substate->factors);
  for (int i = 0; i < kHalf; ++i) {
    st->substate->twiddles[i].r = pkw_fe_kiss_twiddles[2 * i];
    st->substate->twiddles[i].i = pkw_fe_kiss_twiddles[2 * i + 1];
  }
  for (int i = 0; i < kHalf / 2; ++i) {
    st->super_twiddles[i].r = pkw_fe_kiss_super_twiddles[2 * i];
    st->super_twiddles[i].i = pkw_fe_kiss_super_twiddles[2 * i + 1];
  }
  return true;
}

}  // namespace

extern "C" pkw_fe_status pkw_frontend_init(void) {
  FrontendState& s = g_state;
  s.window.size = PKW_FE_WINDOW_SAMPLES;
  s.window.step = PKW_FE_STEP_SAMPLES;
  s.window.coefficients = Table(pkw_fe_window_coefficients);
  s.window.input = g_window_input;
  s.window.output = g_window_output;
  s.fft.input = g_fft_input;
  s.fft.output = g_fft_output;
  s.fft.fft_size = PKW_FE_FFT_SIZE;
  s.fft.input_size = PKW_FE_FFT_INPUT_SIZE;
  s.fft.scratch = g_fft_scratch;
  s.fft.scratch_size = kScratchBytes;
  if (!LayOutFft()) return PKW_FE_FFT_LAYOUT;
  s.filterbank.num_channels = PKW_FE_NUM_CHANNELS;
  s.filterbank.start_index = PKW_FE_FB_START_INDEX;
  s.filterbank.end_index = PKW_FE_FB_END_INDEX;
  s.filterbank.channel_frequency_starts = Table(pkw_fe_fb_channel_frequency_starts);
  s.filterbank.channel_weight_starts = Table(pkw_fe_fb_channel_weight_starts);
  s.filterbank.channel_widths = Table(pkw_fe_fb_channel_widths);
  s.filterbank.weights = Table(pkw_fe_fb_weights);
  s.filterbank.unweights = Table(pkw_fe_fb_unweights);
  s.filterbank.work = g_fb_work;
  s.noise_reduction.smoothing_bits = PKW_FE_NR_SMOOTHING_BITS;
  s.noise_reduction.even_smoothing = PKW_FE_NR_EVEN_SMOOTHING;
  s.noise_reduction.odd_smoothing = PKW_FE_NR_ODD_SMOOTHING;
  s.noise_reduction.min_signal_remaining = PKW_FE_NR_MIN_SIGNAL_REMAINING;
  s.noise_reduction.num_channels = PKW_FE_NUM_CHANNELS;
  s.noise_reduction.estimate = g_estimate;
  s.pcan_gain_control.enable_pcan = PKW_FE_PCAN_ENABLE;
  s.pcan_gain_control.noise_estimate = g_estimate;  // PCAN normalises by the noise estimate
  s.pcan_gain_control.num_channels = PKW_FE_NUM_CHANNELS;
  s.pcan_gain_control.gain_lut = Table(pkw_fe_pcan_gain_lut);
  s.pcan_gain_control.snr_shift = PKW_FE_PCAN_SNR_SHIFT;
  s.log_scale.enable_log = PKW_FE_LOG_ENABLE;
  s.log_scale.scale_shift = PKW_FE_LOG_SCALE_SHIFT;
  pkw_frontend_reset();
  return PKW_FE_OK;
}

extern "C" void pkw_frontend_reset(void) {
  FrontendReset(&g_state);
  g_raw_frames = 0;
}

extern "C" size_t pkw_frontend_state_bytes(void) {
  return sizeof g_state + sizeof g_window_input + sizeof g_window_output + sizeof g_fft_input + sizeof g_fft_output +
         sizeof g_fft_scratch + sizeof g_fb_work + sizeof g_estimate + sizeof g_raw_frames;
}

extern "C" int8_t pkw_frontend_quantize(uint16_t raw) {
  return pkw_fe_q_lut[raw < PKW_FE_Q_LUT_LEN ? raw : PKW_FE_Q_LUT_LEN - 1];
}

extern "C" int pkw_frontend_push(const int16_t* samples, pkw_fe_frame* out) {
  size_t read = 0;
  const FrontendOutput o = FrontendProcessSamples(&g_state, samples, PKW_FE_STEP_SAMPLES, &read);
  if (o.size != PKW_FE_NUM_CHANNELS) return 0;
  out->is_model_frame = (g_raw_frames % PKW_FE_FRAME_DECIMATION) == 0;
  ++g_raw_frames;
  for (int i = 0; i < PKW_FE_NUM_CHANNELS; ++i) {
    out->raw[i] = o.values[i];
    out->model[i] = pkw_frontend_quantize(o.values[i]);
  }
  return 1;
}
