# Nordic nRF52840-DK (PCA10056): Cortex-M4F at 64 MHz, 1 MB flash, 256 KB RAM, no SoftDevice.
# Console: UART0 on P0.06 (TX) / P0.08 (RX), routed to the on-board J-Link's USB serial port.
BOARD_CPU_TAG := cm4f
BOARD_CPU_FLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
BOARD_LD := $(FW_DIR)/boards/nrf52840dk/memory.ld
BOARD_SRCS := $(FW_DIR)/boards/nrf52840dk/board.c $(FW_DIR)/boards/nrf52840dk/vectors.c
BOARD_LIBC_SPECS := --specs=nano.specs --specs=nosys.specs
BOARD_QEMU_MACHINE :=
# The PDM microphone driver (mic/pdm_mic.h) and its nrfx glue: not linked into the project's own
# apps, shipped in the SDK's board folder for a firmware that listens to a microphone (NRFX_DIR).
BOARD_MIC_DIR := $(FW_DIR)/boards/nrf52840dk/mic
