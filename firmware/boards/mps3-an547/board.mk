# Arm MPS3 AN547: Cortex-M55 (Helium/MVE + FPU), as emulated by `qemu-system-arm -M mps3-an547`.
BOARD_CPU_TAG := cm55
BOARD_CPU_FLAGS := -mcpu=cortex-m55 -mthumb -mfloat-abi=hard
BOARD_LD := $(FW_DIR)/boards/mps3-an547/memory.ld
BOARD_SRCS := $(FW_DIR)/boards/common/semihost_board.c $(FW_DIR)/boards/mps3-an547/board.c
BOARD_LIBC_SPECS := --specs=nano.specs --specs=rdimon.specs
BOARD_QEMU_MACHINE := mps3-an547
