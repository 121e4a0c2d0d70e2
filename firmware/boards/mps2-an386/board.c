#include "board.h"

const char board_name_id[] = "mps2-an386";
/* QEMU's mps2 SYSCLK is 25 MHz: one SysTick tick = 40 ns = 40 instructions at -icount shift=0. */
const uint32_t board_units_per_tick_milli = 40000u;
const char board_count_unit[] = "instructions";
