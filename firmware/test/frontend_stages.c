/* Instructions per stage of TFLM's micro frontend, for FE_PROFILE=1 builds of the frontend runner.
 *
 * The linker routes each stage that FrontendProcessSamples calls through a wrapper here
 * (-Wl,--wrap=<stage>), which adds the stage's SysTick ticks, so the library's own sources are
 * built and run unchanged. The wrappers' own cost (two counter reads per call) lands in the
 * stage they time; the totals of a profile build are therefore not the benchmark's figures.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "board.h"
#include "frontend_stages.h"
#include "tensorflow/lite/experimental/microfrontend/lib/fft.h"
#include "tensorflow/lite/experimental/microfrontend/lib/filterbank.h"
#include "tensorflow/lite/experimental/microfrontend/lib/log_scale.h"
#include "tensorflow/lite/experimental/microfrontend/lib/noise_reduction.h"
#include "tensorflow/lite/experimental/microfrontend/lib/pcan_gain_control.h"
#include "tensorflow/lite/experimental/microfrontend/lib/window.h"

enum { WINDOW, FFT, ENERGY, ACCUMULATE, SQRT, NOISE_REDUCTION, PCAN, LOG_SCALE, NUM_STAGES };
static const char *const kNames[NUM_STAGES] = {"window", "fft", "energy", "accumulate", "sqrt",
                                               "noise_reduction", "pcan", "log_scale"};
static uint64_t g_ticks[NUM_STAGES];
static uint32_t g_calls[NUM_STAGES];

static void add(int stage, uint64_t t0) {
    g_ticks[stage] += systick_ticks() - t0;
    ++g_calls[stage];
}

int __real_WindowProcessSamples(struct WindowState *, const int16_t *, size_t, size_t *);
void __real_FftCompute(struct FftState *, const int16_t *, int);
void __real_FilterbankConvertFftComplexToEnergy(struct FilterbankState *, struct complex_int16_t *, int32_t *);
void __real_FilterbankAccumulateChannels(struct FilterbankState *, const int32_t *);
uint32_t *__real_FilterbankSqrt(struct FilterbankState *, int);
void __real_NoiseReductionApply(struct NoiseReductionState *, uint32_t *);
void __real_PcanGainControlApply(struct PcanGainControlState *, uint32_t *);
uint16_t *__real_LogScaleApply(struct LogScaleState *, uint32_t *, int, int);

int __wrap_WindowProcessSamples(struct WindowState *s, const int16_t *x, size_t n, size_t *read);
void __wrap_FftCompute(struct FftState *s, const int16_t *x, int shift);
void __wrap_FilterbankConvertFftComplexToEnergy(struct FilterbankState *s, struct complex_int16_t *f, int32_t *e);
void __wrap_FilterbankAccumulateChannels(struct FilterbankState *s, const int32_t *e);
uint32_t *__wrap_FilterbankSqrt(struct FilterbankState *s, int shift);
void __wrap_NoiseReductionApply(struct NoiseReductionState *s, uint32_t *x);
void __wrap_PcanGainControlApply(struct PcanGainControlState *s, uint32_t *x);
uint16_t *__wrap_LogScaleApply(struct LogScaleState *s, uint32_t *x, int n, int bits);

int __wrap_WindowProcessSamples(struct WindowState *s, const int16_t *x, size_t n, size_t *read) {
    const uint64_t t0 = systick_ticks();
    const int ready = __real_WindowProcessSamples(s, x, n, read);
    add(WINDOW, t0);
    return ready;
}

void __wrap_FftCompute(struct FftState *s, const int16_t *x, int shift) {
    const uint64_t t0 = systick_ticks();
    __real_FftCompute(s, x, shift);
    add(FFT, t0);
}

void __wrap_FilterbankConvertFftComplexToEnergy(struct FilterbankState *s, struct complex_int16_t *f, int32_t *e) {
    const uint64_t t0 = systick_ticks();
    __real_FilterbankConvertFftComplexToEnergy(s, f, e);
    add(ENERGY, t0);
}

void __wrap_FilterbankAccumulateChannels(struct FilterbankState *s, const int32_t *e) {
    const uint64_t t0 = systick_ticks();
    __real_FilterbankAccumulateChannels(s, e);
    add(ACCUMULATE, t0);
}

uint32_t *__wrap_FilterbankSqrt(struct FilterbankState *s, int shift) {
    const uint64_t t0 = systick_ticks();
    uint32_t *out = __real_FilterbankSqrt(s, shift);
    add(SQRT, t0);
    return out;
}

void __wrap_NoiseReductionApply(struct NoiseReductionState *s, uint32_t *x) {
    const uint64_t t0 = systick_ticks();
    __real_NoiseReductionApply(s, x);
    add(NOISE_REDUCTION, t0);
}

void __wrap_PcanGainControlApply(struct PcanGainControlState *s, uint32_t *x) {
    const uint64_t t0 = systick_ticks();
    __real_PcanGainControlApply(s, x);
    add(PCAN, t0);
}

uint16_t *__wrap_LogScaleApply(struct LogScaleState *s, uint32_t *x, int n, int bits) {
    const uint64_t t0 = systick_ticks();
    uint16_t *out = __real_LogScaleApply(s, x, n, bits);
    add(LOG_SCALE, t0);
    return out;
}

void pkw_fe_stages_print(void) {
    int i;
    for (i = 0; i < NUM_STAGES; ++i) {
        printf("PKW_FE_STAGE name=%s calls=%lu ticks=%lu\n", kNames[i], (unsigned long)g_calls[i],
               (unsigned long)g_ticks[i]);
    }
}
