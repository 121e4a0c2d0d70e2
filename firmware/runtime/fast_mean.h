/* An int8 MEAN kernel with a fast path for global spatial pooling (4-D input, axes {1, 2}), the
 * pooling op a DS-CNN export ends with. TFLM has no optimized MEAN (CMSIS-NN covers AVERAGE_POOL_2D,
 * not MEAN); its reference kernel walks a generic N-d index per element (~130 instructions per
 * input value on the M4). The fast path sums each channel in int32 and then applies exactly the
 * reference's requantization (same multiplier/shift adjustment, same MultiplyByQuantizedMultiplier,
 * same clamping), so its output is bit-identical to TFLM's reference MEAN; every other case falls
 * back to the reference kernel. `polykws firmware bench` checks the bit-identity on every vector.
 */
#ifndef PKW_FAST_MEAN_H_
#define PKW_FAST_MEAN_H_

#include "tensorflow/lite/micro/micro_common.h"

namespace pkw {

// Register_MEAN() with the invoke replaced by the fast path (init/prepare/free are TFLM's).
TFLMRegistration RegisterFastMean();

}  // namespace pkw

#endif  // PKW_FAST_MEAN_H_
