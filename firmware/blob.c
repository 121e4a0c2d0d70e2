/* Language blob (PKWB) and flash image (PKWF) parser and patcher; see blob.h and
 * docs/BLOB_FORMAT.md. Every read goes through a bounds check against the caller's length, and
 * arithmetic on untrusted 32-bit fields is done in uint64_t so it cannot wrap. */
#include "blob.h"

#include <string.h>

#include "sha256.h"

static const char *const kErrorNames[PKWB_ERR_COUNT_] = {
    "ok",
    "truncated",
    "bad_magic",
    "unsupported_version",
    "bad_size",
    "bad_crc",
    "bad_lang",
    "bad_labels",
    "overlapping_patches",
    "out_of_range",
    "size_mismatch",
    "base_mismatch",
    "target_mismatch",
    "bad_argument",
};

const char *pkwb_error_name(pkwb_status status) {
    if ((unsigned)status >= (unsigned)PKWB_ERR_COUNT_) return "unknown";
    return kErrorNames[status];
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint32_t pkw_crc32(const uint8_t *data, size_t len) { return pkw_crc32_update(0u, data, len); }

uint32_t pkw_crc32_update(uint32_t crc, const uint8_t *data, size_t len) {
    /* Bitwise on purpose: no 1 KB table in flash, and a blob is checked once per language switch. */
    size_t i;
    crc ^= 0xFFFFFFFFu;
    for (i = 0; i < len; ++i) {
        unsigned bit;
        crc ^= data[i];
        for (bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

/* lang: at least one byte of [a-z0-9_-], then only NUL padding. */
static pkwb_status check_lang(const uint8_t *field, char out[PKWB_LANG_BYTES + 1]) {
    unsigned i, n = 0;
    while (n < PKWB_LANG_BYTES && field[n] != 0) ++n;
    if (n == 0) return PKWB_ERR_BAD_LANG;
    for (i = 0; i < n; ++i) {
        uint8_t c = field[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) return PKWB_ERR_BAD_LANG;
    }
    for (i = n; i < PKWB_LANG_BYTES; ++i) {
        if (field[i] != 0) return PKWB_ERR_BAD_LANG;
    }
    if (out) {
        memcpy(out, field, n);
        memset(out + n, 0, PKWB_LANG_BYTES + 1 - n);
    }
    return PKWB_OK;
}

/* Strict UTF-8 as Python's bytes.decode("utf-8") accepts it: shortest form only, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF. */
static int utf8_valid(const uint8_t *s, uint32_t len) {
    uint32_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        uint32_t need, cp, min_cp, k;
        if (c < 0x80u) {
            ++i;
            continue;
        } else if (c >= 0xC2u && c <= 0xDFu) {
            need = 1; cp = c & 0x1Fu; min_cp = 0x80u;
        } else if (c >= 0xE0u && c <= 0xEFu) {
            need = 2; cp = c & 0x0Fu; min_cp = 0x800u;
        } else if (c >= 0xF0u && c <= 0xF4u) {
            need = 3; cp = c & 0x07u; min_cp = 0x10000u;
        } else {
            return 0; /* continuation byte, overlong lead (C0/C1) or F5..FF */
        }
        if (len - i <= need) return 0;
        for (k = 1; k <= need; ++k) {
            uint8_t cc = s[i + k];
            if ((cc & 0xC0u) != 0x80u) return 0;
            cp = (cp << 6) | (cc & 0x3Fu);
        }
        if (cp < min_cp || cp > 0x10FFFFu || (cp >= 0xD800u && cp <= 0xDFFFu)) return 0;
        i += need + 1;
    }
    return 1;
}

pkwb_status pkwb_parse(const uint8_t *data, size_t size, pkwb_blob *out) {
    uint32_t total_size, header_size, model_size, meta_size, body_end, pos, i;
    uint16_t num_labels, num_patches;
    uint64_t prev_end;
    pkwb_status st;
    char lang[PKWB_LANG_BYTES + 1];

    if (data == NULL || out == NULL) return PKWB_ERR_BAD_ARGUMENT;
    /* 1. Header + CRC. */
    if (size < PKWB_MIN_SIZE) return PKWB_ERR_TRUNCATED;
    /* 2. Magic. */
    if (memcmp(data, "PKWB", 4) != 0) return PKWB_ERR_BAD_MAGIC;
    /* 3. Version. */
    if (rd16(data + 4) != PKWB_FORMAT_VERSION) return PKWB_ERR_UNSUPPORTED_VERSION;
    /* 4. Sizes: fewer bytes than total_size is a truncation; anything else inconsistent is bad_size. */
    header_size = rd16(data + 6);
    total_size = rd32(data + 8);
    if ((uint64_t)size < (uint64_t)total_size) return PKWB_ERR_TRUNCATED;
    if ((uint64_t)size > (uint64_t)total_size || header_size != PKWB_HEADER_SIZE) return PKWB_ERR_BAD_SIZE;
    /* 5. CRC over everything before the trailing CRC field. */
    if (pkw_crc32(data, total_size - 4u) != rd32(data + total_size - 4u)) return PKWB_ERR_BAD_CRC;

    /* 6. Body layout: label table, metadata, padding, patch records, ending exactly at the CRC. */
    st = check_lang(data + 12, lang);
    if (st != PKWB_OK) return st;
    model_size = rd32(data + 84);
    num_labels = rd16(data + 88);
    num_patches = rd16(data + 90);
    meta_size = rd32(data + 92);
    if (num_labels == 0 || num_labels > 255u) return PKWB_ERR_BAD_LABELS;

    body_end = total_size - 4u;
    pos = PKWB_HEADER_SIZE;
    for (i = 0; i < num_labels; ++i) {
        uint32_t len, k;
        if (pos + 1u > body_end) return PKWB_ERR_TRUNCATED;
        len = data[pos];
        if (len == 0) return PKWB_ERR_BAD_LABELS;
        if ((uint64_t)pos + 1u + len > body_end) return PKWB_ERR_TRUNCATED;
        for (k = 0; k < len; ++k) {
            if (data[pos + 1u + k] == 0) return PKWB_ERR_BAD_LABELS;
        }
        if (!utf8_valid(data + pos + 1u, len)) return PKWB_ERR_BAD_LABELS;
        pos += 1u + len;
    }
    if ((uint64_t)pos + meta_size > body_end) return PKWB_ERR_TRUNCATED;
    out->meta_offset = pos;
    pos += meta_size;
    while (pos % 4u != 0) {
        if (pos >= body_end) return PKWB_ERR_TRUNCATED;
        if (data[pos] != 0) return PKWB_ERR_BAD_SIZE;
        ++pos;
    }
    out->patches_offset = pos;
    for (i = 0; i < num_patches; ++i) {
        uint32_t len, padded;
        uint64_t end;
        if ((uint64_t)pos + 8u > body_end) return PKWB_ERR_TRUNCATED;
        len = rd32(data + pos + 4u);
        padded = (uint32_t)(((uint64_t)len + 3u) & ~(uint64_t)3u);
        end = (uint64_t)pos + 8u + ((uint64_t)len + 3u) / 4u * 4u;
        if (end > body_end) return PKWB_ERR_TRUNCATED;
        {
            uint32_t k;
            for (k = len; k < padded; ++k) {
                if (data[pos + 8u + k] != 0) return PKWB_ERR_BAD_SIZE;
            }
        }
        if (len == 0) return PKWB_ERR_BAD_SIZE;
        pos = (uint32_t)end;
    }
    if (pos != body_end) return PKWB_ERR_BAD_SIZE;

    /* 7. Patches sorted, non-overlapping, inside the model. */
    pos = out->patches_offset;
    prev_end = 0;
    for (i = 0; i < num_patches; ++i) {
        uint32_t off = rd32(data + pos), len = rd32(data + pos + 4u);
        if (i > 0 && (uint64_t)off < prev_end) return PKWB_ERR_OVERLAPPING_PATCHES;
        prev_end = (uint64_t)off + len;
        pos += 8u + ((len + 3u) & ~3u);
    }
    pos = out->patches_offset;
    for (i = 0; i < num_patches; ++i) {
        uint32_t off = rd32(data + pos), len = rd32(data + pos + 4u);
        if ((uint64_t)off + len > model_size) return PKWB_ERR_OUT_OF_RANGE;
        pos += 8u + ((len + 3u) & ~3u);
    }

    out->data = data;
    out->total_size = total_size;
    memcpy(out->lang, lang, sizeof lang);
    out->base_sha256 = data + 20;
    out->target_sha256 = data + 52;
    out->model_size = model_size;
    out->num_labels = num_labels;
    out->num_patches = num_patches;
    out->labels_offset = PKWB_HEADER_SIZE;
    out->meta_size = meta_size;
    return PKWB_OK;
}

pkwb_status pkwb_label(const pkwb_blob *blob, uint32_t index, const uint8_t **text, uint8_t *len) {
    uint32_t pos, i;
    if (blob == NULL || text == NULL || len == NULL || index >= blob->num_labels) return PKWB_ERR_BAD_ARGUMENT;
    pos = blob->labels_offset;
    for (i = 0; i < index; ++i) pos += 1u + blob->data[pos]; /* validated by pkwb_parse */
    *len = blob->data[pos];
    *text = blob->data + pos + 1u;
    return PKWB_OK;
}

pkwb_status pkwb_apply_prehashed(const pkwb_blob *blob, const uint8_t *base, size_t base_size,
                                 const uint8_t *base_sha256, uint8_t *out, size_t out_capacity) {
    uint8_t digest[PKW_SHA256_DIGEST_BYTES];
    uint32_t pos, i;

    if (blob == NULL || base == NULL || base_sha256 == NULL || out == NULL) return PKWB_ERR_BAD_ARGUMENT;
    if ((uint64_t)base_size != blob->model_size) return PKWB_ERR_SIZE_MISMATCH;
    if (memcmp(base_sha256, blob->base_sha256, PKW_SHA256_DIGEST_BYTES) != 0) return PKWB_ERR_BASE_MISMATCH;
    if (out_capacity < base_size) return PKWB_ERR_BAD_ARGUMENT;

    if (out != base) memmove(out, base, base_size);
    pos = blob->patches_offset;
    for (i = 0; i < blob->num_patches; ++i) {
        uint32_t off = rd32(blob->data + pos), len = rd32(blob->data + pos + 4u);
        /* Re-checked here so a pkwb_blob not produced by pkwb_parse cannot write out of bounds. */
        if ((uint64_t)off + len > base_size) return PKWB_ERR_OUT_OF_RANGE;
        memcpy(out + off, blob->data + pos + 8u, len);
        pos += 8u + ((len + 3u) & ~3u);
    }
    pkw_sha256(out, base_size, digest);
    if (memcmp(digest, blob->target_sha256, PKW_SHA256_DIGEST_BYTES) != 0) return PKWB_ERR_TARGET_MISMATCH;
    return PKWB_OK;
}

pkwb_status pkwb_apply(const pkwb_blob *blob, const uint8_t *base, size_t base_size, uint8_t *out,
                       size_t out_capacity) {
    uint8_t digest[PKW_SHA256_DIGEST_BYTES];
    if (blob == NULL || base == NULL || out == NULL) return PKWB_ERR_BAD_ARGUMENT;
    if ((uint64_t)base_size != blob->model_size) return PKWB_ERR_SIZE_MISMATCH;
    pkw_sha256(base, base_size, digest);
    return pkwb_apply_prehashed(blob, base, base_size, digest, out, out_capacity);
}

/* ---------------------------------------------------------------- flash image (PKWF) */

pkwb_status pkwf_parse(const uint8_t *data, size_t size, pkwf_image *out) {
    uint32_t num_blobs, table_end, base_offset, base_size, body_end, i;
    uint64_t prev_end;

    if (data == NULL || out == NULL) return PKWB_ERR_BAD_ARGUMENT;
    if (size < PKWF_HEADER_SIZE + 4u) return PKWB_ERR_TRUNCATED;
    if (memcmp(data, "PKWF", 4) != 0) return PKWB_ERR_BAD_MAGIC;
    if (rd16(data + 4) != PKWF_FORMAT_VERSION) return PKWB_ERR_UNSUPPORTED_VERSION;
    if (size > 0xFFFFFFFFu) return PKWB_ERR_BAD_SIZE;
    num_blobs = rd16(data + 6);
    table_end = PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * num_blobs;
    if ((uint64_t)table_end + 4u > size) return PKWB_ERR_TRUNCATED;
    if (pkw_crc32(data, size - 4u) != rd32(data + size - 4u)) return PKWB_ERR_BAD_CRC;

    body_end = (uint32_t)size - 4u;
    base_offset = rd32(data + 8);
    base_size = rd32(data + 12);
    if (base_offset % PKWF_ALIGN != 0 || base_offset < table_end) return PKWB_ERR_BAD_SIZE;
    if (base_size == 0 || (uint64_t)base_offset + base_size > body_end) return PKWB_ERR_OUT_OF_RANGE;

    prev_end = (uint64_t)base_offset + base_size;
    for (i = 0; i < num_blobs; ++i) {
        const uint8_t *e = data + PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * i;
        uint32_t off = rd32(e), sz = rd32(e + 4);
        pkwb_status st = check_lang(e + 8, NULL);
        if (st != PKWB_OK) return st;
        if (off % PKWF_ALIGN != 0) return PKWB_ERR_BAD_SIZE;
        if (sz < PKWB_MIN_SIZE || (uint64_t)off + sz > body_end) return PKWB_ERR_OUT_OF_RANGE;
        if ((uint64_t)off < prev_end) return PKWB_ERR_OVERLAPPING_PATCHES;
        prev_end = (uint64_t)off + sz;
    }

    out->data = data;
    out->size = (uint32_t)size;
    out->num_blobs = (uint16_t)num_blobs;
    out->base_offset = base_offset;
    out->base_size = base_size;
    out->base_sha256 = data + 16;
    return PKWB_OK;
}

pkwb_status pkwf_entry_at(const pkwf_image *image, uint32_t index, pkwf_entry *entry) {
    const uint8_t *e;
    if (image == NULL || entry == NULL || index >= image->num_blobs) return PKWB_ERR_BAD_ARGUMENT;
    e = image->data + PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * index;
    entry->offset = rd32(e);
    entry->size = rd32(e + 4);
    memcpy(entry->lang, e + 8, PKWB_LANG_BYTES);
    entry->lang[PKWB_LANG_BYTES] = 0;
    return PKWB_OK;
}

const uint8_t *pkwf_base(const pkwf_image *image) { return image->data + image->base_offset; }

pkwb_status pkwf_verify_base(const pkwf_image *image) {
    uint8_t digest[PKW_SHA256_DIGEST_BYTES];
    if (image == NULL) return PKWB_ERR_BAD_ARGUMENT;
    pkw_sha256(pkwf_base(image), image->base_size, digest);
    if (memcmp(digest, image->base_sha256, PKW_SHA256_DIGEST_BYTES) != 0) return PKWB_ERR_BASE_MISMATCH;
    return PKWB_OK;
}

pkwb_status pkwf_blob(const pkwf_image *image, uint32_t index, pkwb_blob *blob) {
    pkwf_entry entry;
    pkwb_status st = pkwf_entry_at(image, index, &entry);
    if (st != PKWB_OK) return st;
    st = pkwb_parse(image->data + entry.offset, entry.size, blob);
    if (st != PKWB_OK) return st;
    if (strcmp(entry.lang, blob->lang) != 0) return PKWB_ERR_BAD_LANG;
    if (blob->model_size != image->base_size) return PKWB_ERR_SIZE_MISMATCH;
    if (memcmp(blob->base_sha256, image->base_sha256, PKW_SHA256_DIGEST_BYTES) != 0) return PKWB_ERR_BASE_MISMATCH;
    return PKWB_OK;
}

int32_t pkwf_find(const pkwf_image *image, const char *lang) {
    uint32_t i;
    if (image == NULL || lang == NULL) return -1;
    for (i = 0; i < image->num_blobs; ++i) {
        const uint8_t *e = image->data + PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * i;
        size_t n = strlen(lang);
        if (n > 0 && n <= PKWB_LANG_BYTES && memcmp(e + 8, lang, n) == 0 && (n == PKWB_LANG_BYTES || e[8 + n] == 0))
            return (int32_t)i;
    }
    return -1;
}
