/* PDM microphone over nrfx_pdm: see pdm_mic.h.
 *
 * One producer (the PDM interrupt) and one consumer (pdm_mic_read) share the ring without locks:
 * the handler alone advances `g_given` and `g_filled`, the reader alone advances `g_read`, and
 * every count is a 32-bit word (atomic on Cortex-M). Blocks go to the driver in ring order and
 * come back in the order given, so the ring slot of block k is k % PDM_MIC_BLOCKS. */
#include "pdm_mic.h"

#include <nrfx_pdm.h>

#include <hal/nrf_clock.h>

#ifndef PKW_PDM_CLK_PIN
#define PKW_PDM_CLK_PIN 26u
#endif
#ifndef PKW_PDM_DIN_PIN
#define PKW_PDM_DIN_PIN 25u
#endif

_Static_assert(PDM_MIC_BLOCKS >= 3, "the driver holds two blocks; the reader needs at least one more");
_Static_assert(PDM_MIC_BLOCK_SAMPLES > 0 && PDM_MIC_BLOCK_SAMPLES <= NRFX_PDM_MAX_BUFFER_SIZE,
               "a block must fit one EasyDMA transfer");

static nrfx_pdm_t g_pdm = NRFX_PDM_INSTANCE(NRF_PDM);
static int16_t g_ring[PDM_MIC_BLOCKS][PDM_MIC_BLOCK_SAMPLES];
/* Where the DMA writes when the reader is a whole ring behind: its samples are dropped. */
static int16_t g_scratch[PDM_MIC_BLOCK_SAMPLES];

static volatile uint32_t g_given;    /* ring blocks handed to the driver */
static volatile uint32_t g_filled;   /* ring blocks the driver handed back full */
static volatile uint32_t g_read;     /* ring blocks the reader has finished */
static volatile uint32_t g_overruns; /* blocks dropped, plus driver overflow errors */
static uint32_t g_offset;            /* samples already read from block g_read */

static void on_pdm_event(nrfx_pdm_evt_t const *evt) {
    if (evt->error != NRFX_PDM_NO_ERROR) g_overruns = g_overruns + 1u;
    if (evt->buffer_released != NULL) {
        if (evt->buffer_released == g_scratch) {
            g_overruns = g_overruns + 1u;
        } else {
            g_filled = g_filled + 1u;
        }
    }
    if (evt->buffer_requested) {
        int16_t *next = g_scratch;
        if (g_given - g_read < PDM_MIC_BLOCKS) {
            next = g_ring[g_given % PDM_MIC_BLOCKS];
            g_given = g_given + 1u;
        }
        /* A refusal here means the driver stopped meanwhile; the next start begins afresh. */
        (void)nrfx_pdm_buffer_set(&g_pdm, next, PDM_MIC_BLOCK_SAMPLES);
    }
}

void PDM_IRQHandler(void) { nrfx_pdm_irq_handler(&g_pdm); }

static void hfxo_start(void) {
    nrf_clock_event_clear(NRF_CLOCK, NRF_CLOCK_EVENT_HFCLKSTARTED);
    nrf_clock_task_trigger(NRF_CLOCK, NRF_CLOCK_TASK_HFCLKSTART);
    while (!nrf_clock_event_check(NRF_CLOCK, NRF_CLOCK_EVENT_HFCLKSTARTED)) {
    }
}

int pdm_mic_start(void) {
    nrfx_pdm_config_t config = NRFX_PDM_DEFAULT_CONFIG(PKW_PDM_CLK_PIN, PKW_PDM_DIN_PIN);
    int err;
    config.prescalers.clock_freq = NRF_PDM_FREQ_1280K;
    config.prescalers.ratio = NRF_PDM_RATIO_80X; /* 1.280 MHz / 80 = 16 kHz */
    g_given = g_filled = g_read = g_overruns = 0;
    g_offset = 0;
    hfxo_start();
    if ((err = nrfx_pdm_init(&g_pdm, &config, on_pdm_event)) != 0) return err;
    if ((err = nrfx_pdm_start(&g_pdm)) != 0) {
        nrfx_pdm_uninit(&g_pdm);
        return err;
    }
    return 0;
}

size_t pdm_mic_read(int16_t *out, size_t n) {
    size_t done = 0;
    while (done < n) {
        while (g_read == g_filled) {
            __WFE(); /* any interrupt, the PDM's included, ends the wait */
        }
        const int16_t *block = g_ring[g_read % PDM_MIC_BLOCKS];
        size_t take = PDM_MIC_BLOCK_SAMPLES - g_offset;
        if (take > n - done) take = n - done;
        for (size_t i = 0; i < take; ++i) out[done + i] = block[g_offset + i];
        done += take;
        g_offset += (uint32_t)take;
        if (g_offset == PDM_MIC_BLOCK_SAMPLES) {
            g_offset = 0;
            __DMB(); /* the copy completes before the handler may reuse the slot */
            g_read = g_read + 1u;
        }
    }
    return n;
}

void pdm_mic_stop(void) { nrfx_pdm_uninit(&g_pdm); }

uint32_t pdm_mic_overruns(void) { return g_overruns; }
