/* A PDM microphone on the nRF52840-DK as a 16 kHz mono int16 PCM source, over nrfx's PDM driver.
 *
 * PDM_CLK runs at 1.280 MHz with a decimation ratio of 80, which gives exactly 16,000 samples per
 * second, the rate the frontend expects. The peripheral's EasyDMA fills blocks of
 * PDM_MIC_BLOCK_SAMPLES in a ring of PDM_MIC_BLOCKS; pdm_mic_read copies them out in order and
 * sleeps (WFE) while none is full. A reader that falls more than the ring behind loses whole
 * blocks, never a part of one: the driver is handed a scratch block instead, and each such block is
 * counted in pdm_mic_overruns().
 *
 * Pins (GPIO port 0), set at build time: PKW_PDM_CLK_PIN (default 26) and PKW_PDM_DIN_PIN
 * (default 25), as Nordic's and Zephyr's nRF52840-DK samples wire a PDM microphone board; the
 * microphone's L/R select pin is tied low (left channel, sampled on the falling clock edge).
 *
 * Build-checked only: no board with a microphone has run it here.
 */
#ifndef PKW_PDM_MIC_H
#define PKW_PDM_MIC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef PDM_MIC_BLOCK_SAMPLES
#define PDM_MIC_BLOCK_SAMPLES 320 /* 20 ms */
#endif
#ifndef PDM_MIC_BLOCKS
#define PDM_MIC_BLOCKS 6 /* 120 ms of slack for the reader */
#endif
#define PDM_MIC_SAMPLE_RATE_HZ 16000u

/* Starts the high-frequency crystal (the PDM clock's accuracy) and the microphone.
 * Returns 0, or the negative errno nrfx_pdm_init / nrfx_pdm_start returned. */
int pdm_mic_start(void);
/* Fills out[0..n) with the next n samples, waiting for them; returns n. */
size_t pdm_mic_read(int16_t *out, size_t n);
/* Stops sampling; pdm_mic_start may be called again. */
void pdm_mic_stop(void);
/* Blocks dropped because the reader fell behind, and buffer-overflow errors the driver reported. */
uint32_t pdm_mic_overruns(void);

#ifdef __cplusplus
}
#endif

#endif
