/* Frontend check under QEMU: int16 PCM in over semihosting, the device's frames out.
 *
 * Reads fe_in.pcm (little-endian int16, one continuous stream) PKW_FE_STEP_SAMPLES at a time,
 * feeds the streaming frontend (never reset), and writes every raw frame to fe_raw.bin
 * (uint16 x channels) and every model frame to fe_model.bin (int8 x channels). The host compares
 * both files with pymicro-features + the host quantizer (polykws.firmware.frontendcheck).
 * Prints: PKW_FE raw_frames=<n> model_frames=<n> push_ticks=<sum> max_push_ticks=<n>
 *         units_per_tick_milli=<n> unit=<instructions|cycles>, in FE_PROFILE=1 builds one
 *         PKW_FE_STAGE line per frontend stage (frontend_stages.c), then PKW_END status=ok|error.
 */
#include <stdio.h>

#include "board.h"
#include "frontend.h"
#if PKW_FE_PROFILE
#include "frontend_stages.h"
#endif

#define BATCH_FRAMES 64u

static int16_t g_pcm[PKW_FE_STEP_SAMPLES];
static uint16_t g_raw[BATCH_FRAMES][PKW_FE_NUM_CHANNELS];
static int8_t g_model[BATCH_FRAMES][PKW_FE_NUM_CHANNELS];

static int flush(FILE *f, const void *buf, size_t bytes) {
    return bytes == 0 || fwrite(buf, 1, bytes, f) == bytes;
}

int main(void) {
    FILE *in, *raw_out, *model_out;
    pkw_fe_frame frame;
    unsigned long raw_frames = 0, model_frames = 0;
    unsigned n_raw = 0, n_model = 0;
    uint64_t ticks = 0, max_ticks = 0;
    int ok = 1;
    systick_start();
    if (pkw_frontend_init() != PKW_FE_OK) {
        printf("PKW_ERROR stage=frontend_init\nPKW_END status=error\n");
        return 1;
    }
    in = fopen("fe_in.pcm", "rb");
    raw_out = fopen("fe_raw.bin", "wb");
    model_out = fopen("fe_model.bin", "wb");
    if (!in || !raw_out || !model_out) {
        printf("PKW_ERROR stage=open\nPKW_END status=error\n");
        return 1;
    }
    while (fread(g_pcm, sizeof g_pcm[0], PKW_FE_STEP_SAMPLES, in) == PKW_FE_STEP_SAMPLES) {
        const uint64_t t0 = systick_ticks();
        const int got = pkw_frontend_push(g_pcm, &frame);
        const uint64_t dt = systick_ticks() - t0;
        ticks += dt;
        if (dt > max_ticks) max_ticks = dt;
        if (!got) continue;
        for (unsigned c = 0; c < PKW_FE_NUM_CHANNELS; ++c) g_raw[n_raw][c] = frame.raw[c];
        ++n_raw;
        ++raw_frames;
        if (frame.is_model_frame) {
            for (unsigned c = 0; c < PKW_FE_NUM_CHANNELS; ++c) g_model[n_model][c] = frame.model[c];
            ++n_model;
            ++model_frames;
        }
        if (n_raw == BATCH_FRAMES) {
            ok &= flush(raw_out, g_raw, sizeof g_raw);
            n_raw = 0;
        }
        if (n_model == BATCH_FRAMES) {
            ok &= flush(model_out, g_model, sizeof g_model);
            n_model = 0;
        }
    }
    ok &= flush(raw_out, g_raw, n_raw * sizeof g_raw[0]);
    ok &= flush(model_out, g_model, n_model * sizeof g_model[0]);
    ok &= fclose(raw_out) == 0;
    ok &= fclose(model_out) == 0;
    fclose(in);
    printf("PKW_FE raw_frames=%lu model_frames=%lu push_ticks=%lu max_push_ticks=%lu units_per_tick_milli=%lu unit=%s\n",
           raw_frames, model_frames, (unsigned long)ticks, (unsigned long)max_ticks,
           (unsigned long)board_units_per_tick_milli, board_count_unit);
#if PKW_FE_PROFILE
    pkw_fe_stages_print();
#endif
    printf("PKW_END status=%s\n", ok ? "ok" : "error");
    return ok ? 0 : 1;
}
