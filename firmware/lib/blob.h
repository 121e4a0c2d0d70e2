/* Language blobs (PKWB) and the flash image (PKWF): parser, validator and patcher.
 *
 * Implements docs/BLOB_FORMAT.md, blob format 2 and flash image format 2, exactly as
 * polykws.export.blob does in Python: anything the Python decoder refuses is refused here with
 * the same error name (pkwb_error_name() returns Python's BlobError.code). Portable C99, no
 * allocation, no libc beyond memcpy/memcmp/memmove; every offset and length is checked before it
 * is used, and the patch stream is applied in one pass with a bounds check on every write.
 */
#ifndef PKW_BLOB_H
#define PKW_BLOB_H

#include <stddef.h>
#include <stdint.h>

/* Every format constant (offsets, sizes, versions, the context layout, pkwb_status) is generated
 * from Python into blob_format.h (polykws.firmware.blobformatgen). */
#include "blob_format.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "truncated", "bad_magic", ... ; "ok" for PKWB_OK; "unknown" for anything else. */
const char *pkwb_error_name(pkwb_status status);

/* A validated blob: pointers into the caller's bytes, which must outlive this struct. */
typedef struct {
    const uint8_t *data;
    uint32_t total_size;
    char lang[PKWB_LANG_BYTES + 1]; /* NUL-terminated copy */
    const uint8_t *base_id;         /* PKWB_ID_BYTES: leading bytes of the base's SHA-256 */
    const uint8_t *meta_id;         /* PKWB_ID_BYTES: leading bytes of the metadata JSON's SHA-256 */
    const uint8_t *digest;          /* 32 bytes: SHA-256 of model, lang, labels and thresholds */
    uint32_t model_size;
    uint16_t num_labels;
    uint16_t num_thresholds;    /* 0 or num_labels */
    uint32_t labels_offset;     /* byte offset of the label table (== PKWB_PREFIX_SIZE) */
    uint32_t thresholds_offset; /* num_thresholds bytes, one per label */
    uint32_t stream_offset;     /* range-coded patch stream, up to the CRC */
    uint32_t stream_size;
} pkwb_blob;

/* Rules 1-6 of BLOB_FORMAT.md, in the document's order. On success fills *out. The patch
 * stream is decoded (and refused) only when applying. */
pkwb_status pkwb_parse(const uint8_t *data, size_t size, pkwb_blob *out);

/* The i-th label (not NUL-terminated): *text points into the blob, *len is 1..255. */
pkwb_status pkwb_label(const pkwb_blob *blob, uint32_t index, const uint8_t **text, uint8_t *len);

/* Rule 7: checks the base's length and SHA-256, copies it into `out` (which may alias `base`),
 * decodes and applies the patch stream in one pass, then checks the integrity digest over the
 * result, the language, the labels and the thresholds. On error `out` must not be used. */
pkwb_status pkwb_apply(const pkwb_blob *blob, const uint8_t *base, size_t base_size, uint8_t *out,
                       size_t out_capacity);

/* Threshold `index` (0..255), or PKWB_ERR_BAD_ARGUMENT when the blob has none or index is past them. */
pkwb_status pkwb_threshold(const pkwb_blob *blob, uint32_t index, uint8_t *value);

/* As pkwb_apply, but trusts `base_sha256` (32 bytes) as the base's digest instead of hashing the
 * base again: for a base whose hash was verified once at boot (pkwf_verify_base). */
pkwb_status pkwb_apply_prehashed(const pkwb_blob *blob, const uint8_t *base, size_t base_size,
                                 const uint8_t *base_sha256, uint8_t *out, size_t out_capacity);

/* IEEE 802.3 CRC-32 (zlib.crc32), reflected, poly 0xEDB88320. */
uint32_t pkw_crc32(const uint8_t *data, size_t len);
/* Running form, as zlib.crc32(data, crc): pkw_crc32_update(pkw_crc32(a), b) == pkw_crc32(a + b). */
uint32_t pkw_crc32_update(uint32_t crc, const uint8_t *data, size_t len);

/* ---- Flash image (PKWF): the base once, then N blobs, found through the table at the start. */
typedef struct {
    uint32_t offset; /* from the image start, 16-byte aligned */
    uint32_t size;
    char lang[PKWB_LANG_BYTES + 1];
} pkwf_entry;

typedef struct {
    const uint8_t *data;
    uint32_t size;
    uint16_t num_blobs;
    uint32_t base_offset;
    uint32_t base_size;
    const uint8_t *base_sha256; /* 32 bytes, as claimed by the image header */
} pkwf_image;

/* Validates the table and the image CRC; every item must lie inside the image, start on a
 * 16-byte boundary and not overlap the table or another item. Does not hash the base
 * (see pkwf_verify_base) nor parse the blobs (see pkwf_blob). */
pkwb_status pkwf_parse(const uint8_t *data, size_t size, pkwf_image *out);

pkwb_status pkwf_entry_at(const pkwf_image *image, uint32_t index, pkwf_entry *entry);

/* The base model's bytes inside the image. */
const uint8_t *pkwf_base(const pkwf_image *image);

/* SHA-256 of the base must equal the header's base_sha256, else PKWB_ERR_BASE_MISMATCH. */
pkwb_status pkwf_verify_base(const pkwf_image *image);

/* Parses blob `index`; its lang must equal the table's and its base_id the image's base
 * (else PKWB_ERR_BAD_LANG / PKWB_ERR_BASE_MISMATCH). */
pkwb_status pkwf_blob(const pkwf_image *image, uint32_t index, pkwb_blob *blob);

/* Index of the blob whose language is `lang`, or -1. */
int32_t pkwf_find(const pkwf_image *image, const char *lang);

/* ---- Language switching: what a runtime keeps about its active language. */
typedef struct {
    char lang[PKWB_LANG_BYTES + 1]; /* "" when no language is selected */
    int is_blob;                    /* labels come from `blob` (else from the base's table) */
    uint16_t num_labels;            /* 0 when no language is selected */
    pkwb_blob blob;                 /* the active blob, when is_blob */
} pkw_active;

/* Makes `lang` active: one of the image's blobs, applied into `out` and verified (integrity
 * digest over model, language, labels and thresholds), or the base (`base_lang`, its labels
 * counted by `base_num_labels`), which runs from the image. *model points at the language's
 * model on success. On any refusal *active is cleared first, so a refused switch leaves no
 * language selected: no model, no labels. A language that is neither gives PKWB_ERR_BAD_ARGUMENT. */
pkwb_status pkw_switch(const pkwf_image *image, const char *lang, const char *base_lang, uint16_t base_num_labels,
                       uint8_t *out, size_t out_capacity, pkw_active *active, const uint8_t **model);

/* Label `index` of the active language, NUL-terminated in `out` (truncated to cap-1 bytes); the
 * base's labels come from `base_labels`. Returns its length; 0 (and "") when no language is
 * selected or `index` is past its labels. */
size_t pkw_active_label(const pkw_active *active, const char *const *base_labels, uint32_t index, char *out, size_t cap);

/* The active blob's detection threshold for label `index` (0..255, covered by the integrity
 * digest), or -1 when the active language carries none (the base, a blob without thresholds, no
 * language selected, or `index` past its labels). */
int pkw_active_threshold(const pkw_active *active, uint32_t index);

#ifdef __cplusplus
}
#endif

#endif /* PKW_BLOB_H */
