/* Detector test runner: one program for the host (gcc, sanitizers) and for Cortex-M under QEMU.
 *
 * Reads det_in.bin (little-endian, written by tests/firmware/test_detector_c.py):
 *   u32 T, F, stride_frames, average_inferences, refractory_frames, K, model_frames
 *   u16 thresholds[K]
 *   then per model frame n = 0..model_frames-1: int8 frame[F], and, when the model is due after
 *   that frame, int8 scores[K] (the model output the host's TFLM gave for that ring).
 * For each inference it prints "I <n> <crc32 of the ring in time order>", for each detection
 * "D <class> <n>", and finally "DONE <inferences> <detections>".
 */
#include <stdio.h>
#include <string.h>

#include "blob.h"
#include "detector.h"

#define MAX_T 64u
#define MAX_F 64u

static int8_t g_ring_data[MAX_T * MAX_F];
static int8_t g_window[MAX_T * MAX_F];
static int8_t g_frame[MAX_F];
static int8_t g_scores[PKW_DET_MAX_LABELS];
static uint16_t g_thr[PKW_DET_MAX_LABELS];

static int read_u32(FILE *f, uint32_t *v) {
    uint8_t b[4];
    if (fread(b, 1, 4, f) != 4) return 0;
    *v = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
    return 1;
}

int main(void) {
    uint32_t T, F, stride, avg, refr, K, frames, n, k;
    unsigned long inferences = 0, detections = 0;
    pkw_det_config cfg;
    pkw_detector det;
    pkw_ring ring;
    FILE *f = fopen("det_in.bin", "rb");
    if (!f) {
        printf("ERROR open\n");
        return 1;
    }
    if (!read_u32(f, &T) || !read_u32(f, &F) || !read_u32(f, &stride) || !read_u32(f, &avg) || !read_u32(f, &refr) ||
        !read_u32(f, &K) || !read_u32(f, &frames) || T == 0 || T > MAX_T || F == 0 || F > MAX_F || K > PKW_DET_MAX_LABELS) {
        printf("ERROR header\n");
        return 1;
    }
    for (k = 0; k < K; ++k) {
        uint8_t b[2];
        if (fread(b, 1, 2, f) != 2) {
            printf("ERROR thresholds\n");
            return 1;
        }
        g_thr[k] = (uint16_t)(b[0] | (b[1] << 8));
    }
    cfg.window_frames = T;
    cfg.stride_frames = stride;
    cfg.average_inferences = avg;
    cfg.refractory_frames = refr;
    cfg.num_labels = K;
    cfg.thresholds = g_thr;
    if (pkw_det_init(&det, &cfg) != PKW_DET_OK) {
        printf("ERROR config\n");
        return 1;
    }
    pkw_ring_init(&ring, g_ring_data, T, F);
    for (n = 0; n < frames; ++n) {
        if (fread(g_frame, 1, F, f) != F) {
            printf("ERROR frame %lu\n", (unsigned long)n);
            return 1;
        }
        pkw_ring_push(&ring, g_frame);
        if (!pkw_det_due(&det, n)) continue;
        if (fread(g_scores, 1, K, f) != K) {
            printf("ERROR scores %lu\n", (unsigned long)n);
            return 1;
        }
        pkw_ring_copy(&ring, g_window);
        printf("I %lu %08lx\n", (unsigned long)n, (unsigned long)pkw_crc32((const uint8_t *)g_window, (size_t)T * F));
        ++inferences;
        {
            const int hit = pkw_det_push(&det, n, g_scores);
            if (hit >= 0) {
                printf("D %d %lu\n", hit, (unsigned long)n);
                ++detections;
            }
        }
    }
    fclose(f);
    printf("DONE %lu %lu\n", inferences, detections);
    return 0;
}
