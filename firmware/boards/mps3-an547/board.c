#include "board.h"

const char board_name_id[] = "mps3-an547";
/* QEMU's AN547 SYSCLK is 32 MHz: one SysTick tick = 31.25 ns = 31.25 instructions at -icount shift=0. */
const uint32_t board_units_per_tick_milli = 31250u;
const char board_count_unit[] = "instructions";
