/* nrfx glue for a bare-metal nRF52840 firmware (no RTOS): NVIC through CMSIS-Core, critical
 * sections by PRIMASK, atomics by the compiler's LDREX/STREX builtins, delays by the DWT cycle
 * counter. nrfx.h includes this after the MDK, so the CMSIS-Core functions are declared here. */
#ifndef NRFX_GLUE_H__
#define NRFX_GLUE_H__

#include <stdbool.h>
#include <stdint.h>

#include "board.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A failed driver assertion is a firmware bug: report it on the console and stop. */
#define NRFX_ASSERT(expression) \
    do {                        \
        if (!(expression)) {    \
            board_fault();      \
        }                       \
    } while (0)
#define NRFX_STATIC_ASSERT(expression) _Static_assert((expression), "nrfx static assertion")

#define NRFX_IRQ_PRIORITY_SET(irq_number, priority) NVIC_SetPriority((IRQn_Type)(irq_number), (priority))
#define NRFX_IRQ_ENABLE(irq_number) NVIC_EnableIRQ((IRQn_Type)(irq_number))
#define NRFX_IRQ_IS_ENABLED(irq_number) (NVIC_GetEnableIRQ((IRQn_Type)(irq_number)) != 0)
#define NRFX_IRQ_DISABLE(irq_number) NVIC_DisableIRQ((IRQn_Type)(irq_number))
#define NRFX_IRQ_PENDING_SET(irq_number) NVIC_SetPendingIRQ((IRQn_Type)(irq_number))
#define NRFX_IRQ_PENDING_CLEAR(irq_number) NVIC_ClearPendingIRQ((IRQn_Type)(irq_number))
#define NRFX_IRQ_IS_PENDING(irq_number) (NVIC_GetPendingIRQ((IRQn_Type)(irq_number)) != 0)

/* Nestable: each section restores the PRIMASK it found. ENTER and EXIT pair within one block, as
 * nrfx uses them. */
#define NRFX_CRITICAL_SECTION_ENTER()              \
    {                                              \
        uint32_t pkw_nrfx_primask = __get_PRIMASK(); \
        __disable_irq();
#define NRFX_CRITICAL_SECTION_EXIT()      \
        __set_PRIMASK(pkw_nrfx_primask);  \
    }

#define NRFX_COREDEP_DELAY_DWT_BASED 0
/* The board runs its core at 64 MHz from reset; the DWT cycle counter times the wait. */
#define PKW_NRFX_CORE_MHZ 64u
static inline void pkw_nrfx_delay_us(uint32_t us) {
    CoreDebug->DEMCR |= CoreDebug_DEMCR_TRCENA_Msk;
    DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
    const uint32_t start = DWT->CYCCNT;
    const uint32_t cycles = us * PKW_NRFX_CORE_MHZ;
    while ((uint32_t)(DWT->CYCCNT - start) < cycles) {
    }
}
#define NRFX_DELAY_US(us_time) pkw_nrfx_delay_us(us_time)

#define nrfx_atomic_t uint32_t
#define NRFX_ATOMIC_FETCH_STORE(p_data, value) __atomic_exchange_n((p_data), (value), __ATOMIC_SEQ_CST)
#define NRFX_ATOMIC_FETCH_OR(p_data, value) __atomic_fetch_or((p_data), (value), __ATOMIC_SEQ_CST)
#define NRFX_ATOMIC_FETCH_AND(p_data, value) __atomic_fetch_and((p_data), (value), __ATOMIC_SEQ_CST)
#define NRFX_ATOMIC_FETCH_XOR(p_data, value) __atomic_fetch_xor((p_data), (value), __ATOMIC_SEQ_CST)
#define NRFX_ATOMIC_FETCH_ADD(p_data, value) __atomic_fetch_add((p_data), (value), __ATOMIC_SEQ_CST)
#define NRFX_ATOMIC_FETCH_SUB(p_data, value) __atomic_fetch_sub((p_data), (value), __ATOMIC_SEQ_CST)
static inline bool pkw_nrfx_atomic_cas(nrfx_atomic_t *p_data, uint32_t old_value, uint32_t new_value) {
    return __atomic_compare_exchange_n(p_data, &old_value, new_value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
#define NRFX_ATOMIC_CAS(p_data, old_value, new_value) pkw_nrfx_atomic_cas((p_data), (old_value), (new_value))

#define NRFX_CLZ(value) __builtin_clz(value)
#define NRFX_CTZ(value) __builtin_ctz(value)

#define NRFX_EVENT_READBACK_ENABLED 1

/* The nRF52840 has no data cache. */
#define NRFY_CACHE_WB(p_buffer, size)
#define NRFY_CACHE_INV(p_buffer, size)
#define NRFY_CACHE_WBINV(p_buffer, size)

/* Nothing outside nrfx owns these resources. */
#define NRFX_DPPI_CHANNELS_USED 0
#define NRFX_DPPI_GROUPS_USED 0
#define NRFX_PPI_CHANNELS_USED 0
#define NRFX_PPI_GROUPS_USED 0
#define NRFX_GPIOTE_CHANNELS_USED 0
#define NRFX_EGUS_USED 0
#define NRFX_TIMERS_USED 0

#ifdef __cplusplus
}
#endif

#endif
