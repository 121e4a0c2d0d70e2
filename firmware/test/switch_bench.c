/* Language-switch cost on a Cortex-M board under QEMU (-icount shift=0: SysTick counts instructions).
 *
 * Reads `switch_bench.txt` over semihosting: one flash image per line. For each image it parses
 * the table and verifies the base once (as the runtime's Init does, not timed), then times each
 * language switch exactly as the runtime performs it: pkwf_blob (parse + CRC) and
 * pkwb_apply_prehashed (copy the base, patch, SHA-256 verify) into a RAM model buffer.
 * The same source builds against any blob.c with this API (firmware Makefile: SWITCH_BLOB_DIR),
 * so two blob formats are measured on identical work.
 *
 * Prints "SWITCH <image> <lang> <status> <units>" per blob and "PKW_END" at the end.
 */
#include <stdio.h>
#include <string.h>

#include "blob.h"
#include "board.h"

#ifndef PKW_SWITCH_BUF_BYTES
#define PKW_SWITCH_BUF_BYTES (512u * 1024u)
#endif

static uint8_t g_image[PKW_SWITCH_BUF_BYTES];
static uint8_t g_model[PKW_SWITCH_BUF_BYTES];
static char g_line[512];

int main(void) {
    FILE *list = fopen("switch_bench.txt", "r");
    unsigned failures = 0;
    systick_start();
    if (!list) {
        printf("ERROR cannot open switch_bench.txt\n");
        return 2;
    }
    while (fgets(g_line, sizeof g_line, list)) {
        FILE *f;
        size_t n;
        pkwf_image img;
        pkwb_status st;
        uint32_t i;
        g_line[strcspn(g_line, "\r\n")] = 0;
        if (!g_line[0]) continue;
        f = fopen(g_line, "rb");
        if (!f) { printf("ERROR cannot open %s\n", g_line); ++failures; continue; }
        n = fread(g_image, 1, sizeof g_image, f);
        fclose(f);
        st = pkwf_parse(g_image, n, &img);
        if (st == PKWB_OK) st = pkwf_verify_base(&img);
        if (st != PKWB_OK) { printf("ERROR %s %s\n", g_line, pkwb_error_name(st)); ++failures; continue; }
        for (i = 0; i < img.num_blobs; ++i) {
            pkwb_blob blob;
            pkwf_entry e;
            uint64_t t0, t1;
            pkwf_entry_at(&img, i, &e);
            t0 = systick_ticks();
            st = pkwf_blob(&img, i, &blob);
            if (st == PKWB_OK)
                st = pkwb_apply_prehashed(&blob, pkwf_base(&img), img.base_size, img.base_sha256, g_model, sizeof g_model);
            t1 = systick_ticks();
            printf("SWITCH %s %s %s %lu\n", g_line, e.lang, pkwb_error_name(st),
                   (unsigned long)((t1 - t0) * board_units_per_tick_milli / 1000u));
            if (st != PKWB_OK) ++failures;
        }
    }
    fclose(list);
    printf("PKW_END status=%s unit=%s\n", failures ? "error" : "ok", board_count_unit);
    return failures ? 1 : 0;
}
