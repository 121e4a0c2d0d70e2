/* Board glue for the QEMU MPS2/MPS3 machines: console and exit go over Arm semihosting
 * (newlib's librdimon), which QEMU serves with -semihosting. */
#include <stdint.h>

#include "board.h"

extern void initialise_monitor_handles(void);

void board_init(void) { initialise_monitor_handles(); }

/* Raw semihosting call (BKPT 0xAB on M-profile): op in r0, argument in r1. */
static void semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
}

void board_fault(void) {
    /* No stdio here: the fault may have hit inside the C library. */
    semihost(0x04u /* SYS_WRITE0 */, "PKW_FAULT\n");
    semihost(0x18u /* SYS_EXIT */, (const void *)0x20023u /* ADP_Stopped_RunTimeErrorUnknown */);
}
