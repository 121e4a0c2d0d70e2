/* The int8 step graph on the device (APP_MAIN=step_main): cost and exactness of streaming inference.
 *
 * Runs, over a stream of int8 model frames embedded by polykws.firmware.stepbench:
 *   - the step graph at each frame of the host's schedule (polykws.export.stepgraph), keeping per
 *     chain of stem rows each block's last input rows as state between steps, and the head over
 *     the chain's last PKW_SG_HEAD_ROWS final rows where the schedule says so;
 *   - the windowed graph on the same windows, for its cost.
 * Every head output is compared with the host's (polykws.export.stepgraph.stream_outputs) and with
 * the windowed graph's output on the device. PKW_STEP_LINKED builds run the linked form: one
 * array holding the step and head graphs' structure and, after it, the windowed model whose
 * weights and scales they read.
 *
 * Output (parsed by polykws.firmware.stepbench):
 *   PKW_STEPBENCH steps=<n> step_ticks=<n> heads=<n> head_ticks=<n> windows=<n> window_ticks=<n>
 *                 host_mismatches=<n> window_mismatches=<n> step_arena_used=<n> head_arena_used=<n>
 *                 window_arena_used=<n> units_per_tick_milli=<n> unit=<...>
 *   PKW_PROFILE graph=step|head op=<i> tag=<op> ticks=<n>   (PKW_PROFILE=1 builds: the last step's and the last head's ops)
 *   PKW_END status=ok|error
 */
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "pkw_step_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "op_profiler.h"
#include "step_chain.h"
#include "u64.h"

using pkw::U64;

namespace {

using Resolver = tflite::MicroMutableOpResolver<8>;

constexpr int kBlocks = PKW_SG_BLOCKS;
constexpr int kChains = PKW_SG_STRIDE;
using Chain = pkw::StepChain<PKW_SG_BLOCKS, PKW_SG_STATE_ROWS, PKW_SG_ROWS, PKW_SG_ROW_BYTES, PKW_SG_HEAD_ROWS>;

alignas(16) uint8_t g_step_arena[PKW_STEP_ARENA_BYTES];
alignas(16) uint8_t g_head_arena[PKW_HEAD_ARENA_BYTES];
alignas(16) uint8_t g_window_arena[PKW_WINDOW_ARENA_BYTES];
Chain g_chains[kChains];  // zero-initialised: empty state, the ring starting at row 0

#ifndef PKW_PROFILE
#define PKW_PROFILE 0
#endif

// Per-op ticks of the most recent step and the most recent head (PKW_PROFILE=1 builds only).
pkw::OpProfiler g_profiler(systick_ticks);
pkw::OpProfiler g_head_profiler(systick_ticks);

void PrintProfile(const char* graph, const pkw::OpProfiler& profiler) {
  for (uint32_t i = 0; i < profiler.count(); ++i) {
    printf("PKW_PROFILE graph=%s op=%lu tag=%s ticks=%s\n", graph, (unsigned long)i, profiler.tag(i),
           U64(profiler.ticks(i)));
  }
}

tflite::MicroProfilerInterface* StepProfiler() { return PKW_PROFILE ? &g_profiler : nullptr; }
tflite::MicroProfilerInterface* HeadProfiler() { return PKW_PROFILE ? &g_head_profiler : nullptr; }

int Fail(const char* what) {
  printf("PKW_ERROR stage=%s\nPKW_END status=error\n", what);
  return 1;
}

bool AddOps(Resolver& r) {
  return r.AddPad() == kTfLiteOk && r.AddConv2D() == kTfLiteOk && r.AddConcatenation() == kTfLiteOk &&
         r.AddDepthwiseConv2D() == kTfLiteOk && r.AddAveragePool2D() == kTfLiteOk &&
         r.AddFullyConnected() == kTfLiteOk && r.AddSoftmax() == kTfLiteOk;
}

}  // namespace

int main(void) {
  systick_start();
  static Resolver resolver;
  if (!AddOps(resolver)) return Fail("resolver");
#if PKW_STEP_LINKED
  // One array: the linked step and head graphs read their weights and scales from the windowed model
  // behind them (polykws.export.stepgraph.LinkedGraphs).
  const uint8_t* step_model = pkw_linked_models;
  const uint8_t* head_model = pkw_linked_models + PKW_LINKED_HEAD_OFFSET;
  const uint8_t* window_model = pkw_linked_models + PKW_LINKED_WINDOW_OFFSET;
#else
  const uint8_t* step_model = pkw_step_model;
  const uint8_t* head_model = pkw_head_model;
  const uint8_t* window_model = pkw_window_model;
#endif
  static tflite::MicroInterpreter step(tflite::GetModel(step_model), resolver, g_step_arena, sizeof g_step_arena,
                                       nullptr, StepProfiler());
  static tflite::MicroInterpreter head(tflite::GetModel(head_model), resolver, g_head_arena, sizeof g_head_arena,
                                       nullptr, HeadProfiler());
  static tflite::MicroInterpreter window(tflite::GetModel(window_model), resolver, g_window_arena,
                                         sizeof g_window_arena);
  if (step.AllocateTensors() != kTfLiteOk) return Fail("step_allocate");
  if (head.AllocateTensors() != kTfLiteOk) return Fail("head_allocate");
  if (window.AllocateTensors() != kTfLiteOk) return Fail("window_allocate");
  if (step.inputs_size() != 1 + kBlocks || step.outputs_size() != 1 + kBlocks) return Fail("step_layout");

  uint64_t step_ticks = 0, head_ticks = 0, window_ticks = 0;
  uint32_t steps = 0, heads = 0, host_mismatches = 0, window_mismatches = 0;
  uint32_t next_window = 0;  // the host's windows, in order
  for (int i = 0; i < PKW_STEP_NUM_STEPS; ++i) {
    const int t = pkw_step_schedule_frames[i];
    const int chain = t % kChains;
    // One step: the stem's frames and the chain's state in; the new rows out into the chain.
    const uint64_t t0 = systick_ticks();
    // A step that begins before the stream reads zeros there; the host counts only its rows
    // that read none of them (polykws.export.stepgraph.first_valid_row).
    const int lo = t - PKW_SG_STEP_FRAMES + 1;
    const int missing = lo < 0 ? -lo : 0;
    memset(step.input(0)->data.int8, 0, missing * PKW_STEP_FRAME_BYTES);
    memcpy(step.input(0)->data.int8 + missing * PKW_STEP_FRAME_BYTES, pkw_step_frames + (lo + missing) * PKW_STEP_FRAME_BYTES,
           (PKW_SG_STEP_FRAMES - missing) * PKW_STEP_FRAME_BYTES);
    Chain& ch = g_chains[chain];
    for (int b = 0; b < kBlocks; ++b) memcpy(step.input(1 + b)->data.int8, ch.state[b], Chain::kStateBytes);
    g_profiler.Reset();
    if (step.Invoke() != kTfLiteOk) return Fail("step_invoke");
    for (int b = 0; b < kBlocks; ++b) ch.Absorb(b, step.output(b)->data.int8);
    ch.PushFinals(step.output(kBlocks)->data.int8);
    step_ticks += systick_ticks() - t0;
    ++steps;

    if (!pkw_step_schedule_heads[i]) continue;
    if (next_window >= PKW_STEP_NUM_WINDOWS) return Fail("schedule");
    // The head over the chain's final rows, oldest first.
    const uint64_t t1 = systick_ticks();
    ch.CopyFinals(head.input(0)->data.int8);
    g_head_profiler.Reset();
    if (head.Invoke() != kTfLiteOk) return Fail("head_invoke");
    head_ticks += systick_ticks() - t1;
    ++heads;
    const int8_t* out = head.output(0)->data.int8;
    if (memcmp(out, pkw_step_expected + next_window * PKW_STEP_NUM_CLASSES, PKW_STEP_NUM_CLASSES) != 0) {
      ++host_mismatches;
    }
    // The windowed graph on the window that ends at this output's frame.
    const int end = t + PKW_SG_WINDOW_OFFSET;
    memcpy(window.input(0)->data.int8, pkw_step_frames + (end - PKW_WINDOW_FRAMES + 1) * PKW_STEP_FRAME_BYTES,
           PKW_WINDOW_FRAMES * PKW_STEP_FRAME_BYTES);
    const uint64_t t2 = systick_ticks();
    if (window.Invoke() != kTfLiteOk) return Fail("window_invoke");
    window_ticks += systick_ticks() - t2;
    if (memcmp(window.output(0)->data.int8, out, PKW_STEP_NUM_CLASSES) != 0) ++window_mismatches;
    ++next_window;
  }
  if (next_window != PKW_STEP_NUM_WINDOWS) return Fail("windows_missed");
  if (PKW_PROFILE) {
    PrintProfile("step", g_profiler);
    PrintProfile("head", g_head_profiler);
  }
  printf("PKW_STEPBENCH steps=%lu step_ticks=%s heads=%lu head_ticks=%s windows=%lu window_ticks=%s "
         "host_mismatches=%lu window_mismatches=%lu step_arena_used=%lu head_arena_used=%lu window_arena_used=%lu "
         "units_per_tick_milli=%lu unit=%s\n",
         (unsigned long)steps, U64(step_ticks), (unsigned long)heads, U64(head_ticks), (unsigned long)next_window,
         U64(window_ticks), (unsigned long)host_mismatches, (unsigned long)window_mismatches,
         (unsigned long)step.arena_used_bytes(), (unsigned long)head.arena_used_bytes(),
         (unsigned long)window.arena_used_bytes(), (unsigned long)board_units_per_tick_milli, board_count_unit);
  printf("PKW_END status=ok\n");
  return 0;
}
