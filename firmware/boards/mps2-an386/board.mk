# Arm MPS2+ AN386: Cortex-M4 with FPU, as emulated by `qemu-system-arm -M mps2-an386`.
BOARD_CPU_TAG := cm4f
BOARD_CPU_FLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
BOARD_LD := $(FW_DIR)/boards/mps2-an386/memory.ld
BOARD_SRCS := $(FW_DIR)/boards/common/semihost_board.c $(FW_DIR)/boards/mps2-an386/board.c
BOARD_LIBC_SPECS := --specs=nano.specs --specs=rdimon.specs
BOARD_QEMU_MACHINE := mps2-an386
