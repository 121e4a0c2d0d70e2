/* Board self-test: the smallest firmware that exercises a board's startup, console and SysTick.
 *
 * Prints known-answer results for SHA-256 and CRC-32 (firmware/sha256.c, blob.c) and measures a
 * loop of exactly 2 x PKW_CAL_ITERS instructions (SUBS + BNE per iteration) with SysTick. Under
 * `qemu -icount shift=0` the measured count must equal the loop's instruction count, which
 * checks each QEMU board's units_per_tick_milli (tests/firmware run it); on silicon it reports
 * core cycles for the same loop. Real boards: flash it first to check the UART wiring.
 */
#include <stdio.h>
#include <string.h>

#include "blob.h"
#include "board.h"
#include "sha256.h"

#define PKW_CAL_ITERS 1000000u

static unsigned long ticks_to_units(uint64_t ticks) {
    return (unsigned long)(ticks * board_units_per_tick_milli / 1000u);
}

int main(void) {
    static const uint8_t abc[] = "abc";
    static const uint8_t abc_sha[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    static const uint8_t check[] = "123456789";
    uint8_t d[32];
    uint64_t t0, t1;
    uint32_t n = PKW_CAL_ITERS;
    int sha_ok, crc_ok;

    systick_start();
    pkw_sha256(abc, 3, d);
    sha_ok = memcmp(d, abc_sha, 32) == 0;
    crc_ok = pkw_crc32(check, 9) == 0xCBF43926u;

    t0 = systick_ticks();
    __asm volatile(
        "1: subs %0, %0, #1\n"
        "   bne 1b\n"
        : "+r"(n)
        :
        : "cc");
    t1 = systick_ticks();

    printf("PKW_SELFTEST board=%s sha256=%s crc32=%s loop_instructions=%lu measured_%s=%lu ticks=%lu\n",
           board_name_id, sha_ok ? "ok" : "FAIL", crc_ok ? "ok" : "FAIL", (unsigned long)(2u * PKW_CAL_ITERS),
           board_count_unit, ticks_to_units(t1 - t0), (unsigned long)(t1 - t0));
    printf("PKW_END status=%s\n", sha_ok && crc_ok ? "ok" : "error");
    return sha_ok && crc_ok ? 0 : 1;
}
