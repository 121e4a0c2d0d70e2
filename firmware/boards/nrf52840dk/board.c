/* nRF52840-DK board glue: console on UART0 (P0.06 TX, 115200 8N1) through the on-board J-Link's
 * virtual COM port, SysTick on the 64 MHz core clock (so counts here are core cycles).
 * Register offsets: nRF52840 Product Specification v1.7, UART (legacy) and GPIO chapters. */
#include <stdint.h>

#include "board.h"

#define UART0_BASE 0x40002000u
#define UART_TASKS_STARTTX (*(volatile uint32_t *)(UART0_BASE + 0x008u))
#define UART_EVENTS_TXDRDY (*(volatile uint32_t *)(UART0_BASE + 0x11Cu))
#define UART_ENABLE (*(volatile uint32_t *)(UART0_BASE + 0x500u))
#define UART_PSEL_TXD (*(volatile uint32_t *)(UART0_BASE + 0x50Cu))
#define UART_PSEL_RXD (*(volatile uint32_t *)(UART0_BASE + 0x514u))
#define UART_TXD (*(volatile uint32_t *)(UART0_BASE + 0x51Cu))
#define UART_BAUDRATE (*(volatile uint32_t *)(UART0_BASE + 0x524u))
#define UART_CONFIG (*(volatile uint32_t *)(UART0_BASE + 0x56Cu))
#define GPIO_P0_OUTSET (*(volatile uint32_t *)(0x50000000u + 0x508u))
#define GPIO_P0_DIRSET (*(volatile uint32_t *)(0x50000000u + 0x518u))

#define TX_PIN 6u
#define BAUD_115200 0x01D7E000u
#define UART_ENABLE_ENABLED 4u
#define PSEL_DISCONNECTED 0xFFFFFFFFu

const char board_name_id[] = "nrf52840dk";
const uint32_t board_units_per_tick_milli = 1000u; /* SysTick = core clock: 1 cycle per tick */
const char board_count_unit[] = "cycles";

static void uart_putc(char c) {
    UART_EVENTS_TXDRDY = 0;
    UART_TXD = (uint8_t)c;
    while (UART_EVENTS_TXDRDY == 0) {
    }
}

void board_init(void) {
    GPIO_P0_OUTSET = 1u << TX_PIN; /* idle high before the UART takes the pin */
    GPIO_P0_DIRSET = 1u << TX_PIN;
    UART_PSEL_TXD = TX_PIN;
    UART_PSEL_RXD = PSEL_DISCONNECTED;
    UART_BAUDRATE = BAUD_115200;
    UART_CONFIG = 0; /* 8N1, no flow control */
    UART_ENABLE = UART_ENABLE_ENABLED;
    UART_TASKS_STARTTX = 1;
}

/* newlib (nosys.specs) sends stdout/stderr here; LF becomes CRLF for serial terminals. */
int _write(int fd, const char *buf, int len) {
    int i;
    (void)fd;
    for (i = 0; i < len; ++i) {
        if (buf[i] == '\n') uart_putc('\r');
        uart_putc(buf[i]);
    }
    return len;
}

void board_fault(void) {
    const char *msg = "PKW_FAULT\r\n";
    while (*msg) uart_putc(*msg++);
    for (;;) {
    }
}
