/* Structure-aware fuzz driver for the blob decoder (pkwb_parse + pkwb_apply) and the flash image
 * reader (pkwf_parse, pkwf_verify_base, pkw_switch), under AddressSanitizer and UBSan.
 *
 * libFuzzer build:  clang -fsanitize=fuzzer,address,undefined -I lib ... test/fuzz_blob.c lib/blob.c lib/sha256.c
 * Standalone build: -DPKW_FUZZ_STANDALONE (any C99 compiler with sanitizers): a seeded mutation
 *                   loop, `fuzz_blob <seed dir> <runs> <seed>`.
 *
 * Seeds (PKW_FUZZ_DIR for libFuzzer, argv[1] standalone) come from polykws.firmware.fuzz.write_seeds:
 * base.bin, target.bin, blob.bin (base -> target) and image.bin (base + that blob + one more).
 * PKW_FUZZ_TARGET=blob|image picks the parser (default blob).
 *
 * Every input is applied *behind a valid header*: the driver splices the fuzzer's bytes into the
 * good blob after its header (blob target) or XORs them over the image after its magic
 * and version (image target), then rewrites total_size and the CRC(s), so the label table, the
 * thresholds and the patch stream's record decoder are what gets exercised. Properties, each an
 * abort() the fuzzer reports:
 *   - the status is "ok" or one of the documented error names;
 *   - "ok" gives a model whose integrity digest (recomputed here from the output, the language,
 *     the labels and the thresholds) is the blob's own, and exactly target.bin when the input kept
 *     the good blob's digest (the fuzzer can and does copy a computed digest into its input: a
 *     digest is an integrity check, not a signature);
 *   - a refused switch leaves no model and no language (pkw_switch); an accepted one a model its
 *     blob's digest covers;
 *   - writes stay inside an output buffer of exactly model_size bytes (ASan reports any other).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "sha256.h"

static uint8_t *g_base, *g_target, *g_blob, *g_image, *g_work, *g_out;
static size_t g_base_n, g_target_n, g_blob_n, g_image_n, g_work_cap;
static int g_image_target;

static uint8_t *slurp(const char *dir, const char *name, size_t *n) {
    char path[1024];
    FILE *f;
    long len;
    uint8_t *buf;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_blob: cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (uint8_t *)malloc((size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) exit(2);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void setup(const char *dir) {
    const char *t = getenv("PKW_FUZZ_TARGET");
    g_base = slurp(dir, "base.bin", &g_base_n);
    g_target = slurp(dir, "target.bin", &g_target_n);
    g_blob = slurp(dir, "blob.bin", &g_blob_n);
    g_image = slurp(dir, "image.bin", &g_image_n);
    g_image_target = t != NULL && strcmp(t, "image") == 0;
    g_work_cap = g_image_n + g_blob_n + (1u << 16);
    g_work = (uint8_t *)malloc(g_work_cap);
    g_out = (uint8_t *)malloc(g_base_n); /* exactly model_size: ASan catches a write past it */
    if (!g_work || !g_out) exit(2);
}

static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t rd32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void check_status(pkwb_status st) {
    const char *name = pkwb_error_name(st);
    if (strcmp(name, "unknown") == 0 || st == PKWB_ERR_BAD_ARGUMENT) {
        fprintf(stderr, "fuzz_blob: undocumented status %d\n", (int)st);
        abort();
    }
}

/* The integrity digest recomputed from an output model and the blob's language, labels and thresholds. */
static int digest_covers(const pkwb_blob *blob, const uint8_t *model, size_t n) {
    uint8_t digest[PKW_SHA256_DIGEST_BYTES];
    pkw_sha256_ctx ctx;
    pkw_sha256_init(&ctx);
    pkw_sha256_update(&ctx, model, n);
    pkw_sha256_update(&ctx, blob->data + PKWB_DIGEST_COUNTS_AT, PKWB_DIGEST_COUNTS_BYTES);
    pkw_sha256_update(&ctx, blob->data + PKWB_DIGEST_LANG_AT, PKWB_DIGEST_LANG_BYTES);
    pkw_sha256_update(&ctx, blob->data + PKWB_PREFIX_SIZE, blob->stream_offset - PKWB_PREFIX_SIZE);
    pkw_sha256_final(&ctx, digest);
    return memcmp(digest, blob->data + PKWB_HEADER_SIZE, PKW_SHA256_DIGEST_BYTES) == 0;
}

static void fuzz_blob(const uint8_t *data, size_t size) {
    pkwb_blob blob;
    pkwb_status st;
    size_t n;
    if (PKWB_HEADER_SIZE + size + PKWB_CRC_BYTES > g_work_cap) return;
    /* The good blob's header (magic, version, counts, lang, model_size, ids), then the input as
     * digest, labels, thresholds and stream; total_size and CRC made valid. */
    memcpy(g_work, g_blob, PKWB_HEADER_SIZE);
    memcpy(g_work + PKWB_HEADER_SIZE, data, size);
    n = PKWB_HEADER_SIZE + size + PKWB_CRC_BYTES;
    wr32(g_work + PKWB_AT_TOTAL_SIZE, (uint32_t)n);
    wr32(g_work + n - PKWB_CRC_BYTES, pkw_crc32(g_work, n - PKWB_CRC_BYTES));
    st = pkwb_parse(g_work, n, &blob);
    check_status(st);
    if (st != PKWB_OK) return;
    st = pkwb_apply(&blob, g_base, g_base_n, g_out, g_base_n);
    check_status(st);
    if (st == PKWB_OK) {
        if (!digest_covers(&blob, g_out, g_base_n)) {
            fprintf(stderr, "fuzz_blob: an accepted blob produced a model its digest does not cover\n");
            abort();
        }
        if (blob.stream_offset + PKWB_CRC_BYTES <= g_blob_n &&
            memcmp(g_work + PKWB_HEADER_SIZE, g_blob + PKWB_HEADER_SIZE, PKW_SHA256_DIGEST_BYTES) == 0 &&
            memcmp(g_work + PKWB_PREFIX_SIZE, g_blob + PKWB_PREFIX_SIZE, blob.stream_offset - PKWB_PREFIX_SIZE) == 0 &&
            memcmp(g_out, g_target, g_target_n) != 0) {
            fprintf(stderr, "fuzz_blob: an accepted blob with the good digest and labels produced another model\n");
            abort();
        }
    }
}

static void fuzz_image(const uint8_t *data, size_t size) {
    pkwf_image img;
    pkwb_status st;
    size_t i;
    uint32_t b;
    if (g_image_n > g_work_cap) return;
    memcpy(g_work, g_image, g_image_n);
    /* XOR the input over everything after magic and version, keeping the blobs' CRCs valid too. */
    for (i = 0; i < size && PKWF_AT_NUM_BLOBS + i < g_image_n - PKWB_CRC_BYTES; ++i) g_work[PKWF_AT_NUM_BLOBS + i] ^= data[i];
    for (b = 0; b < 4u; ++b) {
        const uint8_t *e = g_work + PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * b;
        uint32_t off, sz;
        if (PKWF_HEADER_SIZE + PKWF_ENTRY_SIZE * (b + 1u) > g_image_n) break;
        off = rd32le(e + PKWF_ENTRY_AT_OFFSET);
        sz = rd32le(e + PKWF_ENTRY_AT_SIZE);
        if (sz >= 8u && (uint64_t)off + sz <= g_image_n - PKWB_CRC_BYTES)
            wr32(g_work + off + sz - PKWB_CRC_BYTES, pkw_crc32(g_work + off, sz - PKWB_CRC_BYTES));
    }
    wr32(g_work + g_image_n - PKWB_CRC_BYTES, pkw_crc32(g_work, g_image_n - PKWB_CRC_BYTES));
    st = pkwf_parse(g_work, g_image_n, &img);
    check_status(st);
    if (st != PKWB_OK) return;
    st = pkwf_verify_base(&img);
    check_status(st);
    if (st != PKWB_OK || img.base_size != g_base_n) return;
    for (b = 0; b < img.num_blobs; ++b) {
        pkwf_entry e;
        pkw_active active;
        const uint8_t *model = (const uint8_t *)1;
        if (pkwf_entry_at(&img, b, &e) != PKWB_OK) abort();
        st = pkw_switch(&img, e.lang, "base", 3, g_out, g_base_n, &active, &model);
        if (st == PKWB_ERR_BAD_ARGUMENT) continue; /* a table language that is not a valid code */
        check_status(st);
        if (st != PKWB_OK && (model != NULL || active.num_labels != 0 || active.lang[0] != 0)) {
            fprintf(stderr, "fuzz_blob: a refused switch left a model or a language behind\n");
            abort();
        }
        if (st == PKWB_OK && active.is_blob && !digest_covers(&active.blob, g_out, g_base_n)) {
            fprintf(stderr, "fuzz_blob: an accepted switch produced a model its blob's digest does not cover\n");
            abort();
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = getenv("PKW_FUZZ_DIR");
    (void)argc;
    (void)argv;
    if (dir != NULL) setup(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (g_base == NULL) {
        fprintf(stderr, "fuzz_blob: set PKW_FUZZ_DIR to the seed folder\n");
        exit(2);
    }
    if (g_image_target)
        fuzz_image(data, size);
    else
        fuzz_blob(data, size);
    return 0;
}

#ifdef PKW_FUZZ_STANDALONE
/* Seeded mutation loop: xorshift64*, bit flips, byte sets, inserts, deletes and truncations of the
 * seed input (the good blob's bytes after its header, or zeros for the image XOR mask). */
static uint64_t g_rng;
static uint32_t rnd(uint32_t n) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 2685821657736338717ull) >> 33) % (n ? n : 1u);
}

int main(int argc, char **argv) {
    unsigned long runs, r;
    size_t seed_n, cap;
    uint8_t *seed_in, *in;
    if (argc < 4) {
        fprintf(stderr, "usage: %s <seed dir> <runs> <seed>\n", argv[0]);
        return 2;
    }
    setup(argv[1]);
    runs = strtoul(argv[2], NULL, 10);
    g_rng = strtoull(argv[3], NULL, 10) * 0x9E3779B97F4A7C15ull + 1u;
    seed_n = g_image_target ? 256u : g_blob_n - PKWB_HEADER_SIZE - PKWB_CRC_BYTES;
    cap = seed_n + 64u;
    seed_in = (uint8_t *)calloc(cap, 1);
    in = (uint8_t *)malloc(cap);
    if (!seed_in || !in) return 2;
    if (!g_image_target) memcpy(seed_in, g_blob + PKWB_HEADER_SIZE, seed_n);
    for (r = 0; r < runs; ++r) {
        size_t n = seed_n;
        uint32_t k, edits = 1u + rnd(4);
        memcpy(in, seed_in, seed_n);
        for (k = 0; k < edits; ++k) {
            uint32_t op = rnd(6), pos = rnd((uint32_t)n);
            if (n == 0) break;
            if (op == 0) in[pos] ^= (uint8_t)(1u << rnd(8));
            else if (op == 1) in[pos] = (uint8_t)rnd(256);
            else if (op == 2 && n + 1u < cap) { memmove(in + pos + 1, in + pos, n - pos); in[pos] = (uint8_t)rnd(256); ++n; }
            else if (op == 3) { memmove(in + pos, in + pos + 1, n - pos - 1u); --n; }
            else if (op == 4) n = pos;
            else in[pos] = (uint8_t)(in[pos] + 1u - 2u * rnd(2));
        }
        LLVMFuzzerTestOneInput(in, n);
    }
    printf("fuzz_blob: %lu inputs, no property violated\n", runs);
    return 0;
}
#endif
