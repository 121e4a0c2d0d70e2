# TFLM library + polykws application. Included by firmware/Makefile for `make app` / `make tflm`.
#
# Sources come from checkouts outside this repo (never committed):
#   TFLM_DIR         tflite-micro checkout (firmware/README.md pins the commit)
#   CMSIS_NN_DIR     CMSIS-NN checkout (KERNELS=cmsis-nn only)
#   FLATBUFFERS_DIR  flatbuffers v25.9.23 (TFLM's schema_generated.h asserts that version)
#   GEMMLOWP_DIR     gemmlowp (fixedpoint/ headers)
# The source lists are TFLM's own (tensorflow/lite/micro/tools/make/sources.inc), so a TFLM
# update brings its file list with it; CMSIS-NN kernels replace the reference kernels of the same
# file name, exactly as TFLM's specialize_files.py does for OPTIMIZED_KERNEL_DIR=cmsis_nn.

# Unset dependency paths fall back to where TFLM's own Makefile downloads them.
TFLM_DOWNLOADS := $(TFLM_DIR)/tensorflow/lite/micro/tools/make/downloads
CMSIS_NN_DIR ?= $(if $(TFLM_DIR),$(wildcard $(TFLM_DOWNLOADS)/cmsis_nn),)
FLATBUFFERS_DIR ?= $(if $(TFLM_DIR),$(wildcard $(TFLM_DOWNLOADS)/flatbuffers),)
GEMMLOWP_DIR ?= $(if $(TFLM_DIR),$(wildcard $(TFLM_DOWNLOADS)/gemmlowp),)

define require_dir
ifeq ($$(strip $$($(1))),)
  $$(error $(1) is not set; the TFLM build needs $(2) (see firmware/README.md))
endif
ifeq ($$(wildcard $$($(1))/$(3)),)
  $$(error $(1)=$$($(1)) does not contain $(3))
endif
endef
$(eval $(call require_dir,TFLM_DIR,a tflite-micro checkout,tensorflow/lite/micro/micro_interpreter.h))
$(eval $(call require_dir,FLATBUFFERS_DIR,flatbuffers v25.9.23,include/flatbuffers/flatbuffers.h))
$(eval $(call require_dir,GEMMLOWP_DIR,gemmlowp,fixedpoint/fixedpoint.h))
ifeq ($(KERNELS),cmsis-nn)
$(eval $(call require_dir,CMSIS_NN_DIR,a CMSIS-NN checkout,Include/arm_nnfunctions.h))
endif

TFLM_DIR := $(abspath $(TFLM_DIR))
FLATBUFFERS_DIR := $(abspath $(FLATBUFFERS_DIR))
GEMMLOWP_DIR := $(abspath $(GEMMLOWP_DIR))

# ---- TFLM's source lists
TENSORFLOW_ROOT := $(TFLM_DIR)/
DOWNLOADS_DIR := $(TFLM_BUILD_DIR)/no-downloads
include $(TFLM_DIR)/tensorflow/lite/micro/tools/make/sources.inc

TFLM_CORE_SRCS := $(filter-out $(MICROLITE_TEST_SRCS) $(MICROLITE_BENCHMARK_SRCS) \
  $(TFLM_DIR)/tensorflow/lite/array.cc,$(MICROLITE_CC_BASE_SRCS))
TFLM_KERNEL_SRCS := $(MICROLITE_CC_KERNEL_SRCS)
ifeq ($(KERNELS),cmsis-nn)
  CMSIS_NN_DIR := $(abspath $(CMSIS_NN_DIR))
  TFLM_CMSIS_DIR := $(TFLM_DIR)/tensorflow/lite/micro/kernels/cmsis_nn
  TFLM_CMSIS_SRCS := $(wildcard $(TFLM_CMSIS_DIR)/*.cc)
  TFLM_KERNEL_SRCS := $(filter-out $(addprefix %/,$(notdir $(TFLM_CMSIS_SRCS))),$(TFLM_KERNEL_SRCS)) $(TFLM_CMSIS_SRCS)
  CMSIS_NN_SRCS := $(filter-out %_f16.c %_f32.c %/arm_nntables_flt.c,$(shell find $(CMSIS_NN_DIR)/Source -name "*.c"))
  KERNEL_DEFS := -DCMSIS_NN -DARM_NN_ENABLE_F16=0 -DARM_NN_ENABLE_F32=0
  KERNEL_INCLUDES := -I$(CMSIS_NN_DIR) -I$(CMSIS_NN_DIR)/Include
else
  CMSIS_NN_SRCS :=
  KERNEL_DEFS :=
  KERNEL_INCLUDES :=
endif
TFLM_SRCS := $(TFLM_CORE_SRCS) $(TFLM_KERNEL_SRCS)
ifneq ($(filter %.c,$(TFLM_SRCS)),)
  $(error unexpected C sources in TFLM's lists: $(filter %.c,$(TFLM_SRCS)))
endif

# ---- flags (TFLM's own defaults for a release_with_logs build)
TFLM_INCLUDES := -I$(TFLM_DIR) -I$(FLATBUFFERS_DIR)/include -I$(GEMMLOWP_DIR) -I$(FW_DIR)/compat $(KERNEL_INCLUDES)
TFLM_COMMON := $(BOARD_CPU_FLAGS) -fno-unwind-tables -fno-asynchronous-unwind-tables -ffunction-sections \
  -fdata-sections -fmessage-length=0 -fomit-frame-pointer -DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON \
  -DTF_LITE_MCU_DEBUG_LOG -DNDEBUG $(KERNEL_DEFS) -MMD -MP
TFLM_CXXFLAGS := $(TFLM_COMMON) -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics $(TFLM_INCLUDES)
TFLM_CFLAGS := $(TFLM_COMMON) -std=c11 $(TFLM_INCLUDES)

TFLM_OBJ_DIR := $(TFLM_BUILD_DIR)/obj
CMSIS_OBJ_DIR := $(TFLM_BUILD_DIR)/cmsis_nn
TFLM_OBJS := $(patsubst $(TFLM_DIR)/%.cc,$(TFLM_OBJ_DIR)/%.o,$(TFLM_SRCS))
CMSIS_NN_OBJS := $(patsubst $(CMSIS_NN_DIR)/%.c,$(CMSIS_OBJ_DIR)/%.o,$(CMSIS_NN_SRCS))
TFLM_LIB := $(TFLM_BUILD_DIR)/libtflm.a

# Kernels at -O2, the interpreter at -Os, as TFLM's Makefile does.
$(TFLM_OBJ_DIR)/%.o: $(TFLM_DIR)/%.cc
	@mkdir -p $(@D)
	@echo "CXX $(patsubst $(TFLM_DIR)/%,%,$<)"
	@$(CXX) $(TFLM_CXXFLAGS) $(if $(findstring /kernels/,$<),-O2,-Os) -c $< -o $@

$(CMSIS_OBJ_DIR)/%.o: $(CMSIS_NN_DIR)/%.c
	@mkdir -p $(@D)
	@echo "CC  CMSIS-NN $(notdir $<)"
	@$(CC) $(TFLM_CFLAGS) -O2 -c $< -o $@

$(TFLM_LIB): $(TFLM_OBJS) $(CMSIS_NN_OBJS)
	@rm -f $@
	@echo "AR  $@"
	@$(AR) rcs $@ $^

tflm: $(TFLM_LIB)

# ---- application
ifeq ($(strip $(GEN_DIR)),)
  ifneq ($(filter app,$(MAKECMDGOALS)),)
    $(error GEN_DIR is not set: point it at the generated model sources (polykws firmware build writes them))
  endif
endif
GEN_DIR := $(abspath $(GEN_DIR))

# APP_MAIN picks the program: main (benchmark vectors, the default) or stream_main (PCM in,
# detections out: adds the on-device frontend, the detector and TFLM's microfrontend library).
APP_MAIN ?= main
# The SDK is the runtime without a program: it needs what stream_main needs.
ifneq ($(filter sdk,$(MAKECMDGOALS)),)
  APP_MAIN := stream_main
endif
APP_MAINS := $(FW_DIR)/app/main.cc $(FW_DIR)/app/stream_main.cc $(FW_DIR)/app/step_main.cc
ifeq ($(filter $(APP_MAIN),main stream_main step_main),)
  $(error APP_MAIN=$(APP_MAIN) must be main, stream_main or step_main)
endif
# runtime/: the library a product firmware embeds (polykws.h); main.cc uses its KwsRuntime layer only.
# step_main (the step graph's cost and exactness, polykws.firmware.stepbench) runs TFLM directly.
RUNTIME_DIR := $(FW_DIR)/runtime
APP_CXX_SRCS := $(filter-out $(APP_MAINS),$(wildcard $(FW_DIR)/app/*.cc)) $(FW_DIR)/app/$(APP_MAIN).cc
APP_C_SRCS := $(STARTUP_SRCS) $(wildcard $(GEN_DIR)/*.c)
ifneq ($(APP_MAIN),step_main)
  APP_CXX_SRCS += $(RUNTIME_DIR)/kws_runtime.cc $(RUNTIME_DIR)/fast_mean.cc
  APP_C_SRCS += $(BLOB_SRCS)
endif
APP_OBJ_DIR := $(APP_DIR)/obj
STREAM_INCLUDES :=
FE_LIB_OBJS :=
ifeq ($(APP_MAIN),stream_main)
  $(call require_frontend_sources)
  APP_CXX_SRCS += $(LIB_DIR)/frontend.cc $(RUNTIME_DIR)/polykws.cc
  APP_C_SRCS += $(LIB_DIR)/detector.c
  STREAM_INCLUDES := -I$(KISSFFT_DIR)
  FE_LIB_OBJS := $(patsubst $(FE_LIB)/%,$(APP_OBJ_DIR)/felib/%.o,$(FE_RUNTIME_C) $(FE_RUNTIME_CC))
endif
APP_OBJS := $(patsubst /%,$(APP_OBJ_DIR)/%.o,$(APP_CXX_SRCS) $(APP_C_SRCS))
# PROFILE=1 (see Makefile): per-op SysTick timing of the first inference per language.
APP_CXXFLAGS := $(TFLM_CXXFLAGS) -DPKW_PROFILE=$(PROFILE) -DPKW_FAST_MEAN=$(FAST_MEAN) -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -I$(GEN_DIR) -I$(LIB_DIR) \
  -I$(FW_DIR)/boards/common -I$(FW_DIR)/app -I$(RUNTIME_DIR) $(STREAM_INCLUDES)
APP_CFLAGS := $(FW_CFLAGS) $(WARN_C) -MMD -MP -I$(GEN_DIR)
APP_ELF := $(APP_DIR)/pkw_app.elf

$(APP_OBJ_DIR)/%.cc.o: /%.cc
	@mkdir -p $(@D)
	$(CXX) $(APP_CXXFLAGS) -c $< -o $@

$(APP_OBJ_DIR)/%.c.o: /%.c
	@mkdir -p $(@D)
	$(CC) $(APP_CFLAGS) -c $< -o $@

# TFLM's microfrontend library: its own code, compiled as TFLM's Makefile does (no -Werror).
$(APP_OBJ_DIR)/felib/%.c.o: $(FE_LIB)/%.c
	@mkdir -p $(@D)
	$(CC) $(BOARD_CPU_FLAGS) -std=c11 -O2 -ffunction-sections -fdata-sections -I$(TFLM_DIR) -I$(KISSFFT_DIR) -c $< -o $@

$(APP_OBJ_DIR)/felib/%.cc.o: $(FE_LIB)/%.cc
	@mkdir -p $(@D)
	$(CXX) $(TFLM_CXXFLAGS) -O2 -I$(KISSFFT_DIR) -c $< -o $@

# The generated sources change with every pack; rebuild their objects whenever they do.
$(APP_OBJS): $(wildcard $(GEN_DIR)/*.h)

$(APP_ELF): $(APP_OBJS) $(FE_LIB_OBJS) $(TFLM_LIB) $(BOARD_LD) $(FW_DIR)/boards/common/sections.ld
	$(CXX) $(BOARD_CPU_FLAGS) $(BOARD_LIBC_SPECS) -nostartfiles -Wl,--gc-sections -L$(FW_DIR)/boards/common \
	  -T$(BOARD_LD) -Wl,-Map=$(APP_DIR)/pkw_app.map $(APP_OBJS) $(FE_LIB_OBJS) $(TFLM_LIB) -lm -o $@
	$(SIZE) $@

app: $(APP_ELF)

# ---- the runtime as a package a product firmware links (polykws.h, libpolykws.a, CMake config)
# One archive holds the runtime, the C library, TFLM (+ CMSIS-NN), the microfrontend and the
# pack's generated sources (its flash image included), compiled for this board's CPU. The board
# folder is the project's board support (startup, console, SysTick, memory map, and the board's
# microphone driver where it has one), which the examples use and a product replaces with its own.
empty :=
space := $(empty) $(empty)
SDK_DIR ?= $(APP_DIR)/sdk
SDK_DIR := $(abspath $(SDK_DIR))
SDK_OBJS := $(filter-out $(patsubst /%,$(APP_OBJ_DIR)/%.o,$(FW_DIR)/app/%.cc $(STARTUP_SRCS)),$(APP_OBJS)) $(FE_LIB_OBJS)
SDK_LIB := $(SDK_DIR)/lib/libpolykws.a
SDK_HEADERS := $(RUNTIME_DIR)/polykws.h $(GEN_DIR)/pkw_model.h $(GEN_DIR)/pkw_stream_config.h
SDK_BOARD_FILES := $(STARTUP_SRCS) $(FW_DIR)/boards/common/board.h $(FW_DIR)/boards/common/sections.ld $(BOARD_LD)
SDK_CONFIG := $(SDK_DIR)/lib/cmake/polykws/polykwsConfig.cmake

$(SDK_LIB): $(SDK_OBJS) $(TFLM_OBJS) $(CMSIS_NN_OBJS)
	@mkdir -p $(@D)
	@rm -f $@
	@echo "AR  $@"
	@$(AR) rcs $@ $^

$(SDK_CONFIG): $(FW_DIR)/cmake/polykwsConfig.cmake.in $(SDK_LIB) $(SDK_HEADERS) $(SDK_BOARD_FILES) \
    $(if $(BOARD_MIC_DIR),$(wildcard $(BOARD_MIC_DIR)/*))
	@mkdir -p $(@D) $(SDK_DIR)/include $(SDK_DIR)/board
	cp $(SDK_HEADERS) $(SDK_DIR)/include/
	cp $(SDK_BOARD_FILES) $(SDK_DIR)/board/
	$(if $(BOARD_MIC_DIR),mkdir -p $(SDK_DIR)/board/mic && cp $(wildcard $(BOARD_MIC_DIR)/*) $(SDK_DIR)/board/mic/)
	sed -e 's|@BOARD@|$(BOARD)|g' -e 's|@KERNELS@|$(KERNELS)|g' \
	  -e 's|@CPU_FLAGS@|$(subst $(space),;,$(strip $(BOARD_CPU_FLAGS)))|g' \
	  -e 's|@LIBC_SPECS@|$(subst $(space),;,$(strip $(BOARD_LIBC_SPECS)))|g' \
	  -e 's|@BOARD_SOURCES@|$(subst $(space),;,$(addprefix $${_pkw_root}/board/,$(notdir $(STARTUP_SRCS))))|g' \
	  -e 's|@LINKER_SCRIPT@|$(notdir $(BOARD_LD))|g' $< > $@.tmp
	mv $@.tmp $@

sdk: $(SDK_CONFIG)
	@echo "SDK $(SDK_DIR)"

-include $(TFLM_OBJS:.o=.d) $(CMSIS_NN_OBJS:.o=.d) $(APP_OBJS:.o=.d)
