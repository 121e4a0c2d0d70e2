/* Streaming keyword detection after the model: the ring of int8 model frames, the inference
 * schedule, posterior smoothing and the decision, exactly as docs/STREAMING.md specifies and
 * polykws.export.streaming implements on the host. Integer arithmetic only, so the device and
 * the host agree event for event. No allocation: the caller owns the structs.
 */
#ifndef PKW_DETECTOR_H
#define PKW_DETECTOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PKW_DET_MAX_LABELS 64u
#define PKW_DET_MAX_AVERAGE 16u
/* Thresholds live on the posterior scale p = q + 128 in [0, 255]; this one never fires. */
#define PKW_DET_NEVER 256u

typedef enum {
  PKW_DET_OK = 0,
  PKW_DET_BAD_CONFIG = 1,
} pkw_det_status;

typedef struct {
  uint32_t window_frames;      /* T: model input frames */
  uint32_t stride_frames;      /* run the model every this many model frames */
  uint32_t average_inferences; /* W: inferences summed (1..PKW_DET_MAX_AVERAGE) */
  uint32_t refractory_frames;  /* R: model frames after a detection during which none fires */
  uint32_t num_labels;         /* K: the language's labels (head padding slots are never read) */
  const uint16_t *thresholds;  /* K entries in [0, 256]; _silence_ and _unknown_ hold 256 */
} pkw_det_config;

typedef struct {
  pkw_det_config cfg;
  uint8_t history[PKW_DET_MAX_AVERAGE][PKW_DET_MAX_LABELS]; /* p of the last W inferences */
  int32_t sums[PKW_DET_MAX_LABELS];                          /* S */
  uint32_t count;                                            /* inferences in S (n) */
  uint32_t head;                                             /* next history slot */
  int has_last;
  uint32_t last_frame; /* model frame of the last detection */
} pkw_detector;

pkw_det_status pkw_det_init(pkw_detector *d, const pkw_det_config *cfg);
/* 1 when the model must run after model frame `frame` (0-based) entered the ring. */
int pkw_det_due(const pkw_detector *d, uint32_t frame);
/* One inference's int8 softmax (scale 1/256, zero point -128) for the ring whose newest model
 * frame is `frame`. Returns the class index of a detection, or -1. */
int pkw_det_push(pkw_detector *d, uint32_t frame, const int8_t *scores);

/* The last T model frames in time order. `data` holds capacity_frames * frame_bytes bytes. */
typedef struct {
  int8_t *data;
  uint32_t frames;      /* T */
  uint32_t frame_bytes; /* F */
  uint32_t next;        /* slot the next frame goes to */
  uint32_t filled;
} pkw_ring;

void pkw_ring_init(pkw_ring *r, int8_t *data, uint32_t frames, uint32_t frame_bytes);
void pkw_ring_push(pkw_ring *r, const int8_t *frame);
/* Oldest first, as the model's input (1, T, F, 1). */
void pkw_ring_copy(const pkw_ring *r, int8_t *dst);

#ifdef __cplusplus
}
#endif

#endif
