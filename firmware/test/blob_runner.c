/* Blob test runner: one program for the host (gcc) and for Cortex-M under QEMU (semihosting).
 *
 * It reads a command file written by tests/firmware (vectors generated with polykws.export.blob),
 * runs firmware/blob.c on each vector and prints one result line per command; pytest compares
 * every line and every output file with what Python computed. File I/O goes through stdio, which
 * newlib's rdimon maps to semihosting on the target, so both builds read the same files.
 *
 * Commands (one per line):
 *   sha   <file>                 -> "R <n> sha <hex>"
 *   crc   <file>                 -> "R <n> crc <hex8>"
 *   crcsplit <file> <k>          -> "R <n> crc <hex8>", chained: pkw_crc32_update(pkw_crc32(first k), rest)
 *   apply <blob> <base> <out>    -> "R <n> <error name> [lang=<l> labels=<hex,..> thresholds=<hex> stream=<bytes>]"
 *                                   and, on success, the patched model written to <out>
 *   image <image> <outprefix>    -> "R <n> <error name> [blobs=<k>]" then per blob
 *                                   "B <n>.<i> <lang> <error name>", writing <outprefix><lang>.bin
 *   switch <image> <l1,l2,..> <outprefix>
 *                                -> "R <n> <error name>" for the image, then per language switch
 *                                   (pkw_switch, base language "base" with labels b0,b1,b2)
 *                                   "W <n>.<i> <lang> <error name> active=<lang|-> labels=<hex,..>",
 *                                   writing <outprefix><i>.bin on success
 * The last line is "DONE <commands> <failures-to-run>".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "sha256.h"

#ifndef PKWB_TEST_BUF_BYTES
#define PKWB_TEST_BUF_BYTES (128u * 1024u)
#endif

static uint8_t g_a[PKWB_TEST_BUF_BYTES];
static uint8_t g_b[PKWB_TEST_BUF_BYTES];
static uint8_t g_out[PKWB_TEST_BUF_BYTES];
static char g_line[1024];

/* Returns the byte count, or -1 when the file is unreadable or larger than the buffer. */
static long read_file(const char *path, uint8_t *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f) return -1;
    n = fread(buf, 1, cap, f);
    if (n == cap && fgetc(f) != EOF) {
        fclose(f);
        return -1;
    }
    fclose(f);
    return (long)n;
}

static int write_file(const char *path, const uint8_t *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    size_t w;
    if (!f) return -1;
    w = fwrite(buf, 1, n, f);
    if (fclose(f) != 0 || w != n) return -1;
    return 0;
}

static void print_hex(const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; ++i) printf("%02x", p[i]);
}

static void print_blob_info(const pkwb_blob *blob) {
    uint32_t i;
    printf(" lang=%s labels=", blob->lang);
    for (i = 0; i < blob->num_labels; ++i) {
        const uint8_t *text;
        uint8_t len;
        if (pkwb_label(blob, i, &text, &len) != PKWB_OK) {
            printf("?");
            continue;
        }
        if (i) printf(",");
        print_hex(text, len);
    }
    printf(" thresholds=");
    for (i = 0; i < blob->num_thresholds; ++i) {
        uint8_t v = 0;
        pkwb_threshold(blob, i, &v);
        printf("%02x", v);
    }
    printf(" stream=%lu", (unsigned long)blob->stream_size);
}

int main(int argc, char **argv) {
    const char *list = (argc > 1 && argv[1][0]) ? argv[1] : "pkwb_vectors.txt";
    FILE *f = fopen(list, "r");
    unsigned n = 0, io_failures = 0;
    if (!f) {
        printf("ERROR cannot open %s\n", list);
        return 2;
    }
    while (fgets(g_line, sizeof g_line, f)) {
        char cmd[16], p1[320], p2[320], p3[320];
        int fields;
        g_line[strcspn(g_line, "\r\n")] = 0;
        if (g_line[0] == 0 || g_line[0] == '#') continue;
        fields = sscanf(g_line, "%15s %319s %319s %319s", cmd, p1, p2, p3);
        ++n;
        if (fields >= 2 && strcmp(cmd, "sha") == 0) {
            uint8_t d[PKW_SHA256_DIGEST_BYTES];
            long len = read_file(p1, g_a, sizeof g_a);
            if (len < 0) { printf("R %u io %s\n", n, p1); ++io_failures; continue; }
            pkw_sha256(g_a, (size_t)len, d);
            printf("R %u sha ", n);
            print_hex(d, sizeof d);
            printf("\n");
        } else if (fields >= 2 && strcmp(cmd, "crc") == 0) {
            long len = read_file(p1, g_a, sizeof g_a);
            if (len < 0) { printf("R %u io %s\n", n, p1); ++io_failures; continue; }
            printf("R %u crc %08lx\n", n, (unsigned long)pkw_crc32(g_a, (size_t)len));
        } else if (fields >= 3 && strcmp(cmd, "crcsplit") == 0) {
            long len = read_file(p1, g_a, sizeof g_a);
            unsigned long k = strtoul(p2, NULL, 10);
            if (len < 0 || k > (unsigned long)len) { printf("R %u io %s\n", n, p1); ++io_failures; continue; }
            printf("R %u crc %08lx\n", n,
                   (unsigned long)pkw_crc32_update(pkw_crc32(g_a, (size_t)k), g_a + k, (size_t)len - (size_t)k));
        } else if (fields >= 4 && strcmp(cmd, "apply") == 0) {
            pkwb_blob blob;
            pkwb_status st;
            long blen = read_file(p1, g_a, sizeof g_a);
            long mlen = read_file(p2, g_b, sizeof g_b);
            if (blen < 0 || mlen < 0) { printf("R %u io %s\n", n, blen < 0 ? p1 : p2); ++io_failures; continue; }
            st = pkwb_parse(g_a, (size_t)blen, &blob);
            if (st == PKWB_OK) st = pkwb_apply(&blob, g_b, (size_t)mlen, g_out, sizeof g_out);
            printf("R %u %s", n, pkwb_error_name(st));
            if (st == PKWB_OK) {
                print_blob_info(&blob);
                if (write_file(p3, g_out, blob.model_size) != 0) { printf(" io-write"); ++io_failures; }
            }
            printf("\n");
        } else if (fields >= 3 && strcmp(cmd, "image") == 0) {
            pkwf_image img;
            pkwb_status st;
            uint32_t i;
            long len = read_file(p1, g_a, sizeof g_a);
            if (len < 0) { printf("R %u io %s\n", n, p1); ++io_failures; continue; }
            st = pkwf_parse(g_a, (size_t)len, &img);
            if (st == PKWB_OK) st = pkwf_verify_base(&img);
            printf("R %u %s", n, pkwb_error_name(st));
            if (st != PKWB_OK) { printf("\n"); continue; }
            printf(" blobs=%u\n", (unsigned)img.num_blobs);
            for (i = 0; i < img.num_blobs; ++i) {
                pkwf_entry e;
                pkwb_blob blob;
                pkwf_entry_at(&img, i, &e);
                st = pkwf_blob(&img, i, &blob);
                if (st == PKWB_OK)
                    st = pkwb_apply_prehashed(&blob, pkwf_base(&img), img.base_size, img.base_sha256, g_out, sizeof g_out);
                printf("B %u.%lu %s %s\n", n, (unsigned long)i, e.lang, pkwb_error_name(st));
                if (st == PKWB_OK) {
                    char path[360];
                    snprintf(path, sizeof path, "%s%s.bin", p2, e.lang);
                    if (write_file(path, g_out, img.base_size) != 0) { printf("B %u.%lu io-write\n", n, (unsigned long)i); ++io_failures; }
                }
            }
        } else if (fields >= 4 && strcmp(cmd, "switch") == 0) {
            static const char *const base_labels[] = {"b0", "b1", "b2"};
            pkwf_image img;
            pkw_active active;
            pkwb_status st;
            char *lang;
            unsigned long i = 0;
            long len = read_file(p1, g_a, sizeof g_a);
            if (len < 0) { printf("R %u io %s\n", n, p1); ++io_failures; continue; }
            memset(&active, 0, sizeof active);
            st = pkwf_parse(g_a, (size_t)len, &img);
            if (st == PKWB_OK) st = pkwf_verify_base(&img);
            printf("R %u %s\n", n, pkwb_error_name(st));
            if (st != PKWB_OK) continue;
            for (lang = strtok(p2, ","); lang != NULL; lang = strtok(NULL, ","), ++i) {
                const uint8_t *model = NULL;
                char label[256];
                uint32_t k;
                st = pkw_switch(&img, lang, "base", 3, g_out, sizeof g_out, &active, &model);
                printf("W %u.%lu %s %s active=%s labels=", n, i, lang, pkwb_error_name(st), active.lang[0] ? active.lang : "-");
                /* Ask for more labels than any language has: only the active language's come back. */
                for (k = 0; k < 256u; ++k) {
                    size_t got = pkw_active_label(&active, base_labels, k, label, sizeof label);
                    if (got == 0) break;
                    if (k) printf(",");
                    print_hex((const uint8_t *)label, got);
                }
                /* The active language's thresholds: a switch must switch them too. */
                printf(" thresholds=");
                for (k = 0; k < 256u; ++k) {
                    int t = pkw_active_threshold(&active, k);
                    if (t < 0) break;
                    printf("%02x", (unsigned)t);
                }
                printf("\n");
                if (st == PKWB_OK) {
                    char path[360];
                    snprintf(path, sizeof path, "%s%lu.bin", p3, i);
                    if (write_file(path, model, img.base_size) != 0) { printf("W %u.%lu io-write\n", n, i); ++io_failures; }
                }
            }
        } else {
            printf("R %u unknown-command %s\n", n, cmd);
            ++io_failures;
        }
    }
    fclose(f);
    printf("DONE %u %u\n", n, io_failures);
    return io_failures ? 1 : 0;
}
