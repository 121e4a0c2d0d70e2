/* polykws: multilingual keyword spotting for Cortex-M, as a library a product firmware embeds.
 *
 * One runtime owns the micro frontend, the ring of model frames, the TFLM interpreter and the
 * detector. It holds one flash image (PKWF: the int8 base model and one weight-diff blob per
 * language) and listens in one language at a time:
 *
 *   polykws_init(image, size, NULL);            // once: checks the image and the base's SHA-256
 *   polykws_select_language("lt", NULL);         // thresholds from the language's blob
 *   for (;;) {                                   // any number of samples per call
 *     n = read_microphone(pcm, 320);
 *     polykws_push_pcm(pcm, n, events, 4, &got); // 0..got detections
 *   }
 *
 * Every buffer is static and sized at compile time from the generated headers of one pack
 * (pkw_model.h, pkw_frontend_tables.h, pkw_stream_config.h; `polykws firmware sdk` writes them):
 * nothing is allocated, after init or ever. With pkw_step_graphs.h as well (`--step-graphs`, a
 * base without time padding) the runtime runs the base's linked step and head graphs, each model
 * frame computed once, behind the same calls (docs/STREAMING.md, "In the runtime"). The runtime is a single instance and is not
 * reentrant: call it from one thread, never from an interrupt handler.
 *
 * Audio is 16 kHz mono int16 PCM. Detections are decided exactly as polykws.export.streaming
 * decides them on the host (docs/STREAMING.md), so a host run over the same samples gives the
 * same events.
 */
#ifndef POLYKWS_H
#define POLYKWS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  POLYKWS_OK = 0,
  POLYKWS_ERR_IMAGE = 1,            /* flash image table or CRC refused */
  POLYKWS_ERR_BASE = 2,             /* the base's SHA-256 does not match the image header */
  POLYKWS_ERR_UNKNOWN_LANGUAGE = 3, /* neither the base language nor a blob in the image */
  POLYKWS_ERR_BLOB = 4,             /* the language's blob was refused (polykws_blob_error names why) */
  POLYKWS_ERR_MODEL = 5,            /* the model is not the layout the generated headers describe */
  POLYKWS_ERR_INTERPRETER = 6,      /* TFLM could not allocate or run the model */
  POLYKWS_ERR_FRONTEND = 7,         /* the frontend's tables do not fit this kissfft build */
  POLYKWS_ERR_NO_THRESHOLDS = 8,    /* the language carries no thresholds and none were given */
  POLYKWS_ERR_BAD_ARGUMENT = 9,     /* a NULL pointer, or a threshold outside 0..256 */
  POLYKWS_ERR_NOT_READY = 10,       /* polykws_init has not succeeded, or no language is selected */
} polykws_status;

/* Time source for the step counters (polykws_stats); NULL leaves them at 0. */
typedef uint64_t (*polykws_clock_fn)(void);

typedef struct {
  uint32_t label;        /* index into the active language's labels (polykws_label) */
  uint32_t model_frame;  /* model frame since init or reset whose inference fired */
  uint64_t sample_end;   /* samples pushed since init or reset when it fired: where the keyword ended */
} polykws_event;

typedef struct {
  size_t flash_image_bytes; /* the PKWF image the runtime reads in place */
  size_t arena_bytes;       /* TFLM tensor arena, reserved */
  size_t arena_used_bytes;  /* of which the active language's model uses */
  size_t model_ram_bytes;   /* RAM copy a blob language is patched into (the base runs from flash) */
  size_t state_bytes;       /* frontend, frame ring, detector, interpreter and runtime state */
} polykws_memory_report;

typedef struct {
  uint64_t samples;        /* pushed since init or reset */
  uint32_t steps;          /* frontend steps (one per window stride of audio) */
  uint32_t model_frames;   /* frames that entered the ring */
  uint32_t inferences;     /* model runs */
  uint32_t events;         /* detections returned */
  uint32_t events_dropped; /* detections a full event buffer could not take */
  uint64_t frontend_ticks; /* clock ticks in the frontend, the model and the detector */
  uint64_t invoke_ticks;
  uint64_t detector_ticks;
} polykws_stats;

/* Checks the image (table, CRC, the base's SHA-256) and wires the frontend. `clock` may be NULL. */
polykws_status polykws_init(const uint8_t *image, size_t image_size, polykws_clock_fn clock);

/* Makes `lang` the active language and restarts the detector (the frontend and the ring keep the
 * audio they have heard). `thresholds`: one per label on the posterior scale 0..255 (256 never
 * fires), or NULL for the ones the language's blob carries. _silence_ and _unknown_ never fire,
 * whatever is given for them. A refused switch leaves no language selected. */
polykws_status polykws_select_language(const char *lang, const uint16_t *thresholds);

/* Feeds `n` samples (any count; a partial step waits for the next call) and writes up to `cap`
 * detections to `events`; `*num_events` says how many. At most one detection comes per inference,
 * so cap >= n / polykws_samples_per_inference() + 1 never drops one (polykws_stats counts drops). */
polykws_status polykws_push_pcm(const int16_t *pcm, size_t n, polykws_event *events, size_t cap, size_t *num_events);

/* Forgets the audio heard: frontend state, ring, detector, partial step and counters. */
void polykws_reset(void);

void polykws_memory(polykws_memory_report *out);
uint32_t polykws_samples_per_inference(void);
void polykws_get_stats(polykws_stats *out);

/* The active language ("" when none), its label count, and label `index` copied NUL-terminated
 * (truncated to cap-1 bytes). */
const char *polykws_language(void);
uint32_t polykws_num_labels(void);
void polykws_label(uint32_t index, char *out, size_t cap);
/* 1 when the active language's thresholds came from its blob, 0 when the caller gave them. */
int polykws_thresholds_from_blob(void);
/* The image's languages: index 0 is the base's. NULL past the end. */
uint32_t polykws_num_languages(void);
const char *polykws_language_at(uint32_t index);
/* The blob format's error name behind POLYKWS_ERR_IMAGE / _BASE / _BLOB ("ok" otherwise). */
const char *polykws_blob_error(void);
const char *polykws_status_name(polykws_status status);

#ifdef __cplusplus
}
#endif

#endif
