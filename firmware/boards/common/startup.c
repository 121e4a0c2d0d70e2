/* Cortex-M startup shared by every board: vector table, RAM init, FPU enable, SysTick.
 *
 * No vendor startup code: the boards we support need only the architectural vectors, and
 * keeping this one small file makes the boot path auditable. The C library is newlib; on the
 * QEMU boards its I/O goes over semihosting (librdimon, initialised here), on real boards
 * through the board's own console (board_console_init / _write in the board's C file).
 */
#include <stdint.h>
#include <stdlib.h>

#include "board.h"

extern uint32_t __StackTop;
extern uint32_t __data_load__, __data_start__, __data_end__;
extern uint32_t __bss_start__, __bss_end__;

extern int main(int argc, char **argv);
extern void __libc_init_array(void);

void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);

/* newlib's __libc_init_array calls _init(); with -nostartfiles there is no crti.o to supply it.
 * Constructors run from .init_array, so _init has nothing left to do. */
void _init(void) {}
void _fini(void) {}

/* TFLM / libstdc++ objects register destructors with __cxa_atexit against this handle. */
void *__dso_handle = 0;

static void hang(void) {
    for (;;) {
    }
}

void Default_Handler(void) {
    /* A fault on a QEMU board ends the run with a distinct status instead of hanging the test. */
    board_fault();
    hang();
}

void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SecureFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));

typedef void (*vector_fn)(void);

/* The architectural vectors (16 entries). A board with device interrupts adds its table in
 * .isr_vector.device, which sections.ld places right behind this one. */
__attribute__((section(".isr_vector"), used)) const vector_fn g_vectors[16] = {
    (vector_fn)(uintptr_t)&__StackTop,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    SecureFault_Handler,
    0,
    0,
    0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
};

/* ---- SysTick as a 64-bit counter: 24-bit down-counter plus a wrap count kept by the IRQ. */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_RELOAD 0x00FFFFFFu

static volatile uint32_t g_systick_wraps;

void SysTick_Handler(void) { g_systick_wraps++; }

void systick_start(void) {
    SYST_CSR = 0;
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    g_systick_wraps = 0;
    SYST_CSR = 0x7u; /* processor clock, interrupt on wrap, enable */
}

uint64_t systick_ticks(void) {
    uint32_t wraps, val;
    /* Read wraps, value, wraps again: if a wrap happened in between, re-read. */
    do {
        wraps = g_systick_wraps;
        val = SYST_CVR;
    } while (wraps != g_systick_wraps);
    /* A wrap can be pending (COUNTFLAG) but not yet taken when interrupts are masked; not the
     * case here since we never mask them. */
    return (uint64_t)wraps * (SYST_RELOAD + 1u) + (SYST_RELOAD - val);
}

void Reset_Handler(void) {
    uint32_t *src, *dst;

#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* Full access to CP10/CP11 (FPU, and MVE on Armv8.1-M) before any float code runs. */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    /* .data from its load address (flash on real boards; QEMU loads it in place, then this is a
     * harmless copy onto itself), then zero .bss. */
    src = &__data_load__;
    for (dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;

    board_init();
    __libc_init_array();
    {
        /* No command line on a microcontroller: argv is just the program name. */
        static char prog[] = "pkw";
        static char *argv[] = {prog, 0};
        exit(main(1, argv));
    }
}
