/* Per-stage timing of the micro frontend (FE_PROFILE=1 builds; frontend_stages.c). */
#ifndef PKW_FRONTEND_STAGES_H_
#define PKW_FRONTEND_STAGES_H_

#ifdef __cplusplus
extern "C" {
#endif

/* One line per stage: PKW_FE_STAGE name=<stage> calls=<n> ticks=<sum>. */
void pkw_fe_stages_print(void);

#ifdef __cplusplus
}
#endif

#endif
