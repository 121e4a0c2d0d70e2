/* The model's input, computed on the device: TFLM's micro frontend (compiled from TFLM_DIR), run
 * frame by frame on int16 PCM and never reset between windows, then quantized to the model's
 * int8 input by a table generated from the host's own quantizer.
 *
 * Every table the frontend derives in floating point at start-up is generated on the host
 * (polykws.firmware.frontendgen -> pkw_frontend_tables.c), so the device runs no floating-point
 * initialisation and its features equal pymicro-features' bit for bit.
 */
#ifndef PKW_FRONTEND_H
#define PKW_FRONTEND_H

#include <stddef.h>
#include <stdint.h>

#include "pkw_frontend_tables.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  PKW_FE_OK = 0,
  /* kissfft wants a different scratch layout than the one the tables were made for. */
  PKW_FE_FFT_LAYOUT = 1,
} pkw_fe_status;

/* One raw frontend frame (every window step) and, on every PKW_FE_FRAME_DECIMATION-th of them
 * (the first one included), the model's int8 input frame. */
typedef struct {
  uint16_t raw[PKW_FE_NUM_CHANNELS];
  int8_t model[PKW_FE_NUM_CHANNELS];
  int is_model_frame;
} pkw_fe_frame;

/* Wires the state to the generated tables and clears it (the stream starts from silence). */
pkw_fe_status pkw_frontend_init(void);
/* Clears the adaptive state (noise estimate, PCAN) and the sample buffer. */
void pkw_frontend_reset(void);
/* Feeds exactly PKW_FE_STEP_SAMPLES samples; returns 1 when they complete a frame (in *out). */
int pkw_frontend_push(const int16_t *samples, pkw_fe_frame *out);
/* RAM the frontend's state and buffers take (its tables are const, in flash). */
size_t pkw_frontend_state_bytes(void);
/* The model's int8 input value of one raw frontend value (the generated table, saturating). */
int8_t pkw_frontend_quantize(uint16_t raw);

#ifdef __cplusplus
}
#endif

#endif
