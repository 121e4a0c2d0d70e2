/* Stand-in for ruy's profiler header, which a few TFLM reference kernels include only to place
 * scope labels. TFLM's own build downloads ruy for this one header; the labels are no-ops unless
 * RUY_PROFILER is defined, so an empty ScopeLabel is the documented behaviour, not a shortcut.
 * Written for polykws (not copied from ruy). */
#ifndef PKW_COMPAT_RUY_PROFILER_INSTRUMENTATION_H_
#define PKW_COMPAT_RUY_PROFILER_INSTRUMENTATION_H_

namespace ruy {
namespace profiler {

class ScopeLabel {
 public:
  template <typename... Args>
  explicit ScopeLabel(Args...) {}
};

}  // namespace profiler
}  // namespace ruy

#endif
