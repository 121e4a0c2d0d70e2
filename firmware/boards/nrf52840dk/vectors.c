/* The nRF52840's 48 device interrupt vectors, right behind the architectural ones (sections.ld
 * keeps .isr_vector.device after .isr_vector). An unused interrupt goes to the default handler
 * (report and stop); a driver takes its interrupt by defining the weak handler named here, as
 * mic/pdm_mic.c defines PDM_IRQHandler. The IRQ number is the peripheral ID of the nRF52840
 * Product Specification's instantiation table (the MDK's PDM_IRQn is 29). */
#include <stdint.h>

void Default_Handler(void);

/* Weak: a driver that takes the interrupt defines its own. */
__attribute__((weak)) void PDM_IRQHandler(void) { Default_Handler(); }

typedef void (*vector_fn)(void);

__attribute__((section(".isr_vector.device"), used)) const vector_fn g_device_vectors[48] = {
    Default_Handler, /* 0 */
    Default_Handler, /* 1 */
    Default_Handler, /* 2 */
    Default_Handler, /* 3 */
    Default_Handler, /* 4 */
    Default_Handler, /* 5 */
    Default_Handler, /* 6 */
    Default_Handler, /* 7 */
    Default_Handler, /* 8 */
    Default_Handler, /* 9 */
    Default_Handler, /* 10 */
    Default_Handler, /* 11 */
    Default_Handler, /* 12 */
    Default_Handler, /* 13 */
    Default_Handler, /* 14 */
    Default_Handler, /* 15 */
    Default_Handler, /* 16 */
    Default_Handler, /* 17 */
    Default_Handler, /* 18 */
    Default_Handler, /* 19 */
    Default_Handler, /* 20 */
    Default_Handler, /* 21 */
    Default_Handler, /* 22 */
    Default_Handler, /* 23 */
    Default_Handler, /* 24 */
    Default_Handler, /* 25 */
    Default_Handler, /* 26 */
    Default_Handler, /* 27 */
    Default_Handler, /* 28 */
    PDM_IRQHandler,  /* 29 PDM */
    Default_Handler, /* 30 */
    Default_Handler, /* 31 */
    Default_Handler, /* 32 */
    Default_Handler, /* 33 */
    Default_Handler, /* 34 */
    Default_Handler, /* 35 */
    Default_Handler, /* 36 */
    Default_Handler, /* 37 */
    Default_Handler, /* 38 */
    Default_Handler, /* 39 */
    Default_Handler, /* 40 */
    Default_Handler, /* 41 */
    Default_Handler, /* 42 */
    Default_Handler, /* 43 */
    Default_Handler, /* 44 */
    Default_Handler, /* 45 */
    Default_Handler, /* 46 */
    Default_Handler, /* 47 */
};
