/* See detector.h and docs/STREAMING.md. */
#include "detector.h"

#include <string.h>

pkw_det_status pkw_det_init(pkw_detector *d, const pkw_det_config *cfg) {
  uint32_t k;
  memset(d, 0, sizeof *d);
  if (cfg->window_frames == 0 || cfg->stride_frames == 0 || cfg->average_inferences == 0 ||
      cfg->average_inferences > PKW_DET_MAX_AVERAGE || cfg->num_labels == 0 || cfg->num_labels > PKW_DET_MAX_LABELS ||
      cfg->thresholds == NULL) {
    return PKW_DET_BAD_CONFIG;
  }
  for (k = 0; k < cfg->num_labels; ++k) {
    if (cfg->thresholds[k] > PKW_DET_NEVER) return PKW_DET_BAD_CONFIG;
  }
  d->cfg = *cfg;
  return PKW_DET_OK;
}

int pkw_det_due(const pkw_detector *d, uint32_t frame) {
  const uint32_t first = d->cfg.window_frames - 1u;
  return frame >= first && (frame - first) % d->cfg.stride_frames == 0u;
}

int pkw_det_push(pkw_detector *d, uint32_t frame, const int8_t *scores) {
  const uint32_t K = d->cfg.num_labels;
  uint8_t *slot = d->history[d->head];
  uint32_t k, top = 0;
  if (d->count == d->cfg.average_inferences) {
    /* The oldest inference leaves the window before the new one enters. */
    for (k = 0; k < K; ++k) d->sums[k] -= slot[k];
  } else {
    ++d->count;
  }
  for (k = 0; k < K; ++k) {
    slot[k] = (uint8_t)((int32_t)scores[k] + 128);
    d->sums[k] += slot[k];
  }
  d->head = (d->head + 1u) % d->cfg.average_inferences;
  for (k = 1; k < K; ++k) {
    if (d->sums[k] > d->sums[top]) top = k; /* ties keep the lower class index */
  }
  if ((int64_t)d->sums[top] < (int64_t)d->cfg.thresholds[top] * (int64_t)d->count) return -1;
  if (d->has_last && frame - d->last_frame < d->cfg.refractory_frames) return -1;
  d->has_last = 1;
  d->last_frame = frame;
  return (int)top;
}

void pkw_ring_init(pkw_ring *r, int8_t *data, uint32_t frames, uint32_t frame_bytes) {
  r->data = data;
  r->frames = frames;
  r->frame_bytes = frame_bytes;
  r->next = 0;
  r->filled = 0;
}

void pkw_ring_push(pkw_ring *r, const int8_t *frame) {
  memcpy(r->data + (size_t)r->next * r->frame_bytes, frame, r->frame_bytes);
  r->next = (r->next + 1u) % r->frames;
  if (r->filled < r->frames) ++r->filled;
}

void pkw_ring_copy(const pkw_ring *r, int8_t *dst) {
  /* Once full, the oldest frame sits where the next one goes. */
  const uint32_t oldest = r->filled < r->frames ? 0u : r->next;
  const size_t tail = (size_t)(r->frames - oldest) * r->frame_bytes;
  memcpy(dst, r->data + (size_t)oldest * r->frame_bytes, tail);
  memcpy(dst + tail, r->data, (size_t)oldest * r->frame_bytes);
}
