#include "fast_mean.h"

#include <stdint.h>

#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/reduce.h"
#include "tensorflow/lite/micro/micro_utils.h"

namespace pkw {
namespace {

TfLiteStatus (*g_reference_invoke)(TfLiteContext*, TfLiteNode*) = nullptr;

// Axes {1, 2} of a 4-D tensor, in any order, negative indices allowed, duplicates allowed
// (the reference resolves them the same way).
bool IsSpatialAxes(const TfLiteEvalTensor* axis) {
  const int n = static_cast<int>(tflite::ElementCount(*axis->dims));
  const int32_t* a = tflite::micro::GetTensorData<int32_t>(axis);
  bool has1 = false, has2 = false;
  for (int i = 0; i < n; ++i) {
    const int32_t v = a[i] < 0 ? a[i] + 4 : a[i];
    if (v == 1) {
      has1 = true;
    } else if (v == 2) {
      has2 = true;
    } else {
      return false;
    }
  }
  return has1 && has2;
}

TfLiteStatus FastMeanInvoke(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  const TfLiteEvalTensor* axis = tflite::micro::GetEvalInput(context, node, 1);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  if (input->type != kTfLiteInt8 || input->dims->size != 4 || axis->type != kTfLiteInt32 ||
      !IsSpatialAxes(axis)) {
    return g_reference_invoke(context, node);
  }
  const tflite::OpDataReduce* op = static_cast<const tflite::OpDataReduce*>(node->user_data);
  const int batches = input->dims->data[0], height = input->dims->data[1];
  const int width = input->dims->data[2], channels = input->dims->data[3];
  const int64_t count = static_cast<int64_t>(height) * width;
  if (count == 0 || batches * channels != op->num_output_elements) return g_reference_invoke(context, node);

  // The reference's 1/count folding into the output multiplier (reduce.h QuantizedMeanOrSum).
  int shift = 63 - __builtin_clzll(static_cast<uint64_t>(count));
  if (shift > 32) shift = 32;
  if (shift > 31 + op->shift) shift = 31 + op->shift;
  const int32_t multiplier = static_cast<int32_t>((static_cast<int64_t>(op->multiplier) << shift) / count);
  const int out_shift = op->shift - shift;

  int32_t* sums = static_cast<int32_t*>(context->GetScratchBuffer(context, op->scratch_accumulator_idx));
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);
  const int32_t zp_total = op->input_zp * static_cast<int32_t>(count);
  for (int b = 0; b < batches; ++b) {
    for (int c = 0; c < channels; ++c) sums[c] = 0;
    const int8_t* p = in + static_cast<int64_t>(b) * count * channels;
    for (int64_t i = 0; i < count; ++i, p += channels) {
      for (int c = 0; c < channels; ++c) sums[c] += p[c];
    }
    for (int c = 0; c < channels; ++c) {
      int32_t v = tflite::MultiplyByQuantizedMultiplier(sums[c] - zp_total, multiplier, out_shift) + op->output_zp;
      v = v < -128 ? -128 : (v > 127 ? 127 : v);
      out[b * channels + c] = static_cast<int8_t>(v);  // [N,1,1,C] and [N,C] share this order
    }
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration RegisterFastMean() {
  TFLMRegistration r = tflite::Register_MEAN();
  g_reference_invoke = r.invoke;
  r.invoke = FastMeanInvoke;
  return r;
}

}  // namespace pkw
