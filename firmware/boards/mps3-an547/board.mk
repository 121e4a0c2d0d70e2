# Arm MPS3 AN547: Cortex-M55 (Helium/MVE + FPU), as emulated by `qemu-system-arm -M mps3-an547`.
BOARD_CPU_TAG := cm55
# -fno-if-conversion(2): with MVE enabled, GCC 12.2 puts float conversions in IT blocks that GNU as
# 2.40 cannot parse ("vcvtne.f32.s32" reads as the MVE VCVTN mnemonic: "Error: syntax error"),
# e.g. in TFLM's resize_nearest_neighbor.cc. Not converting branches to conditional execution
# avoids it; the kernels' hot loops (CMSIS-NN MVE intrinsics) are unaffected.
BOARD_CPU_FLAGS := -mcpu=cortex-m55 -mthumb -mfloat-abi=hard -fno-if-conversion -fno-if-conversion2
BOARD_LD := $(FW_DIR)/boards/mps3-an547/memory.ld
BOARD_SRCS := $(FW_DIR)/boards/common/semihost_board.c $(FW_DIR)/boards/mps3-an547/board.c
BOARD_LIBC_SPECS := --specs=nano.specs --specs=rdimon.specs
BOARD_QEMU_MACHINE := mps3-an547
