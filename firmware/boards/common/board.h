/* What each board provides to the shared startup and application code. */
#ifndef PKW_BOARD_H
#define PKW_BOARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Board bring-up before the C library starts (console, clocks). */
void board_init(void);
/* Called from the default fault handler: report and stop (QEMU exits with status 3). */
void board_fault(void);
/* Board id shown in the benchmark header (the boards/ folder name). */
extern const char board_name_id[];
/* Instructions (QEMU -icount shift=0) or core cycles (real silicon) per SysTick tick, times 1000:
 * QEMU's SysTick runs off the board's SYSCLK while one instruction advances the virtual clock by
 * 1 ns, so 25 MHz gives 40 instructions per tick; on silicon SysTick counts core cycles (1). */
extern const uint32_t board_units_per_tick_milli;
/* "instructions" under QEMU, "cycles" on silicon. */
extern const char board_count_unit[];

void systick_start(void);
uint64_t systick_ticks(void);

#ifdef __cplusplus
}
#endif

#endif
