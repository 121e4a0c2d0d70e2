/* Language blob (PKWB) and flash image (PKWF) parser and patcher; see blob.h and
 * docs/BLOB_FORMAT.md. Every read goes through a bounds check against the caller's length, and
 * arithmetic on untrusted 32-bit fields is done in uint64_t so it cannot wrap. */
#include "blob.h"

#include <string.h>

#include "sha256.h"

static const char *const kErrorNames[PKWB_ERR_COUNT_] = {PKWB_ERROR_NAMES};

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
    /* Four bits at a time from a 64-byte table: a quarter of the bitwise loop's work for a
     * language switch, without a 1 KB byte table in flash. */
    static const uint32_t kNibble[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
        0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
    };
    size_t i;
    crc ^= 0xFFFFFFFFu;
    for (i = 0; i < len; ++i) {
        crc ^= data[i];
        crc = (crc >> 4) ^ kNibble[crc & 15u];
        crc = (crc >> 4) ^ kNibble[crc & 15u];
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
    uint32_t total_size, model_size, body_end, pos, i;
    uint16_t num_labels, num_thresholds;
    pkwb_status st;
    char lang[PKWB_LANG_BYTES + 1];

    if (data == NULL || out == NULL) return PKWB_ERR_BAD_ARGUMENT;
    /* 1-3. Magic and version first, so a blob of another version is named as such. */
    if (size < PKWB_VERSION_END) return PKWB_ERR_TRUNCATED;
    if (memcmp(data + PKWB_AT_MAGIC, PKWB_MAGIC, PKWB_MAGIC_BYTES) != 0) return PKWB_ERR_BAD_MAGIC;
    if (rd16(data + PKWB_AT_FORMAT_VERSION) != PKWB_FORMAT_VERSION) return PKWB_ERR_UNSUPPORTED_VERSION;
    /* 4. Sizes: fewer bytes than total_size is a truncation, more is bad_size. */
    if (size < PKWB_MIN_SIZE) return PKWB_ERR_TRUNCATED;
    total_size = rd32(data + PKWB_AT_TOTAL_SIZE);
    if ((uint64_t)size < (uint64_t)total_size) return PKWB_ERR_TRUNCATED;
    if ((uint64_t)size > (uint64_t)total_size) return PKWB_ERR_BAD_SIZE;
    /* 5. CRC over everything before the trailing CRC field. */
    if (pkw_crc32(data, total_size - PKWB_CRC_BYTES) != rd32(data + total_size - PKWB_CRC_BYTES)) return PKWB_ERR_BAD_CRC;

    /* 6. Fields, then the body: label table, thresholds, at least 4 bytes of patch stream. */
    st = check_lang(data + PKWB_AT_LANG, lang);
    if (st != PKWB_OK) return st;
    num_labels = data[PKWB_AT_NUM_LABELS];
    num_thresholds = data[PKWB_AT_NUM_THRESHOLDS];
    if (num_labels == 0 || (num_thresholds != 0 && num_thresholds != num_labels)) return PKWB_ERR_BAD_LABELS;
    model_size = rd32(data + PKWB_AT_MODEL_SIZE);
    if (model_size > PKWB_MAX_MODEL) return PKWB_ERR_BAD_SIZE;

    body_end = total_size - PKWB_CRC_BYTES;
    pos = PKWB_PREFIX_SIZE;
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
    if ((uint64_t)pos + num_thresholds > body_end) return PKWB_ERR_TRUNCATED;
    out->thresholds_offset = pos;
    pos += num_thresholds;
    if (body_end - pos < PKWB_MIN_STREAM) return PKWB_ERR_TRUNCATED;

    out->data = data;
    out->total_size = total_size;
    memcpy(out->lang, lang, sizeof lang);
    out->base_id = data + PKWB_AT_BASE_ID;
    out->meta_id = data + PKWB_AT_META_ID;
    out->digest = data + PKWB_HEADER_SIZE;
    out->model_size = model_size;
    out->num_labels = num_labels;
    out->num_thresholds = num_thresholds;
    out->labels_offset = PKWB_PREFIX_SIZE;
    out->stream_offset = pos;
    out->stream_size = body_end - pos;
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

pkwb_status pkwb_threshold(const pkwb_blob *blob, uint32_t index, uint8_t *value) {
    if (blob == NULL || value == NULL || index >= blob->num_thresholds) return PKWB_ERR_BAD_ARGUMENT;
    *value = blob->data[blob->thresholds_offset + index];
    return PKWB_OK;
}

/* ---------------------------------------------------------------- patch stream decoder
 * docs/BLOB_FORMAT.md, "Patch stream": an LZMA-style binary range coder with 11-bit adaptive
 * probabilities; numbers are Elias-gamma binarized. Reading past the stream sets `err`; every
 * caller checks it right after each number or bit, before using the value. */

/* The constants and the context layout come from blob_format.h, generated from polykws.core. */

typedef struct {
    const uint8_t *p;
    uint32_t pos, size;
    uint32_t range, code;
    int err;
    uint16_t probs[PKWB_NUM_CONTEXTS];
} rc_dec;

static inline void rc_normalize(rc_dec *d) {
    if (d->range < PKWB_RC_TOP) {
        d->range <<= 8;
        if (d->pos >= d->size) {
            d->err = 1;
            d->code <<= 8;
        } else {
            d->code = (d->code << 8) | d->p[d->pos++];
        }
    }
}

static inline unsigned rc_bit(rc_dec *d, uint32_t ctx) {
    uint32_t prob = d->probs[ctx];
    uint32_t bound = (d->range >> PKWB_RC_PROB_BITS) * prob;
    unsigned b;
    if (d->code < bound) {
        d->range = bound;
        d->probs[ctx] = (uint16_t)(prob + (((1u << PKWB_RC_PROB_BITS) - prob) >> PKWB_RC_MOVE_BITS));
        b = 0;
    } else {
        d->code -= bound;
        d->range -= bound;
        d->probs[ctx] = (uint16_t)(prob - (prob >> PKWB_RC_MOVE_BITS));
        b = 1;
    }
    rc_normalize(d);
    return b;
}

static inline unsigned rc_direct(rc_dec *d) {
    uint32_t half = (d->range >> PKWB_RC_PROB_BITS) * PKWB_RC_PROB_INIT;
    unsigned b;
    if (d->code < half) {
        d->range = half;
        b = 0;
    } else {
        d->code -= half;
        d->range -= half;
        b = 1;
    }
    rc_normalize(d);
    return b;
}

/* 1 .. 2^32-1: unary bit length (a context per position), then the bits below the leading one. */
static inline uint32_t gamma_dec(rc_dec *d, uint32_t model) {
    uint32_t nb = 1, t, x = 1, mant;
    while (nb < PKWB_GAMMA_MAX_BITS && rc_bit(d, model + nb - 1u)) ++nb;
    mant = model + PKWB_GAMMA_MAX_BITS + nb * PKWB_GAMMA_MANT_CTX;
    for (t = 0; t + 1u < nb; ++t) x = (x << 1) | (t < PKWB_GAMMA_MANT_CTX ? rc_bit(d, mant + t) : rc_direct(d));
    return x;
}

/* One value: an 8-bit tree symbol (int8 class) or a gamma magnitude and sign (word class), as
 * a 32-bit two's-complement number. Deltas are never 0; literals may be. */
static uint32_t value_dec(rc_dec *d, uint32_t width, unsigned literal) {
    if (width == 1u) {
        uint32_t tree = literal ? PKWB_CTX_C1_TREE_LITERAL : PKWB_CTX_C1_TREE_DELTA, node = 1, z;
        unsigned i;
        for (i = 0; i < 8u; ++i) node = 2u * node + rc_bit(d, tree + node);
        z = node - 256u + (literal ? 0u : 1u); /* zigzag */
        return (z & 1u) ? 0u - ((z + 1u) >> 1) : z >> 1;
    } else {
        uint32_t m = gamma_dec(d, literal ? PKWB_CTX_C4_MAG_LITERAL : PKWB_CTX_C4_MAG_DELTA) - (literal ? 1u : 0u);
        if (m == 0) return 0;
        return rc_bit(d, literal ? PKWB_CTX_C4_SIGN_LITERAL : PKWB_CTX_C4_SIGN_DELTA) ? 0u - m : m;
    }
}

/* Writes element `index` of width `width` at out[start + width*index]: the value itself
 * (literal) or the base element plus the value, modulo 2^(8 width). Bounds-checked against `limit`. */
static pkwb_status put_element(uint8_t *out, uint64_t limit, uint64_t start, uint32_t width, uint64_t index,
                               uint32_t v, unsigned literal) {
    uint64_t at = start + (uint64_t)width * index;
    if (at + width > limit) return PKWB_ERR_OUT_OF_RANGE;
    if (width == 1u) {
        out[at] = (uint8_t)(literal ? v : out[at] + v);
    } else {
        uint32_t w = literal ? v : rd32(out + at) + v;
        out[at] = (uint8_t)w;
        out[at + 1] = (uint8_t)(w >> 8);
        out[at + 2] = (uint8_t)(w >> 16);
        out[at + 3] = (uint8_t)(w >> 24);
    }
    return PKWB_OK;
}

/* The hot path (a dense int8 record: a bitmap bit per element, an 8-bit tree symbol per changed
 * one) with the coder's state in locals; the same arithmetic as rc_bit. */
#define RC_LOCAL_BIT(prob, bit)                                                                   \
    do {                                                                                          \
        uint32_t pr_ = *(prob), bound_ = (range >> PKWB_RC_PROB_BITS) * pr_;                      \
        if (code < bound_) {                                                                      \
            range = bound_;                                                                       \
            *(prob) = (uint16_t)(pr_ + (((1u << PKWB_RC_PROB_BITS) - pr_) >> PKWB_RC_MOVE_BITS)); \
            (bit) = 0;                                                                            \
        } else {                                                                                  \
            code -= bound_;                                                                       \
            range -= bound_;                                                                      \
            *(prob) = (uint16_t)(pr_ - (pr_ >> PKWB_RC_MOVE_BITS));                               \
            (bit) = 1;                                                                            \
        }                                                                                         \
        if (range < PKWB_RC_TOP) {                                                                \
            range <<= 8;                                                                          \
            if (pos < size) {                                                                     \
                code = (code << 8) | src[pos++];                                                  \
            } else {                                                                              \
                code <<= 8;                                                                       \
                err = 1;                                                                          \
            }                                                                                     \
        }                                                                                         \
    } while (0)

static pkwb_status bitmap_bytes(rc_dec *d, uint8_t *out, uint64_t limit, uint64_t start, uint32_t span, unsigned literal) {
    uint32_t range = d->range, code = d->code, pos = d->pos, i;
    const uint32_t size = d->size;
    const uint8_t *src = d->p;
    uint16_t *bitmap = d->probs + PKWB_CTX_C1 + PKWB_CLS_BITMAP;
    uint16_t *tree = d->probs + (literal ? PKWB_CTX_C1_TREE_LITERAL : PKWB_CTX_C1_TREE_DELTA);
    const uint32_t zz_shift = literal ? 0u : 1u;
    uint8_t *dst;
    unsigned prev = 0;
    int err = 0;
    /* Every write below is dst[i] with i < span: inside the buffer by this one check. */
    if (start + (uint64_t)span > limit) return PKWB_ERR_OUT_OF_RANGE;
    dst = out + start;
    for (i = 0; i < span; ++i) {
        unsigned b;
        RC_LOCAL_BIT(bitmap + prev, b);
        prev = b;
        if (b) {
            uint32_t node = 1, z, v;
            unsigned t;
            /* eight tree levels, unrolled: this is most of a dense language switch */
            RC_LOCAL_BIT(tree + node, t); node = 2u * node + t;
            RC_LOCAL_BIT(tree + node, t); node = 2u * node + t;
            RC_LOCAL_BIT(tree + node, t); node = 2u * node + t;
            RC_LOCAL_BIT(tree + node, t); node = 2u * node + t;
            RC_LOCAL_BIT(tree + node, t); node = 2u * node + t;
            RC_LOCAL_BIT(tree + node, t); node = 2u * node + t;
            RC_LOCAL_BIT(tree + node, t); node = 2u * node + t;
            RC_LOCAL_BIT(tree + node, t); node = 2u * node + t;
            if (err) break; /* err is sticky: a bitmap bit read past the end lands here too */
            z = node - 256u + zz_shift;
            v = (z & 1u) ? 0u - ((z + 1u) >> 1) : z >> 1;
            dst[i] = (uint8_t)(literal ? v : dst[i] + v);
        } else if (err) {
            break;
        }
    }
    d->range = range;
    d->code = code;
    d->pos = pos;
    if (err) d->err = 1;
    return err ? PKWB_ERR_TRUNCATED : PKWB_OK;
}

/* Derived word element: float32(multiplier x the reference element) as bits, every NaN made
 * PKWB_CANONICAL_NAN (platforms differ in the NaN they produce), plus the residual v. The reference
 * lies wholly before the record (checked when its header was read); the write is bounds-checked. */
static pkwb_status put_derived(uint8_t *out, uint64_t limit, uint64_t start, uint64_t ref_start, uint64_t index,
                               float multiplier, uint32_t v) {
    uint64_t at = start + 4u * index;
    uint32_t ref_bits, pred;
    float ref, prod;
    if (at + 4u > limit || ref_start + 4u * index + 4u > start) return PKWB_ERR_OUT_OF_RANGE;
    ref_bits = rd32(out + ref_start + 4u * index);
    memcpy(&ref, &ref_bits, 4);
    prod = multiplier * ref;
    memcpy(&pred, &prod, 4);
    if ((pred & 0x7F800000u) == 0x7F800000u && (pred & 0x007FFFFFu) != 0) pred = PKWB_CANONICAL_NAN;
    pred += v;
    out[at] = (uint8_t)pred;
    out[at + 1] = (uint8_t)(pred >> 8);
    out[at + 2] = (uint8_t)(pred >> 16);
    out[at + 3] = (uint8_t)(pred >> 24);
    return PKWB_OK;
}

static pkwb_status apply_stream(const pkwb_blob *blob, uint8_t *out, uint64_t limit) {
    rc_dec d;
    uint32_t i, count;
    uint64_t prev_end = 0;
    d.p = blob->data + blob->stream_offset;
    d.size = blob->stream_size;
    if (d.size < PKWB_MIN_STREAM) return PKWB_ERR_TRUNCATED;
    d.code = ((uint32_t)d.p[0] << 24) | ((uint32_t)d.p[1] << 16) | ((uint32_t)d.p[2] << 8) | d.p[3];
    d.pos = 4;
    d.range = 0xFFFFFFFFu;
    d.err = 0;
    for (i = 0; i < PKWB_NUM_CONTEXTS; ++i) d.probs[i] = PKWB_RC_PROB_INIT;

    count = gamma_dec(&d, PKWB_CTX_HDR) - 1u;
    if (d.err) return PKWB_ERR_TRUNCATED;
    for (i = 0; i < count; ++i) {
        uint64_t start, end, ref_start = 0;
        uint32_t skip, width, span, cls;
        unsigned mode, literal, derived;
        float multiplier = 0.0f;
        skip = gamma_dec(&d, PKWB_CTX_HDR);
        if (d.err) return PKWB_ERR_TRUNCATED;
        start = prev_end + skip - 1u;
        width = rc_bit(&d, PKWB_CTX_WIDTH) ? 4u : 1u;
        if (d.err) return PKWB_ERR_TRUNCATED;
        span = gamma_dec(&d, PKWB_CTX_HDR);
        if (d.err) return PKWB_ERR_TRUNCATED;
        end = start + (uint64_t)width * span;
        if (end > blob->model_size) return PKWB_ERR_OUT_OF_RANGE;
        cls = width == 4u ? PKWB_CTX_C4 : PKWB_CTX_C1;
        derived = 0;
        if (width == 4u) {
            derived = rc_bit(&d, PKWB_CTX_C4_DERIVED);
            if (d.err) return PKWB_ERR_TRUNCATED;
        }
        if (derived) {
            uint32_t back, bits = 0;
            unsigned k;
            back = gamma_dec(&d, PKWB_CTX_HDR);
            if (d.err) return PKWB_ERR_TRUNCATED;
            if (4u * (uint64_t)back > start || start - 4u * (uint64_t)back + 4u * (uint64_t)span > start)
                return PKWB_ERR_OUT_OF_RANGE;
            ref_start = start - 4u * (uint64_t)back;
            for (k = 0; k < 32u; ++k) bits = (bits << 1) | rc_direct(&d);
            if (d.err) return PKWB_ERR_TRUNCATED;
            memcpy(&multiplier, &bits, 4);
        }
        mode = rc_bit(&d, cls + PKWB_CLS_MODE);
        if (d.err) return PKWB_ERR_TRUNCATED;
        literal = derived ? 1u : rc_bit(&d, cls + PKWB_CLS_VMODE);
        if (d.err) return PKWB_ERR_TRUNCATED;
        if (mode == 0) { /* gaps */
            uint32_t k, j;
            int64_t p = -1;
            k = gamma_dec(&d, width == 4u ? PKWB_CTX_C4_COUNT : PKWB_CTX_C1_COUNT);
            if (d.err) return PKWB_ERR_TRUNCATED;
            for (j = 0; j < k; ++j) {
                uint32_t v;
                pkwb_status st;
                p += gamma_dec(&d, width == 4u ? PKWB_CTX_C4_GAP : PKWB_CTX_C1_GAP);
                if (d.err) return PKWB_ERR_TRUNCATED;
                if (p >= (int64_t)span) return PKWB_ERR_OUT_OF_RANGE;
                v = value_dec(&d, width, literal);
                if (d.err) return PKWB_ERR_TRUNCATED;
                st = derived ? put_derived(out, limit, start, ref_start, (uint64_t)p, multiplier, v)
                             : put_element(out, limit, start, width, (uint64_t)p, v, literal);
                if (st != PKWB_OK) return st;
            }
        } else if (width == 1u) { /* bitmap of int8 bytes */
            pkwb_status st = bitmap_bytes(&d, out, limit, start, span, literal);
            if (st != PKWB_OK) return st;
        } else { /* bitmap of words */
            uint32_t p;
            unsigned prev = 0;
            for (p = 0; p < span; ++p) {
                prev = rc_bit(&d, cls + PKWB_CLS_BITMAP + prev);
                if (d.err) return PKWB_ERR_TRUNCATED;
                if (prev) {
                    uint32_t v;
                    pkwb_status st;
                    v = value_dec(&d, width, literal);
                    if (d.err) return PKWB_ERR_TRUNCATED;
                    st = derived ? put_derived(out, limit, start, ref_start, p, multiplier, v)
                                 : put_element(out, limit, start, width, p, v, literal);
                    if (st != PKWB_OK) return st;
                }
            }
        }
        prev_end = end;
    }
    if (d.pos != d.size) return PKWB_ERR_BAD_SIZE;
    return PKWB_OK;
}

pkwb_status pkwb_apply_prehashed(const pkwb_blob *blob, const uint8_t *base, size_t base_size,
                                 const uint8_t *base_sha256, uint8_t *out, size_t out_capacity) {
    uint8_t digest[PKW_SHA256_DIGEST_BYTES];
    pkw_sha256_ctx ctx;
    pkwb_status st;

    if (blob == NULL || base == NULL || base_sha256 == NULL || out == NULL) return PKWB_ERR_BAD_ARGUMENT;
    if ((uint64_t)base_size != blob->model_size) return PKWB_ERR_SIZE_MISMATCH;
    if (memcmp(base_sha256, blob->base_id, PKWB_ID_BYTES) != 0) return PKWB_ERR_BASE_MISMATCH;
    if (out_capacity < base_size) return PKWB_ERR_BAD_ARGUMENT;

    if (out != base) memmove(out, base, base_size);
    st = apply_stream(blob, out, (uint64_t)base_size);
    if (st != PKWB_OK) return st;
    /* Integrity digest: the model, the label/threshold counts, the language, labels and thresholds. */
    pkw_sha256_init(&ctx);
    pkw_sha256_update(&ctx, out, base_size);
    pkw_sha256_update(&ctx, blob->data + PKWB_DIGEST_COUNTS_AT, PKWB_DIGEST_COUNTS_BYTES);
    pkw_sha256_update(&ctx, blob->data + PKWB_DIGEST_LANG_AT, PKWB_DIGEST_LANG_BYTES);
    pkw_sha256_update(&ctx, blob->data + blob->labels_offset, blob->stream_offset - blob->labels_offset);
    pkw_sha256_final(&ctx, digest);
    if (memcmp(digest, blob->digest, PKW_SHA256_DIGEST_BYTES) != 0) return PKWB_ERR_TARGET_MISMATCH;
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
    if (size < PKWF_HEADER_SIZE + PKWB_CRC_BYTES) return PKWB_ERR_TRUNCATED;
    if (memcmp(data + PKWF_AT_MAGIC, PKWF_MAGIC, PKWF_MAGIC_BYTES) != 0) return PKWB_ERR_BAD_MAGIC;
    if (rd16(data + PKWF_AT_FORMAT_VERSION) != PKWF_FORMAT_VERSION) return PKWB_ERR_UNSUPPORTED_VERSION;
    if (size > 0xFFFFFFFFu) return PKWB_ERR_BAD_SIZE;
    num_blobs = rd16(data + PKWF_AT_NUM_BLOBS);
    table_end = PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * num_blobs;
    if ((uint64_t)table_end + PKWB_CRC_BYTES > size) return PKWB_ERR_TRUNCATED;
    if (pkw_crc32(data, size - PKWB_CRC_BYTES) != rd32(data + size - PKWB_CRC_BYTES)) return PKWB_ERR_BAD_CRC;

    body_end = (uint32_t)size - PKWB_CRC_BYTES;
    base_offset = rd32(data + PKWF_AT_BASE_OFFSET);
    base_size = rd32(data + PKWF_AT_BASE_SIZE);
    if (base_offset % PKWF_ALIGN != 0 || base_offset < table_end) return PKWB_ERR_BAD_SIZE;
    if (base_size == 0 || (uint64_t)base_offset + base_size > body_end) return PKWB_ERR_OUT_OF_RANGE;

    prev_end = (uint64_t)base_offset + base_size;
    for (i = 0; i < num_blobs; ++i) {
        const uint8_t *e = data + PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * i;
        uint32_t off = rd32(e + PKWF_ENTRY_AT_OFFSET), sz = rd32(e + PKWF_ENTRY_AT_SIZE);
        pkwb_status st = check_lang(e + PKWF_ENTRY_AT_LANG, NULL);
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
    out->base_sha256 = data + PKWF_AT_BASE_SHA256;
    return PKWB_OK;
}

pkwb_status pkwf_entry_at(const pkwf_image *image, uint32_t index, pkwf_entry *entry) {
    const uint8_t *e;
    if (image == NULL || entry == NULL || index >= image->num_blobs) return PKWB_ERR_BAD_ARGUMENT;
    e = image->data + PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * index;
    entry->offset = rd32(e + PKWF_ENTRY_AT_OFFSET);
    entry->size = rd32(e + PKWF_ENTRY_AT_SIZE);
    memcpy(entry->lang, e + PKWF_ENTRY_AT_LANG, PKWB_LANG_BYTES);
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
    if (memcmp(blob->base_id, image->base_sha256, PKWB_ID_BYTES) != 0) return PKWB_ERR_BASE_MISMATCH;
    return PKWB_OK;
}

int32_t pkwf_find(const pkwf_image *image, const char *lang) {
    uint32_t i;
    if (image == NULL || lang == NULL) return -1;
    for (i = 0; i < image->num_blobs; ++i) {
        const uint8_t *e = image->data + PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * i;
        size_t n = strlen(lang);
        if (n > 0 && n <= PKWB_LANG_BYTES && memcmp(e + PKWF_ENTRY_AT_LANG, lang, n) == 0 &&
            (n == PKWB_LANG_BYTES || e[PKWF_ENTRY_AT_LANG + n] == 0))
            return (int32_t)i;
    }
    return -1;
}

/* ---------------------------------------------------------------- language switching */

static void active_clear(pkw_active *active) {
    memset(active, 0, sizeof *active);
}

pkwb_status pkw_switch(const pkwf_image *image, const char *lang, const char *base_lang, uint16_t base_num_labels,
                       uint8_t *out, size_t out_capacity, pkw_active *active, const uint8_t **model) {
    pkwb_blob blob;
    pkwb_status st;
    int32_t index;
    size_t n;
    if (active == NULL) return PKWB_ERR_BAD_ARGUMENT;
    active_clear(active);
    if (image == NULL || lang == NULL || base_lang == NULL || model == NULL) return PKWB_ERR_BAD_ARGUMENT;
    *model = NULL;
    n = strlen(lang);
    if (n == 0 || n > PKWB_LANG_BYTES) return PKWB_ERR_BAD_ARGUMENT;
    index = pkwf_find(image, lang);
    if (index >= 0) {
        if (out == NULL) return PKWB_ERR_BAD_ARGUMENT;
        st = pkwf_blob(image, (uint32_t)index, &blob);
        if (st == PKWB_OK)
            st = pkwb_apply_prehashed(&blob, pkwf_base(image), image->base_size, image->base_sha256, out, out_capacity);
        if (st != PKWB_OK) return st;
        active->blob = blob;
        active->is_blob = 1;
        active->num_labels = blob.num_labels;
        *model = out;
    } else if (strcmp(lang, base_lang) == 0) {
        if (base_num_labels == 0) return PKWB_ERR_BAD_ARGUMENT;
        active->num_labels = base_num_labels;
        *model = pkwf_base(image);
    } else {
        return PKWB_ERR_BAD_ARGUMENT;
    }
    memcpy(active->lang, lang, n);
    active->lang[n] = 0;
    return PKWB_OK;
}

size_t pkw_active_label(const pkw_active *active, const char *const *base_labels, uint32_t index, char *out, size_t cap) {
    const uint8_t *text = NULL;
    size_t len = 0;
    if (out == NULL || cap == 0) return 0;
    out[0] = 0;
    if (active == NULL || index >= active->num_labels) return 0;
    if (active->is_blob) {
        uint8_t n8;
        if (pkwb_label(&active->blob, index, &text, &n8) != PKWB_OK) return 0;
        len = n8;
    } else {
        if (base_labels == NULL || base_labels[index] == NULL) return 0;
        text = (const uint8_t *)base_labels[index];
        len = strlen(base_labels[index]);
    }
    if (len > cap - 1) len = cap - 1;
    memcpy(out, text, len);
    out[len] = 0;
    return len;
}

int pkw_active_threshold(const pkw_active *active, uint32_t index) {
    if (active == NULL || !active->is_blob || index >= active->num_labels || active->blob.num_thresholds == 0) return -1;
    return active->blob.data[active->blob.thresholds_offset + index];
}
